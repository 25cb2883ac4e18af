//! Is the trace complete? Its events held against the kernel's own counters, when the
//! recording stored them (`kcounters`), and against its known losses.

use crate::{
    kcounters::{counter_of, Counter, KernelCheck, Snapshots, META_KEY},
    trace::{cols::Cols, TraceMeta},
    EventKind,
};

/// The kernel-counter check of a recorded trace; None when the file has no snapshots
/// (older recordings, `simulate`) or they do not parse.
pub fn kernel_check(cols: &Cols, meta: &TraceMeta) -> Option<KernelCheck> {
    let snaps: Snapshots = serde_json::from_str(meta.get(META_KEY)?).ok()?;
    let mut counts = snaps.counts();
    for (i, kind) in cols.kind.iter().enumerate() {
        if !matches!(
            kind,
            EventKind::NetifReceiveSkb | EventKind::CsdFunctionEntry | EventKind::SoftirqEntry
        ) {
            continue;
        }
        let e = cols.row(i);
        if let Some(c) = counter_of(*kind, e.vec(), e.func()) {
            counts.see(e.cpu(), c, e.ts_ns());
        }
    }
    let hotplug = cols
        .kind
        .iter()
        .any(|k| matches!(k, EventKind::CpuhpEnter | EventKind::CpuhpExit));
    Some(snaps.compare(
        &counts.finish(),
        known_lost(meta),
        recursion_misses(meta),
        hotplug,
    ))
}

/// Events the kernel's recursion guard skipped, all programs together.
pub fn recursion_misses(meta: &TraceMeta) -> u64 {
    meta.get("missed_by_event")
        .and_then(|s| serde_json::from_str::<std::collections::BTreeMap<String, u64>>(s).ok())
        .map_or(0, |m| m.values().sum())
}

/// Per CPU, the events the recording itself says it lost (ring full; seq gaps).
pub fn known_lost(meta: &TraceMeta) -> Vec<u64> {
    let gaps: Vec<u64> = meta
        .get("seq_gaps_per_cpu")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let lost = meta.lost_per_cpu();
    (0..gaps.len().max(lost.len()))
        .map(|c| {
            gaps.get(c)
                .copied()
                .unwrap_or(0)
                .max(lost.get(c).copied().unwrap_or(0))
        })
        .collect()
}

/// `missed_by_event` with the kinds the kernel's counters say are short added, so that the
/// rules treat those events as possibly missing (INCONCLUSIVE, never FAIL).
pub fn with_kernel_deficits(meta: &TraceMeta, k: &KernelCheck) -> Option<TraceMeta> {
    let short = k.short_by_counter();
    if short.is_empty() {
        return None;
    }
    let mut missed: std::collections::BTreeMap<String, u64> = meta
        .get("missed_by_event")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for (c, n) in short {
        *missed
            .entry(Counter::kind(c).name().to_string())
            .or_default() += n;
    }
    let mut m = meta.clone();
    m.set(
        "missed_by_event",
        serde_json::to_string(&missed).unwrap_or_default(),
    );
    Some(m)
}
