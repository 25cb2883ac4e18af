//! The conformance checker: a trace against the reference model, rule by rule (model.md §11:
//! G1–G7 for every mode, A-1…A-8 for modes A/B, C-1…C-11 for mode C), per batch — only the
//! enqueue that found the backlog idle scheduled anything, and FIFO makes it the batch's first
//! delivered skb. Windows that lost events give INCONCLUSIVE, never FAIL.

pub mod complete;
pub mod index;
mod kinds;
mod percpu;
mod rules;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::trace::cols::{Cols, E, NO_SYM};
use crate::{
    event::RPS_IPI_FUNC,
    kcounters::{Completeness, KernelCheck},
    mode::Mode,
    paths::{classify_task, TaskKind},
    trace::{Trace, TraceMeta},
};
use index::{Class, Index};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Inconclusive,
    Warn,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    pub rule: &'static str,
    pub cpu: u32,
    pub ts_ns: u64,
    pub message: String,
    /// What the model expected instead.
    pub expected: String,
    /// The events involved, one line each.
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleResult {
    pub id: &'static str,
    pub title: &'static str,
    pub verdict: Verdict,
    /// Instances that passed.
    pub passed: u64,
    pub failed: u64,
    pub warned: u64,
    pub inconclusive: u64,
    pub note: Option<String>,
    /// The first divergences (all are counted in `failed` / `warned`).
    pub divergences: Vec<Divergence>,
}

const MAX_DIVERGENCES: usize = 10;

impl RuleResult {
    fn new(id: &'static str, title: &'static str) -> RuleResult {
        RuleResult {
            id,
            title,
            verdict: Verdict::Inconclusive,
            passed: 0,
            failed: 0,
            warned: 0,
            inconclusive: 0,
            note: None,
            divergences: Vec::new(),
        }
    }
    fn pass(&mut self) {
        self.passed += 1;
    }
    fn unsure(&mut self) {
        self.inconclusive += 1;
    }
    fn fail(&mut self, d: Divergence) {
        self.failed += 1;
        if self.divergences.len() < MAX_DIVERGENCES {
            self.divergences.push(d);
        }
    }
    fn warn(&mut self, d: Divergence) {
        self.warned += 1;
        if self.divergences.len() < MAX_DIVERGENCES {
            self.divergences.push(d);
        }
    }
    fn note(mut self, n: impl Into<String>) -> RuleResult {
        self.note = Some(n.into());
        self
    }
    fn finish(mut self) -> RuleResult {
        self.verdict = if self.failed > 0 {
            Verdict::Fail
        } else if self.warned > 0 {
            Verdict::Warn
        } else if self.passed > 0 {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        };
        self
    }
}

/// What a trace alone says about the mode (§12.2).
#[derive(Clone, Debug, Default, Serialize)]
pub struct TraceModeEvidence {
    pub backlog_thread_seen: bool,
    pub rps_ipi_seen: bool,
    pub remote_softirq_batches: u64,
    pub remote_thread_batches: u64,
    /// "A/B", "C", or None when the trace cannot tell.
    pub inferred: Option<&'static str>,
    pub inconsistent: bool,
}

pub fn trace_mode(ix: &Index) -> TraceModeEvidence {
    let mut t = TraceModeEvidence::default();
    let is_thread = |s: &str| {
        s.strip_prefix("backlog_napi/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    // Decided once per distinct string, then looked up per event.
    let strs = &ix.c.strs;
    let thread_sym: Vec<bool> = (0..strs.len() as u32)
        .map(|s| is_thread(strs.get(s)))
        .collect();
    let thread = |s: u32| s != NO_SYM && thread_sym[s as usize];
    t.backlog_thread_seen = ix.c.comm.iter().any(|s| thread(*s))
        || ix.c.target_comm.values().iter().any(|s| thread(*s));
    if let Some(rps) = strs.lookup(RPS_IPI_FUNC) {
        t.rps_ipi_seen = ix.c.func.values().contains(&rps);
    }
    for b in ix.batches.iter().filter(|b| b.complete) {
        let Some(d) = b.init.get().map(|i| &ix.deliveries[i as usize]) else {
            continue;
        };
        if d.from != b.cpu {
            match b.class {
                Class::Softirq => t.remote_softirq_batches += 1,
                Class::Thread => t.remote_thread_batches += 1,
                _ => {}
            }
        }
    }
    t.inconsistent = t.backlog_thread_seen && t.rps_ipi_seen;
    t.inferred = if t.inconsistent {
        None
    } else if t.backlog_thread_seen {
        Some("C")
    } else if t.rps_ipi_seen {
        Some("A/B")
    } else if t.remote_thread_batches > t.remote_softirq_batches {
        Some("C")
    } else if t.remote_softirq_batches > 0 {
        Some("A/B")
    } else {
        None
    };
    t
}

#[derive(Clone, Debug, Serialize)]
pub struct HotplugWindow {
    pub cpu: u32,
    pub from_ns: u64,
    pub to_ns: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// The mode the trace was checked against.
    pub mode: Option<Mode>,
    /// How that mode was chosen.
    pub mode_source: String,
    pub trace_mode: TraceModeEvidence,
    pub verdict: Verdict,
    pub events: usize,
    pub batches: usize,
    pub lost_events: u64,
    /// CPU hotplug operations seen (cpuhp events): rules are INCONCLUSIVE inside them.
    pub hotplug_windows: Vec<HotplugWindow>,
    /// Received packets by where they were processed.
    pub paths: BTreeMap<String, u64>,
    /// Batches by initiator (local/remote) and class.
    pub batch_paths: BTreeMap<String, u64>,
    pub rules: Vec<RuleResult>,
    /// Whether the trace holds every event: from the kernel's counters when the recording
    /// stored them, else from its own loss counts.
    pub completeness: Completeness,
    /// The kernel-counter check, per CPU and counter (recordings since it exists).
    pub kernel_counters: Option<KernelCheck>,
    /// Windows in which the kernel ran none of the recorder's programs (lost windows).
    pub blind: Vec<crate::kcounters::Blind>,
}

impl CheckReport {
    pub fn divergent(&self) -> bool {
        self.verdict == Verdict::Fail
    }

    /// Events are missing: verdicts about them are INCONCLUSIVE, and so is "complete".
    pub fn incomplete(&self) -> bool {
        self.completeness == Completeness::Incomplete
    }
}

/// Choose the mode: forced, or from the trace (§12.2), or from the recording's metadata.
pub fn resolve_mode(
    forced: Option<Mode>,
    ev: &TraceModeEvidence,
    meta: &TraceMeta,
) -> (Option<Mode>, String) {
    let meta_mode = meta.get("mode").and_then(Mode::parse);
    if let Some(m) = forced {
        return (Some(m), "given (--mode)".into());
    }
    match ev.inferred {
        Some("C") => (
            Some(Mode::C),
            "trace: backlog_napi threads / thread-class remote batches".into(),
        ),
        Some(_) => {
            let m = match meta_mode {
                Some(Mode::A) => Mode::A,
                _ => Mode::B,
            };
            (
                Some(m),
                format!(
                    "trace: RPS IPIs / softirq remote batches (A or B; {} from {})",
                    m.as_str(),
                    if meta_mode.is_some() {
                        "metadata"
                    } else {
                        "default"
                    }
                ),
            )
        }
        None => match meta_mode {
            Some(m) => (Some(m), "metadata (the trace alone cannot tell)".into()),
            None => (None, "undetermined: only the common rules apply".into()),
        },
    }
}

pub fn check(trace: &Trace, forced: Option<Mode>) -> CheckReport {
    check_cols(Cols::from_events(&trace.events), &trace.meta, forced)
}

/// Check a trace file, read straight into columns (`trace::read_columns`): the fast path
/// of `napiscope check`. Errors are the reader's (not Parquet, not a trace ...).
pub fn check_file(path: &std::path::Path, forced: Option<Mode>) -> anyhow::Result<CheckReport> {
    let (cols, meta) = crate::trace::read_columns(path)?;
    Ok(check_cols(cols, &meta, forced))
}

pub fn check_cols(cols: Cols, meta: &TraceMeta, forced: Option<Mode>) -> CheckReport {
    let events = cols.len();
    let kernel = complete::kernel_check(&cols, meta);
    // Events the kernel counted and the trace lacks are possibly missing for the rules.
    let deficits = kernel
        .as_ref()
        .and_then(|k| complete::with_kernel_deficits(meta, k));
    let meta = deficits.as_ref().unwrap_or(meta);
    let completeness = match &kernel {
        Some(k) => k.verdict,
        None if complete::known_lost(meta).iter().any(|n| *n > 0) => Completeness::Incomplete,
        None => Completeness::Unknown,
    };
    let ix = Index::build(cols, meta);
    let tm = trace_mode(&ix);
    let (mode, mode_source) = resolve_mode(forced, &tm, meta);
    let ctx = rules::Ctx::new(&ix, meta, mode);
    let mut results = rules::common(&ctx);
    match mode {
        Some(Mode::A | Mode::B) => results.extend(rules::mode_ab(&ctx)),
        Some(Mode::C) => results.extend(rules::mode_c(&ctx)),
        None => {}
    }
    if tm.inconsistent {
        let mut r = RuleResult::new("MODE", "the trace shows one mode");
        r.fail(Divergence {
            rule: "MODE",
            cpu: 0,
            ts_ns: 0,
            message: "the trace has both backlog_napi threads and RPS IPIs (mixed boots or a bug)"
                .into(),
            expected: "either threads (mode C) or RPS IPIs (modes A/B), never both".into(),
            events: vec![],
        });
        results.push(r.finish());
    }
    let verdict = results
        .iter()
        .map(|r| r.verdict)
        .filter(|v| *v != Verdict::Inconclusive)
        .max()
        .unwrap_or(Verdict::Inconclusive);
    // The index already paired every netif_rx with its netif_receive_skb. Counted per
    // path in an array, named once per path.
    let mut per_path = [0u64; 4];
    let path_of = |p: crate::paths::Path| p as usize;
    // Each distinct task name sorted once.
    let strs = &ix.c.strs;
    let task: Vec<TaskKind> = (0..strs.len() as u32)
        .map(|s| TaskKind::of(strs.get(s)))
        .collect();
    for d in &ix.deliveries {
        let rcv = ix.ev(d.rcv);
        let path = classify_task(d.from, d.to, rcv.ctx(), task[rcv.comm_sym() as usize]);
        per_path[path_of(path)] += 1;
    }
    let paths: BTreeMap<&str, u64> = crate::paths::Path::ALL
        .iter()
        .filter(|p| per_path[path_of(**p)] > 0)
        .map(|p| (p.name(), per_path[path_of(*p)]))
        .collect();
    // Counted per (origin, class) in an array, named once per pair.
    const ORIGINS: [&str; 3] = ["remote", "local", "no traced enqueue"];
    const CLASSES: [Class; 4] = [Class::Softirq, Class::Thread, Class::Other, Class::Mixed];
    let mut per_batch_path = [[0u64; CLASSES.len()]; ORIGINS.len()];
    for b in ix.batches.iter().filter(|b| b.complete) {
        let origin = match b.init.get().map(|i| &ix.deliveries[i as usize]) {
            Some(d) if d.from != b.cpu => 0,
            Some(_) => 1,
            None => 2,
        };
        let class = CLASSES.iter().position(|c| *c == b.class).unwrap_or(0);
        per_batch_path[origin][class] += 1;
    }
    let mut batch_paths: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (origin, counts) in ORIGINS.iter().zip(per_batch_path) {
        for (class, n) in CLASSES.iter().zip(counts) {
            if n > 0 {
                batch_paths.insert((origin, class.name()), n);
            }
        }
    }
    let paths = paths.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    let batch_paths = batch_paths
        .into_iter()
        .map(|((origin, class), n)| (format!("{origin} → {class}"), n))
        .collect();
    CheckReport {
        mode,
        mode_source,
        trace_mode: tm,
        verdict,
        events,
        batches: ix.batches.len(),
        lost_events: meta.lost_per_cpu().iter().sum(),
        hotplug_windows: ix
            .hotplug
            .iter()
            .map(|&(cpu, from_ns, to_ns)| HotplugWindow {
                cpu,
                from_ns,
                to_ns,
            })
            .collect(),
        paths,
        batch_paths,
        rules: results,
        completeness,
        kernel_counters: kernel,
        blind: crate::kcounters::blind_of(meta),
    }
}

impl std::fmt::Debug for E<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(*self))
    }
}

/// One line describing an event, for divergence reports.
pub fn describe(e: E) -> String {
    let mut s = format!(
        "{:.6}s cpu{} {} [{} {}]",
        e.ts_ns() as f64 / 1e9,
        e.cpu(),
        e.event().name(),
        e.ctx().name(),
        e.comm()
    );
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v}"));
        }
    };
    add("skb", e.skb().map(|v| format!("{v:x}")));
    add("dev", e.dev().map(str::to_string));
    add("work", e.work().map(|v| v.to_string()));
    add("budget", e.budget().map(|v| v.to_string()));
    add("target_cpu", e.target_cpu().map(|v| v.to_string()));
    add("func", e.func().map(str::to_string));
    add("target", e.target_comm().map(str::to_string));
    add("prev_state", e.prev_state().map(str::to_string));
    s
}

#[cfg(test)]
mod tests;
