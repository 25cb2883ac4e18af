//! Where the index's rows sit: CPUs as dense slots, rows grouped by a key, and the
//! permutation that puts a trace's rows in time order.

use crate::trace::{cols::Cols, fastmap::FastMap};

/// Row indices grouped by a key, each group in row (time) order, all in one vector: no
/// vector per group to grow, and a row's placement is one store.
pub(super) struct Groups {
    pub(super) rows: Vec<u32>,
    /// Group g is `rows[start[g]..start[g + 1]]`.
    pub(super) start: Vec<usize>,
}

impl Groups {
    /// Rows grouped by `key` (each row's group, below `counts.len()`), given each group's
    /// size.
    pub(super) fn of_rows(counts: &[usize], key: impl Iterator<Item = usize>) -> Groups {
        let mut start = Vec::with_capacity(counts.len() + 1);
        start.push(0);
        for n in counts {
            start.push(start[start.len() - 1] + n);
        }
        let mut next = start.clone();
        let mut rows = vec![0u32; start[counts.len()]];
        for (i, g) in key.enumerate() {
            rows[next[g]] = i as u32;
            next[g] += 1;
        }
        Groups { rows, start }
    }

    pub(super) fn get(&self, g: usize) -> &[u32] {
        &self.rows[self.start[g]..self.start[g + 1]]
    }
}

/// CPU → dense slot (in order of first appearance): a table for the usual small CPU
/// numbers, a map for the rest. Looked up per row instead of keeping a slot per row
/// (4 bytes a row of fresh memory).
#[derive(Default)]
pub(super) struct CpuSlots {
    table: Vec<u32>,
    map: FastMap<u32, usize>,
}

impl CpuSlots {
    /// CPUs below this are looked up in the table.
    const TABLE: usize = 4096;

    #[inline]
    pub(super) fn get(&self, cpu: u32) -> Option<usize> {
        match self.table.get(cpu as usize) {
            Some(&s) => (s != u32::MAX).then_some(s as usize),
            None => self.map.get(&cpu).copied(),
        }
    }

    /// The slot of a CPU that has rows (all of them got one in `scan`).
    #[inline]
    pub(super) fn of(&self, cpu: u32) -> usize {
        self.get(cpu).unwrap_or(0)
    }

    /// Slots for `cpus`, in that order.
    pub(super) fn of_cpus(cpus: &[u32]) -> CpuSlots {
        let mut slots = CpuSlots::default();
        for (s, cpu) in cpus.iter().enumerate() {
            slots.insert(*cpu, s);
        }
        slots
    }

    fn insert(&mut self, cpu: u32, slot: usize) {
        if self.table.is_empty() {
            self.table = vec![u32::MAX; Self::TABLE];
        }
        match self.table.get_mut(cpu as usize) {
            Some(t) => *t = slot as u32,
            None => {
                self.map.insert(cpu, slot);
            }
        }
    }
}

/// The permutation that sorts rows (not yet in order) by (ts, cpu, seq, row).
/// A recording is in time order per CPU, so that case is a merge of the CPUs' runs.
pub(super) fn time_order(c: &Cols, slots: &CpuSlots, nslots: usize) -> Vec<u32> {
    let key = |i: usize| (c.ts[i], c.cpu[i], c.seq[i]);
    let n = c.len();
    let mut runs: Vec<Vec<u32>> = vec![Vec::new(); nslots];
    for (i, cpu) in c.cpu.iter().enumerate() {
        runs[slots.of(*cpu as u32)].push(i as u32);
    }
    let sorted_runs = runs.iter().all(|r| {
        r.windows(2)
            .all(|w| key(w[0] as usize) <= key(w[1] as usize))
    });
    if !sorted_runs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|i| (key(*i as usize), *i));
        return order;
    }
    // k-way merge; a run's rows all have the same cpu, so ties in (ts, cpu, seq) only occur
    // inside a run, where row order decides.
    use std::{cmp::Reverse, collections::BinaryHeap};
    type Key = (u64, u16, u64);
    let mut heads: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    let mut pos = vec![0usize; nslots];
    for (s, r) in runs.iter().enumerate() {
        if let Some(i) = r.first() {
            heads.push(Reverse((key(*i as usize), s)));
        }
    }
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, s))) = heads.pop() {
        let r = &runs[s];
        // Take this run's rows while they stay below the next run's head.
        let limit = heads.peek().map(|Reverse((k, _))| *k);
        let mut p = pos[s];
        loop {
            order.push(r[p]);
            p += 1;
            if p == r.len() {
                break;
            }
            let k = key(r[p] as usize);
            if limit.is_some_and(|l| k > l) {
                heads.push(Reverse((k, s)));
                break;
            }
        }
        pos[s] = p;
    }
    order
}
