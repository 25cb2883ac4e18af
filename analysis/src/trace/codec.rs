//! The Parquet value encodings a napiscope trace uses, decoded from a page's bytes: the
//! RLE/bit-packed hybrid (definition levels, dictionary indices), DELTA_BINARY_PACKED (ts_ns,
//! seq) and PLAIN (dictionaries, pages whose dictionary overflowed). Decoding them here,
//! instead of through Arrow arrays, lets `direct` write values straight into `Cols`.

use anyhow::{bail, ensure, Result};

/// A cursor over a page's bytes.
pub struct Bytes<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(buf: &'a [u8]) -> Bytes<'a> {
        Bytes { buf, pos: 0 }
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.pos + n <= self.buf.len(), "page ends early");
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32_le(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    pub fn uleb(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| anyhow::anyhow!("page ends early"))?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("varint too long")
    }

    pub fn zigzag(&mut self) -> Result<i64> {
        let v = self.uleb()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
}

/// `width` bits (≤ 64) at bit `bit` of `buf`, least significant bit first; bytes past the
/// end read as zero (a page's last bit-packed group may be cut short).
#[inline]
fn bits(buf: &[u8], bit: usize, width: u32) -> u64 {
    let byte = bit / 8;
    let shift = (bit % 8) as u32;
    let word = if byte + 16 <= buf.len() {
        u128::from_le_bytes(buf[byte..byte + 16].try_into().unwrap())
    } else {
        let tail = buf.get(byte..).unwrap_or(&[]);
        tail.iter()
            .take(16)
            .enumerate()
            .fold(0u128, |w, (k, b)| w | (*b as u128) << (8 * k))
    };
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    (word >> shift) as u64 & mask
}

/// Where decoded RLE/bit-packed hybrid values go: runs of one value, and bit-packed values
/// a few at a time, in order.
trait HybridSink {
    fn run(&mut self, v: u32, n: usize);
    fn values(&mut self, v: &[u32]);
}

impl HybridSink for Vec<u32> {
    #[inline]
    fn run(&mut self, v: u32, n: usize) {
        self.resize(self.len() + n, v);
    }
    #[inline]
    fn values(&mut self, v: &[u32]) {
        self.extend_from_slice(v);
    }
}

/// Dictionary indices looked up as they are decoded, into the column itself: no vector of
/// indices to write and read back. An index past the dictionary marks the page bad (and
/// reads its first entry meanwhile, so the loop has no early exit).
struct DictSink<'a, T> {
    dict: &'a [T],
    out: &'a mut Vec<T>,
    bad: bool,
}

/// The entry at `i`, or (never in a valid page) the first one with `bad` set.
#[inline]
fn lookup<T: Copy>(dict: &[T], i: u32, bad: &mut bool) -> T {
    match dict.get(i as usize) {
        Some(v) => *v,
        None => {
            *bad = true;
            dict[0]
        }
    }
}

impl<T: Copy> HybridSink for DictSink<'_, T> {
    #[inline]
    fn run(&mut self, v: u32, n: usize) {
        let v = lookup(self.dict, v, &mut self.bad);
        self.out.resize(self.out.len() + n, v);
    }
    #[inline]
    fn values(&mut self, v: &[u32]) {
        let (dict, bad) = (self.dict, &mut self.bad);
        self.out.extend(v.iter().map(|i| lookup(dict, *i, bad)));
    }
}

/// `n` bit-packed values of `width` bits (≤ 32) from `buf`, into `out`.
fn unpack(buf: &[u8], width: u32, n: usize, out: &mut impl HybridSink) {
    if width == 0 {
        out.run(0, n);
        return;
    }
    let w = width as usize;
    let mut i = 0;
    // One bit wide (definition levels): a byte is 8 values, looked up whole.
    if width == 1 {
        for b in buf.iter().take(n / 8) {
            out.values(&BITS[*b as usize]);
        }
        i = buf.len().min(n / 8) * 8;
    } else
    // Up to 8 bits wide (levels, small dictionaries): a group of 8 values is `width` bytes,
    // one 64-bit load, unpacked without a check per value.
    if width <= 8 {
        let mask = (1u64 << width) - 1;
        let groups = (buf.len() / w).min(n / 8);
        // 8-byte loads straight from the buffer while they stay inside it.
        let whole = if buf.len() >= 8 {
            ((buf.len() - 8) / w + 1).min(groups)
        } else {
            0
        };
        for g in 0..whole {
            let v = u64::from_le_bytes(buf[g * w..g * w + 8].try_into().unwrap());
            let vals: [u32; 8] = std::array::from_fn(|k| ((v >> (k * w)) & mask) as u32);
            out.values(&vals);
        }
        i = whole * 8;
    } else if buf.len() >= 8 {
        let mask = ((1u64 << width) - 1) as u32;
        let fast = ((buf.len() - 8) * 8 / w + 1).min(n);
        for k in 0..fast {
            let bit = k * w;
            let byte = bit / 8;
            let word = u64::from_le_bytes(buf[byte..byte + 8].try_into().unwrap());
            out.values(&[(word >> (bit % 8)) as u32 & mask]);
        }
        i = fast;
    }
    for k in i..n {
        out.values(&[bits(buf, k * w, width) as u32]);
    }
}

/// Each byte's 8 bits as values, least significant first.
static BITS: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            t[b][k] = ((b >> k) & 1) as u32;
            k += 1;
        }
        b += 1;
    }
    t
};

/// Decode `n` values of the RLE/bit-packed hybrid encoding with `width` bits each.
pub fn hybrid(b: &mut Bytes, width: u32, n: usize, out: &mut Vec<u32>) -> Result<()> {
    hybrid_into(b, width, n, out)
}

/// Decode `n` dictionary indices of `width` bits into the dictionary's values, appended to
/// `out`; an index past the dictionary is an error.
pub fn hybrid_dict<T: Copy>(
    b: &mut Bytes,
    width: u32,
    n: usize,
    dict: &[T],
    out: &mut Vec<T>,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    ensure!(!dict.is_empty(), "dictionary index out of range");
    out.reserve(n);
    let mut sink = DictSink {
        dict,
        out,
        bad: false,
    };
    hybrid_into(b, width, n, &mut sink)?;
    ensure!(!sink.bad, "dictionary index out of range");
    Ok(())
}

/// Decode `n` values of the RLE/bit-packed hybrid encoding into `out`.
fn hybrid_into(b: &mut Bytes, width: u32, n: usize, out: &mut impl HybridSink) -> Result<()> {
    ensure!(width <= 32, "bit width {width}");
    let value_bytes = width.div_ceil(8) as usize;
    let mut done = 0;
    while done < n {
        let header = b.uleb()?;
        let left = n - done;
        if header & 1 == 0 {
            let run = ((header >> 1) as usize).min(left);
            ensure!(run > 0, "empty RLE run");
            let v = b
                .take(value_bytes)?
                .iter()
                .enumerate()
                .fold(0u32, |v, (k, byte)| v | (*byte as u32) << (8 * k));
            out.run(v, run);
            done += run;
        } else {
            let values = (header >> 1) as usize * 8;
            ensure!(values > 0, "empty bit-packed run");
            let bytes = (values * width as usize / 8).min(b.buf.len() - b.pos);
            // The rest of the page, not just this run: whole-word loads may read past the
            // run's end (the bits beyond are masked off), so short runs stay fast too.
            unpack(b.rest(), width, values.min(left), out);
            done += values.min(left);
            b.take(bytes)?;
        }
    }
    Ok(())
}

/// Decode `n` one-bit values of the RLE/bit-packed hybrid encoding (definition levels of
/// a flat nullable column) as chunks of bits: `push(bits, k)` takes k ≤ 64 values, least
/// significant first. Returns how many are set. Like `hybrid`, a nonzero run value counts
/// as set and a cut-short last group reads as zeros.
pub fn hybrid_bits(b: &mut Bytes, n: usize, mut push: impl FnMut(u64, usize)) -> Result<usize> {
    let (mut done, mut set) = (0, 0);
    while done < n {
        let header = b.uleb()?;
        let left = n - done;
        if header & 1 == 0 {
            let run = ((header >> 1) as usize).min(left);
            ensure!(run > 0, "empty RLE run");
            let on = b.take(1)?[0] != 0;
            let word = if on { u64::MAX } else { 0 };
            let mut k = run;
            while k > 0 {
                let m = k.min(64);
                push(word, m);
                k -= m;
            }
            set += if on { run } else { 0 };
            done += run;
        } else {
            let values = (header >> 1) as usize * 8;
            ensure!(values > 0, "empty bit-packed run");
            let rest = b.rest();
            let bytes = (values / 8).min(rest.len());
            let data = &rest[..bytes];
            let want = values.min(left);
            for (chunk, at) in data.chunks(8).zip((0..want).step_by(64)) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                let m = (want - at).min(chunk.len() * 8);
                let bits = u64::from_le_bytes(w);
                let bits = if m == 64 { bits } else { bits & ((1 << m) - 1) };
                push(bits, m);
                set += bits.count_ones() as usize;
            }
            // Bytes the page lacks read as zeros (rows without a value).
            let covered = (bytes * 8).min(want);
            let mut k = want - covered;
            while k > 0 {
                let m = k.min(64);
                push(0, m);
                k -= m;
            }
            b.take(bytes)?;
            done += want;
        }
    }
    Ok(set)
}

/// Decode a DELTA_BINARY_PACKED stream of integers (as i64; an INT32 column's values wrap
/// the same way in the low 32 bits). Returns the bytes it used.
/// `expect` is how many values the page says it holds.
pub fn delta(b: &mut Bytes, expect: usize, out: &mut Vec<i64>) -> Result<()> {
    delta_as(b, expect, out, |v| v)
}

/// `delta`, each value made a `T` by `f` on its way into `out` (a column's own type).
pub fn delta_as<T>(
    b: &mut Bytes,
    expect: usize,
    out: &mut Vec<T>,
    f: impl Fn(i64) -> T,
) -> Result<()> {
    let block = b.uleb()? as usize;
    let minis = b.uleb()? as usize;
    let total = b.uleb()? as usize;
    ensure!(
        total == expect,
        "delta stream of {total} values, page of {expect}"
    );
    ensure!(block <= 1 << 16, "delta block of {block}");
    let mut last = b.zigzag()?;
    ensure!(
        minis > 0 && block.is_multiple_of(minis) && (block / minis).is_multiple_of(32),
        "bad delta header"
    );
    let per_mini = block / minis;
    out.reserve(total);
    if total == 0 {
        return Ok(());
    }
    out.push(f(last));
    let mut left = total - 1;
    let mut widths = vec![0u8; minis];
    while left > 0 {
        let min_delta = b.zigzag()?;
        widths.copy_from_slice(b.take(minis)?);
        for &w in &widths {
            if left == 0 {
                break;
            }
            let w = w as u32;
            ensure!(w <= 64, "delta bit width {w}");
            let bytes = per_mini * w as usize / 8;
            let packed = b.rest(); // whole-word loads may look past the miniblock
            b.pos = (b.pos + bytes).min(b.buf.len());
            let n = per_mini.min(left);
            // Up to 56 bits a value fits one 64-bit load at any bit offset.
            let fast = if w <= 56 && packed.len() >= 8 {
                ((packed.len() - 8) * 8 / w.max(1) as usize + 1).min(n)
            } else {
                0
            };
            let mask = (1u64 << w.min(63)) - 1;
            // One extend over the miniblock: no capacity check per value.
            out.extend((0..fast).map(|i| {
                let bit = i * w as usize;
                let word = u64::from_le_bytes(packed[bit / 8..bit / 8 + 8].try_into().unwrap());
                let d = (word >> (bit % 8)) & mask;
                last = last.wrapping_add(min_delta).wrapping_add(d as i64);
                f(last)
            }));
            for i in fast..n {
                let d = bits(packed, i * w as usize, w);
                last = last.wrapping_add(min_delta).wrapping_add(d as i64);
                out.push(f(last));
            }
            left -= n;
        }
    }
    Ok(())
}

/// PLAIN little-endian integers of `size` (4 or 8) bytes, sign-extended from 4.
pub fn plain_ints(b: &mut Bytes, size: usize, n: usize, out: &mut Vec<i64>) -> Result<()> {
    let raw = b.take(
        n.checked_mul(size)
            .ok_or_else(|| anyhow::anyhow!("page too long"))?,
    )?;
    if size == 4 {
        out.extend(
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64),
        );
    } else {
        out.extend(
            raw.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap())),
        );
    }
    Ok(())
}

/// PLAIN byte arrays (4-byte length, bytes), each given to `f`.
pub fn plain_bytes<'a>(
    b: &mut Bytes<'a>,
    n: usize,
    mut f: impl FnMut(&'a [u8]) -> Result<()>,
) -> Result<()> {
    for _ in 0..n {
        let len = b.u32_le()? as usize;
        f(b.take(len)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_reads_runs_and_packed_groups() {
        // RLE run of 5 × 3 (width 2), then one bit-packed group of 8 values 0..=3,0..=3.
        let buf = [5 << 1, 3, 0b11, 0b1110_0100, 0b1110_0100];
        let mut out = vec![];
        hybrid(&mut Bytes::new(&buf), 2, 13, &mut out).unwrap();
        assert_eq!(out, [3, 3, 3, 3, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        // A short page: fewer values wanted than the group holds.
        let mut out = vec![];
        hybrid(&mut Bytes::new(&buf), 2, 7, &mut out).unwrap();
        assert_eq!(out, [3, 3, 3, 3, 3, 0, 1]);
    }

    #[test]
    fn hybrid_bits_agrees_with_hybrid() {
        // RLE runs (one longer than a word), bit-packed groups at odd offsets, a short
        // page, and a last group cut short by the end of the buffer.
        let mut buf = vec![
            0x80 | (70 << 1) as u8,
            70 >> 6,
            1,
            3 << 1,
            0,
            (3 << 1) | 1,
            0b1011_0110,
            0xff,
            0x01,
        ];
        buf.extend([(2 << 1) | 1, 0x5a]); // says 16 values, holds 8
        for n in [1, 70, 73, 80, 89, 92, 97, 100, 105, 113] {
            let mut levels = vec![];
            hybrid(&mut Bytes::new(&buf), 1, n, &mut levels).unwrap();
            let mut bits = vec![];
            let set = hybrid_bits(&mut Bytes::new(&buf), n, |w, k| {
                bits.extend((0..k).map(|i| (w >> i & 1) as u32));
            })
            .unwrap();
            assert_eq!(bits, levels, "n = {n}");
            assert_eq!(set, levels.iter().filter(|l| **l != 0).count());
        }
        assert!(hybrid_bits(&mut Bytes::new(&[]), 1, |_, _| ()).is_err());
        assert!(hybrid_bits(&mut Bytes::new(&[0]), 1, |_, _| ()).is_err());
    }

    #[test]
    fn hybrid_dict_looks_up_runs_and_packed_values_and_refuses_bad_indices() {
        // An RLE run of 3 × index 2, then one bit-packed group of 8 indices (width 2).
        let packed: [u8; 2] = [0b11_10_01_00, 0b00_01_10_11]; // 0 1 2 3 3 2 1 0
        let buf = [&[3u8 << 1, 2][..], &[(1 << 1) | 1], &packed].concat();
        let dict = ["a", "b", "c", "d"];
        let mut out = vec!["x"];
        hybrid_dict(&mut Bytes::new(&buf), 2, 11, &dict, &mut out).unwrap();
        assert_eq!(
            out,
            ["x", "c", "c", "c", "a", "b", "c", "d", "d", "c", "b", "a"]
        );
        // Index 3 in a three-entry dictionary, or any index in an empty one: errors.
        assert!(hybrid_dict(&mut Bytes::new(&buf), 2, 11, &dict[..3], &mut vec![]).is_err());
        assert!(hybrid_dict(&mut Bytes::new(&buf), 2, 11, &[] as &[&str], &mut vec![]).is_err());
    }

    #[test]
    fn unpack_matches_bit_by_bit_reading() {
        let buf: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for width in 1..=32u32 {
            let n = buf.len() * 8 / width as usize;
            let mut out = vec![];
            unpack(&buf, width, n, &mut out);
            for (i, v) in out.iter().enumerate() {
                let mut want = 0u32;
                for k in 0..width as usize {
                    let bit = i * width as usize + k;
                    want |= (((buf[bit / 8] >> (bit % 8)) & 1) as u32) << k;
                }
                assert_eq!(*v, want, "width {width} value {i}");
            }
        }
    }
}
