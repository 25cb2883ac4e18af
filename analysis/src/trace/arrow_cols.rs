//! `read_columns` through Arrow arrays, for files the page reader (`direct`) does not take:
//! any valid Parquet encoding. Strings come as dictionary arrays, interned once per batch.

use std::{fs::File, path::Path, sync::Arc};

use anyhow::{anyhow, bail, Context as _, Result};
use arrow::{
    array::{Array, DictionaryArray, PrimitiveArray, RecordBatch, StringArray},
    datatypes::{ArrowPrimitiveType, DataType, Field, Int32Type, Schema},
};
use parquet::arrow::{
    arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
    ProjectionMask,
};

use super::{
    cols::{Cols, Strings, Sym, NO_SYM},
    reader::{absent_fields, col, with_absent_columns},
    schema::{arrow_array, check_columns, columns, Named},
    sparse::Sparse,
    BATCH_ROWS,
};

/// `read_columns` through Arrow arrays: any valid Parquet encoding.
pub(super) fn read_columns_arrow(path: &Path, file: File, md: ArrowReaderMetadata) -> Result<Cols> {
    // Ask for the string columns as dictionaries: the reader then keeps the pages'
    // dictionary encoding instead of building a string per row.
    let hint: Vec<Field> = md
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if *f.data_type() == DataType::Utf8 {
                Field::new(
                    f.name(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                    f.is_nullable(),
                )
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let md = ArrowReaderMetadata::try_new(
        md.metadata().clone(),
        ArrowReaderOptions::new().with_schema(Arc::new(Schema::new(hint))),
    )
    .with_context(|| format!("reading {}", path.display()))?;
    // An older schema's file lacks some nullable columns (`with_absent_columns` adds them).
    let absent = absent_fields(md.schema());
    let roots: Vec<usize> = check_columns()
        .iter()
        .filter(|c| !absent.iter().any(|f| f.name() == *c))
        .map(|c| md.schema().index_of(c))
        .collect::<std::result::Result<_, _>>()?;
    let mask = ProjectionMask::roots(md.parquet_schema(), roots);
    let rows: usize = md
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows().max(0) as usize)
        .sum();
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, md)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()?;
    let mut cols = Cols::with_capacity(rows.min(1 << 28));
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        columns_of_batch(&with_absent_columns(batch, &absent)?, &mut cols)
            .with_context(|| format!("decoding {}", path.display()))?;
    }
    Ok(cols)
}

type Dict = DictionaryArray<Int32Type>;

/// The row's interned string for each of a dictionary column's rows (NO_SYM for null; `null`
/// for null rows of a column that has no nulls in a valid trace).
fn dict_syms(
    d: &Dict,
    strs: &mut Strings,
    null: Sym,
    out: &mut Vec<Sym>,
    name: &str,
) -> Result<()> {
    let values = d
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| anyhow!("column `{name}`: dictionary values are not strings"))?;
    let map: Vec<Sym> = values
        .iter()
        .map(|v| v.map_or(null, |s| strs.intern(s)))
        .collect();
    let keys = d.keys();
    let sym = |k: i32| -> Result<Sym> {
        map.get(k as usize)
            .copied()
            .ok_or_else(|| anyhow!("column `{name}`: dictionary key {k} out of range"))
    };
    if keys.null_count() == 0 {
        for k in keys.values() {
            out.push(sym(*k)?);
        }
    } else {
        for k in keys.iter() {
            out.push(match k {
                Some(k) => sym(k)?,
                None => null,
            });
        }
    }
    Ok(())
}

/// A dictionary column's strings onto a sparse column (null keys and null values: no value).
fn sparse_syms(d: &Dict, strs: &mut Strings, out: &mut Sparse<Sym>, name: &str) -> Result<()> {
    let mut syms = Vec::with_capacity(d.len());
    dict_syms(d, strs, NO_SYM, &mut syms, name)?;
    for s in syms {
        out.push((s != NO_SYM).then_some(s));
    }
    Ok(())
}

/// A nullable number column onto a sparse column.
fn sparse_nums<A: ArrowPrimitiveType>(a: &PrimitiveArray<A>, out: &mut Sparse<A::Native>) {
    for i in 0..a.len() {
        out.push(a.is_valid(i).then(|| a.value(i)));
    }
}

/// A `name` column (event, ctx): the dictionary's names decided once per batch.
fn named_col<T: Named>(d: &Dict, out: &mut Vec<T>, name: &str) -> Result<()> {
    let names = d
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| anyhow!("column `{name}`: dictionary values are not strings"))?;
    let values: Vec<Option<T>> = names.iter().map(|v| v.and_then(T::from_name)).collect();
    for (i, k) in d.keys().iter().enumerate() {
        let value = k.and_then(|k| values.get(k as usize).copied().flatten());
        let Some(value) = value else {
            let s = k.and_then(|k| names.iter().nth(k as usize).flatten());
            bail!("row {i}: unknown {name} `{}`", s.unwrap_or(""));
        };
        out.push(value);
    }
    Ok(())
}

/// A batch's rows appended to the columns the checker reads (`schema::columns!`). Numbers
/// narrower in `Cols` than in the file are checked to fit, never cut.
fn columns_of_batch(b: &RecordBatch, c: &mut Cols) -> Result<()> {
    macro_rules! each {
        (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
         nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
            $(column!(req $rc $ra $r $rk);)*
            $(column!(opt $oc $oa $o $ok);)*
        };
    }
    let empty = c.strs.intern("");
    macro_rules! column {
        ($q:ident $c:ident $a:ident $n:ident -) => {};
        (req num $a:ident $n:ident ($f:ident: $k:ty, scanned)) => {
            c.$f.extend_from_slice(col::<arrow_array!($a)>(b, stringify!($n))?.values())
        };
        (req num $a:ident $n:ident ($f:ident: $k:ty, $msg:literal)) => {
            for (i, v) in col::<arrow_array!($a)>(b, stringify!($n))?
                .values()
                .iter()
                .enumerate()
            {
                let Ok(v) = <$k>::try_from(*v) else {
                    bail!(concat!("row {}: ", $msg), i, v);
                };
                c.$f.push(v);
            }
        };
        (req num $a:ident $n:ident ($f:ident: $k:ty)) => {
            c.$f.extend_from_slice(col::<arrow_array!($a)>(b, stringify!($n))?.values())
        };
        (opt num $a:ident $n:ident ($f:ident: $k:ty, $msg:literal)) => {
            let a = col::<arrow_array!($a)>(b, stringify!($n))?;
            for i in 0..a.len() {
                let v = a.is_valid(i).then(|| a.value(i));
                let v = v.map(<$k>::try_from).transpose();
                c.$f.push(v.map_err(|_| anyhow!(concat!("row {}: ", $msg), i, a.value(i)))?);
            }
        };
        (opt num $a:ident $n:ident ($f:ident: $k:ty)) => {
            sparse_nums(col::<arrow_array!($a)>(b, stringify!($n))?, &mut c.$f)
        };
        (req name $a:ident $n:ident ($f:ident: $k:ty)) => {
            named_col(col::<Dict>(b, stringify!($n))?, &mut c.$f, stringify!($n))?
        };
        (req text $a:ident $n:ident ($f:ident: $k:ty)) => {
            let d = col::<Dict>(b, stringify!($n))?;
            dict_syms(d, &mut c.strs, empty, &mut c.$f, stringify!($n))?
        };
        (opt text $a:ident $n:ident ($f:ident: $k:ty)) => {
            let d = col::<Dict>(b, stringify!($n))?;
            sparse_syms(d, &mut c.strs, &mut c.$f, stringify!($n))?
        };
    }
    columns!(each);
    Ok(())
}
