//! The conformance checker: a trace against the reference model, rule by rule (model.md §11;
//! the rules are the table in `rules/mod.rs`), per batch — only the enqueue that found the
//! backlog idle scheduled anything, and FIFO makes it the batch's first delivered skb.
//! Windows that lost events give INCONCLUSIVE, never FAIL.
//!
//! `check_cols` runs it: the index (`index/`), the mode (`infer.rs`), the rules (`rules/`,
//! each a `result::RuleResult`), the per-path tallies (`tally.rs`) and the kernel-counter
//! check (`complete.rs`) make the `CheckReport`.

pub mod complete;
pub mod index;
mod infer;
mod kinds;
mod percpu;
mod result;
pub mod rules;
mod tally;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::trace::cols::{Cols, E};
use crate::{
    kcounters::{Completeness, KernelCheck},
    mode::Mode,
    trace::{Trace, TraceMeta},
};
use index::Index;
pub use infer::{resolve_mode, trace_mode, TraceModeEvidence};
pub use result::{Divergence, RuleResult, Verdict};

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
    /// The version features the rules used, when the recording kept them with their evidence
    /// (older recordings and simulated traces: absent, the release string decides).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<crate::model::features::CheckedFeatures>,
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
    let mut results = rules::run(&ctx);
    if tm.inconsistent {
        results.push(infer::one_mode_failed());
    }
    let verdict = results
        .iter()
        .map(|r| r.verdict)
        .filter(|v| *v != Verdict::Inconclusive)
        .max()
        .unwrap_or(Verdict::Inconclusive);
    // The index already paired every netif_rx with its netif_receive_skb.
    let paths = tally::packets_by_path(&ix);
    let batch_paths = tally::batches_by_path(&ix);
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
        features: crate::model::features::CheckedFeatures::of(meta, ctx.features),
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
