//! Sequence numbers, read once in row order: are the rows in (ts, cpu, seq) order, and where
//! did each CPU lose events (gaps in its seq)? The Parquet reader runs this page by page
//! while it decodes, so a trace in time order (what `record` and `simulate` write) never
//! holds its seq column in memory: 8 bytes a row the checker would write, page-fault and
//! read back once. `Index::build` runs it over `Cols::seq` when a reader kept that column.

use super::fastmap::FastMap;

/// One CPU's sequence numbers so far.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuSeq {
    /// The previous row's (seq, ts).
    prev: (u64, u64),
    /// Events missing between rows (and before the first one: seq starts at 0).
    pub gaps: u64,
    /// (ts before, ts after) each gap.
    pub windows: Vec<(u64, u64)>,
    /// Seq never went down: the gaps are exact. If not, they must be recounted over the
    /// CPU's rows sorted by seq (`Index` does, from `Cols::seq`).
    pub ordered: bool,
}

impl CpuSeq {
    fn first(ts: u64, seq: u64) -> CpuSeq {
        let mut c = CpuSeq {
            prev: (seq, ts),
            gaps: 0,
            windows: Vec::new(),
            ordered: true,
        };
        if seq > 0 {
            c.gaps = seq;
            c.windows.push((0, ts));
        }
        c
    }

    #[inline]
    fn next(&mut self, ts: u64, seq: u64) {
        let (p, pts) = self.prev;
        if seq < p {
            self.ordered = false;
        } else if seq > p + 1 {
            self.gaps += seq - p - 1;
            self.windows.push((pts, ts));
        }
        self.prev = (seq, ts);
    }

    /// The ts of the CPU's last row.
    pub fn last_ts(&self) -> u64 {
        self.prev.1
    }
}

/// What a pass over (ts, cpu, seq) in row order found.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqFacts {
    /// The rows are in (ts, cpu, seq) order.
    pub sorted: bool,
    /// Per CPU with rows, in order of first appearance.
    pub cpus: Vec<(u32, CpuSeq)>,
}

impl SeqFacts {
    /// Everything the checker needs from seq: rows in time order (no sort), and every
    /// CPU's gaps exact (no recount by seq).
    pub fn complete(&self) -> bool {
        self.sorted && self.cpus.iter().all(|(_, c)| c.ordered)
    }
}

/// The pass itself: `push` each row in row order, then `finish`.
pub struct SeqScan {
    sorted: bool,
    prev: (u64, u32, u64),
    /// CPU → index into `cpus`: a table for CPU numbers below `TABLE`, a map above.
    table: Vec<u32>,
    map: FastMap<u32, usize>,
    cpus: Vec<(u32, CpuSeq)>,
}

impl Default for SeqScan {
    fn default() -> Self {
        SeqScan {
            sorted: true,
            prev: (0, 0, 0),
            table: vec![u32::MAX; Self::TABLE],
            map: FastMap::default(),
            cpus: Vec::new(),
        }
    }
}

impl SeqScan {
    const TABLE: usize = 4096;

    #[inline]
    pub fn push(&mut self, ts: u64, cpu: u32, seq: u64) {
        let key = (ts, cpu, seq);
        self.sorted &= self.prev <= key;
        self.prev = key;
        let slot = match self.table.get(cpu as usize) {
            Some(&s) if s != u32::MAX => Some(s as usize),
            Some(_) => None,
            None => self.map.get(&cpu).copied(),
        };
        match slot {
            Some(s) => self.cpus[s].1.next(ts, seq),
            None => {
                let s = self.cpus.len();
                match self.table.get_mut(cpu as usize) {
                    Some(t) => *t = s as u32,
                    None => {
                        self.map.insert(cpu, s);
                    }
                }
                self.cpus.push((cpu, CpuSeq::first(ts, seq)));
            }
        }
    }

    pub fn finish(self) -> SeqFacts {
        SeqFacts {
            sorted: self.sorted,
            cpus: self.cpus,
        }
    }
}

/// Scan columns already in memory.
pub fn scan(ts: &[u64], cpu: &[u16], seq: &[u64]) -> SeqFacts {
    let mut s = SeqScan::default();
    for i in 0..ts.len() {
        s.push(ts[i], cpu[i] as u32, seq[i]);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_order_and_cpus_past_the_table() {
        // (ts, cpu, seq): CPU 0 has a gap of 2; CPU 9000 starts at seq 3 then goes back.
        let rows = [
            (10, 0, 0),
            (15, 9000, 3),
            (20, 0, 1),
            (25, 9000, 2),
            (30, 0, 4),
        ];
        let (ts, cpu, seq): (Vec<u64>, Vec<u16>, Vec<u64>) =
            rows.iter().fold(Default::default(), |mut v, r| {
                v.0.push(r.0);
                v.1.push(r.1);
                v.2.push(r.2);
                v
            });
        let f = scan(&ts, &cpu, &seq);
        assert!(f.sorted);
        assert!(!f.complete());
        let (c0, c1) = (&f.cpus[0], &f.cpus[1]);
        assert_eq!(
            (c0.0, c0.1.gaps, &c0.1.windows[..]),
            (0, 2, &[(20, 30)][..])
        );
        assert!(c0.1.ordered);
        assert_eq!(c0.1.last_ts(), 30);
        assert_eq!((c1.0, c1.1.gaps, c1.1.ordered), (9000, 3, false));
        // Equal times: CPU, then seq decide the order.
        assert!(!scan(&[5, 5], &[1, 0], &[0, 0]).sorted);
        assert!(!scan(&[5, 5], &[0, 0], &[1, 0]).sorted);
        assert!(scan(&[5, 5], &[0, 0], &[0, 1]).complete());
    }
}
