//! A trace's Parquet pages decoded straight into the checker's `Cols`: no Arrow arrays in
//! between (`chunks` decodes a column chunk's pages, `groups` reads the row groups). It
//! knows the encodings a napiscope writer produces; on anything else it returns an error
//! and `read_columns` falls back to the Arrow reader, which reads any valid file (and words
//! its errors).

use anyhow::{anyhow, ensure, Result};

use parquet::{
    basic::Type as Phys,
    column::page::PageReader,
    file::{
        reader::{FileReader, RowGroupReader},
        serialized_reader::SerializedFileReader,
    },
};

use super::{
    chunks::{int_column, str_column, Null, Scratch, Sink},
    cols::{Cols, Sym},
    groups::Groups,
    schema::{columns, may_be_absent},
    seqscan::SeqScan,
};

/// Read every row group of the file into `Cols`.
pub fn read(file: std::fs::File) -> Result<Cols> {
    // The footer through parquet's reader; the pages a row group at a time (`Group`).
    let reader = SerializedFileReader::new(file.try_clone()?)?;
    let md = reader.metadata();
    let mut groups = Groups::new(&file)?;
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
    // seq is scanned a row group at a time, not kept (see `seqscan`).
    c.seq = Vec::new();
    let mut seq = SeqScan::default();
    let mut group_seq: Vec<u64> = Vec::new();
    let mut s = Scratch::default();
    let empty = c.strs.intern("");
    let mut start = 0;
    for g in 0..md.num_row_groups() {
        let rg = groups.get(md, g, None)?;
        let n = md.row_group(g).num_rows().max(0) as usize;
        let mut pages = |name: &str| -> Result<Option<Pages>> {
            // An older schema's file lacks the columns added since (all null, `Sink::absent`).
            if may_be_absent(name) && leaf(name).is_err() {
                return Ok(None);
            }
            let (i, phys, nullable) = leaf(name)?;
            Ok(Some((rg.get_column_page_reader(i)?, phys, nullable)))
        };
        read_group(&mut c, &mut pages, n, &mut s, empty, &mut group_seq)?;
        ensure!(group_seq.len() == n, "seq has the wrong row count");
        for (k, q) in group_seq.iter().enumerate() {
            seq.push(c.ts[start + k], c.cpu[start + k] as u32, *q);
        }
        start += n;
        ensure!(
            c.len() == start && c.consistent_but_seq(),
            "a column's rows do not add up to its row groups'"
        );
    }
    let facts = seq.finish();
    if facts.complete() {
        c.seq_facts = Some(facts);
    } else {
        // Out of time order, or a CPU's seq went back: the index needs the column.
        c.seq.reserve_exact(c.len());
        for g in 0..md.num_row_groups() {
            let (i, phys, nullable) = leaf("seq")?;
            // Only the seq column's bytes, not the whole group's again.
            let rg = groups.get(md, g, Some(i))?;
            let n = md.row_group(g).num_rows().max(0) as usize;
            let p = rg.get_column_page_reader(i)?;
            int_column(
                p,
                n,
                phys,
                nullable,
                &mut s,
                Sink::Dense(&mut c.seq, Null::As(0)),
            )?;
        }
        ensure!(c.seq.len() == c.len(), "seq has the wrong row count");
    }
    Ok(c)
}

/// A column chunk's pages, their physical type, and whether the column is nullable.
type Pages = (Box<dyn PageReader>, Phys, bool);

/// One row group's columns into `c` (the ones the checker reads, `schema::columns!`); seq
/// into `seq` instead, for the caller to scan.
fn read_group(
    c: &mut Cols,
    pages: &mut dyn FnMut(&str) -> Result<Option<Pages>>,
    n: usize,
    s: &mut Scratch,
    empty: Sym,
    seq: &mut Vec<u64>,
) -> Result<()> {
    macro_rules! each {
        (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
         nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
            $(column!(req $rc $r $rk);)*
            $(column!(opt $oc $o $ok);)*
        };
    }
    macro_rules! column {
        ($q:ident $c:ident $n:ident -) => {};
        (req num $n:ident ($f:ident: $k:ty, scanned)) => {{
            seq.clear();
            ints!($n, Sink::Dense(&mut *seq, Null::As(0)));
        }};
        (req num $n:ident ($f:ident: $k:ty $(, $msg:literal)?)) => {
            ints!($n, Sink::Dense(&mut c.$f, Null::As(0)))
        };
        (opt num $n:ident ($f:ident: $k:ty $(, $msg:literal)?)) => {
            ints!($n, Sink::Sparse(&mut c.$f))
        };
        (req name $n:ident ($f:ident: $k:ty)) => {
            strs!($n, Sink::Dense(&mut c.$f, Null::Refused))
        };
        (req text $n:ident ($f:ident: $k:ty)) => {
            strs!($n, Sink::Dense(&mut c.$f, Null::As(empty)))
        };
        (opt text $n:ident ($f:ident: $k:ty)) => {
            strs!($n, Sink::Sparse(&mut c.$f))
        };
    }
    macro_rules! ints {
        ($n:ident, $sink:expr) => {{
            match pages(stringify!($n))? {
                Some((p, phys, nullable)) => int_column(p, n, phys, nullable, &mut *s, $sink)?,
                None => $sink.absent(n)?,
            }
        }};
    }
    macro_rules! strs {
        ($n:ident, $sink:expr) => {{
            let name = stringify!($n);
            match pages(name)? {
                Some((p, phys, nullable)) => {
                    ensure!(phys == Phys::BYTE_ARRAY, "column {name} is {phys}");
                    str_column(p, n, nullable, &mut *s, &mut c.strs, $sink)?;
                }
                None => $sink.absent(n)?,
            }
        }};
    }
    columns!(each);
    Ok(())
}
