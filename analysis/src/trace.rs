//! The trace file: Parquet, one row per event, key/value metadata in the footer.
//! Schema documented in docs/schema.md; `SCHEMA_VERSION` changes when a column changes.

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use arrow::{
    array::{
        Array, ArrayRef, DictionaryArray, Int32Array, PrimitiveArray, RecordBatch, StringArray,
        StringBuilder, UInt32Array, UInt64Array,
    },
    buffer::{NullBuffer, ScalarBuffer},
    datatypes::{
        ArrowNativeType, ArrowPrimitiveType, DataType, Field, Int32Type, Schema, SchemaRef,
        UInt32Type, UInt64Type,
    },
};
use parquet::{
    arrow::{
        arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder},
        encode_arrow_schema, ArrowSchemaConverter, ArrowWriter, ProjectionMask,
        ARROW_SCHEMA_META_KEY,
    },
    basic::{Compression, Encoding},
    file::{
        metadata::{FileMetaData, ParquetMetaData},
        properties::{EnabledStatistics, WriterProperties},
    },
    format::KeyValue,
    schema::types::{ColumnPath, SchemaDescPtr},
};

use crate::{
    check::cols::{Cols, FastMap, Strings, NO_SYM},
    check::sparse::Sparse,
    event::{Ctx, Event, EventKind},
};
use probe_common::COMM_LEN;

pub use crate::check::cols::Sym;

mod codec;
mod direct;
#[cfg(test)]
mod file_tests;
pub mod output;

pub const SCHEMA_VERSION: &str = "1";
/// Metadata keys are prefixed so they do not clash with other writers' keys.
pub const META_PREFIX: &str = "napiscope.";
/// Rows per batch when reading.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 4 * BATCH_ROWS;
/// Rows buffered before they go to the Parquet writer; small enough that the progress
/// line's size estimate moves.
const WRITE_ROWS: usize = 8_192;
/// With a writer thread: rows per batch sent to it.
const THREAD_BATCH_ROWS: usize = 16_384;
/// Memory a queued row takes until the writer thread encodes it (its `Columns` entry: 108
/// bytes of values, 14 validity flags), for sizing the queue from a byte budget.
pub const QUEUED_ROW_BYTES: usize = 122;

pub fn schema() -> SchemaRef {
    use DataType::*;
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        f("ts_ns", UInt64, false),
        f("cpu", UInt32, false),
        f("seq", UInt64, false),
        f("event", Utf8, false),
        f("ctx", Utf8, false),
        f("comm", Utf8, false),
        f("pid", Int32, false),
        f("vec", UInt32, true),
        f("napi", UInt64, true),
        f("skb", UInt64, true),
        f("csd", UInt64, true),
        f("dev", Utf8, true),
        f("len", UInt32, true),
        f("work", Int32, true),
        f("budget", Int32, true),
        f("ret", Int32, true),
        f("target_cpu", Int32, true),
        f("target_comm", Utf8, true),
        f("target_pid", Int32, true),
        f("prev_state", Utf8, true),
        f("func", Utf8, true),
    ]))
}

/// Recording metadata (kernel, mode, clock, losses ...), stored as Parquet key/value pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceMeta(pub BTreeMap<String, String>);

impl TraceMeta {
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// Lost events per CPU, as recorded (`lost_per_cpu`, a JSON array).
    pub fn lost_per_cpu(&self) -> Vec<u64> {
        self.get("lost_per_cpu")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

/// One row as the writer takes it: numbers, and strings as ids from `TraceWriter::intern`
/// (or `intern_bytes`). Plain data, so a recorder builds it on the stack per event.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub ts_ns: u64,
    pub cpu: u32,
    pub seq: u64,
    pub event: EventKind,
    pub ctx: Ctx,
    pub comm: Sym,
    pub pid: i32,
    pub vec: Option<u32>,
    pub napi: Option<u64>,
    pub skb: Option<u64>,
    pub csd: Option<u64>,
    pub dev: Option<Sym>,
    pub len: Option<u32>,
    pub work: Option<i32>,
    pub budget: Option<i32>,
    pub ret: Option<i32>,
    pub target_cpu: Option<i32>,
    pub target_comm: Option<Sym>,
    pub target_pid: Option<i32>,
    pub prev_state: Option<Sym>,
    pub func: Option<Sym>,
}

impl Row {
    pub fn new(ts_ns: u64, cpu: u32, seq: u64, event: EventKind, ctx: Ctx, comm: Sym) -> Row {
        Row {
            ts_ns,
            cpu,
            seq,
            event,
            ctx,
            comm,
            pid: 0,
            vec: None,
            napi: None,
            skb: None,
            csd: None,
            dev: None,
            len: None,
            work: None,
            budget: None,
            ret: None,
            target_cpu: None,
            target_comm: None,
            target_pid: None,
            prev_state: None,
            func: None,
        }
    }
}

/// The writer's strings: every distinct string gets an id once; rows carry ids, and a batch's
/// string columns are built from the ids when the batch is complete.
#[derive(Default)]
struct StrTable {
    strs: Vec<Box<str>>,
    by_str: HashMap<Box<str>, Sym>,
    by_bytes: FastMap<(u64, u64), Sym>,
    /// The last name interned by bytes (a task's comm repeats from event to event).
    last: Option<((u64, u64), Sym)>,
}

impl StrTable {
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(id) = self.by_str.get(s) {
            return *id;
        }
        let id = self.strs.len() as Sym;
        self.strs.push(s.into());
        self.by_str.insert(s.into(), id);
        id
    }
    /// A NUL-terminated kernel name (comm, device), interned by its raw bytes.
    #[inline]
    fn intern_bytes(&mut self, b: &[u8; COMM_LEN]) -> Sym {
        let key = (
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
        );
        if let Some((k, id)) = self.last {
            if k == key {
                return id;
            }
        }
        let id = match self.by_bytes.get(&key) {
            Some(id) => *id,
            None => {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                let id = self.intern(&String::from_utf8_lossy(&b[..end]));
                self.by_bytes.insert(key, id);
                id
            }
        };
        self.last = Some((key, id));
        id
    }
}

/// A column being built: values, and whether each row has one. Plain vectors: appending is
/// two stores, and the Arrow array (values buffer + validity bitmap) is made once per batch.
struct Col<T> {
    vals: Vec<T>,
    valid: Vec<bool>,
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Col {
            vals: Vec::new(),
            valid: Vec::new(),
        }
    }
}

impl<T: ArrowNativeType + Default> Col<T> {
    #[inline]
    fn push(&mut self, v: T) {
        self.vals.push(v);
        self.valid.push(true);
    }
    #[inline]
    fn push_opt(&mut self, v: Option<T>) {
        self.vals.push(v.unwrap_or_default());
        self.valid.push(v.is_some());
    }
    fn take_nulls(&mut self) -> Option<NullBuffer> {
        let valid = std::mem::take(&mut self.valid);
        if valid.iter().all(|v| *v) {
            None
        } else {
            Some(NullBuffer::from(valid))
        }
    }
    fn finish<A: ArrowPrimitiveType<Native = T>>(&mut self) -> ArrayRef {
        let nulls = self.take_nulls();
        let vals = std::mem::take(&mut self.vals);
        Arc::new(PrimitiveArray::<A>::new(ScalarBuffer::from(vals), nulls))
    }
    /// A string column from ids (`T` = `Sym`) into `strs`.
    fn finish_strings<S: AsRef<str>>(&mut self, strs: &[S]) -> ArrayRef
    where
        T: Into<u32>,
    {
        let nulls = self.take_nulls();
        let keys = std::mem::take(&mut self.vals);
        let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        let bytes: usize = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| valid(*i))
            .map(|(_, k)| strs[(*k).into() as usize].as_ref().len())
            .sum();
        let mut b = StringBuilder::with_capacity(keys.len(), bytes);
        for (i, k) in keys.iter().enumerate() {
            if valid(i) {
                b.append_value(strs[(*k).into() as usize].as_ref());
            } else {
                b.append_null();
            }
        }
        Arc::new(b.finish())
    }
}

#[derive(Default)]
struct Columns {
    ts_ns: Col<u64>,
    cpu: Col<u32>,
    seq: Col<u64>,
    event: Col<u32>,
    ctx: Col<u32>,
    comm: Col<Sym>,
    pid: Col<i32>,
    vec: Col<u32>,
    napi: Col<u64>,
    skb: Col<u64>,
    csd: Col<u64>,
    dev: Col<Sym>,
    len: Col<u32>,
    work: Col<i32>,
    budget: Col<i32>,
    ret: Col<i32>,
    target_cpu: Col<i32>,
    target_comm: Col<Sym>,
    target_pid: Col<i32>,
    prev_state: Col<Sym>,
    func: Col<Sym>,
    rows: usize,
}

/// Index of a kind in `EventKind::ALL` (its key in the event column's dictionary).
fn kind_key(k: EventKind) -> u32 {
    k as u32 - 1
}

const CTXS: [Ctx; 3] = [Ctx::Task, Ctx::Softirq, Ctx::Hardirq];

impl Columns {
    #[inline]
    fn push(&mut self, e: &Row) {
        self.ts_ns.push(e.ts_ns);
        self.cpu.push(e.cpu);
        self.seq.push(e.seq);
        self.event.push(kind_key(e.event));
        self.ctx.push(e.ctx as u32);
        self.comm.push(e.comm);
        self.pid.push(e.pid);
        self.vec.push_opt(e.vec);
        self.napi.push_opt(e.napi);
        self.skb.push_opt(e.skb);
        self.csd.push_opt(e.csd);
        self.dev.push_opt(e.dev);
        self.len.push_opt(e.len);
        self.work.push_opt(e.work);
        self.budget.push_opt(e.budget);
        self.ret.push_opt(e.ret);
        self.target_cpu.push_opt(e.target_cpu);
        self.target_comm.push_opt(e.target_comm);
        self.target_pid.push_opt(e.target_pid);
        self.prev_state.push_opt(e.prev_state);
        self.func.push_opt(e.func);
        self.rows += 1;
    }

    fn finish(&mut self, strs: &[Box<str>]) -> Result<RecordBatch> {
        let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        let ctxs: Vec<&str> = CTXS.iter().map(|c| c.name()).collect();
        let cols: Vec<ArrayRef> = vec![
            self.ts_ns.finish::<UInt64Type>(),
            self.cpu.finish::<UInt32Type>(),
            self.seq.finish::<UInt64Type>(),
            self.event.finish_strings(&kinds),
            self.ctx.finish_strings(&ctxs),
            self.comm.finish_strings(strs),
            self.pid.finish::<Int32Type>(),
            self.vec.finish::<UInt32Type>(),
            self.napi.finish::<UInt64Type>(),
            self.skb.finish::<UInt64Type>(),
            self.csd.finish::<UInt64Type>(),
            self.dev.finish_strings(strs),
            self.len.finish::<UInt32Type>(),
            self.work.finish::<Int32Type>(),
            self.budget.finish::<Int32Type>(),
            self.ret.finish::<Int32Type>(),
            self.target_cpu.finish::<Int32Type>(),
            self.target_comm.finish_strings(strs),
            self.target_pid.finish::<Int32Type>(),
            self.prev_state.finish_strings(strs),
            self.func.finish_strings(strs),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(schema(), cols)?)
    }
}

/// Snappy, row groups of `ROW_GROUP_ROWS`. Per column, what costs CPU for nothing: the
/// strictly growing ts_ns and seq are delta-encoded (a dictionary of unique values only
/// grows, then falls back); min/max statistics are kept where a reader can prune row groups
/// by them (time, CPU, sequence, pid), not for strings, keyed pointer hashes or the
/// mostly-null event fields.
fn writer_properties() -> WriterProperties {
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

/// Flush a row group and checkpoint it at least this often while recording: a kill loses
/// the events since (plus those still queued for the encoder).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Rows waiting in the producer's batch go to the writer thread at least this often.
const BATCH_AGE: Duration = Duration::from_millis(250);

/// How `TraceWriter::create_threaded` runs its writer thread and keeps its file safe.
pub struct WriterThread {
    /// Rows the queue to the thread holds before `push_row` waits for it (a bound, not an
    /// allocation: the queue grows as rows come).
    pub queue_rows: usize,
    /// Runs first on the writer thread: the caller's chance to set its scheduling policy.
    pub on_start: Option<Box<dyn FnOnce() + Send>>,
    /// Replace an existing file or symbolic link at the path (by rename, never writing
    /// through a link); without it, creating the writer refuses.
    pub replace: bool,
    /// Flush a row group and write a checkpoint at least this often (and whenever a row
    /// group fills); `None`: no checkpoints, a killed writer leaves nothing to recover.
    pub checkpoint_every: Option<Duration>,
    /// Metadata known before the end, for the checkpoints' footers (`partial=true`,
    /// `stop_reason=killed` and `rows` are added).
    pub checkpoint_meta: TraceMeta,
}

impl Default for WriterThread {
    fn default() -> Self {
        WriterThread {
            queue_rows: 64 * THREAD_BATCH_ROWS,
            on_start: None,
            replace: false,
            checkpoint_every: Some(CHECKPOINT_EVERY),
            checkpoint_meta: TraceMeta::default(),
        }
    }
}

/// Work for the writer thread: a batch of rows with the strings interned since the last
/// one, or new metadata for the checkpoints.
enum Job {
    Rows {
        cols: Box<Columns>,
        new_strs: Vec<Box<str>>,
    },
    Meta(TraceMeta),
}

/// Rows sent to the writer thread and not yet encoded, bounded by the queue size; closed
/// when the thread ends so a waiting producer does not wait forever.
#[derive(Default)]
struct Budget {
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Wait for room for `n` rows (always room when nothing waits); false once closed.
    fn take(&self, n: usize, cap: usize) -> bool {
        let mut g = self.lock();
        while !g.1 && g.0 > 0 && g.0 + n > cap {
            g = self.freed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.0 += n;
        !g.1
    }
    fn give(&self, n: usize) {
        let mut g = self.lock();
        g.0 = g.0.saturating_sub(n);
        self.freed.notify_all();
    }
    fn close(&self) {
        self.lock().1 = true;
        self.freed.notify_all();
    }
    fn used(&self) -> usize {
        self.lock().0
    }
}

/// Closes the budget when the writer thread ends, however it ends.
struct CloseOnDrop(Arc<Budget>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The partial file, counting the bytes that reached it (past parquet's write buffer).
struct Counted {
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
struct Encoder {
    writer: Option<ArrowWriter<Counted>>,
    paths: output::Paths,
    replace: bool,
    every: Option<Duration>,
    last: Instant,
    meta: TraceMeta,
    descr: SchemaDescPtr,
    groups_ckpt: usize,
    rows_ckpt: u64,
    done: bool,
}

impl Encoder {
    fn create(
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

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.w()?.write(batch)?;
        let groups = self.w()?.flushed_row_groups().len();
        if groups > self.groups_ckpt {
            self.checkpoint()?;
        }
        self.tick()
    }

    /// Time until the next checkpoint is due (an hour without checkpoints).
    fn until_due(&self) -> Duration {
        self.every.map_or(Duration::from_secs(3600), |e| {
            e.saturating_sub(self.last.elapsed())
        })
    }

    /// Flush and checkpoint the rows encoded so far if a checkpoint is due.
    fn tick(&mut self) -> Result<()> {
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
    fn finish(&mut self, meta: &TraceMeta) -> Result<u64> {
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
fn meta_kv(meta: &TraceMeta) -> Vec<KeyValue> {
    meta.0
        .iter()
        .map(|(k, v)| KeyValue::new(format!("{META_PREFIX}{k}"), v.clone()))
        .collect()
}

/// A failed write (the file system full, an I/O error), with what was kept of the file.
#[derive(Debug)]
pub struct WriteFailed {
    /// The error, as text.
    pub cause: String,
    /// Its errno when it was an I/O error (ENOSPC, EIO, EFBIG ...).
    pub errno: Option<i32>,
    pub target: PathBuf,
    pub kept: Kept,
}

/// What a failed recording left.
#[derive(Debug)]
pub enum Kept {
    /// The rows up to the last checkpoint, made into the target (marked partial).
    Recovered(output::Recovered),
    /// The partial file and its checkpoint, for `napiscope recover` (making the file failed
    /// too: the reason).
    Partial(PathBuf, String),
    /// Nothing was complete; the partial file was removed.
    Nothing,
}

impl std::fmt::Display for WriteFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.target.display();
        match self.errno {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                let what = match self.errno {
                    Some(libc::ENOSPC) => "no space left on device",
                    Some(libc::EDQUOT) => "disk quota exceeded",
                    _ => "file too large (the file size limit, ulimit -f)",
                };
                write!(f, "{what} writing {t}")?;
                if let Some(fs) = output::file_system_of(&self.target) {
                    write!(f, " ({fs})")?;
                }
            }
            _ => write!(f, "writing {t} failed: {}", self.cause)?,
        }
        match &self.kept {
            Kept::Recovered(r) => write!(
                f,
                "; the {} events written before it are kept in {}, marked partial \
                 (napiscope.partial=true)",
                r.rows,
                r.path.display()
            ),
            Kept::Partial(p, why) => write!(
                f,
                "; the events up to the last checkpoint are kept in {} (making {t} from it \
                 failed: {why}); free some space, then run `napiscope recover {}`",
                p.display(),
                p.display()
            ),
            Kept::Nothing => write!(f, "; nothing complete had been written, no file was left"),
        }
    }
}

impl std::error::Error for WriteFailed {}

/// The writer failed (`cause`): make the target from the last checkpoint, with `meta` and
/// `partial=true`, or leave the partial file for `recover`, or nothing.
fn salvage(
    paths: &output::Paths,
    replace: bool,
    meta: &TraceMeta,
    cause: &anyhow::Error,
) -> WriteFailed {
    let kept = match output::read_checkpoint(paths) {
        Ok(Some(ck)) => {
            let mut m = meta.clone();
            m.set("partial", "true");
            m.set("rows", ck.rows.to_string());
            m.set("schema_version", SCHEMA_VERSION);
            m.set("error", format!("{cause:#}"));
            if m.get("stop_reason").is_none() {
                m.set("stop_reason", "write_error");
            }
            let kv = output::checkpoint_kv(&ck).map(|kv| {
                kv.into_iter()
                    .filter(|k| !k.key.starts_with(META_PREFIX))
                    .chain(meta_kv(&m))
                    .collect()
            });
            match kv.and_then(|kv| output::recover_to(paths, &paths.target, replace, Some(kv))) {
                Ok(Some(r)) => Kept::Recovered(r),
                Ok(None) => Kept::Nothing,
                Err(e) => Kept::Partial(paths.partial.clone(), format!("{e:#}")),
            }
        }
        Ok(None) => {
            paths.remove();
            Kept::Nothing
        }
        Err(e) => Kept::Partial(paths.partial.clone(), format!("{e:#}")),
    };
    let errno = cause
        .chain()
        .find_map(|c| c.downcast_ref::<WriterError>().and_then(|w| w.errno))
        .or_else(|| output::io_errno(cause));
    let text = match errno {
        // The system's words for it, once (not parquet's wrapping of them, twice).
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => {
            let t = format!("{cause:#}");
            let prefix = format!("writing {}: ", paths.target.display());
            t.strip_prefix(&prefix).map_or(t.clone(), str::to_string)
        }
    };
    WriteFailed {
        cause: text,
        errno,
        target: paths.target.clone(),
        kept,
    }
}

/// The writer thread stopped on an error: its text and errno, kept for every later call.
#[derive(Clone, Debug)]
pub struct WriterError {
    pub msg: String,
    pub errno: Option<i32>,
}

impl std::fmt::Display for WriterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for WriterError {}

impl WriterError {
    fn of(e: &anyhow::Error) -> WriterError {
        WriterError {
            msg: format!("{e:#}"),
            errno: output::io_errno(e),
        }
    }
}

/// Where the Parquet encoding runs: in the caller, or on a thread of its own.
enum Sink {
    Inline(Box<Encoder>),
    Thread {
        tx: std::sync::mpsc::Sender<Job>,
        handle: std::thread::JoinHandle<Result<Encoder>>,
        /// Bytes the thread's writer has produced (written + buffered), for progress.
        bytes: Arc<AtomicUsize>,
        /// Rows sent to the thread and not yet encoded, at most `cap` (more waits).
        budget: Arc<Budget>,
        cap: usize,
        /// Set to make the thread stop at once (an abandoned writer).
        abort: Arc<AtomicBool>,
        /// Strings of `StrTable` the thread has been sent (it keeps its own copy).
        strs_sent: usize,
    },
    /// The writer thread stopped on this error.
    Failed(WriterError),
    /// Finished or given up.
    Gone,
}

/// Streams events into a Parquet file. Row groups are written as they fill, so a long
/// recording does not grow in memory; `finish` writes the footer (with the final metadata)
/// and renames the file into place — `record` calls it on Ctrl-C and SIGTERM too. Until
/// then the rows go to `.NAME.napiscope-PID.partial` beside the target (see `output`): an
/// existing file at the path is untouched until the new one is complete.
///
/// Rows arrive as `Event`s (`push`) or, without a per-row allocation, as `Row`s whose
/// strings were interned by the writer (`push_row`). With `create_threaded`, building the
/// Arrow batch and the Parquet encoding run on a thread of its own, fed rows a batch at a
/// time through a queue of at most `WriterThread::queue_rows`: the producer (record's
/// ring-buffer drain) only appends to vectors, and waits only when the queue is full. That
/// thread flushes a row group and writes a checkpoint at least every
/// `WriterThread::checkpoint_every`, so a killed recorder's rows up to then are recoverable
/// (`output::recover_to`, `napiscope recover`).
pub struct TraceWriter {
    sink: Sink,
    strs: StrTable,
    cols: Columns,
    batch_rows: usize,
    rows: u64,
    paths: output::Paths,
    replace: bool,
    last_send: Instant,
}

impl TraceWriter {
    /// A writer that replaces what is at `path` when finished (by rename), without
    /// checkpoints: for traces made in one go (simulate, tests).
    pub fn create(path: &Path) -> Result<TraceWriter> {
        let enc = Encoder::create(path, true, None, TraceMeta::default())?;
        let paths = enc.paths.clone();
        Ok(TraceWriter {
            sink: Sink::Inline(Box::new(enc)),
            strs: StrTable::default(),
            cols: Columns::default(),
            batch_rows: WRITE_ROWS,
            rows: 0,
            paths,
            replace: true,
            last_send: Instant::now(),
        })
    }

    /// Like `create`, with the Parquet encoding on a writer thread, checkpoints, and the
    /// target refused if it exists unless `opts.replace` (see `WriterThread`).
    pub fn create_threaded(path: &Path, opts: WriterThread) -> Result<TraceWriter> {
        let mut enc = Encoder::create(
            path,
            opts.replace,
            opts.checkpoint_every,
            opts.checkpoint_meta,
        )?;
        let paths = enc.paths.clone();
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let bytes = Arc::new(AtomicUsize::new(0));
        let budget = Arc::new(Budget::default());
        let abort = Arc::new(AtomicBool::new(false));
        let (b, q, stop) = (bytes.clone(), budget.clone(), abort.clone());
        let on_start = opts.on_start;
        let target = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("napiscope-write".into())
            .spawn(move || {
                let _close = CloseOnDrop(q.clone());
                if let Some(f) = on_start {
                    f();
                }
                // The thread's copy of the string table, extended by each job.
                let mut strs: Vec<Box<str>> = Vec::new();
                let mut run = || -> Result<()> {
                    loop {
                        let job = match rx.recv_timeout(enc.until_due()) {
                            Ok(job) => job,
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                                enc.tick()?;
                                continue;
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
                        };
                        if stop.load(AtomicOrdering::Relaxed) {
                            bail!("the writer was abandoned");
                        }
                        match job {
                            Job::Meta(m) => enc.meta = m,
                            Job::Rows {
                                mut cols,
                                mut new_strs,
                            } => {
                                strs.append(&mut new_strs);
                                let rows = cols.rows;
                                let batch = cols.finish(&strs)?;
                                enc.write(&batch)?;
                                q.give(rows);
                                if let Some(w) = &enc.writer {
                                    b.store(
                                        w.bytes_written() + w.in_progress_size(),
                                        AtomicOrdering::Relaxed,
                                    );
                                }
                            }
                        }
                    }
                };
                run().with_context(|| format!("writing {target}"))?;
                Ok(enc)
            })?;
        Ok(TraceWriter {
            sink: Sink::Thread {
                tx,
                handle,
                bytes,
                budget,
                cap: opts.queue_rows.max(1),
                abort,
                strs_sent: 0,
            },
            strs: StrTable::default(),
            cols: Columns::default(),
            batch_rows: THREAD_BATCH_ROWS,
            rows: 0,
            paths,
            replace: opts.replace,
            last_send: Instant::now(),
        })
    }

    /// The partial file and checkpoint this writer writes before `finish`.
    pub fn paths(&self) -> &output::Paths {
        &self.paths
    }

    /// The id of a string, for `Row`'s string fields.
    pub fn intern(&mut self, s: &str) -> Sym {
        self.strs.intern(s)
    }

    /// The id of a NUL-terminated kernel name (comm, device name), by its raw bytes.
    #[inline]
    pub fn intern_bytes(&mut self, b: &[u8; COMM_LEN]) -> Sym {
        self.strs.intern_bytes(b)
    }

    pub fn push(&mut self, e: &Event) -> Result<()> {
        let mut r = Row::new(
            e.ts_ns,
            e.cpu,
            e.seq,
            e.event,
            e.ctx,
            self.strs.intern(&e.comm),
        );
        r.pid = e.pid;
        r.vec = e.vec;
        r.napi = e.napi;
        r.skb = e.skb;
        r.csd = e.csd;
        r.dev = e.dev.as_deref().map(|s| self.strs.intern(s));
        r.len = e.len;
        r.work = e.work;
        r.budget = e.budget;
        r.ret = e.ret;
        r.target_cpu = e.target_cpu;
        r.target_comm = e.target_comm.as_deref().map(|s| self.strs.intern(s));
        r.target_pid = e.target_pid;
        r.prev_state = e.prev_state.as_deref().map(|s| self.strs.intern(s));
        r.func = e.func.as_deref().map(|s| self.strs.intern(s));
        self.push_row(&r)
    }

    /// Append a row whose strings came from `intern` / `intern_bytes` of this writer.
    #[inline]
    pub fn push_row(&mut self, r: &Row) -> Result<()> {
        self.cols.push(r);
        self.rows += 1;
        if self.cols.rows >= self.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Call often (record: every poll): sends rows that waited `BATCH_AGE` to the writer
    /// thread, so a slow trickle of events is checkpointed too, and reports a writer thread
    /// that stopped on an error (a full disk) even when no rows come.
    pub fn tick(&mut self) -> Result<()> {
        if self.cols.rows > 0 && self.last_send.elapsed() >= BATCH_AGE {
            self.flush_batch()?;
        }
        match &mut self.sink {
            Sink::Inline(enc) => enc.tick(),
            Sink::Thread { handle, .. } if handle.is_finished() => Err(self.thread_failed().into()),
            Sink::Failed(e) => Err(e.clone().into()),
            _ => Ok(()),
        }
    }

    /// New metadata for the checkpoints' footers (e.g. once the probes are attached).
    pub fn set_checkpoint_meta(&mut self, meta: TraceMeta) {
        match &mut self.sink {
            Sink::Inline(enc) => enc.meta = meta,
            Sink::Thread { tx, .. } => {
                let _ = tx.send(Job::Meta(meta));
            }
            _ => {}
        }
    }

    /// The writer thread ended early: collect its error and keep it.
    fn thread_failed(&mut self) -> WriterError {
        let sink = std::mem::replace(&mut self.sink, Sink::Gone);
        let err = match sink {
            Sink::Thread { handle, .. } => match handle.join() {
                Ok(Err(e)) => WriterError::of(&e),
                Ok(Ok(_)) => WriterError {
                    msg: "the Parquet writer thread stopped".into(),
                    errno: None,
                },
                Err(_) => WriterError {
                    msg: "the Parquet writer thread panicked".into(),
                    errno: None,
                },
            },
            Sink::Failed(e) => e,
            _ => WriterError {
                msg: "the Parquet writer is gone".into(),
                errno: None,
            },
        };
        self.sink = Sink::Failed(err.clone());
        err
    }

    fn flush_batch(&mut self) -> Result<()> {
        self.last_send = Instant::now();
        if self.cols.rows == 0 {
            return Ok(());
        }
        match &mut self.sink {
            Sink::Inline(enc) => enc.write(&self.cols.finish(&self.strs.strs)?)?,
            Sink::Thread {
                tx,
                budget,
                cap,
                strs_sent,
                ..
            } => {
                // The rows go as they are (string ids, no Arrow arrays): building the batch is
                // the thread's work too, so the producer only appends to vectors.
                let rows = self.cols.rows;
                let job = Job::Rows {
                    cols: Box::new(std::mem::take(&mut self.cols)),
                    new_strs: self.strs.strs[*strs_sent..].to_vec(),
                };
                *strs_sent = self.strs.strs.len();
                if !budget.take(rows, *cap) || tx.send(job).is_err() {
                    // The thread stopped on an error: collect and report it.
                    return Err(self.thread_failed().into());
                }
            }
            Sink::Failed(e) => return Err(e.clone().into()),
            Sink::Gone => bail!("the Parquet writer is gone"),
        }
        Ok(())
    }

    /// Rows handed to the writer thread that it has not encoded yet (0 without a thread).
    pub fn queued_rows(&self) -> usize {
        match &self.sink {
            Sink::Thread { budget, .. } => budget.used(),
            _ => 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written so far plus the row group being built (an estimate of the file size).
    pub fn bytes_written(&self) -> usize {
        match &self.sink {
            Sink::Inline(enc) => enc
                .writer
                .as_ref()
                .map_or(0, |w| w.bytes_written() + w.in_progress_size()),
            Sink::Thread { bytes, .. } => bytes.load(AtomicOrdering::Relaxed),
            _ => 0,
        }
    }

    /// Stop the writer thread (after it encoded what it was sent, unless `abort`) and take
    /// its encoder back.
    fn stop(&mut self, abort: bool) -> Result<Option<Encoder>> {
        match std::mem::replace(&mut self.sink, Sink::Gone) {
            Sink::Inline(enc) => Ok(Some(*enc)),
            Sink::Thread {
                tx,
                handle,
                abort: a,
                ..
            } => {
                a.store(abort, AtomicOrdering::Relaxed);
                drop(tx);
                match handle.join() {
                    Ok(Ok(enc)) => Ok(Some(enc)),
                    Ok(Err(_)) if abort => Ok(None),
                    Ok(Err(e)) => Err(e),
                    Err(_) => bail!("the Parquet writer thread panicked"),
                }
            }
            Sink::Failed(e) => Err(e.into()),
            Sink::Gone => bail!("the Parquet writer is gone"),
        }
    }

    /// Write the remaining rows, the metadata and the footer, and rename the file into
    /// place. Returns the file size. On an error (a full disk) the error is a `WriteFailed`
    /// saying what was kept: the rows up to the last checkpoint as a partial trace at the
    /// target, or the partial file for `recover`.
    pub fn finish(mut self, meta: &TraceMeta) -> Result<u64> {
        let flushed = self.flush_batch();
        let mut meta = meta.clone();
        meta.set("schema_version", SCHEMA_VERSION);
        meta.set("rows", self.rows.to_string());
        let done = flushed.and_then(|_| {
            let mut enc = self
                .stop(false)?
                .ok_or_else(|| anyhow!("the Parquet writer is gone"))?;
            enc.finish(&meta)
        });
        done.map_err(|e| salvage(&self.paths, self.replace, &meta, &e).into())
    }

    /// Give up on the file after `cause` (a write error, or any error of the recording):
    /// the writer thread stops without encoding what waits, and the rows up to the last
    /// checkpoint become the target, marked partial, with `meta` (see `WriteFailed`).
    pub fn fail(mut self, meta: &TraceMeta, cause: &anyhow::Error) -> WriteFailed {
        drop(self.stop(true));
        salvage(&self.paths, self.replace, meta, cause)
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        // Unfinished: stop the thread at once; its encoder leaves a checkpointed partial
        // file for `recover` and removes one with nothing complete.
        if !matches!(self.sink, Sink::Gone | Sink::Failed(_)) {
            drop(self.stop(true));
        }
    }
}

pub fn write_trace(path: &Path, events: &[Event], meta: &TraceMeta) -> Result<u64> {
    let mut w = TraceWriter::create(path)?;
    for e in events {
        w.push(e)?;
    }
    w.finish(meta)
}

#[derive(Debug, Default)]
pub struct Trace {
    pub events: Vec<Event>,
    pub meta: TraceMeta,
}

/// Open a trace file and read its footer: the file, its Arrow/Parquet metadata (schema
/// checked) and napiscope's key/value metadata. Errors name the file and what is wrong.
fn open_trace(path: &Path) -> Result<(File, ArrowReaderMetadata, TraceMeta)> {
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
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, md)
        .with_batch_size(BATCH_ROWS)
        .build()?;
    let mut events = Vec::new();
    guarded(path, || {
        for batch in reader {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            decode_batch(&batch, &mut events)
                .with_context(|| format!("decoding {}", path.display()))?;
        }
        Ok(())
    })?;
    Ok(Trace { events, meta })
}

/// Run a read through parquet's Arrow reader, which panics on some damaged pages (its
/// delta decoder, parquet 55), and make such a panic an error naming the file. The panic
/// hook is silenced meanwhile: the user sees the error, not a crash report.
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
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

/// The columns the checker reads, in `Cols` order.
const CHECK_COLUMNS: [&str; 18] = [
    "ts_ns",
    "cpu",
    "seq",
    "event",
    "ctx",
    "comm",
    "pid",
    "vec",
    "napi",
    "skb",
    "work",
    "budget",
    "ret",
    "target_cpu",
    "dev",
    "target_comm",
    "prev_state",
    "func",
];

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

/// `read_columns` through Arrow arrays: any valid Parquet encoding.
fn read_columns_arrow(path: &Path, file: File, md: ArrowReaderMetadata) -> Result<Cols> {
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
    let roots: Vec<usize> = CHECK_COLUMNS
        .iter()
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
        columns_of_batch(&batch, &mut cols)
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

fn columns_of_batch(b: &RecordBatch, c: &mut Cols) -> Result<()> {
    c.ts.extend_from_slice(col::<UInt64Array>(b, "ts_ns")?.values());
    for (i, cpu) in col::<UInt32Array>(b, "cpu")?.values().iter().enumerate() {
        let Ok(cpu) = u16::try_from(*cpu) else {
            bail!(
                "row {i}: CPU {cpu} is beyond what the checker handles (CPU numbers up to 65535)"
            );
        };
        c.cpu.push(cpu);
    }
    c.seq
        .extend_from_slice(col::<UInt64Array>(b, "seq")?.values());
    c.pid
        .extend_from_slice(col::<Int32Array>(b, "pid")?.values());

    // event and ctx: the dictionary's names, decided once per batch.
    let ev = col::<Dict>(b, "event")?;
    let names = ev
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| anyhow!("column `event`: dictionary values are not strings"))?;
    let kinds: Vec<Option<EventKind>> = names
        .iter()
        .map(|v| v.and_then(EventKind::from_name))
        .collect();
    for (i, k) in ev.keys().iter().enumerate() {
        let kind = k.and_then(|k| kinds.get(k as usize).copied().flatten());
        let Some(kind) = kind else {
            let name = k.and_then(|k| names.iter().nth(k as usize).flatten());
            bail!("row {i}: unknown event `{}`", name.unwrap_or(""));
        };
        c.kind.push(kind);
    }
    let cx = col::<Dict>(b, "ctx")?;
    let names = cx
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| anyhow!("column `ctx`: dictionary values are not strings"))?;
    let ctxs: Vec<Option<Ctx>> = names.iter().map(|v| v.and_then(Ctx::from_name)).collect();
    for (i, k) in cx.keys().iter().enumerate() {
        let ctx = k.and_then(|k| ctxs.get(k as usize).copied().flatten());
        let Some(ctx) = ctx else {
            let name = k.and_then(|k| names.iter().nth(k as usize).flatten());
            bail!("row {i}: unknown ctx `{}`", name.unwrap_or(""));
        };
        c.ctx.push(ctx);
    }

    let empty = c.strs.intern("");
    dict_syms(
        col::<Dict>(b, "comm")?,
        &mut c.strs,
        empty,
        &mut c.comm,
        "comm",
    )?;
    sparse_syms(col::<Dict>(b, "dev")?, &mut c.strs, &mut c.dev, "dev")?;
    let tc = col::<Dict>(b, "target_comm")?;
    sparse_syms(tc, &mut c.strs, &mut c.target_comm, "target_comm")?;
    let ps = col::<Dict>(b, "prev_state")?;
    sparse_syms(ps, &mut c.strs, &mut c.prev_state, "prev_state")?;
    sparse_syms(col::<Dict>(b, "func")?, &mut c.strs, &mut c.func, "func")?;
    let vec = col::<UInt32Array>(b, "vec")?;
    for i in 0..vec.len() {
        let v = vec.is_valid(i).then(|| vec.value(i));
        let v = v.map(u8::try_from).transpose().map_err(|_| {
            anyhow!(
                "row {i}: softirq vector {} out of range (NR_SOFTIRQS is 10)",
                vec.value(i)
            )
        })?;
        c.vec.push(v);
    }
    sparse_nums(col::<UInt64Array>(b, "napi")?, &mut c.napi);
    sparse_nums(col::<UInt64Array>(b, "skb")?, &mut c.skb);
    sparse_nums(col::<Int32Array>(b, "work")?, &mut c.work);
    sparse_nums(col::<Int32Array>(b, "budget")?, &mut c.budget);
    sparse_nums(col::<Int32Array>(b, "ret")?, &mut c.ret);
    sparse_nums(col::<Int32Array>(b, "target_cpu")?, &mut c.target_cpu);
    Ok(())
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

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| anyhow!("column `{name}` missing or of the wrong type"))
}

fn opt<A: Array, T>(a: &A, i: usize, get: impl Fn(&A, usize) -> T) -> Option<T> {
    if a.is_null(i) {
        None
    } else {
        Some(get(a, i))
    }
}

fn decode_batch(b: &RecordBatch, out: &mut Vec<Event>) -> Result<()> {
    let ts = col::<UInt64Array>(b, "ts_ns")?;
    let cpu = col::<UInt32Array>(b, "cpu")?;
    let seq = col::<UInt64Array>(b, "seq")?;
    let event = col::<StringArray>(b, "event")?;
    let ctx = col::<StringArray>(b, "ctx")?;
    let comm = col::<StringArray>(b, "comm")?;
    let pid = col::<Int32Array>(b, "pid")?;
    let vec = col::<UInt32Array>(b, "vec")?;
    let napi = col::<UInt64Array>(b, "napi")?;
    let skb = col::<UInt64Array>(b, "skb")?;
    let csd = col::<UInt64Array>(b, "csd")?;
    let dev = col::<StringArray>(b, "dev")?;
    let len = col::<UInt32Array>(b, "len")?;
    let work = col::<Int32Array>(b, "work")?;
    let budget = col::<Int32Array>(b, "budget")?;
    let ret = col::<Int32Array>(b, "ret")?;
    let target_cpu = col::<Int32Array>(b, "target_cpu")?;
    let target_comm = col::<StringArray>(b, "target_comm")?;
    let target_pid = col::<Int32Array>(b, "target_pid")?;
    let prev_state = col::<StringArray>(b, "prev_state")?;
    let func = col::<StringArray>(b, "func")?;
    let s = |a: &StringArray, i: usize| a.value(i).to_string();
    for i in 0..b.num_rows() {
        let kind = EventKind::from_name(event.value(i))
            .ok_or_else(|| anyhow!("row {i}: unknown event `{}`", event.value(i)))?;
        let c = Ctx::from_name(ctx.value(i))
            .ok_or_else(|| anyhow!("row {i}: unknown ctx `{}`", ctx.value(i)))?;
        out.push(Event {
            ts_ns: ts.value(i),
            cpu: cpu.value(i),
            seq: seq.value(i),
            event: kind,
            ctx: c,
            comm: comm.value(i).to_string(),
            pid: pid.value(i),
            vec: opt(vec, i, UInt32Array::value),
            napi: opt(napi, i, UInt64Array::value),
            skb: opt(skb, i, UInt64Array::value),
            csd: opt(csd, i, UInt64Array::value),
            dev: opt(dev, i, s),
            len: opt(len, i, UInt32Array::value),
            work: opt(work, i, Int32Array::value),
            budget: opt(budget, i, Int32Array::value),
            ret: opt(ret, i, Int32Array::value),
            target_cpu: opt(target_cpu, i, Int32Array::value),
            target_comm: opt(target_comm, i, s),
            target_pid: opt(target_pid, i, Int32Array::value),
            prev_state: opt(prev_state, i, s),
            func: opt(func, i, s),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        let mut a = Event::new(1_000, 0, 0, EventKind::NetifRx);
        a.comm = "sender".into();
        a.pid = 42;
        a.skb = Some(0xdead);
        a.dev = Some("veth1".into());
        a.len = Some(64);
        let mut b = Event::new(2_000, 1, 0, EventKind::NapiPoll);
        b.ctx = Ctx::Softirq;
        b.napi = Some(7);
        b.dev = Some("(no_device)".into());
        b.work = Some(1);
        b.budget = Some(64);
        let mut c = Event::new(1_500, 0, 1, EventKind::CsdQueueCpu);
        c.target_cpu = Some(1);
        c.func = Some("rps_trigger_softirq".into());
        c.csd = Some(9);
        let mut d = Event::new(3_000, 1, 1, EventKind::SchedSwitch);
        d.target_comm = Some("ksoftirqd/1".into());
        d.target_pid = Some(20);
        d.prev_state = Some("R+".into());
        vec![a, b, c, d]
    }

    #[test]
    fn round_trip_keeps_every_field_and_metadata() {
        let dir = std::env::temp_dir().join(format!("napiscope-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let mut meta = TraceMeta::default();
        meta.set("kernel_release", "6.18.0");
        meta.set("lost_per_cpu", "[0,3]");
        write_trace(&path, &sample(), &meta).unwrap();
        let t = read_trace(&path).unwrap();
        assert_eq!(t.events, sample());
        assert_eq!(t.meta.get("kernel_release"), Some("6.18.0"));
        assert_eq!(t.meta.get("schema_version"), Some(SCHEMA_VERSION));
        assert_eq!(t.meta.get("rows"), Some("4"));
        assert_eq!(t.meta.lost_per_cpu(), vec![0, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = std::env::temp_dir().join(format!("napiscope-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.parquet");
        std::fs::write(&empty, b"").unwrap();
        let e = read_trace(&empty).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");

        let good = dir.join("good.parquet");
        write_trace(&good, &sample(), &TraceMeta::default()).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let trunc = dir.join("trunc.parquet");
        std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
        let e = format!("{:#}", read_trace(&trunc).unwrap_err());
        assert!(e.contains("not a readable Parquet file"), "{e}");

        // A valid Parquet file of another schema.
        let other = dir.join("other.parquet");
        let s = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch =
            RecordBatch::try_new(s.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&other).unwrap(), s, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let e = read_trace(&other).unwrap_err().to_string();
        assert!(e.contains("column `ts_ns` is missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numbers_too_large_for_the_checker_are_refused_not_cut() {
        let dir = std::env::temp_dir().join(format!("napiscope-wide-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, want) in [("cpu", "CPU 70000"), ("vec", "softirq vector 300")] {
            let mut events = sample();
            match name {
                "cpu" => events[1].cpu = 70_000,
                _ => events[1].vec = Some(300),
            }
            let path = dir.join(format!("{name}.parquet"));
            write_trace(&path, &events, &TraceMeta::default()).unwrap();
            let e = format!("{:#}", read_columns(&path).unwrap_err());
            assert!(e.contains(want), "{name}: {e}");
        }
        // At the edge: read, and kept.
        let mut events = sample();
        events[1].cpu = 65_535;
        events[1].vec = Some(255);
        let path = dir.join("edge.parquet");
        write_trace(&path, &events, &TraceMeta::default()).unwrap();
        let (c, _) = read_columns(&path).unwrap();
        assert!(c.cpu.contains(&65_535));
        assert_eq!(c.vec.values(), [255]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every column of two `Cols`, strings compared as text (ids may differ).
    fn assert_same_cols(a: &Cols, b: &Cols) {
        assert_eq!(a.len(), b.len());
        macro_rules! same {
            ($($f:ident)*) => { $(assert_eq!(a.$f, b.$f, "column {}", stringify!($f));)* };
        }
        same!(ts cpu kind ctx pid vec napi skb work budget ret target_cpu);
        // seq as kept, or as the reader scanned it.
        let seq = |c: &Cols| {
            (c.seq_facts.clone())
                .unwrap_or_else(|| crate::check::seqscan::scan(&c.ts, &c.cpu, &c.seq))
        };
        assert_eq!(seq(a), seq(b));
        let comm = |c: &Cols| -> Vec<String> {
            c.comm.iter().map(|s| c.strs.get(*s).to_string()).collect()
        };
        assert_eq!(comm(a), comm(b));
        let text = |c: &Cols, v: &Sparse<Sym>| -> Vec<Option<String>> {
            (0..c.len())
                .map(|i| v.get(i).map(|s| c.strs.get(s).to_string()))
                .collect()
        };
        assert_eq!(text(a, &a.dev), text(b, &b.dev));
        assert_eq!(text(a, &a.target_comm), text(b, &b.target_comm));
        assert_eq!(text(a, &a.prev_state), text(b, &b.prev_state));
        assert_eq!(text(a, &a.func), text(b, &b.func));
    }

    fn sim_events(packets: usize) -> (Vec<Event>, TraceMeta) {
        use crate::model::sim::{simulate, SimOpts, Workload};
        let mut o = SimOpts::new(crate::mode::Mode::C, 3, Workload::Mixed);
        o.packets = packets;
        let s = simulate(&o);
        (s.events, s.meta)
    }

    /// The file rewritten with other writer settings, as another Parquet writer might.
    fn rewrite(from: &Path, to: &Path, props: WriterProperties) {
        let r = ParquetRecordBatchReaderBuilder::try_new(File::open(from).unwrap())
            .unwrap()
            .with_batch_size(1000)
            .build()
            .unwrap();
        let mut w = ArrowWriter::try_new(File::create(to).unwrap(), schema(), Some(props)).unwrap();
        for b in r {
            w.write(&b.unwrap()).unwrap();
        }
        w.close().unwrap();
    }

    #[test]
    fn direct_pages_read_what_the_arrow_reader_reads() {
        let dir = std::env::temp_dir().join(format!("napiscope-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut events, meta) = sim_events(3000);
        // Rows the simulator does not make: nulls in unusual places, a string that is
        // no thread name, every nullable column filled.
        let mut e = Event::new(
            events.last().unwrap().ts_ns + 1,
            2,
            999_999,
            EventKind::NapiPoll,
        );
        e.comm = "backlog_napi/x".into();
        (e.vec, e.napi, e.skb, e.csd, e.len) = (Some(3), Some(u64::MAX), Some(1), Some(2), Some(7));
        (e.work, e.budget, e.ret, e.target_cpu) = (Some(-1), Some(64), Some(i32::MIN), Some(5));
        e.dev = Some("".into());
        (e.target_comm, e.prev_state, e.func) =
            (Some("a".into()), Some("S".into()), Some("f".into()));
        events.push(e);
        let path = dir.join("t.parquet");
        write_trace(&path, &events, &meta).unwrap();
        let arrow = |p: &Path| {
            let (file, md, _) = open_trace(p).unwrap();
            read_columns_arrow(p, file, md).unwrap()
        };
        let direct = |p: &Path| direct::read(File::open(p).unwrap());
        let want = arrow(&path);
        assert_same_cols(&direct(&path).unwrap(), &want);
        assert_same_cols(&read_columns(&path).unwrap().0, &want);

        // Other writers' choices the direct reader knows: no dictionaries (PLAIN pages),
        // data pages v2, tiny pages and row groups, no compression, delta-coded integers.
        let other = dir.join("other.parquet");
        let mut props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_encoding(Encoding::PLAIN)
            .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_2_0)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .set_max_row_group_size(1234);
        for c in ["pid", "work", "target_cpu", "skb"] {
            props = props.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        rewrite(&path, &other, props.build());
        assert_same_cols(&direct(&other).unwrap(), &want);

        // One it does not (strings delta-coded): read_columns falls back to Arrow.
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_column_encoding(ColumnPath::from("comm"), Encoding::DELTA_BYTE_ARRAY)
            .build();
        rewrite(&path, &other, props);
        assert!(direct(&other).is_err());
        assert_same_cols(&read_columns(&other).unwrap().0, &want);

        // In time order, the reader scans seq instead of keeping it; out of order (two rows
        // swapped), it keeps it for the index to sort by, as the Arrow reader does.
        let got = direct(&path).unwrap();
        assert!(got.seq.is_empty() && got.seq_facts.as_ref().is_some_and(|f| f.complete()));
        events.swap(10, 11);
        write_trace(&path, &events, &meta).unwrap();
        let got = direct(&path).unwrap();
        assert_eq!(
            (got.seq_facts.is_none(), &got.seq),
            (true, &arrow(&path).seq)
        );
        assert_same_cols(&got, &arrow(&path));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_pages_give_errors_not_panics() {
        // Bytes overwritten inside the column data (the footer intact): the direct reader
        // gives up, read_columns then leaves the file to the Arrow reader, whose delta
        // decoder (parquet 55) panics on some of these; that panic becomes an error.
        let dir = std::env::temp_dir().join(format!("napiscope-dmg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (events, meta) = sim_events(300);
        let good = dir.join("good.parquet");
        write_trace(&good, &events, &meta).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let bad = dir.join("bad.parquet");
        let mut damaged = 0;
        for k in 1..40 {
            let mut b = bytes.clone();
            let at = 4 + (b.len() / 2) * k / 40;
            for x in &mut b[at..at + 6] {
                *x ^= 0xa5;
            }
            std::fs::write(&bad, &b).unwrap();
            // Whatever it accepts has every column's rows and every sparse column's values
            // (the rules index them without checks).
            if let Ok(c) = direct::read(File::open(&bad).unwrap()) {
                assert!(c.consistent(), "damage at {at}");
            }
            // Both public readers: an error or the rows, never a panic (parquet's Arrow
            // reader panics on some of these; `guarded` turns that into an error).
            for r in [
                std::panic::catch_unwind(|| read_columns(&bad).map(|_| ())),
                std::panic::catch_unwind(|| read_trace(&bad).map(|_| ())),
            ] {
                let r = r.unwrap_or_else(|_| panic!("a reader panicked on damage at {at}"));
                if let Err(e) = r {
                    assert!(format!("{e:#}").contains("bad.parquet"), "{e:#}");
                    damaged += 1;
                }
            }
        }
        // Most of these damage a page (some only bytes no reader checks).
        assert!(damaged > 10, "{damaged}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
