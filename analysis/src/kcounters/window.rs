//! A recording's events counted into the windows of two snapshots (see the module docs).

use serde::{Deserialize, Serialize};

use super::{Counter, Snapshot};

/// Events counted per CPU and counter in the two windows (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Events surely inside the kernel's window.
    pub inner: u64,
    /// Events possibly inside it.
    pub outer: u64,
}

/// Per CPU (index = CPU number), per counter.
pub type WindowCounts = Vec<[Bounds; 3]>;

/// Counts events into the windows of two snapshots as they stream past, for `record`: the
/// end snapshot is taken while events still arrive, so events that come after it are kept
/// (just their time) until the end bounds are known.
pub struct EdgeCounter {
    start: (u64, u64),
    /// Per CPU and counter: events with `ts >= start.ts_hi` and with
    /// `start.ts_lo <= ts < start.ts_hi`, taken before the end snapshot.
    after_start: Vec<[u64; 3]>,
    start_edge: Vec<[u64; 3]>,
    /// Events seen after the end snapshot was taken: (cpu, counter, ts).
    late: Vec<(u32, Counter, u64)>,
    ended: bool,
}

impl EdgeCounter {
    pub fn new(start: &Snapshot) -> EdgeCounter {
        EdgeCounter {
            start: (start.ts_lo, start.ts_hi),
            after_start: Vec::new(),
            start_edge: Vec::new(),
            late: Vec::new(),
            ended: false,
        }
    }

    /// From now on events may be later than the end snapshot (call right before taking it).
    pub fn end_taken(&mut self) {
        self.ended = true;
    }

    #[inline]
    pub fn see(&mut self, cpu: u32, counter: Counter, ts: u64) {
        if self.ended {
            self.late.push((cpu, counter, ts));
            return;
        }
        let (lo, hi) = self.start;
        if ts < lo {
            return;
        }
        let c = cpu as usize;
        if c >= self.after_start.len() {
            self.after_start.resize(c + 1, [0; 3]);
            self.start_edge.resize(c + 1, [0; 3]);
        }
        if ts >= hi {
            self.after_start[c][counter.index()] += 1;
        } else {
            self.start_edge[c][counter.index()] += 1;
        }
    }

    pub fn finish(self, end: &Snapshot) -> WindowCounts {
        let mut w: WindowCounts = self
            .after_start
            .iter()
            .zip(&self.start_edge)
            .map(|(a, e)| {
                std::array::from_fn(|i| Bounds {
                    inner: a[i],
                    outer: a[i] + e[i],
                })
            })
            .collect();
        let mut counts = Counts::new(self.start.0, self.start.1, end.ts_lo, end.ts_hi);
        for (cpu, counter, ts) in self.late {
            counts.see(cpu, counter, ts);
        }
        add(&mut w, &counts.finish());
        w
    }
}

fn add(into: &mut WindowCounts, other: &WindowCounts) {
    if other.len() > into.len() {
        into.resize(other.len(), Default::default());
    }
    for (a, b) in into.iter_mut().zip(other) {
        for i in 0..3 {
            a[i].inner += b[i].inner;
            a[i].outer += b[i].outer;
        }
    }
}

/// Counts events into the windows of two known snapshots (a recorded file's events).
pub struct Counts {
    bounds: [u64; 4],
    w: WindowCounts,
}

impl Counts {
    pub fn new(start_lo: u64, start_hi: u64, end_lo: u64, end_hi: u64) -> Counts {
        Counts {
            bounds: [start_lo, start_hi, end_lo, end_hi],
            w: Vec::new(),
        }
    }

    #[inline]
    pub fn see(&mut self, cpu: u32, counter: Counter, ts: u64) {
        let [slo, shi, elo, ehi] = self.bounds;
        let outer = ts >= slo && ts < ehi;
        if !outer {
            return;
        }
        let c = cpu as usize;
        if c >= self.w.len() {
            self.w.resize(c + 1, Default::default());
        }
        let b = &mut self.w[c][counter.index()];
        b.outer += 1;
        if ts >= shi && ts < elo {
            b.inner += 1;
        }
    }

    pub fn finish(self) -> WindowCounts {
        self.w
    }
}
