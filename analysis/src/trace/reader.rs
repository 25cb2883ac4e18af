//! Reading a trace: the file opened and its footer checked (`open_trace`), then its rows as
//! `Event`s through Arrow arrays (`read_trace`), or straight into the checker's columns
//! (`read_columns`: the page reader `direct`, else Arrow arrays, `arrow_cols`).

use std::{fs::File, path::Path};

use anyhow::{anyhow, bail, Context as _, Result};
use arrow::{
    array::{Array, RecordBatch},
    datatypes::SchemaRef,
};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};

use super::{
    arrow_cols::read_columns_arrow,
    cols::Cols,
    direct,
    event::{Ctx, Event, EventKind},
    output,
    schema::{arrow_array, columns, may_be_absent, schema, Named},
    TraceMeta, BATCH_ROWS, META_PREFIX, SCHEMA_VERSION,
};

#[derive(Debug, Default)]
pub struct Trace {
    pub events: Vec<Event>,
    pub meta: TraceMeta,
}

/// Open a trace file and read its footer: the file, its Arrow/Parquet metadata (schema
/// checked) and napiscope's key/value metadata. Errors name the file and what is wrong.
pub(super) fn open_trace(path: &Path) -> Result<(File, ArrowReaderMetadata, TraceMeta)> {
    if let Some(p) = output::Paths::of_partial(path) {
        bail!(
            "{} is an unfinished recording (of {}){}: run `napiscope recover {}` to make a trace \
             of it",
            path.display(),
            p.target.display(),
            if p.writer_running() {
                ", still being written"
            } else {
                ""
            },
            path.display()
        );
    }
    let file = match File::open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = output::leftovers(path).pop() {
                bail!(
                    "cannot open trace {}: it does not exist, but an interrupted recording of it \
                     is at {}: run `napiscope recover {}` to make {} from it",
                    path.display(),
                    p.partial.display(),
                    path.display(),
                    path.display()
                );
            }
            return Err(e).with_context(|| format!("cannot open trace {}", path.display()));
        }
        r => r.with_context(|| format!("cannot open trace {}", path.display()))?,
    };
    let len = file.metadata()?.len();
    if len == 0 {
        bail!(
            "{} is empty (0 bytes): not a napiscope trace",
            path.display()
        );
    }
    let md = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        anyhow!(
            "{} is not a readable Parquet file ({e}); it may be truncated or not a trace \
             — re-record it with `napiscope record`",
            path.display()
        )
    })?;
    let mut meta = TraceMeta::default();
    if let Some(kvs) = md.metadata().file_metadata().key_value_metadata() {
        for kv in kvs {
            if let (Some(k), Some(v)) = (kv.key.strip_prefix(META_PREFIX), &kv.value) {
                meta.set(k, v.clone());
            }
        }
    }
    check_schema(md.schema(), path)?;
    Ok((file, md, meta))
}

/// Read a napiscope trace. Errors name the file and what is wrong with it (not Parquet,
/// truncated, another schema) — `check` and `report` turn them into exit code 2.
pub fn read_trace(path: &Path) -> Result<Trace> {
    let (file, md, meta) = open_trace(path)?;
    let absent = absent_fields(md.schema());
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, md)
        .with_batch_size(BATCH_ROWS)
        .build()?;
    let mut events = Vec::new();
    guarded(path, || {
        for batch in reader {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            let batch = with_absent_columns(batch, &absent)?;
            decode_batch(&batch, &mut events)
                .with_context(|| format!("decoding {}", path.display()))?;
        }
        Ok(())
    })?;
    Ok(Trace { events, meta })
}

/// Read a trace straight into the checker's columns: only the columns the rules read,
/// strings as the file's dictionary ids (interned once per batch, not once per row). Same
/// errors as `read_trace`.
pub fn read_columns(path: &Path) -> Result<(Cols, TraceMeta)> {
    let (file, md, meta) = open_trace(path)?;
    // The pages decoded straight into columns, when they use the encodings napiscope
    // writes; anything else (or a damaged page) goes through the Arrow reader.
    if let Ok(cols) = direct::read(file.try_clone()?) {
        return Ok((cols, meta));
    }
    Ok((guarded(path, || read_columns_arrow(path, file, md))?, meta))
}

/// Run a read through parquet's Arrow reader, which panics on some damaged pages (its
/// delta decoder, parquet 55), and make such a panic an error naming the file. The panic
/// hook is silenced meanwhile: the user sees the error, not a crash report.
pub(super) fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    // One guarded read at a time: two swapping the hook at once could leave it silenced.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    std::panic::set_hook(hook);
    r.unwrap_or_else(|p| {
        let why = (p.downcast_ref::<String>().map(String::as_str))
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        bail!(
            "{} is damaged: decoding its pages failed ({why}); re-record it or restore a good copy",
            path.display()
        )
    })
}

fn check_schema(found: &SchemaRef, path: &Path) -> Result<()> {
    for want in schema().fields() {
        match found.field_with_name(want.name()) {
            Ok(f) if f.data_type() == want.data_type() => {}
            Ok(f) => bail!(
                "{}: column `{}` has type {} but a napiscope trace has {}: not a napiscope \
                 trace (schema {SCHEMA_VERSION})",
                path.display(),
                want.name(),
                f.data_type(),
                want.data_type()
            ),
            // An older schema's file: the column reads as all null.
            Err(_) if may_be_absent(want.name()) => {}
            Err(_) => bail!(
                "{}: column `{}` is missing: not a napiscope trace (schema {SCHEMA_VERSION}); \
                 record one with `napiscope record` or `napiscope simulate`",
                path.display(),
                want.name()
            ),
        }
    }
    Ok(())
}

/// The columns of the current schema that a file of an older schema lacks (nullable ones
/// from `ADDED_COLUMNS`), given the file's own Arrow schema. Asked once per file.
pub(super) fn absent_fields(found: &arrow::datatypes::Schema) -> Vec<arrow::datatypes::FieldRef> {
    (schema().fields().iter())
        .filter(|f| may_be_absent(f.name()) && found.field_with_name(f.name()).is_err())
        .cloned()
        .collect()
}

/// `b` with a column of nulls for each of `absent` (`absent_fields`), so the decoders can
/// look every column up by name.
pub(super) fn with_absent_columns(
    b: RecordBatch,
    absent: &[arrow::datatypes::FieldRef],
) -> Result<RecordBatch> {
    if absent.is_empty() {
        return Ok(b);
    }
    let (s, mut columns, rows) = (b.schema(), b.columns().to_vec(), b.num_rows());
    let mut fields: Vec<_> = s.fields().iter().cloned().collect();
    for f in absent {
        columns.push(arrow::array::new_null_array(f.data_type(), rows));
        fields.push(f.clone());
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

pub(super) fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| anyhow!("column `{name}` missing or of the wrong type"))
}

/// Row `i` of a nullable column has a value.
#[inline]
fn opt(a: &impl Array, i: usize) -> bool {
    !a.is_null(i)
}

/// A batch's rows as `Event`s (each column looked up by name: missing or of another type,
/// an error).
fn decode_batch(b: &RecordBatch, out: &mut Vec<Event>) -> Result<()> {
    macro_rules! decode {
        (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
         nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
            $(let $r = col::<arrow_array!($ra)>(b, stringify!($r))?;)*
            $(let $o = col::<arrow_array!($oa)>(b, stringify!($o))?;)*
            for i in 0..b.num_rows() {
                out.push(Event {
                    $($r: value!($rc $rt, $r, i),)*
                    $($o: opt($o, i).then(|| value!($oc $ot, $o, i)),)*
                });
            }
        };
    }
    macro_rules! value {
        (num $t:tt, $a:ident, $i:ident) => {
            $a.value($i)
        };
        (name $t:tt, $a:ident, $i:ident) => {
            <$t as Named>::from_name($a.value($i)).ok_or_else(|| {
                anyhow!("row {}: unknown {} `{}`", $i, stringify!($a), $a.value($i))
            })?
        };
        (text $t:tt, $a:ident, $i:ident) => {
            $a.value($i).to_string()
        };
    }
    columns!(decode);
    Ok(())
}
