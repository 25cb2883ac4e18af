//! `simulate`, `check` and `verify`: the reference model against traces and this kernel.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use analysis::{
    check::{self, CheckReport, Verdict},
    kcounters::Completeness,
    mode::Mode,
    model::{
        sim::{simulate, SimOpts, Workload},
        Features,
    },
    Trace, TraceMeta,
};
use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{cmd::status, kernel::system, recorder as record, traffic as scenario, CliError};

pub struct SimArgs {
    pub mode: Mode,
    pub cpus: usize,
    pub workload: Workload,
    pub packets: usize,
    pub seed: u64,
    pub kernel: Option<String>,
    /// Copies of the run written back to back (`--copies`).
    pub copies: u32,
}

pub fn run_simulate(a: SimArgs, output: Option<&Path>) -> Result<u8> {
    let SimArgs {
        mode,
        cpus,
        workload,
        ..
    } = a;
    if cpus == 0 || cpus > 1024 {
        return Err(CliError::usage(format!("--cpus must be 1..=1024, got {cpus}")).into());
    }
    if a.copies == 0 {
        return Err(CliError::usage("--copies must be at least 1").into());
    }
    let mut o = SimOpts::new(mode, cpus, workload);
    o.packets = a.packets;
    o.seed = a.seed;
    if let Some(k) = &a.kernel {
        o.features = Features::for_release(k);
    }
    let s = simulate(&o);
    let mut trace = Trace {
        events: s.events,
        meta: s.meta,
    };
    let report = check::check(&trace, Some(mode));
    if let Some(out) = output {
        let bytes = write_copies(out, &mut trace, a.copies)
            .map_err(|e| CliError::usage(format!("{e:#}")))?;
        let copies = match a.copies {
            1 => String::new(),
            n => format!(" in {n} copies"),
        };
        println!(
            "wrote {} simulated events{copies} (mode {}, {} CPUs, workload {}) to {} ({:.1} KB)",
            trace.events.len() as u64 * a.copies as u64,
            mode.as_str(),
            cpus,
            workload.name(),
            out.display(),
            bytes as f64 / 1e3
        );
    } else {
        println!(
            "simulated {} events (mode {}, {} CPUs, workload {}); use -o FILE to keep them",
            trace.events.len(),
            mode.as_str(),
            cpus,
            workload.name()
        );
    }
    print_paths(&report);
    Ok(0)
}

/// Write `copies` copies of the trace back to back: each copy's timestamps start one second
/// after the previous copy's last event (past every pairing window the checker uses), and
/// each CPU's seq continues where it stopped, so the file reads as one long recording.
/// The events are shifted in place between copies; nothing else is held in memory.
fn write_copies(out: &Path, trace: &mut Trace, copies: u32) -> Result<u64> {
    let mut w = analysis::TraceWriter::create(out)?;
    let (first, last) = trace
        .events
        .iter()
        .fold((u64::MAX, 0), |(a, b), e| (a.min(e.ts_ns), b.max(e.ts_ns)));
    let shift = last.saturating_sub(first) + 1_000_000_000;
    let mut seq_span: std::collections::HashMap<u32, (u64, u64)> = Default::default();
    for e in &trace.events {
        let s = seq_span.entry(e.cpu).or_insert((e.seq, e.seq));
        *s = (s.0.min(e.seq), s.1.max(e.seq));
    }
    for copy in 0..copies {
        if copy > 0 {
            for e in &mut trace.events {
                let (lo, hi) = seq_span[&e.cpu];
                e.ts_ns += shift;
                e.seq += hi - lo + 1;
            }
        }
        for e in &trace.events {
            w.push(e)?;
        }
    }
    if copies > 1 {
        trace.meta.set("sim_copies", copies.to_string());
    }
    w.finish(&trace.meta)
}

fn print_paths(r: &CheckReport) {
    println!("packets by path: {}", crate::fmt_counts(&r.paths, ""));
    let b: Vec<String> = r
        .batch_paths
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "batches: {}",
        if b.is_empty() {
            "none".into()
        } else {
            b.join(", ")
        }
    );
}

pub fn run_check(trace: &Path, mode: Option<Mode>, json: bool, junit: Option<&Path>) -> Result<u8> {
    // Straight into columns: no per-row Event with owned strings.
    let (cols, meta) =
        analysis::trace::read_columns(trace).map_err(|e| CliError::usage(format!("{e:#}")))?;
    if cols.is_empty() {
        return Err(CliError::usage(format!("{} holds no events", trace.display())).into());
    }
    let report = check::check_cols(cols, &meta, mode);
    if let Some(j) = junit {
        std::fs::write(j, junit_xml(&report, &trace.display().to_string()))
            .with_context(|| format!("writing {}", j.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &trace.display().to_string());
    }
    Ok(exit_code(&report))
}

/// 1 when a rule diverged, else 3 (`INCOMPLETE`) when the trace misses events, else 0.
pub fn exit_code(r: &CheckReport) -> u8 {
    if r.divergent() {
        1
    } else if r.incomplete() {
        crate::INCOMPLETE
    } else {
        0
    }
}

/// The completeness lines of a check: per CPU and counter, and the verdict.
fn print_completeness(r: &CheckReport) {
    if let Some(k) = &r.kernel_counters {
        println!("against the kernel's own counters (recorded at start and end):");
        for l in k.lines() {
            println!("  {l}");
        }
    }
    for l in analysis::kcounters::blind_lines(&r.blind) {
        println!("  blind: {l} (inconclusive there)");
    }
    match r.completeness {
        analysis::kcounters::Completeness::Complete => {
            println!("completeness: complete (every event the kernel counted is in the trace)")
        }
        analysis::kcounters::Completeness::Incomplete => println!(
            "completeness: INCOMPLETE — events are missing; the rules that need them are \
             INCONCLUSIVE, not FAIL (exit 3 unless a rule still diverges)"
        ),
        analysis::kcounters::Completeness::Unknown => println!(
            "completeness: unknown (the trace has no kernel-counter snapshots: simulated, or \
             recorded before napiscope kept them)"
        ),
    }
}

pub fn print_report(r: &CheckReport, name: &str) {
    println!(
        "{name}: {} events, {} backlog batches, mode {} ({})",
        r.events,
        r.batches,
        r.mode.map_or("?", Mode::as_str),
        r.mode_source
    );
    if r.lost_events > 0 {
        println!(
            "lost events: {} (windows touched by them are inconclusive)",
            r.lost_events
        );
    }
    print_completeness(r);
    print_paths(r);
    println!(
        "{:<6} {:<13} {:>7} {:>6} {:>6} {:>7}  rule",
        "id", "verdict", "pass", "fail", "warn", "inconc"
    );
    for x in &r.rules {
        println!(
            "{:<6} {:<13} {:>7} {:>6} {:>6} {:>7}  {}{}",
            x.id,
            x.verdict.name(),
            x.passed,
            x.failed,
            x.warned,
            x.inconclusive,
            x.title,
            x.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    let divs: Vec<_> = r.rules.iter().flat_map(|x| &x.divergences).collect();
    if !divs.is_empty() {
        println!("\ndivergences (first {} per rule):", 10);
        for d in divs.iter().take(30) {
            println!(
                "  {} cpu{} {:.6} s: {}",
                d.rule,
                d.cpu,
                d.ts_ns as f64 / 1e9,
                d.message
            );
            println!("      expected: {}", d.expected);
            for e in &d.events {
                println!("      | {e}");
            }
        }
    }
    println!(
        "\nverdict: {}",
        match r.verdict {
            Verdict::Fail => "DIVERGENT (the kernel did not do what the model says)",
            Verdict::Warn => "CONFORMANT with warnings",
            Verdict::Pass => "CONFORMANT",
            Verdict::Inconclusive => "INCONCLUSIVE (nothing the rules could decide)",
        }
    );
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn junit_xml(r: &CheckReport, name: &str) -> String {
    let fails = r
        .rules
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .count();
    let skips = r
        .rules
        .iter()
        .filter(|x| x.verdict == Verdict::Inconclusive)
        .count();
    let incomplete = r.incomplete();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"napiscope check {}\" tests=\"{}\" failures=\"{fails}\" skipped=\"{}\">\n",
        xml_escape(name),
        r.rules.len() + 1,
        skips + usize::from(incomplete)
    );
    s.push_str("  <testcase classname=\"napiscope\" name=\"recording complete\">");
    if incomplete {
        let why = r
            .kernel_counters
            .as_ref()
            .map(|k| k.lines().join("\n"))
            .unwrap_or_else(|| format!("{} events lost", r.lost_events));
        s.push_str(&format!(
            "<skipped message=\"the recording misses events: inconclusive\">{}</skipped>",
            xml_escape(&why)
        ));
    }
    s.push_str("</testcase>\n");
    for x in &r.rules {
        s.push_str(&format!(
            "  <testcase classname=\"napiscope.mode{}\" name=\"{} {}\">",
            r.mode.map_or("?", Mode::as_str),
            x.id,
            xml_escape(x.title)
        ));
        match x.verdict {
            Verdict::Fail => {
                let body: Vec<String> = x
                    .divergences
                    .iter()
                    .map(|d| format!("{}\nexpected: {}", d.message, d.expected))
                    .collect();
                s.push_str(&format!(
                    "<failure message=\"{} instance(s) diverge\">{}</failure>",
                    x.failed,
                    xml_escape(&body.join("\n\n"))
                ));
            }
            Verdict::Inconclusive => s.push_str(&format!(
                "<skipped message=\"{}\"/>",
                xml_escape(x.note.as_deref().unwrap_or("inconclusive"))
            )),
            _ => {}
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite>\n");
    s
}

/// Sum of received_rps (column 10) over /proc/net/softnet_stat.
fn received_rps() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/softnet_stat").ok()?;
    let mut sum = 0;
    for line in text.lines() {
        let col = line.split_whitespace().nth(9)?;
        sum += u64::from_str_radix(col, 16).ok()?;
    }
    Some(sum)
}

#[derive(Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    /// Against the kernel's counters; an incomplete recording is run again, up to
    /// `VERIFY_ATTEMPTS` times.
    pub completeness: Completeness,
    pub attempts: u32,
    pub sent: u64,
    pub received: u64,
    pub trace: String,
    pub verdict: Verdict,
    pub failed_rules: Vec<&'static str>,
    pub paths: std::collections::BTreeMap<String, u64>,
    /// The same trace checked against the wrong mode must diverge (remote scenarios only).
    pub negative_control: Option<NegativeControl>,
    pub report: CheckReport,
}

#[derive(Serialize)]
pub struct NegativeControl {
    pub checked_as: Mode,
    pub diverged: bool,
    pub failed_rules: Vec<&'static str>,
}

#[derive(Serialize)]
pub struct VerifyReport {
    pub kernel_release: String,
    pub live_mode: Mode,
    pub expected_mode: Option<Mode>,
    pub mode_ok: bool,
    pub checked_as: Mode,
    pub scenarios: Vec<ScenarioResult>,
    /// Scenarios this host cannot run, and why.
    pub skipped: Vec<String>,
    pub passed: bool,
    /// Some scenario's recording stayed incomplete after every attempt (exit 3).
    pub incomplete: bool,
}

fn failed_rules(r: &CheckReport) -> Vec<&'static str> {
    r.rules
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .map(|x| x.id)
        .collect()
}

/// How often `verify` runs a scenario whose recording came out incomplete.
const VERIFY_ATTEMPTS: u32 = 3;

pub fn run_verify(
    expect: Option<Mode>,
    json: bool,
    keep: Option<&Path>,
    seconds: u64,
) -> Result<u8> {
    let rights = system::Rights::current();
    // SAFETY: geteuid has no preconditions.
    if !rights.can_trace() || unsafe { libc::geteuid() } != 0 {
        return Err(CliError::usage(
            "verify loads eBPF programs and creates network namespaces: run it as root",
        )
        .into());
    }
    let env = status::Environment::gather();
    let live = env.mode.mode;
    let checked_as = expect.unwrap_or(live);
    let online = env.kernel.cpus_online.clone();
    let (s_cpu, t_cpu) = (online[0], *online.get(1).unwrap_or(&online[0]));
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.to_path_buf()
        }
        None => std::env::temp_dir().join(format!("napiscope-verify-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let mut plan = vec![(scenario::Kind::Loopback, s_cpu, s_cpu, "lo")];
    let mut skipped = Vec::new();
    if t_cpu != s_cpu {
        match scenario::veth_available() {
            Ok(()) => plan.insert(0, (scenario::Kind::VethRps, s_cpu, t_cpu, "nsc1")),
            Err(why) => skipped.push(format!("veth-rps: {why}")),
        }
        plan.push((scenario::Kind::LoopbackRps, s_cpu, t_cpu, "lo"));
    } else {
        skipped.push("veth-rps, loopback-rps: only one CPU online".to_string());
    }
    let stop_all = record::stop_flag_on_signals();
    let mut results = Vec::new();
    for (kind, sender, rx, dev) in plan {
        if stop_all.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted");
        }
        let name = format!("{kind:?}").to_lowercase();
        if !json {
            eprintln!("verify: {name}: sender CPU {sender} → receive CPU {rx}, {seconds}s");
        }
        // A recording the kernel's counters call incomplete proves nothing either way: run
        // the scenario again (the kernel skipping our programs is rare and brief).
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let path = dir.join(format!("{name}.parquet"));
            let _ = std::fs::remove_file(&path);
            let stop = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = mpsc::channel();
            let extra = Arc::new(Mutex::new(TraceMeta::default()));
            let control = record::Control {
                stop: stop.clone(),
                ready: ready_tx,
                extra_meta: extra.clone(),
            };
            let opts = record::RecordOpts {
                output: path.clone(),
                duration: None,
                cpus: None,
                ring_buffer_mb: 64,
                encode_buffer_mb: crate::recorder::background::default_buffer_mb(),
                raw_pointers: false,
                all_softirqs: false,
                classic_tracepoints: false,
                quiet: true,
                force: true,
                control: Some(control),
            };
            let rec = std::thread::spawn(move || record::run(opts));
            if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                stop.store(true, Ordering::SeqCst);
                return match rec.join() {
                    Ok(Err(e)) => Err(e),
                    _ => Err(anyhow::anyhow!("recording did not start")),
                };
            }
            let rps_before = received_rps();
            let rep = scenario::run(
                &scenario::Opts {
                    kind,
                    sender_cpu: sender,
                    rx_cpu: rx,
                    duration: Duration::from_secs(seconds),
                    rate: 2000,
                    hotplug_cpu: None,
                },
                stop_all.clone(),
            );
            std::thread::sleep(Duration::from_millis(200));
            {
                let mut m = extra.lock().unwrap_or_else(|e| e.into_inner());
                m.set("scenario", name.clone());
                if kind != scenario::Kind::Loopback {
                    m.set("expect_rps_dev", dev);
                    m.set("expect_rps_cpu", rx.to_string());
                }
                if let (Some(a), Some(b)) = (rps_before, received_rps()) {
                    m.set(
                        "softnet_received_rps_delta",
                        (b.saturating_sub(a)).to_string(),
                    );
                }
            }
            stop.store(true, Ordering::SeqCst);
            let rec = rec
                .join()
                .map_err(|_| anyhow::anyhow!("recording thread panicked"))??;
            let rep = rep?;
            let trace = analysis::read_trace(&path)?;
            let report = check::check(&trace, Some(checked_as));
            let negative_control = (kind != scenario::Kind::Loopback).then(|| {
                let wrong = if checked_as == Mode::C {
                    Mode::B
                } else {
                    Mode::C
                };
                let r = check::check(&trace, Some(wrong));
                NegativeControl {
                    checked_as: wrong,
                    diverged: r.divergent(),
                    failed_rules: failed_rules(&r),
                }
            });
            if !json {
                eprintln!(
                    "verify: {name}: {} events, sent {} received {}: {}",
                    rec.events,
                    rep.sent,
                    rep.received,
                    report.verdict.name()
                );
            }
            if report.incomplete() && attempt < VERIFY_ATTEMPTS {
                if !json {
                    let (min, max) = report
                        .kernel_counters
                        .as_ref()
                        .map_or((0, 0), |k| k.short_total());
                    let n = if min == max {
                        min.to_string()
                    } else {
                        format!("{min}–{max}")
                    };
                    eprintln!(
                        "verify: {name}: recording incomplete (the kernel counted {n} events \
                         more than were recorded, or the ring lost some): again \
                         ({attempt}/{VERIFY_ATTEMPTS})"
                    );
                }
                continue;
            }
            results.push(ScenarioResult {
                completeness: report.completeness,
                attempts: attempt,
                scenario: name.clone(),
                sent: rep.sent,
                received: rep.received,
                trace: path.display().to_string(),
                verdict: report.verdict,
                failed_rules: failed_rules(&report),
                paths: report.paths.clone(),
                negative_control,
                report,
            });
            break;
        }
    }
    let mode_ok = expect.is_none_or(|m| m == live);
    // An incomplete recording's negative control may find nothing to diverge on: it is
    // inconclusive, not a blind checker.
    let passed = mode_ok
        && results.iter().all(|r| {
            r.verdict != Verdict::Fail
                && (r.negative_control.as_ref().is_none_or(|n| n.diverged)
                    || r.completeness == Completeness::Incomplete)
        });
    let incomplete = results
        .iter()
        .any(|r| r.completeness == Completeness::Incomplete);
    let v = VerifyReport {
        kernel_release: env.kernel.release.clone(),
        live_mode: live,
        expected_mode: expect,
        mode_ok,
        checked_as,
        scenarios: results,
        skipped,
        passed,
        incomplete,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_verify(&v);
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(if !passed {
        1
    } else if incomplete {
        crate::INCOMPLETE
    } else {
        0
    })
}

fn print_verify(v: &VerifyReport) {
    println!(
        "kernel {}: live mode {}",
        v.kernel_release,
        v.live_mode.as_str()
    );
    if let Some(e) = v.expected_mode {
        println!(
            "expected mode {}: {}",
            e.as_str(),
            if v.mode_ok { "ok" } else { "MISMATCH" }
        );
    }
    for s in &v.scenarios {
        println!(
            "{:<13} {:<13} sent {:>5} received {:>5}  paths: {}",
            s.scenario,
            s.verdict.name(),
            s.sent,
            s.received,
            crate::fmt_counts(&s.paths, "")
        );
        if !s.failed_rules.is_empty() {
            println!("              failed rules: {}", s.failed_rules.join(" "));
            for d in s.report.rules.iter().flat_map(|r| &r.divergences).take(5) {
                println!(
                    "              {}: {} — expected: {}",
                    d.rule, d.message, d.expected
                );
            }
        }
        if let Some(n) = &s.negative_control {
            println!(
                "              negative control (as mode {}): {}{}",
                n.checked_as.as_str(),
                if n.diverged {
                    "diverges, as it must"
                } else {
                    "DID NOT DIVERGE — the checker is blind here"
                },
                if n.failed_rules.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", n.failed_rules.join(" "))
                }
            );
        }
    }
    for s in &v.skipped {
        println!("skipped       {s}");
    }
    println!("verify: {}", if v.passed { "PASS" } else { "FAIL" });
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode `{s}`: use A, B or C"))
}

/// `--mode auto|A|B|C`: None = auto.
#[derive(Clone, Copy, Debug)]
pub struct ModeArg(pub Option<Mode>);

pub fn parse_mode_auto(s: &str) -> Result<ModeArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        Ok(ModeArg(None))
    } else {
        parse_mode(s).map(|m| ModeArg(Some(m)))
    }
}

pub fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::parse(s).ok_or_else(|| format!("unknown workload `{s}`: use rps, loopback or mixed"))
}
