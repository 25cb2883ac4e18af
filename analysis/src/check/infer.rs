//! The mode a trace is checked against: what the trace alone says (model.md §12.2), a forced
//! mode, or the recording's metadata.

use serde::Serialize;

use super::{index::Class, index::Index, Divergence, RuleResult};
use crate::trace::cols::NO_SYM;
use crate::{event::RPS_IPI_FUNC, mode::Mode, trace::TraceMeta};

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

/// The check that the trace shows one mode, for a trace with both backlog_napi threads and
/// RPS IPIs (`TraceModeEvidence::inconsistent`): not a rule of the table, which holds per
/// mode.
pub(super) fn one_mode_failed() -> RuleResult {
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
    r.finish()
}
