//! The recording engine behind `record` (and `verify`'s recordings): kernel events →
//! Parquet, with a live progress line, per-CPU losses and the kernel's counters held against
//! the events. `run` goes through the phases in order: `open` (rights, output file, probes),
//! `Live::poll` (until a stop), `Live::stop` (detach, drain), `Live::finish` (metadata,
//! file, summary).

pub mod background;
mod finish;
mod summary;
mod tally;

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use analysis::{kcounters, trace::output, TraceMeta, TraceWriter};
use anyhow::Result;
use aya::maps::{MapData, PerCpuArray};
use probe_common::{CpuState, Settings};

use crate::{
    cli::{tracing_env, CliError},
    kernel::{
        decode::Decoder,
        env::Environment,
        probes::{self, build_settings},
        ring::RingReader,
        symbols::Symbols,
        system,
    },
    output::fmt_counts,
    signals,
};
use background::Background;
use summary::lost_per_cpu;
pub(crate) use summary::process_cpu;
pub use summary::RecordSummary;
#[cfg(test)]
pub(crate) use tally::ingest;
pub(crate) use tally::Tally;

pub struct RecordOpts {
    pub output: PathBuf,
    pub duration: Option<Duration>,
    pub cpus: Option<Vec<u32>>,
    pub ring_buffer_mb: u32,
    pub raw_pointers: bool,
    pub all_softirqs: bool,
    /// Classic tracepoints only, no raw ones (`--classic-tracepoints`).
    pub classic_tracepoints: bool,
    pub quiet: bool,
    /// Memory (MiB) for decoded events waiting for the Parquet encoder; while it has room the
    /// encoder runs only on idle CPU time (`background`). 0: encode at normal priority.
    pub encode_buffer_mb: u64,
    /// Replace an existing output file (or symbolic link) when the recording is complete.
    pub force: bool,
    /// Embedding (verify): stop when this turns true, signal readiness once probes are
    /// attached, and add this metadata at the end.
    pub control: Option<Control>,
}

#[derive(Clone)]
pub struct Control {
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub ready: std::sync::mpsc::Sender<()>,
    pub extra_meta: std::sync::Arc<std::sync::Mutex<TraceMeta>>,
}

pub fn run(opts: RecordOpts) -> Result<RecordSummary> {
    let (env, tracefs) = tracing_env()?;
    if !env.kernel.btf {
        eprintln!(
            "napiscope: note: no BTF at /sys/kernel/btf/vmlinux; the receive-path and \
             scheduler probes use classic tracepoints (they cost more per event)"
        );
    }
    let ring_bytes = opts.ring_buffer_mb * 1024 * 1024;
    let mut settings = build_settings(opts.cpus.as_deref(), opts.all_softirqs);
    let ring_sizes = probes::ring_sizes(ring_bytes, system::possible_cpus());
    settings.wakeup_bytes = ring_sizes[0] / 8;
    let start_meta = start_meta(&env, &opts, ring_bytes);
    for p in output::leftovers(&opts.output) {
        eprintln!(
            "napiscope: note: an interrupted recording of {} is at {}: `napiscope recover {}` \
             makes a trace of it",
            opts.output.display(),
            p.partial.display(),
            p.partial.display()
        );
    }
    let mut live = open(
        &opts, &env, &tracefs, &settings, ring_bytes, ring_sizes, start_meta,
    )?;
    if opts.control.is_none() {
        signals::install_handlers();
    }
    if let Some(c) = &opts.control {
        let _ = c.ready.send(());
    }
    let cpu0 = process_cpu();
    let start = Instant::now();
    live.started()?;
    let mut summary = RecordSummary::default();
    let stop_reason = live.poll(&opts, start, &mut summary);
    let elapsed = start.elapsed().as_secs_f64();
    let stopped = live.stop();
    let stop_reason = if live.failure.is_some() {
        "write_error"
    } else {
        stop_reason
    };
    if std::io::stderr().is_terminal() && !opts.quiet {
        eprintln!();
    }
    live.finish(&opts, stopped, stop_reason, elapsed, cpu0, summary)
}

/// What is known from the start; it goes into every checkpoint's footer too.
fn start_meta(env: &Environment, opts: &RecordOpts, ring_bytes: u32) -> TraceMeta {
    let mut start_meta: TraceMeta = env.trace_meta();
    start_meta.set("source", "record");
    start_meta.set("clock", "CLOCK_MONOTONIC (bpf_ktime_get_ns)");
    start_meta.set("pointers", if opts.raw_pointers { "raw" } else { "hashed" });
    start_meta.set("ring_buffer_bytes", ring_bytes.to_string());
    // The NAPI instances now; the end of the recording adds those that came since.
    let napis: Vec<_> = crate::kernel::napi_info::gather().0.into_values().collect();
    start_meta.set(
        analysis::trace::NAPI_INSTANCES_KEY,
        serde_json::to_string(&napis).unwrap_or_default(),
    );
    start_meta.set(
        "cpu_filter",
        opts.cpus
            .as_ref()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|| "all".into()),
    );
    start_meta
}

/// What a recording holds while it runs.
struct Live {
    /// The attached programs (`None` once `stop` detached them).
    loaded: Option<probes::Loaded>,
    probe_results: Vec<probes::ProbeResult>,
    rings: Vec<RingReader>,
    pfds: Vec<libc::pollfd>,
    state: PerCpuArray<MapData, CpuState>,
    ncpu: usize,
    decoder: Decoder,
    writer: TraceWriter,
    background: Option<Background>,
    start_meta: TraceMeta,
    tally: Tally,
    /// The kernel's counters once every probe is attached.
    counters_start: Option<kcounters::Snapshot>,
    /// An error while recording (a full disk): stop at once, keep what was checkpointed.
    failure: Option<anyhow::Error>,
}

/// Create the output, then load and attach the probes and open their rings.
fn open(
    opts: &RecordOpts,
    env: &Environment,
    tracefs: &Path,
    settings: &Settings,
    ring_bytes: u32,
    ring_sizes: [u32; probe_common::RINGS],
    start_meta: TraceMeta,
) -> Result<Live> {
    // Create the output before loading anything, so a bad path, an existing file or a link
    // fails fast and clearly.
    let (mut writer_opts, background) = Background::new(opts.encode_buffer_mb);
    writer_opts.replace = opts.force;
    writer_opts.checkpoint_meta = start_meta.clone();
    let writer = TraceWriter::create_threaded(&opts.output, writer_opts)
        .map_err(|e| CliError::usage(format!("{e:#}")))?;
    let symbols = Symbols::load();
    if symbols.is_empty() {
        eprintln!(
            "napiscope: note: /proc/kallsyms gives no addresses; `func` will hold raw addresses"
        );
    }
    let mut loaded = probes::load(
        tracefs,
        settings,
        ring_bytes,
        &symbols,
        !opts.classic_tracepoints,
    )?;
    let decoder = Decoder::new(symbols, opts.raw_pointers);
    if !opts.quiet {
        print_attached(env, &loaded);
    }
    if loaded.attached_events() == 0 {
        anyhow::bail!("no event probe could attach; see `napiscope status`");
    }
    let probe_results = loaded.results.clone();
    let rings = loaded
        .take_rings()?
        .into_iter()
        .zip(ring_sizes)
        .map(|(r, size)| RingReader::new(r, size as usize))
        .collect::<Result<Vec<_>>>()?;
    let state = loaded.take_state()?;
    let pfds: Vec<libc::pollfd> = rings
        .iter()
        .map(|r| libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    Ok(Live {
        loaded: Some(loaded),
        probe_results,
        rings,
        pfds,
        state,
        ncpu: env.kernel.cpus_possible as usize,
        decoder,
        writer,
        background,
        start_meta,
        tally: Tally::default(),
        counters_start: None,
        failure: None,
    })
}

fn print_attached(env: &Environment, loaded: &probes::Loaded) {
    eprintln!(
        "napiscope: mode {} — {} of {} event probes attached",
        env.mode.mode.as_str(),
        loaded.attached_events(),
        probes::SPECS
            .iter()
            .filter(|s| s.role == probes::Role::Event)
            .count()
    );
    for line in probes::not_attached_lines(&loaded.results) {
        eprintln!("napiscope:   {line}");
    }
}

/// What `Live::stop` read while the probes were still attached.
struct Stopped {
    counters_end: Option<kcounters::Snapshot>,
    misses: std::collections::BTreeMap<String, u64>,
}

impl Live {
    /// The recording starts: its start time and probes go into the checkpoints' metadata,
    /// and the kernel's counters are read — the window a complete recording accounts for
    /// event by event.
    fn started(&mut self) -> Result<()> {
        let start_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.start_meta
            .set("start_unix_ns", start_wall.as_nanos().to_string());
        self.start_meta
            .set("probes", serde_json::to_string(&self.probe_results)?);
        self.writer.set_checkpoint_meta(self.start_meta.clone());
        self.tally.rps_func = Some(self.writer.intern(analysis::event::RPS_IPI_FUNC));
        self.counters_start = match crate::kernel::counters::snapshot() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("napiscope: note: no kernel-counter cross-check: {e:#}");
                None
            }
        };
        if let Some(s) = &self.counters_start {
            self.tally.edge = Some(kcounters::EdgeCounter::new(s));
        }
        Ok(())
    }

    /// Drain the rings into the file until a signal, the duration, `control` or a write
    /// error stops it; returns why it stopped.
    fn poll(
        &mut self,
        opts: &RecordOpts,
        start: Instant,
        summary: &mut RecordSummary,
    ) -> &'static str {
        let mut last_tick = Instant::now();
        let mut last_rows = 0u64;
        let tty = std::io::stderr().is_terminal();
        loop {
            let sig = signals::caught();
            if sig != 0 {
                break if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
            if opts.duration.is_some_and(|d| start.elapsed() >= d) {
                break "duration";
            }
            if opts
                .control
                .as_ref()
                .is_some_and(|c| c.stop.load(Ordering::SeqCst))
            {
                break "stopped";
            }
            // SAFETY: valid pollfds; EINTR (a signal) just ends the wait.
            unsafe { libc::poll(self.pfds.as_mut_ptr(), self.pfds.len() as libc::nfds_t, 20) };
            for ring in &mut self.rings {
                if let Err(e) =
                    tally::drain(ring, &mut self.decoder, &mut self.writer, &mut self.tally)
                {
                    self.failure = Some(e);
                    break;
                }
            }
            if self.failure.is_none() {
                self.failure = self.writer.tick().err();
            }
            if self.failure.is_some() {
                break "write_error";
            }
            let queued = self.writer.queued_rows();
            summary.max_queued_events = summary.max_queued_events.max(queued as u64);
            if let Some(bg) = &mut self.background {
                bg.regulate(queued);
            }
            if last_tick.elapsed() >= Duration::from_secs(1) && !opts.quiet {
                let rate =
                    (self.writer.rows() - last_rows) as f64 / last_tick.elapsed().as_secs_f64();
                last_rows = self.writer.rows();
                last_tick = Instant::now();
                self.progress(start, rate, queued, tty);
            }
        }
    }

    /// The progress line, once a second.
    fn progress(&self, start: Instant, rate: f64, queued: usize, tty: bool) {
        let lost = lost_per_cpu(&self.state, self.ncpu);
        let mut line = format!(
            "recording {:>5.1}s  {:>9.0} ev/s  {:>10} events  {:>8.1} MB  lost: {}",
            start.elapsed().as_secs_f64(),
            rate,
            self.writer.rows(),
            self.writer.bytes_written() as f64 / 1e6,
            fmt_counts(lost.iter().enumerate(), "cpu")
        );
        if queued > 0 {
            line += &format!("  to encode: {queued}");
        }
        if tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }

    /// The end snapshot while every probe is still attached (events that reach the ring
    /// after it are placed by their time), then detach and drain what is already in the
    /// rings.
    fn stop(&mut self) -> Stopped {
        if let Some(edge) = &mut self.tally.edge {
            edge.end_taken();
        }
        let counters_end = self
            .counters_start
            .as_ref()
            .and_then(|_| crate::kernel::counters::snapshot().ok());
        let misses = self
            .loaded
            .as_ref()
            .map(|l| l.recursion_misses())
            .unwrap_or_default();
        // Detach first so no new events arrive, then drain what is already in the ring.
        // (Closing the perf links takes a moment per probe; it is not recording time.)
        drop(self.loaded.take());
        // `drain` takes a bounded bite per call: repeat until the rings are empty.
        if self.failure.is_none() {
            'rings: for ring in &mut self.rings {
                loop {
                    match tally::drain(ring, &mut self.decoder, &mut self.writer, &mut self.tally) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            self.failure = Some(e);
                            break 'rings;
                        }
                    }
                }
            }
        }
        Stopped {
            counters_end,
            misses,
        }
    }
}
