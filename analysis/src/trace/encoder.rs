//! The Parquet encoder and its file: the writer properties, the partial file beside the
//! target, checkpoints of the row groups flushed so far, and the footer at the end (see
//! `output` for the files).

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use arrow::array::RecordBatch;
use parquet::{
    arrow::{encode_arrow_schema, ArrowSchemaConverter, ArrowWriter, ARROW_SCHEMA_META_KEY},
    basic::{Compression, Encoding},
    file::{
        metadata::{FileMetaData, ParquetMetaData},
        properties::{EnabledStatistics, WriterProperties},
    },
    format::KeyValue,
    schema::types::{ColumnPath, SchemaDescPtr},
};

use super::{output, schema, TraceMeta, META_PREFIX, ROW_GROUP_ROWS, SCHEMA_VERSION};

/// Snappy, row groups of `ROW_GROUP_ROWS`. Per column, what costs CPU for nothing: the
/// strictly growing ts_ns and seq are delta-encoded (a dictionary of unique values only
/// grows, then falls back); min/max statistics are kept where a reader can prune row groups
/// by them (time, CPU, sequence, pid), not for strings, keyed pointer hashes or the
/// mostly-null event fields.
pub(super) fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(ROW_GROUP_ROWS);
    for c in ["ts_ns", "seq"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    for f in schema().fields() {
        if !matches!(f.name().as_str(), "ts_ns" | "cpu" | "seq" | "pid") {
            let c = ColumnPath::from(f.name().as_str());
            b = b.set_column_statistics_enabled(c, EnabledStatistics::None);
        }
    }
    b.build()
}

/// The partial file, counting the bytes that reached it (past parquet's write buffer).
pub(super) struct Counted {
    file: File,
    reached: u64,
}

impl Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(b)?;
        self.reached += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// parquet's writer buffers this much (std's BufWriter default) in front of the file.
const PARQUET_WRITE_BUFFER: usize = 8 * 1024;

/// The Parquet encoder and its file: written to `.NAME.napiscope-PID.partial`, renamed to
/// NAME when finished, checkpointed as it goes (see `output`). Dropped unfinished, it
/// leaves the partial file for `recover` if a checkpoint holds rows, else removes it.
pub(super) struct Encoder {
    pub(super) writer: Option<ArrowWriter<Counted>>,
    pub(super) paths: output::Paths,
    replace: bool,
    every: Option<Duration>,
    last: Instant,
    pub(super) meta: TraceMeta,
    descr: SchemaDescPtr,
    groups_ckpt: usize,
    rows_ckpt: u64,
    done: bool,
}

impl Encoder {
    pub(super) fn create(
        path: &Path,
        replace: bool,
        every: Option<Duration>,
        meta: TraceMeta,
    ) -> Result<Encoder> {
        let paths = output::Paths::for_target(path)?;
        let file = output::create_partial(&paths, replace)?;
        let mut enc = Encoder {
            writer: None,
            paths,
            replace,
            every,
            last: Instant::now(),
            meta,
            descr: Arc::new(ArrowSchemaConverter::new().convert(&schema())?),
            groups_ckpt: 0,
            rows_ckpt: 0,
            done: false,
        };
        // (`enc` owns the partial file from here: an error below removes it.)
        let writer = ArrowWriter::try_new(
            Counted { file, reached: 0 },
            schema(),
            Some(writer_properties()),
        )?;
        enc.writer = Some(writer);
        Ok(enc)
    }

    fn w(&mut self) -> Result<&mut ArrowWriter<Counted>> {
        self.writer
            .as_mut()
            .ok_or_else(|| anyhow!("the Parquet writer was closed"))
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.w()?.write(batch)?;
        let groups = self.w()?.flushed_row_groups().len();
        if groups > self.groups_ckpt {
            self.checkpoint()?;
        }
        self.tick()
    }

    /// Time until the next checkpoint is due (an hour without checkpoints).
    pub(super) fn until_due(&self) -> Duration {
        self.every.map_or(Duration::from_secs(3600), |e| {
            e.saturating_sub(self.last.elapsed())
        })
    }

    /// Flush and checkpoint the rows encoded so far if a checkpoint is due.
    pub(super) fn tick(&mut self) -> Result<()> {
        if self.every.is_some_and(|e| self.last.elapsed() >= e)
            && self
                .writer
                .as_ref()
                .is_some_and(|w| w.in_progress_rows() > 0)
        {
            self.w()?.flush()?;
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Make the row groups flushed so far recoverable: their bytes on disk, then a new
    /// checkpoint file with their footer.
    fn checkpoint(&mut self) -> Result<()> {
        if self.every.is_none() {
            return Ok(());
        }
        let w = self.w()?;
        if w.inner().reached < w.bytes_written() as u64 {
            // Push parquet's buffer to the file: a write of at least its size goes through
            // it. Readers skip bytes between row groups.
            w.write_all(&[0; PARQUET_WRITE_BUFFER])?;
        }
        let data_len = w.bytes_written() as u64;
        if w.inner().reached != data_len {
            bail!(
                "the Parquet writer kept bytes back ({} of {data_len} written)",
                w.inner().reached
            );
        }
        w.inner().file.sync_data()?;
        let groups = w.flushed_row_groups().to_vec();
        let rows: u64 = groups.iter().map(|g| g.num_rows() as u64).sum();
        let mut meta = self.meta.clone();
        meta.set("partial", "true");
        meta.set("stop_reason", "killed");
        meta.set("rows", rows.to_string());
        meta.set("schema_version", SCHEMA_VERSION);
        let mut kv = vec![KeyValue::new(
            ARROW_SCHEMA_META_KEY.to_string(),
            encode_arrow_schema(&schema()),
        )];
        kv.extend(meta_kv(&meta));
        let props = writer_properties();
        let file = FileMetaData::new(
            props.writer_version().as_num(),
            rows as i64,
            Some(props.created_by().to_string()),
            Some(kv),
            self.descr.clone(),
            None,
        );
        let n = groups.len();
        let footer = output::footer_bytes(&ParquetMetaData::new(file, groups))?;
        output::write_checkpoint(
            &self.paths,
            &output::Checkpoint {
                data_len,
                rows,
                footer,
            },
        )
        .with_context(|| format!("writing the checkpoint {}", self.paths.footer.display()))?;
        self.groups_ckpt = n;
        self.rows_ckpt = rows;
        self.last = Instant::now();
        Ok(())
    }

    /// Footer with `meta`, then the file renamed into place. Returns its size.
    pub(super) fn finish(&mut self, meta: &TraceMeta) -> Result<u64> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| anyhow!("the Parquet writer was closed"))?;
        for kv in meta_kv(meta) {
            w.append_key_value_metadata(kv);
        }
        let c = w.into_inner()?;
        output::commit(
            &c.file,
            &self.paths.partial,
            &self.paths.target,
            self.replace,
        )?;
        self.done = true;
        let _ = std::fs::remove_file(&self.paths.footer);
        Ok(c.file.metadata()?.len())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if !self.done && self.rows_ckpt == 0 {
            self.paths.remove();
        }
    }
}

/// napiscope's metadata as Parquet key/value pairs (keys prefixed).
pub(super) fn meta_kv(meta: &TraceMeta) -> Vec<KeyValue> {
    meta.0
        .iter()
        .map(|(k, v)| KeyValue::new(format!("{META_PREFIX}{k}"), v.clone()))
        .collect()
}
