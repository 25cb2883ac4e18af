//! Which version features (model.md §2.2, §3) the traced kernel has, decided from evidence on
//! that kernel — BTF members, kernel symbols, tracepoints — and from its release string only
//! where nothing observable decides. Distribution kernels carry backports (F7 is in Debian's
//! 6.12.y and 6.1.y; the 6.6.y backport of the backlog-NAPI patch lacks F6), so a version
//! number alone is wrong there.
//!
//! The CLI looks up every [`Proof`] of [`FEATURES`] on the running kernel (probe-cli
//! `kernel/features.rs`) and hands the results here as [`Evidence`]; [`decide`] is pure.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Features;
use crate::{mode::major_minor, TraceMeta};

/// Something on the running kernel that shows a feature is there (or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// `struct <0>` has member `<1>` (BTF).
    Member(&'static str, &'static str),
    /// A kernel function (kallsyms, else a BTF FUNC). Inlining can hide one that exists.
    Func(&'static str),
    /// Tracepoint `<system>/<event>` (tracefs events/, else BTF `btf_trace_<event>`).
    Tracepoint(&'static str, &'static str),
    /// A line of the distribution's kernel changelog (Debian lists every stable patch it
    /// took); absence proves nothing.
    Changelog(&'static str),
}

impl Proof {
    /// The key the CLI reports this proof's result under.
    pub fn key(&self) -> String {
        match self {
            Proof::Member(s, m) => format!("btf:{s}.{m}"),
            Proof::Func(f) => format!("symbol:{f}"),
            Proof::Tracepoint(s, e) => format!("tracepoint:{s}/{e}"),
            Proof::Changelog(l) => format!("changelog:{l}"),
        }
    }
}

/// What the lookup of one proof found, and where it looked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seen {
    Present(String),
    Absent(String),
    /// Could not look (no BTF, kallsyms unreadable, ...).
    Unknown(String),
}

/// The looked-up proofs, by [`Proof::key`].
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub release: String,
    pub seen: BTreeMap<String, Seen>,
}

/// One row of the feature table.
pub struct FeatureRow {
    pub id: &'static str,
    /// The `Features` field it sets (also its name in recorded metadata).
    pub field: &'static str,
    pub changes: &'static str,
    pub commit: &'static str,
    /// The mainline rule, for ties (nothing observable decided).
    pub by_version: fn((u32, u32)) -> bool,
    pub version_rule: &'static str,
    /// A present proof gives `on_if_present`; an absent one decides the opposite only if
    /// `absence_decides` (a member, tracepoint or global function cannot be inlined away).
    pub proofs: &'static [Proof],
    pub on_if_present: bool,
    pub absence_decides: bool,
    set: fn(&mut Features, bool),
}

pub const FEATURES: &[FeatureRow] = &[
    FeatureRow {
        id: "F1",
        field: "f1_in_net_rx_action",
        changes: "____napi_schedule raises NET_RX only outside net_rx_action",
        commit: "c59647c0dc67 net: add softnet_data.in_net_rx_action",
        by_version: |v| v >= (6, 8),
        version_rule: "mainline >= 6.8",
        proofs: &[Proof::Member("softnet_data", "in_net_rx_action")],
        on_if_present: true,
        absence_decides: true,
        set: |f, on| f.f1_in_net_rx_action = on,
    },
    FeatureRow {
        id: "F2",
        field: "f2_rps_raise_suppression",
        changes: "napi_schedule_rps raises NET_RX on S only outside NET_RX / threaded poll",
        commit: "8fcb76b934da napi_schedule_rps() cleanup + 87eff2ec57b6 (in_napi_threaded_poll)",
        by_version: |v| v >= (6, 8),
        version_rule: "mainline >= 6.8",
        // The suppression reads both flags; without either it cannot be there.
        proofs: &[
            Proof::Member("softnet_data", "in_napi_threaded_poll"),
            Proof::Member("softnet_data", "in_net_rx_action"),
        ],
        on_if_present: true,
        absence_decides: true,
        set: |f, on| f.f2_rps_raise_suppression = on,
    },
    FeatureRow {
        id: "F4",
        field: "f4_ksoftirqd_deferral",
        changes: "softirqs wait for a runnable ksoftirqd (ksoftirqd_running)",
        commit: "reverted by d15121be7485 (v6.5)",
        by_version: |v| v < (6, 5),
        version_rule: "mainline < 6.5",
        // A static helper: present proves it, absent may be inlined.
        proofs: &[Proof::Func("ksoftirqd_running")],
        on_if_present: true,
        absence_decides: false,
        set: |f, on| f.f4_ksoftirqd_deferral = on,
    },
    FeatureRow {
        id: "F5",
        field: "f5_csd_tracepoints",
        changes: "csd:* (and ipi:ipi_send_cpu) tracepoints exist",
        commit: "csd tracepoints (v6.4)",
        by_version: |v| v >= (6, 4),
        version_rule: "mainline >= 6.4",
        proofs: &[Proof::Tracepoint("csd", "csd_queue_cpu")],
        on_if_present: true,
        absence_decides: true,
        set: |f, on| f.f5_csd_tracepoints = on,
    },
    FeatureRow {
        id: "F6",
        field: "f6_defer_kick_backlog",
        changes: "mode C defer kicks wake the backlog thread (kick_defer_list_purge)",
        commit: "patch 3/4 of dad6b9770263's series (v6.10; not in the 6.6.y backport)",
        by_version: |v| v >= (6, 10),
        version_rule: "mainline >= 6.10",
        // Global (called from skbuff.c), so it cannot be inlined away.
        proofs: &[Proof::Func("kick_defer_list_purge")],
        on_if_present: true,
        absence_decides: true,
        set: |f, on| f.f6_defer_kick_backlog = on,
    },
    FeatureRow {
        id: "F7",
        field: "f7_raise_irqoff",
        changes: "____napi_schedule uses raise_softirq_irqoff (wakes ksoftirqd outside irq)",
        commit: "77e45145e303 net: Handle napi_schedule() calls from non-interrupt (v6.14)",
        by_version: |v| v >= (6, 14),
        version_rule: "mainline >= 6.14",
        // ____napi_schedule is static inline and raise_softirq_irqoff exists everywhere:
        // no symbol, BTF member or tracepoint shows the change. Only a distribution
        // changelog naming the stable backport does.
        proofs: &[Proof::Changelog(
            "net: Handle napi_schedule() calls from non-interrupt",
        )],
        on_if_present: true,
        absence_decides: false,
        set: |f, on| f.f7_raise_irqoff = on,
    },
];

/// One feature's value and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    pub id: String,
    pub field: String,
    pub on: bool,
    /// False when only the release string decided.
    pub from_evidence: bool,
    pub evidence: String,
}

/// The row's value from the evidence, or `None` when nothing observable decides. Where
/// absence decides, every proof must be present (F2 reads two flags): one absent is enough.
fn from_evidence(row: &FeatureRow, ev: &Evidence) -> Option<(bool, String)> {
    let seen = |p: &Proof| ev.seen.get(&p.key());
    if row.absence_decides {
        if let Some(Seen::Absent(w)) = row
            .proofs
            .iter()
            .map(seen)
            .find(|s| matches!(s, Some(Seen::Absent(_))))
            .flatten()
        {
            return Some((!row.on_if_present, w.clone()));
        }
    }
    let present: Vec<&str> = row
        .proofs
        .iter()
        .filter_map(|p| match seen(p) {
            Some(Seen::Present(w)) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    (!present.is_empty()).then(|| (row.on_if_present, present.join("; ")))
}

fn unseen(row: &FeatureRow, ev: &Evidence) -> String {
    let looked = row
        .proofs
        .iter()
        .map(|p| match ev.seen.get(&p.key()) {
            Some(Seen::Absent(w) | Seen::Unknown(w)) => w.clone(),
            Some(Seen::Present(w)) => w.clone(),
            None => format!("{} not looked up", p.key()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if row.proofs.iter().all(|p| matches!(p, Proof::Changelog(_))) {
        format!("no symbol or BTF member shows it; {looked}")
    } else {
        looked
    }
}

/// Each feature from the evidence; the release string only where nothing decides.
pub fn decide(ev: &Evidence) -> Vec<Decided> {
    let v = major_minor(&ev.release);
    FEATURES
        .iter()
        .map(|row| {
            let (on, from_evidence, evidence) = match from_evidence(row, ev) {
                Some((on, w)) => (on, true, w),
                None => {
                    let on = (row.by_version)(v.unwrap_or((6, 18)));
                    // "(mainline < 6.5: no)": the rule and how it came out, so an off
                    // feature does not read as if its "on" condition held.
                    let why = format!(
                        "by version: {} ({}: {}); {}",
                        if ev.release.is_empty() {
                            "?"
                        } else {
                            &ev.release
                        },
                        row.version_rule,
                        if on { "yes" } else { "no" },
                        unseen(row, ev)
                    );
                    (on, false, why)
                }
            };
            Decided {
                id: row.id.into(),
                field: row.field.into(),
                on,
                from_evidence,
                evidence,
            }
        })
        .collect()
}

/// The metadata key a recording keeps the decided features under (a JSON array of `Decided`).
pub const META_KEY: &str = "kernel_features";

impl Features {
    /// Features of a mainline/stable kernel by release string alone (e.g. "6.12.118+deb13-amd64"):
    /// `simulate --kernel`, and recordings made before features were recorded.
    pub fn for_release(release: &str) -> Features {
        Features::from_decided(&decide(&Evidence {
            release: release.into(),
            ..Evidence::default()
        }))
    }

    /// The model's parameters from decided rows (rows it does not know keep the 6.18 value).
    pub fn from_decided(rows: &[Decided]) -> Features {
        let mut f = Features::for_release_defaults();
        for d in rows {
            if let Some(row) = FEATURES.iter().find(|r| r.field == d.field) {
                (row.set)(&mut f, d.on);
            }
        }
        f
    }

    fn for_release_defaults() -> Features {
        let mut f = Features {
            f1_in_net_rx_action: false,
            f2_rps_raise_suppression: false,
            f4_ksoftirqd_deferral: false,
            f5_csd_tracepoints: false,
            f6_defer_kick_backlog: false,
            f7_raise_irqoff: false,
        };
        for row in FEATURES {
            (row.set)(&mut f, (row.by_version)((6, 18)));
        }
        f
    }

    /// The features `check` holds a trace to: the recorded ones (`kernel_features`), else —
    /// recordings from before they were recorded — the release string; simulated traces
    /// ("model") keep their recorded F5 and 6.18 otherwise.
    pub fn from_meta(meta: &TraceMeta) -> Features {
        if let Some(rows) = meta
            .get(META_KEY)
            .and_then(|j| serde_json::from_str::<Vec<Decided>>(j).ok())
        {
            return Features::from_decided(&rows);
        }
        match meta.get("kernel_release") {
            Some(r) if r != "model" => Features::for_release(r),
            _ => meta
                .get("features")
                .map(|f| Features {
                    f5_csd_tracepoints: !f.contains("f5_csd_tracepoints: false"),
                    ..Features::for_release("6.18")
                })
                .unwrap_or_else(|| Features::for_release("6.18")),
        }
    }
}

/// What `check` reports of the features: the recorded rows and the values the rules used.
#[derive(Clone, Debug, Serialize)]
pub struct CheckedFeatures {
    pub used: Features,
    pub recorded: Vec<Decided>,
}

impl CheckedFeatures {
    /// Only for recordings that kept their features.
    pub fn of(meta: &TraceMeta, used: Features) -> Option<CheckedFeatures> {
        let recorded = serde_json::from_str(meta.get(META_KEY)?).ok()?;
        Some(CheckedFeatures { used, recorded })
    }
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
