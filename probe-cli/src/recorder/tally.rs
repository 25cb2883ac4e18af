//! What `record` does with each ring-buffer record: decode it, count it (per kind, per CPU,
//! sequence gaps, against the kernel's counters), append it to the file.

use analysis::TraceWriter;
use anyhow::Result;

use super::RecordSummary;
use crate::kernel::{decode::Decoder, ring::RingReader};

/// Tracks per-CPU sequence numbers as rows arrive; a gap is a lost event. Each event has its
/// own number, but a nested event (an IRQ inside a program) can reach the ring before the
/// one it interrupted: a number below the highest seen fills a gap counted earlier.
#[derive(Default)]
pub struct SeqTracker {
    /// Per CPU: highest seq seen + 1 (0 = nothing seen yet).
    next: Vec<u64>,
    gaps: Vec<u64>,
}

impl SeqTracker {
    #[inline]
    pub fn see(&mut self, cpu: u32, seq: u64) {
        let c = cpu as usize;
        if c >= self.next.len() {
            self.next.resize(c + 1, 0);
            self.gaps.resize(c + 1, 0);
        }
        let next = self.next[c];
        if next == 0 || seq >= next {
            if next > 0 {
                self.gaps[c] += seq - next;
            }
            self.next[c] = seq + 1;
        } else {
            self.gaps[c] = self.gaps[c].saturating_sub(1);
        }
    }
    pub fn gaps(&self, ncpu: usize) -> Vec<u64> {
        (0..ncpu)
            .map(|c| self.gaps.get(c).copied().unwrap_or(0))
            .collect()
    }
}

/// What `record` counts per event while it writes: per kind, per CPU, sequence gaps, and
/// records it could not decode.
#[derive(Default)]
pub struct Tally {
    /// By kind code (1..=ALL.len()).
    per_kind: [u64; analysis::EventKind::ALL.len() + 1],
    per_cpu: Vec<u64>,
    pub seqs: SeqTracker,
    pub bad: u64,
    /// Events that count one for one with a kernel counter, into the snapshots' windows.
    pub edge: Option<analysis::kcounters::EdgeCounter>,
    /// The interned `rps_trigger_softirq`, which csd_function_entry rows name.
    pub rps_func: Option<analysis::trace::Sym>,
}

impl Tally {
    #[inline]
    fn see_row(&mut self, r: &analysis::trace::Row) {
        self.see(r.event, r.cpu, r.seq);
        if let Some(edge) = &mut self.edge {
            // The row's func is an interned id: only the RPS IPI's name matters to the table.
            let rps = r.func.is_some() && r.func == self.rps_func;
            let func = rps.then_some(analysis::event::RPS_IPI_FUNC);
            if let Some(c) = analysis::kcounters::counter_of(r.event, r.vec, func) {
                edge.see(r.cpu, c, r.ts_ns);
            }
        }
    }

    #[inline]
    fn see(&mut self, kind: analysis::EventKind, cpu: u32, seq: u64) {
        self.per_kind[kind as usize] += 1;
        let c = cpu as usize;
        if c >= self.per_cpu.len() {
            self.per_cpu.resize(c + 1, 0);
        }
        self.per_cpu[c] += 1;
        self.seqs.see(cpu, seq);
    }

    /// Did the recording see a CPU go down or come up (cpuhp events)?
    pub fn saw_hotplug(&self) -> bool {
        self.per_kind[analysis::EventKind::CpuhpEnter as usize] > 0
            || self.per_kind[analysis::EventKind::CpuhpExit as usize] > 0
    }

    pub fn into_summary(self, summary: &mut RecordSummary) {
        for k in analysis::EventKind::ALL {
            let n = self.per_kind[k as usize];
            if n > 0 {
                summary.per_event.insert(k.name().to_string(), n);
            }
        }
        for (cpu, n) in self.per_cpu.iter().enumerate() {
            if *n > 0 {
                summary.per_cpu.insert(cpu as u32, *n);
            }
        }
    }
}

/// Decode one ring-buffer item and append it to the file. A record that is not one of ours
/// is counted, never fatal; a CPU number beyond any kernel's is such a record.
#[inline]
pub(crate) fn ingest(
    item: &[u8],
    decoder: &mut Decoder,
    writer: &mut TraceWriter,
    tally: &mut Tally,
) -> Result<()> {
    let row = match Decoder::raw(item).and_then(|r| decoder.row(&r, writer)) {
        Ok(r) if (r.cpu as usize) < probe_common::MAX_CPUS => r,
        _ => {
            tally.bad += 1;
            return Ok(());
        }
    };
    tally.see_row(&row);
    writer.push_row(&row)
}

/// Decode and write what waits in the ring; returns how many records it took.
pub fn drain(
    ring: &mut RingReader,
    decoder: &mut Decoder,
    writer: &mut TraceWriter,
    tally: &mut Tally,
) -> Result<usize> {
    // Bounded, so the progress line and signals are served even under a flood; the kernel
    // sees the ring space freed when the batch ends.
    ring.drain(32_768, |item| ingest(item, decoder, writer, tally))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_gaps_count_missing_events_per_cpu() {
        let mut t = SeqTracker::default();
        for (cpu, seq) in [(0, 0), (0, 1), (1, 5), (0, 4), (1, 6), (1, 9)] {
            t.see(cpu, seq);
        }
        assert_eq!(t.gaps(3), vec![2, 2, 0]);
    }

    #[test]
    fn a_nested_event_arriving_late_is_not_a_gap() {
        let mut t = SeqTracker::default();
        // 11 (an IRQ's event) overtakes 10; 13 is really lost.
        for seq in [9, 11, 10, 12, 14] {
            t.see(0, seq);
        }
        assert_eq!(t.gaps(1), vec![1]);
    }
}
