//! A mostly-null column: a presence bit per row, and values only for the rows that have
//! one. Each event kind fills a few of the nullable columns (napi_poll: napi, dev, work,
//! budget; softirq events: vec ...), so storing them dense wrote and page-faulted ~50 bytes
//! of nulls per row. Row → value is a rank: the count of present rows before the row's
//! 64-row word (kept per word) plus a popcount inside the word.

/// Values of one nullable column, by row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sparse<T> {
    /// Presence bits, row r at bit r % 64 of word r / 64.
    bits: Vec<u64>,
    /// Present rows before word w (filled by `seal`; pushing keeps it current).
    rank: Vec<u32>,
    vals: Vec<T>,
    len: usize,
}

impl<T: Copy> Sparse<T> {
    /// Room for `rows` rows, all of which may have a value. The values' room is address
    /// space, not memory, until written: growing instead would copy each value about
    /// twice, into fresh pages each time.
    pub fn with_capacity(rows: usize) -> Sparse<T> {
        Sparse {
            bits: Vec::with_capacity(rows.div_ceil(64)),
            rank: Vec::with_capacity(rows.div_ceil(64)),
            vals: Vec::with_capacity(rows),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The present values, in row order.
    pub fn values(&self) -> &[T] {
        &self.vals
    }

    /// Row `i`'s value (None: null or past the end).
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        let w = i / 64;
        let word = *self.bits.get(w)?;
        let bit = 1u64 << (i % 64);
        if word & bit == 0 {
            return None;
        }
        let k = self.rank[w] as usize + (word & (bit - 1)).count_ones() as usize;
        Some(self.vals[k])
    }

    /// Append one row.
    #[inline]
    pub fn push(&mut self, v: Option<T>) {
        self.push_bits(v.is_some() as u64, 1);
        if let Some(v) = v {
            self.vals.push(v);
        }
    }

    /// Append `n` (≤ 64) rows' presence bits, least significant first, without their
    /// values: they follow through `extend_values`, and `seal` checks the two agree.
    #[inline]
    pub fn push_bits(&mut self, bits: u64, n: usize) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let bits = if n == 64 { bits } else { bits & ((1 << n) - 1) };
        let off = self.len % 64;
        if off == 0 {
            self.start_word(bits);
        } else {
            let last = self.bits.len() - 1;
            self.bits[last] |= bits << off;
            if off + n > 64 {
                self.start_word(bits >> (64 - off));
            }
        }
        self.len += n;
    }

    /// Append `n` rows all present or all null.
    pub fn push_run(&mut self, present: bool, mut n: usize) {
        let word = if present { u64::MAX } else { 0 };
        while n > 0 {
            let k = n.min(64);
            self.push_bits(word, k);
            n -= k;
        }
    }

    fn start_word(&mut self, bits: u64) {
        let before = match (self.rank.last(), self.bits.last()) {
            (Some(r), Some(b)) => *r + b.count_ones(),
            _ => 0,
        };
        self.rank.push(before);
        self.bits.push(bits);
    }

    /// Append values for rows already marked present by `push_bits`/`push_run`.
    pub fn extend_values(&mut self, v: impl IntoIterator<Item = T>) {
        self.vals.extend(v);
    }

    /// The values, to append those of rows already marked present (as `extend_values`,
    /// for a decoder that writes them itself; `consistent` checks the counts agree).
    pub fn values_mut(&mut self) -> &mut Vec<T> {
        &mut self.vals
    }

    /// Do the presence bits and the values agree? (A damaged file can make them differ.)
    pub fn consistent(&self) -> bool {
        let present = match (self.rank.last(), self.bits.last()) {
            (Some(r), Some(b)) => *r as usize + b.count_ones() as usize,
            _ => 0,
        };
        present == self.vals.len()
    }

    /// The rows in `order` (indices into this column); this one is freed after. Presence
    /// bits are gathered a word (64 rows) at a time.
    pub fn permute(self, order: &[u32]) -> Sparse<T> {
        let mut out = Sparse::with_capacity(order.len());
        for rows in order.chunks(64) {
            let mut word = 0u64;
            for (k, &i) in rows.iter().enumerate() {
                if let Some(v) = self.get(i as usize) {
                    word |= 1 << k;
                    out.vals.push(v);
                }
            }
            out.push_bits(word, rows.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference column: Option per row.
    fn check(s: &Sparse<u32>, want: &[Option<u32>]) {
        assert_eq!(s.len(), want.len());
        assert!(s.consistent());
        for (i, w) in want.iter().enumerate() {
            assert_eq!(s.get(i), *w, "row {i}");
        }
        assert_eq!(s.get(want.len() + 64), None);
    }

    #[test]
    fn rows_pushed_one_by_one_read_back() {
        let want: Vec<Option<u32>> = (0..300u32)
            .map(|i| (i % 3 == 0 || i % 64 == 63).then_some(i * 7))
            .collect();
        let mut s = Sparse::default();
        for w in &want {
            s.push(*w);
        }
        check(&s, &want);
    }

    #[test]
    fn bit_chunks_and_runs_at_any_alignment_read_back() {
        // Chunks of odd sizes straddle word boundaries; runs longer than a word.
        let mut s = Sparse::default();
        let mut want = Vec::new();
        let mut next = 0u32;
        let mut add = |s: &mut Sparse<u32>, want: &mut Vec<Option<u32>>, bits: u64, n: usize| {
            s.push_bits(bits, n);
            for k in 0..n {
                if bits >> k & 1 == 1 {
                    s.extend_values([next]);
                    want.push(Some(next));
                    next += 1;
                } else {
                    want.push(None);
                }
            }
        };
        add(&mut s, &mut want, 0b1011, 5);
        add(&mut s, &mut want, u64::MAX, 64);
        add(&mut s, &mut want, 0x8000_0000_0000_0001, 64);
        add(&mut s, &mut want, 0b110, 3);
        s.push_run(false, 130);
        want.extend(std::iter::repeat_n(None, 130));
        add(&mut s, &mut want, u64::MAX, 64);
        add(&mut s, &mut want, u64::MAX, 6);
        // High bits beyond n are ignored.
        add(&mut s, &mut want, u64::MAX << 3, 3);
        check(&s, &want);
    }

    #[test]
    fn missing_values_are_detected() {
        let mut s: Sparse<u32> = Sparse::default();
        s.push_run(true, 10);
        s.extend_values(0..9);
        assert!(!s.consistent());
        s.extend_values([9]);
        assert!(s.consistent());
    }

    #[test]
    fn permute_moves_values_with_rows() {
        let want: Vec<Option<u32>> = (0..200u32).map(|i| (i % 5 < 2).then_some(i)).collect();
        let mut s = Sparse::default();
        for w in &want {
            s.push(*w);
        }
        let order: Vec<u32> = (0..200u32).rev().collect();
        let p = s.permute(&order);
        let rev: Vec<Option<u32>> = want.iter().rev().copied().collect();
        check(&p, &rev);
    }
}
