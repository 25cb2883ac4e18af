//! What to try, from evidence: each rule of `RULES` looks at a report's numbers (and the
//! kernel's own counters the recordings kept) and, when its condition holds, says what it saw
//! and which setting to change. Advice is printed, never applied.
//!
//! | id | condition | setting |
//! |---|---|---|
//! | backlog-drops | softnet_stat `dropped` grew | `net.core.netdev_max_backlog` |
//! | time-squeeze | softnet_stat `time_squeeze` grew | `net.core.netdev_budget`, `netdev_budget_usecs` |
//! | ksoftirqd | ≥ 5% of deliveries (≥ 50) ran in ksoftirqd | threaded NAPI, RPS, `thread_backlog_napi` |
//! | rps-unbalanced | ≥ 2 CPUs get RPS work, the busiest ≥ 2× the least busy (≥ 100) | `rps_cpus`, RFS |
//! | ipi-cost | modes A/B: ≥ 100 RPS IPIs, ≥ 0.2 per packet | `thread_backlog_napi` (mode C) |
//! | flow-limit | softnet_stat `flow_limit` grew | `net.core.flow_limit_table_len`, `flow_limit_cpu_bitmap` |

use std::collections::BTreeMap;

use serde::Serialize;

use super::{input::Recording, summary::Summary};
use crate::{
    kcounters::{Snapshots, META_KEY},
    trace::NET_CORE_KEY,
};

/// One piece of advice: what was seen, in numbers, and what to try.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Advice {
    pub id: &'static str,
    pub title: &'static str,
    /// The numbers that triggered it.
    pub evidence: String,
    /// The setting to change (never changed by napiscope).
    pub try_this: String,
}

/// The kernel's counters over the recordings (softnet_stat deltas per CPU, summed), the
/// recordings' mode and `net.core` settings: what the rules read besides the summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// CPU → (dropped, time_squeeze, flow_limit) grown while recording; empty when no
    /// recording kept the kernel's counters.
    pub softnet: BTreeMap<u32, [u64; 3]>,
    /// The recordings' modes ("A", "B", "C").
    pub modes: Vec<String>,
    /// `net.core.*` as recorded (metadata `net_core`).
    pub net_core: BTreeMap<String, String>,
}

impl Facts {
    pub fn of(recs: &[(usize, &Recording)]) -> Facts {
        let mut f = Facts::default();
        for (_, r) in recs {
            if let Some(m) = &r.mode {
                if !f.modes.contains(m) {
                    f.modes.push(m.clone());
                }
            }
            if let Some(s) = (r.meta.get(NET_CORE_KEY)).and_then(|s| serde_json::from_str(s).ok()) {
                f.net_core.extend::<BTreeMap<String, String>>(s);
            }
            let Some(snaps) =
                (r.meta.get(META_KEY)).and_then(|s| serde_json::from_str::<Snapshots>(s).ok())
            else {
                continue;
            };
            for end in &snaps.end.cpus {
                let Some(start) = snaps.start.cpus.iter().find(|c| c.cpu == end.cpu) else {
                    continue;
                };
                let d = |a: u32, b: u32| u64::from(b.wrapping_sub(a));
                let e = f.softnet.entry(end.cpu).or_default();
                e[0] += d(start.dropped, end.dropped);
                e[1] += d(start.time_squeeze, end.time_squeeze);
                e[2] += d(start.flow_limit, end.flow_limit);
            }
        }
        f
    }

    /// `cpuN +k` for every CPU where softnet column `i` grew, and the total.
    fn grown(&self, i: usize) -> Option<(u64, String)> {
        let per: Vec<String> = (self.softnet.iter())
            .filter(|(_, v)| v[i] > 0)
            .map(|(cpu, v)| format!("cpu{cpu} +{}", v[i]))
            .collect();
        let total: u64 = self.softnet.values().map(|v| v[i]).sum();
        (total > 0).then(|| (total, per.join(", ")))
    }

    /// `name (recorded: v)`, or the name alone.
    fn setting(&self, name: &str) -> String {
        match self.net_core.get(name) {
            Some(v) => format!("net.core.{name} (recorded: {v})"),
            None => format!("net.core.{name}"),
        }
    }
}

struct Rule {
    id: &'static str,
    title: &'static str,
    /// The evidence and what to try, when the condition holds.
    check: fn(&Summary, &Facts) -> Option<(String, String)>,
}

const RULES: &[Rule] = &[
    Rule {
        id: "backlog-drops",
        title: "packets were dropped at a backlog",
        check: |_, f| {
            let (n, per) = f.grown(0)?;
            Some((
                format!("softnet_stat dropped grew by {n} ({per}): enqueue_to_backlog found the queue full"),
                format!(
                    "raise {} (e.g. double it with sysctl -w), or spread the load over more CPUs",
                    f.setting("netdev_max_backlog")
                ),
            ))
        },
    },
    Rule {
        id: "time-squeeze",
        title: "NET_RX ran out of budget or time with work left",
        check: |s, f| {
            let (n, per) = f.grown(1)?;
            let exh = s.totals.budget_exhausted_pct.map_or(String::new(), |p| {
                format!("; {p:.1}% of polls used their whole budget")
            });
            Some((
                format!("softnet_stat time_squeeze grew by {n} ({per}){exh}"),
                format!(
                    "raise {} or {}",
                    f.setting("netdev_budget"),
                    f.setting("netdev_budget_usecs")
                ),
            ))
        },
    },
    Rule {
        id: "ksoftirqd",
        title: "receive work was deferred to ksoftirqd",
        check: |s, _| {
            let (k, all) = (s.totals.deliveries.ksoftirqd, s.totals.delivered);
            (k >= 50 && k * 20 >= all).then(|| {
                (
                    format!(
                        "{k} of {all} packets ({:.1}%) were processed by ksoftirqd/N, which \
                         competes with every other task at normal priority",
                        100.0 * k as f64 / all as f64
                    ),
                    "spread receive work over more CPUs (RPS: /sys/class/net/<dev>/queues/rx-*/\
                     rps_cpus), or make it a task you can prioritise: threaded NAPI (echo 1 > \
                     /sys/class/net/<dev>/threaded) or, for the backlog, the thread_backlog_napi \
                     boot option (6.10+)"
                        .into(),
                )
            })
        },
    },
    Rule {
        id: "rps-unbalanced",
        title: "RPS targets are unbalanced",
        check: |s, _| {
            let remote: Vec<(u32, u64)> = (s.cpus.iter())
                .map(|c| {
                    (
                        c.cpu,
                        c.deliveries.remote_softirq + c.deliveries.backlog_thread,
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            let max = remote.iter().max_by_key(|(_, n)| *n)?;
            let min = remote.iter().min_by_key(|(_, n)| *n)?;
            (remote.len() >= 2 && max.1 >= 100 && max.1 >= 2 * min.1).then(|| {
                (
                    format!(
                        "RPS work per CPU: {}; cpu{} gets {:.1}× what cpu{} gets",
                        (remote.iter())
                            .map(|(c, n)| format!("cpu{c} {n}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        max.0,
                        max.1 as f64 / min.1 as f64,
                        min.0
                    ),
                    "check the rx queues' rps_cpus masks; with few flows RPS hashes them onto few \
                     CPUs (RFS: net.core.rps_sock_flow_entries and rps_flow_cnt steer by consumer)"
                        .into(),
                )
            })
        },
    },
    Rule {
        id: "ipi-cost",
        title: "every remote batch costs an RPS IPI",
        check: |s, f| {
            let ipp = s.totals.ipis_per_packet?;
            let ipis = s.totals.rps_ipis_sent;
            let ab = !f.modes.is_empty() && f.modes.iter().all(|m| m == "A" || m == "B");
            (ab && ipis >= 100 && ipp >= 0.2).then(|| {
                let how = if f.modes.iter().any(|m| m == "A") {
                    "a 6.10+ kernel booted with thread_backlog_napi (mode C)"
                } else {
                    "the thread_backlog_napi boot option (mode C)"
                };
                (
                    format!("{ipis} RPS IPIs, {ipp:.2} per packet delivered"),
                    format!(
                        "{how} replaces each IPI with a wake-up of backlog_napi/<cpu>; \
                         `napiscope whatif` predicts the difference from this recording"
                    ),
                )
            })
        },
    },
    Rule {
        id: "flow-limit",
        title: "the flow limit dropped packets of a heavy flow",
        check: |_, f| {
            let (n, per) = f.grown(2)?;
            Some((
                format!("softnet_stat flow_limit grew by {n} ({per})"),
                format!(
                    "by design it protects the other flows; if that flow matters, raise {} or \
                     clear the CPU from {}",
                    f.setting("netdev_max_backlog"),
                    f.setting("flow_limit_cpu_bitmap")
                ),
            ))
        },
    },
];

/// The advice whose condition holds, in `RULES` order.
pub fn advise(s: &Summary, f: &Facts) -> Vec<Advice> {
    (RULES.iter())
        .filter_map(|r| {
            (r.check)(s, f).map(|(evidence, try_this)| Advice {
                id: r.id,
                title: r.title,
                evidence,
                try_this,
            })
        })
        .collect()
}

/// Every rule's id, in order (the table above).
pub fn rule_ids() -> Vec<&'static str> {
    RULES.iter().map(|r| r.id).collect()
}
