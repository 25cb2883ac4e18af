//! Rows by event kind, found 64 rows at a time: per block, the kind column packed to bytes
//! and compared with each kind asked for (four SSE2 compares give a 64-bit mask), then the
//! set bits. Only the rows of the asked kinds are touched one by one; the counting sorts
//! this replaced placed every row of the trace, twice.

use crate::event::EventKind;

/// Kind codes run 1..=ALL.len().
pub const KINDS: usize = EventKind::ALL.len() + 1;

/// Per kind code: is it one of `kinds`?
pub const fn kind_table(kinds: &[EventKind]) -> [bool; KINDS] {
    let mut t = [false; KINDS];
    let mut i = 0;
    while i < kinds.len() {
        t[kinds[i] as usize] = true;
        i += 1;
    }
    t
}

pub struct KindRows {
    /// Per kind code: its rows in order, for the kinds in `listed` (empty for the others).
    pub rows: Vec<Vec<u32>>,
    /// Per (CPU slot, kind code), at `slot * KINDS + kind`: its rows on that CPU, in order,
    /// for the kinds in `per_cpu` (empty for the others).
    pub per_cpu: Vec<Vec<u32>>,
    /// Per block of 64 rows: bit j set if row 64·block + j is of a kind in `marked`.
    pub marked: Vec<u64>,
    /// Per kind code: its rows, for the kinds in any of the three tables (0 for the others).
    pub counts: [usize; KINDS],
}

impl KindRows {
    /// The rows of the `marked` kinds, in order.
    pub fn marked_rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.marked
            .iter()
            .enumerate()
            .flat_map(|(b, m)| bits(*m).map(move |j| b * 64 + j))
    }
}

/// Which kinds `split` gathers, and how.
pub struct Wanted<'a> {
    /// Rows per kind.
    pub listed: &'a [bool; KINDS],
    /// Rows per (CPU, kind), with each row's CPU slot (`slot`, below `slots`).
    pub per_cpu: &'a [bool; KINDS],
    pub slot: &'a dyn Fn(u32) -> usize,
    pub slots: usize,
    /// Rows of all these kinds, as bit masks.
    pub marked: &'a [bool; KINDS],
}

/// One pass over the kind column (and the CPU column, for `per_cpu` kinds on a trace of
/// more than one CPU).
pub fn split(kind: &[EventKind], cpu: &[u16], w: &Wanted) -> KindRows {
    let asked: Vec<EventKind> = EventKind::ALL
        .iter()
        .copied()
        .filter(|k| w.listed[*k as usize] || w.per_cpu[*k as usize] || w.marked[*k as usize])
        .collect();
    let mut rows: Vec<Vec<u32>> = vec![Vec::new(); KINDS];
    let mut per_cpu: Vec<Vec<u32>> = vec![Vec::new(); w.slots.max(1) * KINDS];
    let mut counts = [0usize; KINDS];
    let mut mask = Vec::with_capacity(kind.len().div_ceil(64));
    let mut eq = vec![0u64; asked.len()];
    for (b, block) in kind.chunks(64).enumerate() {
        let base = b * 64;
        eq_masks(block, &asked, &mut eq);
        let mut m = 0u64;
        for (&k, &eq) in asked.iter().zip(&eq) {
            let code = k as usize;
            counts[code] += eq.count_ones() as usize;
            if w.marked[code] {
                m |= eq;
            }
            if w.listed[code] {
                rows[code].extend(bits(eq).map(|j| (base + j) as u32));
            }
            if w.per_cpu[code] {
                if w.slots <= 1 {
                    per_cpu[code].extend(bits(eq).map(|j| (base + j) as u32));
                } else {
                    for j in bits(eq) {
                        let s = (w.slot)(cpu[base + j] as u32);
                        per_cpu[s * KINDS + code].push((base + j) as u32);
                    }
                }
            }
        }
        mask.push(m);
    }
    KindRows {
        rows,
        per_cpu,
        marked: mask,
        counts,
    }
}

/// For each kind in `asked`: bit j set if `block[j]` is that kind (`block` has at most 64
/// rows). The codes fit a byte, so a block is 64 bytes: four vector compares per kind.
fn eq_masks(block: &[EventKind], asked: &[EventKind], out: &mut [u64]) {
    let mut bytes = [0u8; 64];
    for (b, k) in bytes.iter_mut().zip(block) {
        *b = *k as u16 as u8;
    }
    // Rows past a short last block are 0, which is no kind's code.
    for (o, k) in out.iter_mut().zip(asked) {
        *o = byte_mask(&bytes, *k as u16 as u8);
    }
}

/// Bit j set if `block[j]` (at most 64 rows) is one of `kinds`.
pub fn any_of(block: &[EventKind], kinds: &[EventKind]) -> u64 {
    let mut eq = [0u64; EventKind::ALL.len()];
    let eq = &mut eq[..kinds.len()];
    eq_masks(block, kinds, eq);
    eq.iter().fold(0, |m, e| m | e)
}

/// Bit j set if `bytes[j] == v`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn byte_mask(bytes: &[u8; 64], v: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut m = 0u64;
    // SAFETY: SSE2 is part of x86-64 itself (no CPU lacks it); bytes[16q..16q + 16] is in
    // bounds, and the load needs no alignment.
    unsafe {
        let want = _mm_set1_epi8(v as i8);
        for q in 0..4 {
            let x = _mm_loadu_si128(bytes.as_ptr().add(16 * q) as *const __m128i);
            let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(x, want)) as u32 as u64;
            m |= bits << (16 * q);
        }
    }
    m
}

/// Bit j set if `bytes[j] == v`.
#[cfg(not(target_arch = "x86_64"))]
fn byte_mask(bytes: &[u8; 64], v: u8) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0, |m, (j, b)| m | (((*b == v) as u64) << j))
}

/// The set bits of `m`, lowest first.
pub fn bits(mut m: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (m != 0).then(|| {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            j
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    fn wanted<'a>(
        listed: &'a [bool; KINDS],
        per_cpu: &'a [bool; KINDS],
        marked: &'a [bool; KINDS],
        slots: usize,
    ) -> Wanted<'a> {
        Wanted {
            listed,
            per_cpu,
            slot: &|cpu| cpu as usize,
            slots,
            marked,
        }
    }

    #[test]
    fn rows_and_marks_by_kind_across_block_boundaries() {
        // 150 rows: three blocks, the last one short.
        let kinds: Vec<EventKind> = (0..150)
            .map(|i| match i % 5 {
                0 => NapiPoll,
                1 => NetifRx,
                _ => SoftirqRaise,
            })
            .collect();
        // CPU 1 for rows 100 and up.
        let cpus: Vec<u16> = (0..150).map(|i| (i >= 100) as u16).collect();
        let (listed, per_cpu) = (kind_table(&[NapiPoll]), kind_table(&[NetifRx]));
        let marks = kind_table(&[NapiPoll, NetifRx]);
        let r = split(&kinds, &cpus, &wanted(&listed, &per_cpu, &marks, 2));
        let polls: Vec<u32> = (0..150).filter(|i| i % 5 == 0).collect();
        assert_eq!(r.rows[NapiPoll as usize], polls);
        assert!(r.rows[NetifRx as usize].is_empty(), "per CPU, not listed");
        assert!(r.rows[SoftirqRaise as usize].is_empty());
        let rx = |cpu: u16| -> Vec<u32> {
            (0..150)
                .filter(|i| i % 5 == 1 && cpus[*i as usize] == cpu)
                .collect()
        };
        assert_eq!(r.per_cpu[NetifRx as usize], rx(0));
        assert_eq!(r.per_cpu[KINDS + NetifRx as usize], rx(1));
        assert!(r.per_cpu[NapiPoll as usize].is_empty());
        let marked: Vec<usize> = r.marked_rows().collect();
        let want: Vec<usize> = (0..150).filter(|i| i % 5 < 2).collect();
        assert_eq!(marked, want);
        assert_eq!(r.marked.len(), 3);
        assert_eq!(r.counts[NapiPoll as usize], 30);
        assert_eq!(r.counts[NetifRx as usize], 30);
        assert_eq!(r.counts[SoftirqRaise as usize], 0, "not asked for");
        // One CPU: per-CPU rows without looking at the CPU column.
        let r = split(&kinds, &[], &wanted(&listed, &per_cpu, &marks, 1));
        assert_eq!(r.per_cpu[NetifRx as usize].len(), 30);
    }

    #[test]
    fn every_kind_code_is_told_apart() {
        let kinds: Vec<EventKind> = EventKind::ALL.iter().cycle().take(100).copied().collect();
        let all = kind_table(&EventKind::ALL);
        let r = split(&kinds, &[], &wanted(&all, &[false; KINDS], &all, 1));
        for k in EventKind::ALL {
            let want: Vec<u32> = (0..100).filter(|i| kinds[*i as usize] == k).collect();
            assert_eq!(r.rows[k as usize], want, "{k:?}");
        }
    }

    #[test]
    fn any_of_marks_rows_of_each_kind_asked() {
        let block = [NapiPoll, NetifRx, SoftirqRaise, NetifRx, NapiPoll];
        assert_eq!(any_of(&block, &[NetifRx]), 0b01010);
        assert_eq!(any_of(&block, &[NetifRx, NapiPoll]), 0b11011);
        assert_eq!(any_of(&block, &[]), 0);
    }

    #[test]
    fn no_rows_no_blocks() {
        let t = kind_table(&[NapiPoll]);
        let r = split(&[], &[], &wanted(&t, &t, &t, 1));
        assert!(r.marked.is_empty() && r.rows[NapiPoll as usize].is_empty());
    }
}
