//! `napiscope record`: kernel events → Parquet, with a live progress line and per-CPU losses.

pub mod background;

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use analysis::{trace::output, TraceMeta, TraceWriter};
use anyhow::{Context as _, Result};
use probe_common::{CpuState, Settings};

use crate::{
    cmd::status,
    kernel::{decode::Decoder, probes, ring::RingReader, symbols::Symbols},
    CliError,
};
use background::Background;

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

static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    STOP_SIGNAL.store(0, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// A flag that turns true on SIGINT/SIGTERM (for loops that are not `record`'s).
pub fn stop_flag_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    install_signal_handlers();
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if STOP_SIGNAL.load(Ordering::SeqCst) != 0 {
            f.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    flag
}

#[derive(Default, serde::Serialize)]
pub struct RecordSummary {
    pub output: String,
    pub events: u64,
    pub bytes: u64,
    pub bytes_per_event: f64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub lost_per_cpu: Vec<u64>,
    pub lost_total: u64,
    pub seq_gaps_per_cpu: Vec<u64>,
    pub stop_reason: String,
    pub per_event: BTreeMap<String, u64>,
    pub per_cpu: BTreeMap<u32, u64>,
    /// Where received packets were processed (from reading the file back), when small enough.
    pub paths: Option<BTreeMap<String, u64>>,
    pub rps_hops: Option<u64>,
    /// Events skipped by the kernel's recursion protection, per event ("ctx" for the
    /// context trackers).
    pub missed_by_event: BTreeMap<String, u64>,
    /// CPU seconds the recorder itself spent (all its threads) from the start of recording
    /// to the finished file — not loading, not the read-back: the cost per event of tracing.
    pub recording_user_s: f64,
    pub recording_sys_s: f64,
    /// Most events waiting for the encoder at once, and how long finishing the file took
    /// after the recording stopped (the encoder catching up with a saturated machine).
    pub max_queued_events: u64,
    pub encode_after_stop_s: f64,
    /// False when the kernel refused to run the encoder as SCHED_IDLE.
    pub encoder_idle: bool,
    /// "complete", "incomplete" or "unknown": the events held against the kernel's own
    /// per-CPU counters (and the recording's known losses).
    pub completeness: String,
    /// Per CPU and counter: the kernel's count, the events, and what is short.
    pub kernel_counters: Option<analysis::kcounters::KernelCheck>,
    /// Per CPU: windows in which the kernel ran none of napiscope's programs.
    pub blind: Vec<analysis::kcounters::Blind>,
}

impl RecordSummary {
    pub fn incomplete(&self) -> bool {
        self.completeness == "incomplete"
    }
}

/// User and system CPU seconds of this process so far (all threads).
fn process_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// Map program recursion misses to event names (context trackers count as "ctx").
fn missed_by_event(
    results: &[probes::ProbeResult],
    misses: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in results.iter().filter(|r| r.attached) {
        let Some(p) = r.program else { continue };
        if !seen.insert(p) {
            continue; // one program on several tracepoints: count it once
        }
        let n = misses.get(p).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let key = match r.role {
            probes::Role::Context => "ctx".to_string(),
            _ if r.name == "rps_trigger_softirq" => "csd_function_entry".to_string(),
            probes::Role::Event => r.name.split(':').nth(1).unwrap_or(&r.name).to_string(),
        };
        *out.entry(key).or_default() += n;
    }
    out
}

/// Read the finished file back: proves it is readable, and tells where packets went. The
/// checker's column reader, not an `Event` per row: 2M events take ~0.5 s, not ~2.5 s.
fn read_back(summary: &mut RecordSummary, path: &std::path::Path) -> Result<()> {
    if summary.events > 2_000_000 {
        return Ok(()); // use `napiscope report` for big files; keep record's memory flat
    }
    let (cols, _) = analysis::trace::read_columns(path).context("reading the recording back")?;
    let (paths, hops) = analysis::paths::summary_of_cols(&cols);
    summary.paths = Some(paths.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    summary.rps_hops = Some(hops as u64);
    Ok(())
}

/// Tracks per-CPU sequence numbers as rows arrive; a gap is a lost event. Each event has its
/// own number, but a nested event (an IRQ inside a program) can reach the ring before the
/// one it interrupted: a number below the highest seen fills a gap counted earlier.
#[derive(Default)]
pub struct SeqTracker {
    /// Per CPU: highest seq seen + 1 (0 = nothing seen yet).
    next: Vec<u64>,
    gaps: Vec<u64>,
}

impl SeqTracker {
    #[inline]
    pub fn see(&mut self, cpu: u32, seq: u64) {
        let c = cpu as usize;
        if c >= self.next.len() {
            self.next.resize(c + 1, 0);
            self.gaps.resize(c + 1, 0);
        }
        let next = self.next[c];
        if next == 0 || seq >= next {
            if next > 0 {
                self.gaps[c] += seq - next;
            }
            self.next[c] = seq + 1;
        } else {
            self.gaps[c] = self.gaps[c].saturating_sub(1);
        }
    }
    pub fn gaps(&self, ncpu: usize) -> Vec<u64> {
        (0..ncpu)
            .map(|c| self.gaps.get(c).copied().unwrap_or(0))
            .collect()
    }
}

/// What `record` counts per event while it writes: per kind, per CPU, sequence gaps, and
/// records it could not decode.
#[derive(Default)]
pub struct Tally {
    /// By kind code (1..=ALL.len()).
    per_kind: [u64; analysis::EventKind::ALL.len() + 1],
    per_cpu: Vec<u64>,
    pub seqs: SeqTracker,
    pub bad: u64,
    /// Events that count one for one with a kernel counter, into the snapshots' windows.
    pub edge: Option<analysis::kcounters::EdgeCounter>,
    /// The interned `rps_trigger_softirq`, which csd_function_entry rows name.
    pub rps_func: Option<analysis::trace::Sym>,
}

impl Tally {
    #[inline]
    fn see_row(&mut self, r: &analysis::trace::Row) {
        self.see(r.event, r.cpu, r.seq);
        if let Some(edge) = &mut self.edge {
            // The row's func is an interned id: only the RPS IPI's name matters to the table.
            let rps = r.func.is_some() && r.func == self.rps_func;
            let func = rps.then_some(analysis::event::RPS_IPI_FUNC);
            if let Some(c) = analysis::kcounters::counter_of(r.event, r.vec, func) {
                edge.see(r.cpu, c, r.ts_ns);
            }
        }
    }

    #[inline]
    fn see(&mut self, kind: analysis::EventKind, cpu: u32, seq: u64) {
        self.per_kind[kind as usize] += 1;
        let c = cpu as usize;
        if c >= self.per_cpu.len() {
            self.per_cpu.resize(c + 1, 0);
        }
        self.per_cpu[c] += 1;
        self.seqs.see(cpu, seq);
    }

    fn into_summary(self, summary: &mut RecordSummary) {
        for k in analysis::EventKind::ALL {
            let n = self.per_kind[k as usize];
            if n > 0 {
                summary.per_event.insert(k.name().to_string(), n);
            }
        }
        for (cpu, n) in self.per_cpu.iter().enumerate() {
            if *n > 0 {
                summary.per_cpu.insert(cpu as u32, *n);
            }
        }
    }
}

/// Decode one ring-buffer item and append it to the file. A record that is not one of ours
/// is counted, never fatal; a CPU number beyond any kernel's is such a record.
#[inline]
fn ingest(
    item: &[u8],
    decoder: &mut Decoder,
    writer: &mut TraceWriter,
    tally: &mut Tally,
) -> Result<()> {
    let row = match Decoder::raw(item).and_then(|r| decoder.row(&r, writer)) {
        Ok(r) if (r.cpu as usize) < probe_common::MAX_CPUS => r,
        _ => {
            tally.bad += 1;
            return Ok(());
        }
    };
    tally.see_row(&row);
    writer.push_row(&row)
}

pub fn build_settings(cpus: Option<&[u32]>, all_softirqs: bool) -> Settings {
    let mut s = Settings::default();
    if let Some(cpus) = cpus {
        s.cpu_mask = [0; 16];
        for c in cpus {
            s.cpu_mask[*c as usize / 64] |= 1 << (c % 64);
        }
    }
    if all_softirqs {
        s.softirq_mask = u32::MAX;
    }
    s
}

pub fn run(opts: RecordOpts) -> Result<RecordSummary> {
    let rights = crate::kernel::system::Rights::current();
    if !rights.can_trace() {
        return Err(CliError::rights(&rights).into());
    }
    let env = status::Environment::gather();
    let Some(tracefs) = env.tracefs_path() else {
        return Err(CliError::usage(format!("tracefs unavailable: {}", env.tracefs.state)).into());
    };
    if !env.kernel.btf {
        eprintln!(
            "napiscope: note: no BTF at /sys/kernel/btf/vmlinux; the receive-path and \
             scheduler probes use classic tracepoints (they cost more per event)"
        );
    }
    let ring_bytes = opts.ring_buffer_mb * 1024 * 1024;
    let mut settings = build_settings(opts.cpus.as_deref(), opts.all_softirqs);
    let ring_sizes = probes::ring_sizes(ring_bytes, crate::kernel::system::possible_cpus());
    settings.wakeup_bytes = ring_sizes[0] / 8;
    // What is known from the start goes into every checkpoint's footer too.
    let mut start_meta: TraceMeta = env.trace_meta();
    start_meta.set("source", "record");
    start_meta.set("clock", "CLOCK_MONOTONIC (bpf_ktime_get_ns)");
    start_meta.set("pointers", if opts.raw_pointers { "raw" } else { "hashed" });
    start_meta.set("ring_buffer_bytes", ring_bytes.to_string());
    start_meta.set(
        "cpu_filter",
        opts.cpus
            .as_ref()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|| "all".into()),
    );
    for p in output::leftovers(&opts.output) {
        eprintln!(
            "napiscope: note: an interrupted recording of {} is at {}: `napiscope recover {}` \
             makes a trace of it",
            opts.output.display(),
            p.partial.display(),
            p.partial.display()
        );
    }
    // Create the output before loading anything, so a bad path, an existing file or a link
    // fails fast and clearly.
    let (mut writer_opts, mut background) = Background::new(opts.encode_buffer_mb);
    writer_opts.replace = opts.force;
    writer_opts.checkpoint_meta = start_meta.clone();
    let mut writer = TraceWriter::create_threaded(&opts.output, writer_opts)
        .map_err(|e| CliError::usage(format!("{e:#}")))?;
    let symbols = Symbols::load();
    if symbols.is_empty() {
        eprintln!(
            "napiscope: note: /proc/kallsyms gives no addresses; `func` will hold raw addresses"
        );
    }
    let mut loaded = probes::load(
        &tracefs,
        &settings,
        ring_bytes,
        &symbols,
        !opts.classic_tracepoints,
    )?;
    let mut decoder = Decoder::new(symbols, opts.raw_pointers);
    let failed: Vec<_> = loaded.results.iter().filter(|r| !r.attached).collect();
    if !opts.quiet {
        eprintln!(
            "napiscope: mode {} — {} of {} event probes attached",
            env.mode.mode.as_str(),
            loaded.attached_events(),
            probes::SPECS
                .iter()
                .filter(|s| s.role == probes::Role::Event)
                .count()
        );
        for r in &failed {
            eprintln!(
                "napiscope:   not attached: {} ({})",
                r.name,
                r.reason.as_deref().unwrap_or("?")
            );
        }
    }
    if loaded.attached_events() == 0 {
        anyhow::bail!("no event probe could attach; see `napiscope status`");
    }
    let probe_results = loaded.results.clone();
    let mut rings = loaded
        .take_rings()?
        .into_iter()
        .zip(ring_sizes)
        .map(|(r, size)| RingReader::new(r, size as usize))
        .collect::<Result<Vec<_>>>()?;
    let state = loaded.take_state()?;
    let ncpu = env.kernel.cpus_possible as usize;
    let mut pfds: Vec<libc::pollfd> = rings
        .iter()
        .map(|r| libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();

    if opts.control.is_none() {
        install_signal_handlers();
    }
    if let Some(c) = &opts.control {
        let _ = c.ready.send(());
    }
    let cpu0 = process_cpu();
    let start = Instant::now();
    let start_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    start_meta.set("start_unix_ns", start_wall.as_nanos().to_string());
    start_meta.set("probes", serde_json::to_string(&probe_results)?);
    writer.set_checkpoint_meta(start_meta.clone());
    // An error while recording (a full disk): stop at once, keep what was checkpointed.
    let mut failure: Option<anyhow::Error> = None;
    let mut summary = RecordSummary::default();
    let mut tally = Tally {
        rps_func: Some(writer.intern(analysis::event::RPS_IPI_FUNC)),
        ..Tally::default()
    };
    // The kernel's counters at the start, once every probe is attached: the window a
    // complete recording accounts for event by event.
    let counters_start = match crate::kernel::counters::snapshot() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("napiscope: note: no kernel-counter cross-check: {e:#}");
            None
        }
    };
    if let Some(s) = &counters_start {
        tally.edge = Some(analysis::kcounters::EdgeCounter::new(s));
    }
    let mut last_tick = Instant::now();
    let mut last_rows = 0u64;
    let tty = std::io::stderr().is_terminal();
    let stop_reason = loop {
        let sig = STOP_SIGNAL.load(Ordering::SeqCst);
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
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
        for ring in &mut rings {
            if let Err(e) = drain(ring, &mut decoder, &mut writer, &mut tally) {
                failure = Some(e);
                break;
            }
        }
        if failure.is_none() {
            failure = writer.tick().err();
        }
        if failure.is_some() {
            break "write_error";
        }
        let queued = writer.queued_rows();
        summary.max_queued_events = summary.max_queued_events.max(queued as u64);
        if let Some(bg) = &mut background {
            bg.regulate(queued);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) && !opts.quiet {
            let lost = lost_per_cpu(&state, ncpu);
            let rate = (writer.rows() - last_rows) as f64 / last_tick.elapsed().as_secs_f64();
            last_rows = writer.rows();
            last_tick = Instant::now();
            let mut line = format!(
                "recording {:>5.1}s  {:>9.0} ev/s  {:>10} events  {:>8.1} MB  lost: {}",
                start.elapsed().as_secs_f64(),
                rate,
                writer.rows(),
                writer.bytes_written() as f64 / 1e6,
                crate::fmt_counts(lost.iter().enumerate(), "cpu")
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
    };
    let elapsed = start.elapsed().as_secs_f64();
    // The end snapshot while every probe is still attached; events that reach the ring
    // after it are placed by their time.
    if let Some(edge) = &mut tally.edge {
        edge.end_taken();
    }
    let counters_end = counters_start
        .as_ref()
        .and_then(|_| crate::kernel::counters::snapshot().ok());
    let misses = loaded.recursion_misses();
    // Detach first so no new events arrive, then drain what is already in the ring.
    // (Closing the perf links takes a moment per probe; it is not recording time.)
    drop(loaded);
    // `drain` takes a bounded bite per call: repeat until the rings are empty.
    if failure.is_none() {
        'rings: for ring in &mut rings {
            loop {
                match drain(ring, &mut decoder, &mut writer, &mut tally) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(e);
                        break 'rings;
                    }
                }
            }
        }
    }
    let stop_reason = if failure.is_some() {
        "write_error"
    } else {
        stop_reason
    };
    if tty && !opts.quiet {
        eprintln!();
    }
    let lost = lost_per_cpu(&state, ncpu);
    let blind = blind_per_cpu(&state, ncpu);
    let rows = writer.rows();
    let kernel = match (counters_start, counters_end, tally.edge.take()) {
        (Some(start), Some(end), Some(edge)) => {
            let w = edge.finish(&end);
            let snaps = analysis::kcounters::Snapshots {
                start,
                end,
                cpus: opts.cpus.clone(),
                recorded: crate::kernel::counters::recorded(&probe_results),
            };
            let gaps = tally.seqs.gaps(ncpu);
            let known: Vec<u64> = (0..ncpu).map(|c| lost[c].max(gaps[c])).collect();
            let misses = missed_by_event(&probe_results, &misses).values().sum();
            let hotplug = tally.per_kind[analysis::EventKind::CpuhpEnter as usize] > 0
                || tally.per_kind[analysis::EventKind::CpuhpExit as usize] > 0;
            Some((snaps.compare(&w, known, misses, hotplug), snaps))
        }
        _ => None,
    };

    let mut meta = start_meta;
    meta.set("duration_s", format!("{elapsed:.3}"));
    meta.set("stop_reason", stop_reason);
    meta.set("lost_per_cpu", serde_json::to_string(&lost)?);
    meta.set(
        "seq_gaps_per_cpu",
        serde_json::to_string(&tally.seqs.gaps(ncpu))?,
    );
    meta.set("bad_records", tally.bad.to_string());
    // Events the kernel skipped because another eBPF program ran on the CPU (no seq gap).
    let missed_by_event = missed_by_event(&probe_results, &misses);
    meta.set("missed_by_event", serde_json::to_string(&missed_by_event)?);
    summary.missed_by_event = missed_by_event;
    if let Some((check, snaps)) = &kernel {
        meta.set(analysis::kcounters::META_KEY, serde_json::to_string(snaps)?);
        meta.set(
            "completeness",
            serde_json::to_string(&check.verdict)?.trim_matches('"'),
        );
        meta.set(
            analysis::kcounters::CHECK_KEY,
            serde_json::to_string(check)?,
        );
    }
    if !blind.is_empty() {
        meta.set(
            analysis::kcounters::BLIND_KEY,
            serde_json::to_string(&blind)?,
        );
    }
    summary.blind = blind;
    let threads = crate::kernel::system::backlog_threads();
    meta.set("backlog_threads", serde_json::to_string(&threads)?);
    if let Some(c) = &opts.control {
        let extra = c.extra_meta.lock().map(|m| m.clone()).unwrap_or_default();
        for (k, v) in extra.0 {
            meta.set(&k, v);
        }
    }
    if let Some(e) = failure {
        let failed = writer.fail(&meta, &e);
        return Err(anyhow::Error::new(failed).context(format!(
            "recording stopped after {elapsed:.1} s (probes detached)"
        )));
    }
    let queued = writer.queued_rows();
    if let Some(bg) = &mut background {
        bg.stop();
        summary.encoder_idle = !bg.refused();
    }
    if queued > 100_000 && !opts.quiet {
        eprintln!("napiscope: encoding the last {queued} events…");
    }
    let finishing = Instant::now();
    let bytes = writer.finish(&meta).context("finishing the Parquet file")?;
    summary.encode_after_stop_s = finishing.elapsed().as_secs_f64();
    let cpu1 = process_cpu();
    summary.recording_user_s = cpu1.0 - cpu0.0;
    summary.recording_sys_s = cpu1.1 - cpu0.1;

    summary.output = opts.output.display().to_string();
    summary.events = rows;
    summary.bytes = bytes;
    summary.bytes_per_event = if rows > 0 {
        bytes as f64 / rows as f64
    } else {
        0.0
    };
    summary.seconds = elapsed;
    summary.events_per_second = rows as f64 / elapsed.max(1e-9);
    summary.lost_total = lost.iter().sum();
    summary.lost_per_cpu = lost;
    summary.seq_gaps_per_cpu = tally.seqs.gaps(ncpu);
    tally.into_summary(&mut summary);
    summary.stop_reason = stop_reason.into();
    summary.completeness = match &kernel {
        Some((k, _)) => serde_json::to_string(&k.verdict)?
            .trim_matches('"')
            .to_string(),
        None if summary.lost_total > 0 || summary.seq_gaps_per_cpu.iter().any(|g| *g > 0) => {
            "incomplete".into()
        }
        None => "unknown".into(),
    };
    summary.kernel_counters = kernel.map(|(k, _)| k);
    read_back(&mut summary, &opts.output)?;
    Ok(summary)
}

/// `napiscope recover`: a trace from an interrupted recording's partial file.
pub fn run_recover(input: &Path, out: Option<&Path>, force: bool) -> Result<u8> {
    let paths = match output::Paths::of_partial(input) {
        Some(p) => p,
        None => {
            let mut found = output::leftovers(input);
            match found.len() {
                0 => {
                    return Err(CliError::usage(format!(
                        "no interrupted recording of {} found (one would be beside it, named \
                         .{}.napiscope-PID.partial)",
                        input.display(),
                        input
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    ))
                    .into())
                }
                1 => found.remove(0),
                _ => {
                    return Err(CliError::usage(format!(
                        "several interrupted recordings of {}: recover one at a time, e.g. \
                         `napiscope recover {} -o other.parquet`:\n  {}",
                        input.display(),
                        found[0].partial.display(),
                        found
                            .iter()
                            .map(|p| p.partial.display().to_string())
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    ))
                    .into())
                }
            }
        }
    };
    if !paths.partial.exists() {
        return Err(CliError::usage(format!("{}: no such file", paths.partial.display())).into());
    }
    if paths.writer_running() {
        return Err(CliError::usage(format!(
            "{} is still being written by napiscope (pid {}); stop that recording first (Ctrl-C \
             or SIGTERM finish a complete file)",
            paths.partial.display(),
            paths.pid().unwrap_or(0)
        ))
        .into());
    }
    let target = out.unwrap_or(&paths.target);
    match output::recover_to(&paths, target, force, None) {
        Ok(Some(r)) => {
            println!(
                "recovered {} events into {} — every event up to the recording's last \
                 checkpoint; marked partial (napiscope.partial=true, stop_reason=killed).\n\
                 next: napiscope check {}",
                r.rows,
                r.path.display(),
                r.path.display()
            );
            Ok(0)
        }
        Ok(None) => {
            println!(
                "{}: the recording stopped before its first checkpoint (about 1 s in), so it \
                 held no complete events; removed it",
                paths.partial.display()
            );
            Ok(1)
        }
        Err(e) if e.downcast_ref::<output::Refused>().is_some() => {
            Err(CliError::usage(format!("{e:#}")).into())
        }
        Err(e) => Err(e.context(format!("recovering {}", paths.partial.display()))),
    }
}

/// Decode and write what waits in the ring; returns how many records it took.
fn drain(
    ring: &mut RingReader,
    decoder: &mut Decoder,
    writer: &mut TraceWriter,
    tally: &mut Tally,
) -> Result<usize> {
    // Bounded, so the progress line and signals are served even under a flood; the kernel
    // sees the ring space freed when the batch ends.
    ring.drain(32_768, |item| ingest(item, decoder, writer, tally))
}

/// Per CPU, the windows in which the kernel ran none of our programs (see CpuState).
fn blind_per_cpu(
    state: &aya::maps::PerCpuArray<aya::maps::MapData, CpuState>,
    ncpu: usize,
) -> Vec<analysis::kcounters::Blind> {
    let Ok(values) = state.get(&0, 0) else {
        return Vec::new();
    };
    values
        .iter()
        .take(ncpu)
        .enumerate()
        .filter(|(_, s)| s.blind_windows > 0)
        .map(|(cpu, s)| {
            let kept = (s.blind_windows as usize).min(probe_common::BLIND_LOG);
            let mut last: Vec<_> = s.blind_log[..]
                .iter()
                .filter(|w| w.to_ns > 0)
                .take(kept)
                .map(|w| analysis::kcounters::BlindSpan {
                    from_ns: w.from_ns,
                    to_ns: w.to_ns,
                    pid: w.pid,
                    comm: std::fs::read_to_string(format!("/proc/{}/comm", w.pid))
                        .ok()
                        .map(|c| c.trim().to_string()),
                })
                .collect();
            last.sort_by_key(|w| w.from_ns);
            analysis::kcounters::Blind {
                cpu: cpu as u32,
                windows: s.blind_windows,
                ns: s.blind_ns,
                last,
            }
        })
        .collect()
}

fn lost_per_cpu(
    state: &aya::maps::PerCpuArray<aya::maps::MapData, CpuState>,
    ncpu: usize,
) -> Vec<u64> {
    match state.get(&0, 0) {
        Ok(values) => values.iter().take(ncpu).map(|s| s.lost).collect(),
        Err(_) => vec![0; ncpu],
    }
}

pub fn print_summary(s: &RecordSummary) {
    println!(
        "wrote {} events to {} ({:.1} MB, {:.1} bytes/event) in {:.1}s — {:.0} events/s, stopped by {}",
        s.events,
        s.output,
        s.bytes as f64 / 1e6,
        s.bytes_per_event,
        s.seconds,
        s.events_per_second,
        s.stop_reason
    );
    if s.lost_total > 0 {
        println!(
            "LOST {} events (per CPU: {:?}): the ring buffer was full; raise --ring-buffer-mb \
             or narrow -C. `napiscope check` treats windows with losses as inconclusive.",
            s.lost_total, s.lost_per_cpu
        );
    }
    match &s.kernel_counters {
        Some(k) => {
            println!("against the kernel's own counters (from the first to the last second):");
            for l in k.lines() {
                println!("  {l}");
            }
            let (min, max) = k.short_total();
            match k.verdict {
                analysis::kcounters::Completeness::Complete => println!(
                    "complete: every event the kernel counted is in the file, and no sequence \
                     number is missing"
                ),
                analysis::kcounters::Completeness::Incomplete if max > 0 => println!(
                    "INCOMPLETE: the kernel counted {} more events than the file holds, with \
                     no ring loss and no recursion miss to explain them (the kernel skipped \
                     the programs: see docs/completeness.md). `check` treats those events as \
                     possibly missing: INCONCLUSIVE, never FAIL.",
                    if min == max {
                        min.to_string()
                    } else {
                        format!("{min}–{max}")
                    }
                ),
                analysis::kcounters::Completeness::Incomplete => println!(
                    "INCOMPLETE: the counters match, but events were lost or skipped (see \
                     above)"
                ),
                analysis::kcounters::Completeness::Unknown => println!(
                    "completeness unknown: no kernel counter could be compared (see above)"
                ),
            }
        }
        None if s.lost_total == 0 && s.seq_gaps_per_cpu.iter().all(|g| *g == 0) => println!(
            "no events lost by the ring (per-CPU sequence numbers have no gaps); the kernel's \
             counters could not be read, so events the kernel skipped would not show"
        ),
        None => {}
    }
    let blind = analysis::kcounters::blind_lines(&s.blind);
    if !blind.is_empty() {
        println!(
            "blind windows (the kernel skipped every napiscope program there; `check` treats \
             them as lost):"
        );
        for l in blind {
            println!("  {l}");
        }
    }
    if !s.missed_by_event.is_empty() {
        println!(
            "skipped by the kernel's eBPF recursion guard (not in seq): {:?} — `check` treats \
             these events as possibly missing",
            s.missed_by_event
        );
    }
    println!("{:<28} {:>10}", "event", "count");
    for (k, v) in &s.per_event {
        println!("{k:<28} {v:>10}");
    }
    println!("per CPU: {}", crate::fmt_counts(&s.per_cpu, "cpu"));
    if let Some(p) = &s.paths {
        println!(
            "received packets by path: {}{}",
            crate::fmt_counts(p, ""),
            s.rps_hops
                .map(|h| format!(
                    "; complete RPS hops (netif_rx → IPI → NET_RX → receive → poll): {h}"
                ))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_gaps_count_missing_events_per_cpu() {
        let mut t = SeqTracker::default();
        for (cpu, seq) in [(0, 0), (0, 1), (1, 5), (0, 4), (1, 6), (1, 9)] {
            t.see(cpu, seq);
        }
        assert_eq!(t.gaps(3), vec![2, 2, 0]);
    }

    #[test]
    fn a_nested_event_arriving_late_is_not_a_gap() {
        let mut t = SeqTracker::default();
        // 11 (an IRQ's event) overtakes 10; 13 is really lost.
        for seq in [9, 11, 10, 12, 14] {
            t.see(0, seq);
        }
        assert_eq!(t.gaps(1), vec![1]);
    }

    #[test]
    fn settings_cpu_mask() {
        let s = build_settings(Some(&[1, 65]), false);
        assert_eq!(s.cpu_mask[0], 0b10);
        assert_eq!(s.cpu_mask[1], 0b10);
        assert_eq!(s.softirq_mask, 1 << 3);
        assert_eq!(build_settings(None, true).softirq_mask, u32::MAX);
    }
}

/// Replay a real recording through the recorder's user-space path (decode → columns →
/// Parquet), for measuring its cost per event without a kernel:
///
/// ```text
/// NAPISCOPE_REPLAY=target/bench/flood-128.parquet cargo test --release -p probe-cli \
///     replay_bench -- --ignored --nocapture
/// ```
///
/// With `NAPISCOPE_REPLAY_WORK=0` it only builds the raw records (subtract that run's
/// callgrind instruction count from a full run's to get the recorder's own count).
#[cfg(test)]
mod replay {
    use std::collections::HashMap;

    use analysis::Event;
    use probe_common::RawEvent;

    use super::*;
    use crate::kernel::symbols::Symbols;

    fn name16(s: &str) -> [u8; 16] {
        let mut b = [0u8; 16];
        let n = s.len().min(15);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        b
    }

    fn state_bits(s: &str) -> i64 {
        let (s, plus) = match s.strip_suffix('+') {
            Some(x) => (x, 0x100),
            None => (s, 0),
        };
        let mut v = plus;
        for f in s.split('|') {
            v |= match f {
                "S" => 0x01,
                "D" => 0x02,
                "T" => 0x04,
                "t" => 0x08,
                "X" => 0x10,
                "Z" => 0x20,
                "P" => 0x40,
                "I" => 0x80,
                _ => 0,
            };
        }
        v
    }

    /// The ring-buffer records a recording's rows came from, and the kallsyms text that
    /// names their functions.
    pub fn raw_records(events: &[Event]) -> (Vec<RawEvent>, String) {
        let mut funcs: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let mut r = RawEvent::zeroed();
            r.ts_ns = e.ts_ns;
            r.seq = e.seq;
            r.cpu = e.cpu;
            r.pid = e.pid as u32;
            r.kind = e.event as u16;
            r.ctx = e.ctx as u8;
            r.comm = name16(&e.comm);
            r.ptr = e.napi.or(e.skb).or(e.csd).unwrap_or(0);
            if let Some(f) = &e.func {
                let n = funcs.len() as u64;
                r.func = *funcs
                    .entry(f.clone())
                    .or_insert(0xffff_ffff_8100_0000 + n * 0x100);
            }
            let name = e.dev.as_deref().or(e.target_comm.as_deref()).unwrap_or("");
            r.name = name16(name);
            r.arg0 = e
                .vec
                .map(|v| v as i32)
                .or(e.work)
                .or(e.len.map(|v| v as i32))
                .or(e.ret)
                .or(e.target_cpu)
                .unwrap_or(0);
            r.arg1 = e.budget.or(e.target_pid).unwrap_or(0);
            r.state = e.prev_state.as_deref().map_or(0, state_bits);
            out.push(r);
        }
        let syms = funcs
            .iter()
            .map(|(n, a)| format!("{a:x} t {n}\n"))
            .collect::<String>();
        (out, syms)
    }

    #[test]
    #[ignore = "benchmark: needs NAPISCOPE_REPLAY=<a recording>"]
    fn replay_bench() {
        let Ok(path) = std::env::var("NAPISCOPE_REPLAY") else {
            eprintln!("set NAPISCOPE_REPLAY to a recording");
            return;
        };
        let work = std::env::var("NAPISCOPE_REPLAY_WORK").map_or(true, |v| v != "0");
        let t = analysis::read_trace(std::path::Path::new(&path)).unwrap();
        let (raws, syms) = raw_records(&t.events);
        drop(t);
        let bytes: Vec<u8> = raws
            .iter()
            .flat_map(|r| {
                // SAFETY: RawEvent is repr(C) plain data without implicit padding.
                unsafe {
                    std::slice::from_raw_parts(
                        (r as *const RawEvent).cast::<u8>(),
                        std::mem::size_of::<RawEvent>(),
                    )
                }
                .to_vec()
            })
            .collect();
        let out =
            std::env::temp_dir().join(format!("napiscope-replay-{}.parquet", std::process::id()));
        if !work {
            eprintln!("setup only: {} records", raws.len());
            return;
        }
        let decoder = Decoder::new(Symbols::parse(&syms), false);
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let (rows, size) = pipeline(&bytes, decoder, &out);
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_time() - cpu0;
        eprintln!(
            "replayed {rows} events: {:.3} s wall, {:.3} s CPU (all threads) = {:.0} ns CPU/event, {:.2} bytes/event",
            wall,
            cpu,
            cpu * 1e9 / rows as f64,
            size as f64 / rows as f64
        );
        // (The file's content is tested by decode::tests; reading it here would add to the
        // instruction count being measured.)
        assert_eq!(rows, raws.len() as u64);
        assert!(size > 0);
        std::fs::remove_file(&out).unwrap();
    }

    /// User + system CPU seconds of this process (all threads).
    fn cpu_time() -> f64 {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }

    /// What `record` does with the ring's records, 96 bytes at a time.
    fn pipeline(bytes: &[u8], mut decoder: Decoder, out: &std::path::Path) -> (u64, u64) {
        let mut writer = TraceWriter::create_threaded(out, Default::default()).unwrap();
        let mut tally = Tally::default();
        for item in bytes.chunks(96) {
            ingest(item, &mut decoder, &mut writer, &mut tally).unwrap();
        }
        assert_eq!(tally.bad, 0);
        let rows = writer.rows();
        let size = writer.finish(&TraceMeta::default()).unwrap();
        (rows, size)
    }
}
