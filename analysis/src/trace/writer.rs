//! `TraceWriter`: rows in, a Parquet trace out — encoded inline or on a writer thread fed
//! a batch at a time, checkpointed as it goes, finished by a rename into place.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering},
        mpsc::{Receiver, RecvTimeoutError},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use probe_common::COMM_LEN;

use super::{
    cols::Sym,
    encoder::Encoder,
    event::Event,
    failure::{salvage, WriteFailed, WriterError},
    output,
    row::{Columns, Row, StrTable},
    TraceMeta, SCHEMA_VERSION, THREAD_BATCH_ROWS, WRITE_ROWS,
};

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
        let shared = Shared {
            bytes: bytes.clone(),
            budget: budget.clone(),
            abort: abort.clone(),
        };
        let on_start = opts.on_start;
        let target = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("napiscope-write".into())
            .spawn(move || {
                let _close = CloseOnDrop(shared.budget.clone());
                if let Some(f) = on_start {
                    f();
                }
                encode_jobs(&mut enc, &rx, &shared).with_context(|| format!("writing {target}"))?;
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
        let r = Row::of_event(e, &mut self.strs);
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

/// What the writer thread shares with its `TraceWriter`.
struct Shared {
    /// Bytes the thread's writer has produced (written + buffered), for progress.
    bytes: Arc<AtomicUsize>,
    /// Rows sent to the thread and not yet encoded.
    budget: Arc<Budget>,
    /// Set to make the thread stop at once (an abandoned writer).
    abort: Arc<AtomicBool>,
}

/// The writer thread's loop: encode each job's rows as it comes, checkpoint when one is due
/// (also when no rows come), until the `TraceWriter` hangs up.
fn encode_jobs(enc: &mut Encoder, rx: &Receiver<Job>, shared: &Shared) -> Result<()> {
    // The thread's copy of the string table, extended by each job.
    let mut strs: Vec<Box<str>> = Vec::new();
    loop {
        let job = match rx.recv_timeout(enc.until_due()) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                enc.tick()?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        if shared.abort.load(AtomicOrdering::Relaxed) {
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
                shared.budget.give(rows);
                if let Some(w) = &enc.writer {
                    shared.bytes.store(
                        w.bytes_written() + w.in_progress_size(),
                        AtomicOrdering::Relaxed,
                    );
                }
            }
        }
    }
}
