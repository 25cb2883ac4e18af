//! `napiscope top`: where NET_RX work runs, live. Counters aggregate in the kernel (per-CPU
//! maps; the ring buffer stays off), one snapshot per interval becomes a `Sample` of rates,
//! `App` holds the state, `ui` draws it, `checks` streams the counter-level model rules.

mod app;
mod detail;
mod napi_pane;
#[cfg(test)]
mod tests;
mod ui;

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use analysis::mode::Mode;
use anyhow::{Context, Result};
use crossterm::{
    event::{self, Event, KeyEventKind},
    execute,
    terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{backend::CrosstermBackend, Terminal};

use crate::live::checks::Checks;
use crate::live::filter::TextFilter;
use crate::live::rates::{human, human_ns, Sample};
use crate::live::source::KernelSource;
use crate::{
    cli::{parse_cpus, parse_duration, parse_mode, tracing_env, CliError},
    kernel::{env::Environment, probes, system},
    signals,
};
use app::{Action, App, Header};

#[derive(clap::Args)]
pub struct TopArgs {
    /// Time between updates: 1s, 500ms, 2 (0.1 s to 60 s)
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Print a table per interval instead of the full-screen view (like `mpstat 1`)
    #[arg(long)]
    no_tui: bool,
    /// Print one JSON object per interval (implies --no-tui)
    #[arg(long)]
    json: bool,
    /// Stop after this many intervals
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// Check the kernel against this mode (A, B or C) instead of the detected one
    #[arg(long, value_parser = parse_mode)]
    expect_mode: Option<Mode>,
    /// Show only these CPUs, e.g. 0,2-3 (the `c` key changes it)
    #[arg(short = 'C', long, value_name = "CPUS")]
    cpus: Option<String>,
    /// Count only a device or a task, by name prefix: dev=veth0, comm=iperf3, or a bare
    /// device name (the `/` key changes it)
    #[arg(long, value_name = "FILTER")]
    filter: Option<String>,
    /// Draw with ASCII characters only (default when the locale is not UTF-8)
    #[arg(long)]
    ascii: bool,
    /// Directory the `e` key writes its JSON export to
    #[arg(long, default_value = ".", value_name = "DIR")]
    export_dir: PathBuf,
}

pub const AFTER_HELP: &str = "\
Examples:
  napiscope top                          full-screen view, updated every second
  napiscope top --no-tui -n 5            five tables on stdout, like `mpstat 1 5`
  napiscope top --json -n 10 --expect-mode C > top.jsonl   (exit 1 if a rule diverged)
  napiscope top --filter dev=veth        count only devices named veth*

Counting happens in the kernel (per-CPU maps): top costs less than record and loses nothing
when busy. Keys in the full-screen view: ? shows them. Exit codes: 0 ok, 1 a conformance rule
diverged (--no-tui/--json), 2 bad input or missing rights.";

pub fn run(a: TopArgs) -> Result<u8> {
    if a.interval < Duration::from_millis(100) || a.interval > Duration::from_secs(60) {
        return Err(CliError::usage("--interval must be between 100ms and 60s").into());
    }
    let tui = !a.no_tui && !a.json;
    if tui && !std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "stdout is not a terminal: use `napiscope top --no-tui` (tables) or `--json` (one \
             object per interval) in scripts and pipes",
        )
        .into());
    }
    // The same list `record -C` takes, refused the same way: a CPU that is not online would
    // only show an empty table.
    let cpu_filter = a.cpus.as_deref().map(parse_cpus).transpose()?;
    let text_filter = match &a.filter {
        Some(s) => TextFilter::parse(s).map_err(|e| CliError::usage(format!("--filter: {e}")))?,
        None => None,
    };
    let (env, tracefs) = tracing_env()?;
    let online = system::online_cpus();
    // Attaching ~30 tracepoints patches kernel text and takes a few seconds: say so.
    eprintln!("napiscope: loading and attaching probes...");
    let mut src = KernelSource::open(&tracefs, online.clone())?;
    if src.loaded.attached_events() == 0 {
        anyhow::bail!("no event probe could attach; see `napiscope status`");
    }
    // The counting programs are verified with more code live than `status` loads: a probe
    // the verifier refuses here must not go missing silently.
    for line in probes::not_attached_lines(&src.loaded.results) {
        eprintln!("napiscope:   {line}");
    }
    src.set_filter(text_filter.as_ref())?;

    let header = header(&env, &src, a.expect_mode, a.interval);
    let mode = a.expect_mode.unwrap_or(env.mode.mode);
    let ipi_visible = src.loaded.results.iter().any(|r| {
        r.attached && (r.name == "csd:csd_function_entry" || r.name.contains("rps_trigger_softirq"))
    });
    let checks = Checks::new(
        mode,
        system::backlog_threads().len(),
        online.len(),
        ipi_visible,
    );
    let ascii = a.ascii || !utf8_locale();
    let mut app = App::new(header, checks, ascii);
    app.cpu_filter = cpu_filter;
    app.text_filter = text_filter;
    let stop = signals::stop_flag_on_signals();
    eprintln!(
        "napiscope: counting on {} CPUs; mode {} ({} probes attached)",
        online.len(),
        mode.as_str(),
        app.header.probes_attached
    );

    if tui {
        run_tui(&mut app, &mut src, &a, &stop)?;
        Ok(0)
    } else {
        run_lines(&mut app, &src, &a, &stop)
    }
}

fn header(env: &Environment, src: &KernelSource, expect: Option<Mode>, every: Duration) -> Header {
    let results = &src.loaded.results;
    // Tracepoints are the baseline; function probes are extras where the kernel allows them.
    let events: Vec<&probes::ProbeResult> = results
        .iter()
        .filter(|r| r.role == probes::Role::Event && (r.kind != "kprobe" || r.attached))
        .collect();
    Header {
        release: env.kernel.release.clone(),
        mode: env.mode.mode.as_str().to_string(),
        mode_description: env.mode.mode.describe().to_string(),
        evidence: env.mode.evidence.iter().take(2).cloned().collect(),
        expected_mode: expect.map(|m| m.as_str().to_string()),
        probes_attached: events.iter().filter(|r| r.attached).count(),
        probes_total: events.len(),
        fallbacks: events
            .iter()
            .filter(|r| r.attached && r.fallback.is_some())
            .map(|r| r.name.clone())
            .collect(),
        not_attached: events
            .iter()
            .filter(|r| !r.attached)
            .map(|r| r.name.clone())
            .collect(),
        interval_s: every.as_secs_f64(),
    }
}

fn utf8_locale() -> bool {
    for var in ["LC_ALL", "LC_CTYPE", "LANG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                let v = v.to_ascii_lowercase();
                return v.contains("utf-8") || v.contains("utf8");
            }
        }
    }
    false
}

/// Puts the terminal back however `top` ends: return, error, or panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        enable_raw_mode().context("switching the terminal to raw mode")?;
        let guard = TerminalGuard;
        execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

fn run_tui(
    app: &mut App,
    src: &mut KernelSource,
    a: &TopArgs,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    let _guard = TerminalGuard::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    let mut prev = src.snapshot()?;
    let mut next = Instant::now() + a.interval;
    let mut done = 0u64;
    loop {
        term.draw(|f| ui::draw(f, app))?;
        if stop.load(Ordering::SeqCst) || a.count.is_some_and(|n| done >= n) {
            return Ok(());
        }
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait.min(Duration::from_millis(250)))? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match app.on_key(k) {
                    Action::Quit => return Ok(()),
                    Action::Export => {
                        app.message = Some(match export(app, &a.export_dir) {
                            Ok(p) => format!("exported the view to {}", p.display()),
                            Err(e) => format!("export failed: {e:#}"),
                        })
                    }
                    Action::SetFilter(f) => {
                        if let Err(e) = src.set_filter(f.as_ref()) {
                            app.message = Some(format!("filter not applied: {e:#}"));
                        }
                        // Counts taken before the change would mix in: start a new interval.
                        prev = src.snapshot()?;
                        next = Instant::now() + a.interval;
                    }
                    Action::None => {}
                },
                // Resize and the rest: redraw on the next turn (ratatui re-reads the size).
                _ => {}
            }
        }
        if Instant::now() >= next {
            let cur = src.snapshot()?;
            app.push(Sample::between(&prev, &cur));
            prev = cur;
            next += a.interval;
            if next < Instant::now() {
                next = Instant::now() + a.interval;
            }
            done += 1;
        }
    }
}

fn export(app: &App, dir: &std::path::Path) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let path = dir.join(format!("napiscope-top-{secs}.json"));
    let mut v = app.to_json();
    if let Some(cpu) = app.selected_cpu() {
        let hist: Vec<serde_json::Value> = app
            .history
            .get(&cpu)
            .map(|h| h.iter().map(|c| c.to_json()).collect())
            .unwrap_or_default();
        v["selected_cpu"] = cpu.into();
        v["selected_cpu_history"] = hist.into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `--no-tui` / `--json`: one block or object per interval on stdout.
fn run_lines(
    app: &mut App,
    src: &KernelSource,
    a: &TopArgs,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    if !a.json {
        let h = &app.header;
        writeln!(
            out,
            "napiscope top: {} mode {} ({}); {}/{} probes; checking mode {}{}",
            h.release,
            h.mode,
            h.mode_description,
            h.probes_attached,
            h.probes_total,
            app.checks.mode,
            if src.has_run_time() {
                ""
            } else {
                "; eBPF run time unavailable"
            }
        )?;
    }
    let mut prev = src.snapshot()?;
    let mut done = 0u64;
    let mut shown_divergences = app.checks.divergences.len();
    let start = Instant::now();
    while a.count.is_none_or(|n| done < n) {
        let target = start + a.interval * (done as u32 + 1);
        while Instant::now() < target {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(
                target
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let cur = src.snapshot()?;
        app.push(Sample::between(&prev, &cur));
        prev = cur;
        done += 1;
        if a.json {
            writeln!(out, "{}", serde_json::to_string(&app.to_json())?)?;
        } else {
            write_table(&mut out, app)?;
            for d in app.checks.divergences.iter().skip(shown_divergences) {
                writeln!(out, "! {} cpu{}: {}", d.rule, d.cpu, d.detail)?;
            }
        }
        shown_divergences = app.checks.divergences.len();
        out.flush()?;
    }
    let failed = app.checks.failed();
    if failed > 0 {
        eprintln!(
            "napiscope: {failed} interval(s) diverged from mode {}: {}",
            app.checks.mode,
            app.checks
                .rules
                .iter()
                .filter(|r| r.failed > 0)
                .map(|r| r.id)
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(1);
    }
    Ok(0)
}

fn write_table(out: &mut impl Write, app: &App) -> Result<()> {
    let Some(s) = &app.latest else { return Ok(()) };
    let o = &s.overall;
    writeln!(
        out,
        "\n{:>8.1}s  events {}/s  missed {}  napiscope CPU {:.1}% + eBPF {:.1}%",
        s.at,
        human(o.events_per_s),
        o.missed,
        o.self_cpu_pct,
        o.bpf_cpu_pct
    )?;
    writeln!(out, "{}", app.kernel_summary())?;
    writeln!(
        out,
        "{:>4} {:>8} {:>7} {:>8} {:>6} {:>9} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}",
        "CPU",
        "NET_RX/s",
        "pkts/s",
        "irq-exit",
        "bh-en",
        "ksoftirqd",
        "backlog",
        "enq/s",
        "IPI tx",
        "IPI rx",
        "wake/s",
        "exh/s",
        "p99"
    )?;
    for c in app.rows() {
        writeln!(
            out,
            "{:>4} {:>8} {:>7} {:>8} {:>6} {:>9} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}",
            c.cpu,
            human(c.net_rx_raise),
            human(c.packets),
            human(c.packets_where[0]),
            human(c.packets_where[1]),
            human(c.packets_where[2]),
            human(c.packets_where[3]),
            human(c.enqueues),
            human(c.rps_ipi_sent),
            human(c.rps_ipi_received),
            human(c.woken()),
            human(c.budget_exhausted),
            human_ns(c.p99_ns().unwrap_or(0.0), true)
        )?;
    }
    write_napi_table(out, &s.napis)
}

/// The NAPI instances polled in the interval, one line each (device queues and backlogs).
fn write_napi_table(out: &mut impl Write, napis: &[crate::live::napi::NapiRates]) -> Result<()> {
    if napis.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:>5} {:>7} {:>7} {:>6} {:<12} {:>5} {:>9}  {:<16} task",
        "NAPI", "cpus", "polls/s", "pkts/s", "exh/s", "mostly", "irq", "irq→poll", "irq name"
    )?;
    for n in napis {
        let cpus: Vec<String> = n.cpus.iter().map(u32::to_string).collect();
        let irq = n.irq.or(n.last_irq).map_or("-".into(), |i| i.to_string());
        writeln!(
            out,
            "{:<20} {:>5} {:>7} {:>7} {:>6} {:<12} {:>5} {:>9}  {:<16} {}",
            n.label(),
            cpus.join(","),
            human(n.polls),
            human(n.packets),
            human(n.budget_exhausted),
            n.mostly_where().unwrap_or("-"),
            irq,
            human_ns(n.irq_to_poll_ns.unwrap_or(0.0), true),
            n.last_irq_name.as_deref().unwrap_or("-"),
            n.task
                .as_ref()
                .map_or("-".into(), |(pid, comm)| format!("{comm} ({pid})")),
        )?;
    }
    Ok(())
}
