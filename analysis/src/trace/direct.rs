//! A trace's Parquet pages decoded straight into the checker's `Cols`: no Arrow arrays in
//! between, dictionaries (event, ctx, strings) mapped to the checker's values once per
//! dictionary page, nulls written as the defaults `Cols` expects. It knows the encodings a
//! napiscope writer produces; on anything else it returns an error and `read_columns` falls
//! back to the Arrow reader, which reads any valid file (and words its errors).

use anyhow::{anyhow, bail, ensure, Result};
use parquet::{
    basic::{Encoding, Type as Phys},
    column::page::Page,
    file::reader::{FileReader, SerializedFileReader},
};

use super::codec::{self, Bytes};
use crate::{
    check::cols::{
        Cols, Strings, Sym, NO_SYM, V_BUDGET, V_NAPI, V_RET, V_SKB, V_TARGET_CPU, V_VEC, V_WORK,
    },
    event::{Ctx, EventKind},
};

/// What a column's values become in `Cols`.
trait Target: Copy + Default {
    /// From an integer column's value.
    fn from_int(v: i64) -> Self;
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
trait StrTarget: Copy {
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
struct Scratch {
    levels: Vec<u32>,
    idx: Vec<u32>,
    ints: Vec<i64>,
}

/// One data page, split: how many rows, which are present (`levels`, when the column is
/// nullable), and the encoded values.
struct DataPage<'a> {
    rows: usize,
    present: usize,
    has_levels: bool,
    encoding: Encoding,
    values: Bytes<'a>,
}

/// Split a data page; `max_rows` is what its row group has left (a bound on what a damaged
/// header could make it allocate).
fn split_page<'a>(
    page: &'a Page,
    nullable: bool,
    levels: &mut Vec<u32>,
    max_rows: usize,
) -> Result<DataPage<'a>> {
    levels.clear();
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
            let rows = *num_values as usize;
            let mut b = Bytes::new(buf);
            if nullable {
                ensure!(*def_level_encoding == Encoding::RLE, "levels not RLE");
                let len = b.u32_le()? as usize;
                codec::hybrid(&mut Bytes::new(b.take(len)?), 1, rows, levels)?;
            }
            let present = if nullable {
                levels.iter().filter(|l| **l != 0).count()
            } else {
                rows
            };
            Ok(DataPage {
                rows,
                present,
                has_levels: nullable,
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
            let rows = *num_values as usize;
            ensure!(*rep_levels_byte_len == 0, "repetition levels");
            let mut b = Bytes::new(buf);
            let defs = b.take(*def_levels_byte_len as usize)?;
            if nullable {
                codec::hybrid(&mut Bytes::new(defs), 1, rows, levels)?;
            } else {
                ensure!(*num_nulls == 0, "nulls in a required column");
            }
            Ok(DataPage {
                rows,
                present: rows - (*num_nulls as usize).min(rows),
                has_levels: nullable,
                encoding: *encoding,
                values: Bytes::new(b.rest()),
            })
        }
        Page::DictionaryPage { .. } => bail!("second dictionary page"),
    }
}

/// Append the page's rows to `out`: the k-th present value is `get(k)` (k < `present`),
/// `null` where a row has none; set `bit` in `valid` for the rows that have one.
fn spread<T: Copy>(
    page: &DataPage,
    levels: &[u32],
    get: impl Fn(usize) -> T,
    null: T,
    out: &mut Vec<T>,
    valid: Option<(&mut [u8], u8)>,
) {
    if !page.has_levels || page.present == page.rows {
        out.extend((0..page.rows).map(get));
        if let Some((v, bit)) = valid {
            v.iter_mut().for_each(|v| *v |= bit);
        }
        return;
    }
    if page.present == 0 {
        out.resize(out.len() + page.rows, null);
        return;
    }
    // Branch-free: every row reads a value (the last one past the end) and keeps it only
    // if present; sparse columns would mispredict a branch.
    let last = page.present - 1;
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
    if let Some((v, bit)) = valid {
        for (v, l) in v.iter_mut().zip(levels) {
            *v |= bit * (*l != 0) as u8;
        }
    }
}

/// An integer column chunk into `out` (nulls as 0), marking `bit` in `valid`.
fn int_column<T: Target>(
    pages: impl Iterator<Item = parquet::errors::Result<Page>>,
    group_rows: usize,
    phys: Phys,
    nullable: bool,
    s: &mut Scratch,
    out: &mut Vec<T>,
    mut valid: Option<(&mut [u8], u8)>,
) -> Result<()> {
    let size = match phys {
        Phys::INT32 => 4,
        Phys::INT64 => 8,
        p => bail!("physical type {p}"),
    };
    let mut dict: Vec<T> = Vec::new();
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
            dict = s.ints.iter().map(|v| T::from_int(*v)).collect();
            continue;
        }
        let mut p = split_page(&page, nullable, &mut s.levels, group_rows - row)?;
        if let Some((v, _)) = &valid {
            ensure!(row + p.rows <= v.len(), "more rows than the row group");
        }
        let v = valid
            .as_mut()
            .map(|(v, bit)| (&mut v[row..row + p.rows], *bit));
        match p.encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                dict_indices(&mut p, dict.len(), &mut s.idx)?;
                let get = |k: usize| dict[s.idx[k] as usize];
                spread(&p, &s.levels, get, T::default(), out, v);
            }
            Encoding::PLAIN | Encoding::DELTA_BINARY_PACKED => {
                s.ints.clear();
                if p.encoding == Encoding::PLAIN {
                    codec::plain_ints(&mut p.values, size, p.present, &mut s.ints)?;
                } else {
                    codec::delta(&mut p.values, p.present, &mut s.ints)?;
                }
                ensure!(s.ints.len() == p.present, "page holds the wrong count");
                let get = |k: usize| T::from_int(s.ints[k]);
                spread(&p, &s.levels, get, T::default(), out, v);
            }
            e => bail!("encoding {e}"),
        }
        row += p.rows;
    }
    Ok(())
}

/// The page's dictionary indices (checked against the dictionary's size) into `idx`.
fn dict_indices(p: &mut DataPage, dict_len: usize, idx: &mut Vec<u32>) -> Result<()> {
    idx.clear();
    if p.present == 0 {
        return Ok(());
    }
    let width = *p.values.take(1)?.first().unwrap_or(&0) as u32;
    codec::hybrid(&mut p.values, width, p.present, idx)?;
    ensure!(
        idx.iter().all(|i| (*i as usize) < dict_len),
        "dictionary index out of range"
    );
    Ok(())
}

/// What a null string becomes.
#[derive(Clone, Copy)]
enum Null<T> {
    As(T),
    /// Nulls are an error; the value only fills the type.
    Refused(T),
}

/// A string column chunk into `out`: each distinct value mapped once per dictionary page.
fn str_column<T: StrTarget>(
    pages: impl Iterator<Item = parquet::errors::Result<Page>>,
    group_rows: usize,
    nullable: bool,
    null: Null<T>,
    s: &mut Scratch,
    strs: &mut Strings,
    out: &mut Vec<T>,
) -> Result<()> {
    let mut dict: Vec<T> = Vec::new();
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
        let mut p = split_page(&page, nullable, &mut s.levels, group_rows - row)?;
        row += p.rows;
        // A null where the checker has none (event, ctx): the Arrow reader says why.
        let null = match null {
            Null::As(v) => v,
            Null::Refused(v) => {
                ensure!(p.present == p.rows, "null in a column without nulls");
                v
            }
        };
        match p.encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                dict_indices(&mut p, dict.len(), &mut s.idx)?;
                let get = |k: usize| dict[s.idx[k] as usize];
                spread(&p, &s.levels, get, null, out, None);
            }
            Encoding::PLAIN => {
                plain.clear();
                codec::plain_bytes(&mut p.values, p.present, |v| {
                    plain.push(T::from_str(v, strs)?);
                    Ok(())
                })?;
                ensure!(plain.len() == p.present, "page holds the wrong count");
                spread(&p, &s.levels, |k| plain[k], null, out, None);
            }
            e => bail!("encoding {e}"),
        }
    }
    Ok(())
}

/// Read every row group of the file into `Cols`.
pub fn read(file: std::fs::File) -> Result<Cols> {
    // Page by page from the file: each page is read into a buffer the allocator reuses,
    // not the whole file into fresh memory.
    let file = SerializedFileReader::new(file)?;
    let md = file.metadata();
    let schema = md.file_metadata().schema_descr();
    let leaf = |name: &str| -> Result<(usize, Phys, bool)> {
        let i = (0..schema.num_columns())
            .find(|i| schema.column(*i).path().string() == name)
            .ok_or_else(|| anyhow!("no column {name}"))?;
        let c = schema.column(i);
        ensure!(
            c.max_rep_level() == 0 && c.max_def_level() <= 1,
            "nested column {name}"
        );
        Ok((i, c.physical_type(), c.max_def_level() == 1))
    };
    let rows: usize = md
        .row_groups()
        .iter()
        .map(|g| g.num_rows().max(0) as usize)
        .sum();
    let mut c = Cols::with_capacity(rows.min(1 << 28));
    c.valid.resize(rows, 0);
    let mut s = Scratch::default();
    let empty = c.strs.intern("");
    let mut start = 0;
    for g in 0..md.num_row_groups() {
        let rg = file.get_row_group(g)?;
        let n = md.row_group(g).num_rows().max(0) as usize;
        let pages = |name: &str| -> Result<_> {
            let (i, phys, nullable) = leaf(name)?;
            Ok((rg.get_column_page_reader(i)?, phys, nullable))
        };
        let valid = &mut c.valid[start..start + n];
        macro_rules! ints {
            ($name:literal, $dst:ident, $bit:expr) => {{
                let (p, phys, nullable) = pages($name)?;
                let v = $bit.map(|bit: u8| (&mut valid[..], bit));
                int_column(p, n, phys, nullable, &mut s, &mut c.$dst, v)?;
            }};
        }
        ints!("ts_ns", ts, None);
        ints!("cpu", cpu, None);
        ints!("seq", seq, None);
        ints!("pid", pid, None);
        ints!("vec", vec, Some(V_VEC));
        ints!("napi", napi, Some(V_NAPI));
        ints!("skb", skb, Some(V_SKB));
        ints!("work", work, Some(V_WORK));
        ints!("budget", budget, Some(V_BUDGET));
        ints!("ret", ret, Some(V_RET));
        ints!("target_cpu", target_cpu, Some(V_TARGET_CPU));
        macro_rules! strs {
            ($name:literal, $dst:ident, $null:expr) => {{
                let (p, phys, nullable) = pages($name)?;
                ensure!(phys == Phys::BYTE_ARRAY, "column {} is {phys}", $name);
                str_column(p, n, nullable, $null, &mut s, &mut c.strs, &mut c.$dst)?;
            }};
        }
        strs!("event", kind, Null::Refused(EventKind::ALL[0]));
        strs!("ctx", ctx, Null::Refused(Ctx::Task));
        strs!("comm", comm, Null::As(empty));
        strs!("dev", dev, Null::As(NO_SYM));
        strs!("target_comm", target_comm, Null::As(NO_SYM));
        strs!("prev_state", prev_state, Null::As(NO_SYM));
        strs!("func", func, Null::As(NO_SYM));
        start += n;
        macro_rules! all_rows {
            ($($f:ident)*) => { $(ensure!(c.$f.len() == start, "column {} has {} rows, not {start}", stringify!($f), c.$f.len());)* };
        }
        all_rows!(ts cpu seq kind ctx comm pid vec napi skb work budget ret target_cpu dev target_comm prev_state func);
    }
    Ok(c)
}
