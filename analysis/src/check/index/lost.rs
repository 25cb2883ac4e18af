//! The windows in which a trace lost events, per CPU: from gaps in its sequence numbers,
//! the recorder's loss counters and the kernel's blind windows.

use crate::trace::{cols::Cols, fastmap::FastMap, seqscan::SeqFacts, TraceMeta};

/// Per CPU: windows with lost events, from gaps in that CPU's sequence numbers (`facts`,
/// over the rows in time order) and from the recorder's loss counters. A CPU whose sequence
/// numbers go backwards somewhere is redone over its rows sorted by seq.
pub(super) fn lost_windows(
    c: &Cols,
    facts: SeqFacts,
    meta: &TraceMeta,
) -> FastMap<u32, Vec<(u64, u64)>> {
    let lost_meta = meta.lost_per_cpu();
    let mut out: FastMap<u32, Vec<(u64, u64)>> = FastMap::default();
    for (cpu, s) in facts.cpus {
        let (mut w, g, last_ts) = if s.ordered {
            let last = s.last_ts();
            (s.windows, s.gaps, last)
        } else {
            // Facts a reader hands over are complete, so this CPU's seqs are in `c.seq`.
            let rows: Vec<u32> = (0..c.len() as u32)
                .filter(|i| c.cpu[*i as usize] as u32 == cpu)
                .collect();
            seq_gaps(c, rows)
        };
        // Losses after the last event this CPU delivered show in the counters, not in seq.
        if lost_meta.get(cpu as usize).copied().unwrap_or(0) > g {
            w.push((last_ts, u64::MAX));
        }
        out.insert(cpu, w);
    }
    // Windows in which the kernel ran none of the recorder's programs on a CPU (no seq was
    // taken, so no gap shows): as lost as any.
    for b in crate::kcounters::blind_of(meta) {
        let w = out.entry(b.cpu).or_default();
        w.extend(b.last.iter().map(|s| (s.from_ns, s.to_ns)));
        if b.windows as usize > b.last.len() {
            // Older windows than the log keeps: somewhere before the first one kept.
            let first = b.last.iter().map(|s| s.from_ns).min().unwrap_or(u64::MAX);
            w.push((0, first));
        }
    }
    out
}

/// Loss windows of one CPU's rows (in time order) whose seqs are not in time order:
/// (windows, lost count, ts of the last row by seq).
fn seq_gaps(c: &Cols, mut v: Vec<u32>) -> (Vec<(u64, u64)>, u64, u64) {
    v.sort_by_key(|i| c.seq[*i as usize]); // stable: time order among equal seqs
    let (seq, ts) = (|i: u32| c.seq[i as usize], |i: u32| c.ts[i as usize]);
    let mut gaps = 0u64;
    let mut w = Vec::new();
    if let Some(first) = v.first().filter(|i| seq(**i) > 0) {
        gaps += seq(*first);
        w.push((0, ts(*first)));
    }
    for pair in v.windows(2) {
        if seq(pair[1]) > seq(pair[0]) + 1 {
            gaps += seq(pair[1]) - seq(pair[0]) - 1;
            w.push((ts(pair[0]), ts(pair[1])));
        }
    }
    (w, gaps, v.last().map_or(0, |i| ts(*i)))
}
