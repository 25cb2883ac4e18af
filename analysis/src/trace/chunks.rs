//! A column chunk's pages decoded into one of `Cols`' columns: the page split into levels
//! and values, dictionaries mapped to the checker's values once per dictionary page, the
//! nullable columns' definition levels made presence bits of sparse columns, only present
//! values written. For `direct`; an encoding it does not know is an error.

use anyhow::{anyhow, bail, ensure, Result};
use parquet::{
    basic::{Encoding, Type as Phys},
    column::page::Page,
};

use super::{
    codec::{self, Bytes},
    cols::{Strings, Sym},
    event::{Ctx, EventKind},
    sparse::Sparse,
};

/// What a column's values become in `Cols`.
pub(super) trait Target: Copy + Default {
    /// From an integer column's value.
    fn from_int(v: i64) -> Self;
    /// A column narrower than the file's (CPU numbers, softirq vectors): every value must
    /// be checked to fit (`fits`), so it takes the decoders that check.
    const NARROW: bool = false;
    fn fits(_v: i64) -> bool {
        true
    }
}

/// A narrow column's values: in range, or the trace is refused (never cut to fit).
macro_rules! narrow_target {
    ($t:ty) => {
        impl Target for $t {
            fn from_int(v: i64) -> Self {
                v as $t
            }
            const NARROW: bool = true;
            fn fits(v: i64) -> bool {
                (0..=<$t>::MAX as i64).contains(&v)
            }
        }
    };
}
narrow_target!(u16);
narrow_target!(u8);

/// Every decoded value fits the column's type, or an error naming the first that does not.
fn all_fit<T: Target>(values: &[i64]) -> Result<()> {
    match values.iter().find(|v| !T::fits(**v)) {
        Some(v) => bail!("value {v} out of range"),
        None => Ok(()),
    }
}

impl Target for u64 {
    fn from_int(v: i64) -> Self {
        v as u64
    }
}
impl Target for u32 {
    fn from_int(v: i64) -> Self {
        v as u32
    }
}
impl Target for i32 {
    fn from_int(v: i64) -> Self {
        v as i32
    }
}

/// How a string column's values map into `Cols` (interned strings, event kinds, contexts).
pub(super) trait StrTarget: Copy {
    fn from_str(s: &[u8], strs: &mut Strings) -> Result<Self>;
}

impl StrTarget for Sym {
    fn from_str(s: &[u8], strs: &mut Strings) -> Result<Self> {
        Ok(strs.intern(std::str::from_utf8(s)?))
    }
}
impl StrTarget for EventKind {
    fn from_str(s: &[u8], _: &mut Strings) -> Result<Self> {
        std::str::from_utf8(s)
            .ok()
            .and_then(EventKind::from_name)
            .ok_or_else(|| anyhow!("unknown event"))
    }
}
impl StrTarget for Ctx {
    fn from_str(s: &[u8], _: &mut Strings) -> Result<Self> {
        std::str::from_utf8(s)
            .ok()
            .and_then(Ctx::from_name)
            .ok_or_else(|| anyhow!("unknown ctx"))
    }
}

/// Scratch buffers, reused from page to page.
#[derive(Default)]
pub(super) struct Scratch {
    levels: Vec<u32>,
    ints: Vec<i64>,
}

/// One data page, split: how many rows, its definition levels (RLE/bit-packed hybrid, one
/// bit wide; None when the column is required) and the encoded values.
struct DataPage<'a> {
    rows: usize,
    levels: Option<&'a [u8]>,
    encoding: Encoding,
    values: Bytes<'a>,
}

/// Split a data page; `max_rows` is what its row group has left (a bound on what a damaged
/// header could make it allocate).
fn split_page(page: &Page, nullable: bool, max_rows: usize) -> Result<DataPage<'_>> {
    ensure!(
        page.num_values() as usize <= max_rows,
        "page longer than its row group"
    );
    match page {
        Page::DataPage {
            buf,
            num_values,
            encoding,
            def_level_encoding,
            ..
        } => {
            let mut b = Bytes::new(buf);
            let levels = if nullable {
                ensure!(*def_level_encoding == Encoding::RLE, "levels not RLE");
                let len = b.u32_le()? as usize;
                Some(b.take(len)?)
            } else {
                None
            };
            Ok(DataPage {
                rows: *num_values as usize,
                levels,
                encoding: *encoding,
                values: Bytes::new(b.rest()),
            })
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding,
            num_nulls,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            ensure!(*rep_levels_byte_len == 0, "repetition levels");
            let mut b = Bytes::new(buf);
            let defs = b.take(*def_levels_byte_len as usize)?;
            if !nullable {
                ensure!(*num_nulls == 0, "nulls in a required column");
            }
            Ok(DataPage {
                rows: *num_values as usize,
                levels: nullable.then_some(defs),
                encoding: *encoding,
                values: Bytes::new(b.rest()),
            })
        }
        Page::DictionaryPage { .. } => bail!("second dictionary page"),
    }
}

impl DataPage<'_> {
    /// The page's definition levels into `levels` (cleared; left empty for a required
    /// column); returns how many rows have a value.
    fn levels_into(&self, levels: &mut Vec<u32>) -> Result<usize> {
        levels.clear();
        let Some(l) = self.levels else {
            return Ok(self.rows);
        };
        codec::hybrid(&mut Bytes::new(l), 1, self.rows, levels)?;
        Ok(levels.iter().filter(|l| **l != 0).count())
    }

    /// The page's definition levels appended to a sparse column's presence bits; returns
    /// how many rows have a value.
    fn levels_onto<T: Copy>(&self, out: &mut Sparse<T>) -> Result<usize> {
        let Some(l) = self.levels else {
            out.push_run(true, self.rows);
            return Ok(self.rows);
        };
        codec::hybrid_bits(&mut Bytes::new(l), self.rows, |bits, n| {
            out.push_bits(bits, n)
        })
    }
}

/// Where a column chunk's rows go: a column every row has (nulls written as a stand-in
/// value, or refused where a valid trace has none), or a sparse one.
pub(super) enum Sink<'a, T> {
    Dense(&'a mut Vec<T>, Null<T>),
    Sparse(&'a mut Sparse<T>),
}

/// What a null becomes in a dense column.
#[derive(Clone, Copy)]
pub(super) enum Null<T> {
    As(T),
    /// Nulls are an error (event, ctx: the Arrow reader says why).
    Refused,
}

impl<T: Copy> Sink<'_, T> {
    /// `n` rows of a column the file does not have (an older schema's, `ADDED_COLUMNS`):
    /// all null. Only a sparse column may be absent.
    pub(super) fn absent(self, n: usize) -> Result<()> {
        match self {
            Sink::Sparse(out) => {
                out.push_run(false, n);
                Ok(())
            }
            Sink::Dense(..) => anyhow::bail!("a column every row has is missing"),
        }
    }

    /// The page's definition levels taken in (into `levels` for a dense column, onto the
    /// presence bits of a sparse one); returns how many rows have a value.
    fn levels(&mut self, p: &DataPage, levels: &mut Vec<u32>) -> Result<usize> {
        let present = match self {
            Sink::Dense(..) => p.levels_into(levels)?,
            Sink::Sparse(out) => {
                levels.clear();
                p.levels_onto(out)?
            }
        };
        if let Sink::Dense(_, Null::Refused) = self {
            ensure!(present == p.rows, "null in a column without nulls");
        }
        Ok(present)
    }

    /// Is every value the page decodes one the column stores as it is (a sparse column's
    /// present values, a dense column without nulls)? Then decoders write into
    /// `value_vec` directly.
    fn every_value_a_row(&self, p: &DataPage, present: usize) -> bool {
        match self {
            Sink::Sparse(_) => true,
            Sink::Dense(..) => present == p.rows,
        }
    }

    /// Where the decoded values go when `every_value_a_row`.
    fn value_vec(&mut self) -> &mut Vec<T> {
        match self {
            Sink::Sparse(out) => out.values_mut(),
            Sink::Dense(out, _) => out,
        }
    }

    /// Append the page's dictionary-coded values, the indices looked up as they are decoded:
    /// straight into the column where every decoded value is a row's (a sparse column's
    /// present values, a dense column without nulls), else into `vals` and spread from there.
    fn dict_values(
        &mut self,
        p: &mut DataPage,
        levels: &[u32],
        present: usize,
        dict: &[T],
        vals: &mut Vec<T>,
    ) -> Result<()> {
        vals.clear();
        let direct = self.every_value_a_row(p, present);
        if present > 0 {
            let width = *p.values.take(1)?.first().unwrap_or(&0) as u32;
            let out = if direct { self.value_vec() } else { &mut *vals };
            codec::hybrid_dict(&mut p.values, width, present, dict, out)?;
        }
        if !direct {
            self.values(p, levels, present, |k| vals[k]);
        }
        Ok(())
    }

    /// Append the page's values: the k-th present one is `get(k)` (k < `present`).
    fn values(&mut self, p: &DataPage, levels: &[u32], present: usize, get: impl Fn(usize) -> T) {
        match self {
            Sink::Sparse(out) => out.extend_values((0..present).map(get)),
            Sink::Dense(out, null) => {
                let null = match null {
                    Null::As(v) => Some(*v),
                    Null::Refused => None,
                };
                spread(p.rows, levels, present, get, null, out)
            }
        }
    }
}

/// Append a page's rows to a dense column: the k-th present value is `get(k)`, `null`
/// where a row has none (`levels` is empty when every row has one).
fn spread<T: Copy>(
    rows: usize,
    levels: &[u32],
    present: usize,
    get: impl Fn(usize) -> T,
    null: Option<T>,
    out: &mut Vec<T>,
) {
    let Some(null) = null.filter(|_| present < rows && !levels.is_empty()) else {
        out.extend((0..rows.min(present)).map(get));
        return;
    };
    if present == 0 {
        out.resize(out.len() + rows, null);
        return;
    }
    // Branch-free: every row reads a value (the last one past the end) and keeps it only
    // if present; sparse columns would mispredict a branch.
    let last = present - 1;
    let mut k = 0;
    out.extend(levels.iter().map(|l| {
        let v = get(k.min(last));
        k += (*l != 0) as usize;
        if *l != 0 {
            v
        } else {
            null
        }
    }));
}

/// An integer column chunk into `out`.
pub(super) fn int_column<T: Target>(
    pages: impl Iterator<Item = parquet::errors::Result<Page>>,
    group_rows: usize,
    phys: Phys,
    nullable: bool,
    s: &mut Scratch,
    mut out: Sink<T>,
) -> Result<()> {
    let size = match phys {
        Phys::INT32 => 4,
        Phys::INT64 => 8,
        p => bail!("physical type {p}"),
    };
    let mut dict: Vec<T> = Vec::new();
    // A page's values when they are not written straight into the column (reused).
    let mut vals: Vec<T> = Vec::new();
    let mut row = 0;
    for page in pages {
        let page = page?;
        if let Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            ..
        } = &page
        {
            ensure!(
                matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY),
                "dictionary encoding {encoding}"
            );
            s.ints.clear();
            codec::plain_ints(
                &mut Bytes::new(buf),
                size,
                *num_values as usize,
                &mut s.ints,
            )?;
            all_fit::<T>(&s.ints)?;
            dict = s.ints.iter().map(|v| T::from_int(*v)).collect();
            continue;
        }
        let mut p = split_page(&page, nullable, group_rows - row)?;
        row += p.rows;
        let present = out.levels(&p, &mut s.levels)?;
        match p.encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                out.dict_values(&mut p, &s.levels, present, &dict, &mut vals)?;
            }
            Encoding::DELTA_BINARY_PACKED if !T::NARROW && out.every_value_a_row(&p, present) => {
                // Straight into the column (ts_ns; seq's row-group buffer).
                let col = out.value_vec();
                let before = col.len();
                codec::delta_as(&mut p.values, present, col, T::from_int)?;
                ensure!(col.len() - before == present, "page holds the wrong count");
            }
            Encoding::PLAIN | Encoding::DELTA_BINARY_PACKED => {
                s.ints.clear();
                if p.encoding == Encoding::PLAIN {
                    codec::plain_ints(&mut p.values, size, present, &mut s.ints)?;
                } else {
                    codec::delta(&mut p.values, present, &mut s.ints)?;
                }
                ensure!(s.ints.len() == present, "page holds the wrong count");
                all_fit::<T>(&s.ints)?;
                let get = |k: usize| T::from_int(s.ints[k]);
                out.values(&p, &s.levels, present, get);
            }
            e => bail!("encoding {e}"),
        }
    }
    Ok(())
}

/// A string column chunk into `out`: each distinct value mapped once per dictionary page.
pub(super) fn str_column<T: StrTarget>(
    pages: impl Iterator<Item = parquet::errors::Result<Page>>,
    group_rows: usize,
    nullable: bool,
    s: &mut Scratch,
    strs: &mut Strings,
    mut out: Sink<T>,
) -> Result<()> {
    let mut dict: Vec<T> = Vec::new();
    // A page's values when they are not written straight into the column (reused).
    let mut vals: Vec<T> = Vec::new();
    let mut plain: Vec<T> = Vec::new();
    let mut row = 0;
    for page in pages {
        let page = page?;
        if let Page::DictionaryPage {
            buf,
            num_values,
            encoding,
            ..
        } = &page
        {
            ensure!(
                matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY),
                "dictionary encoding {encoding}"
            );
            dict.clear();
            codec::plain_bytes(&mut Bytes::new(buf), *num_values as usize, |v| {
                dict.push(T::from_str(v, strs)?);
                Ok(())
            })?;
            continue;
        }
        let mut p = split_page(&page, nullable, group_rows - row)?;
        row += p.rows;
        let present = out.levels(&p, &mut s.levels)?;
        match p.encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                out.dict_values(&mut p, &s.levels, present, &dict, &mut vals)?;
            }
            Encoding::PLAIN => {
                plain.clear();
                codec::plain_bytes(&mut p.values, present, |v| {
                    plain.push(T::from_str(v, strs)?);
                    Ok(())
                })?;
                ensure!(plain.len() == present, "page holds the wrong count");
                out.values(&p, &s.levels, present, |k| plain[k]);
            }
            e => bail!("encoding {e}"),
        }
    }
    Ok(())
}
