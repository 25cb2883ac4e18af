//! `napiscope verify`: the built-in scenarios on this host, each recorded and checked
//! against the host's mode (and, as a negative control, against another).

mod device;
mod report;
mod text;

use std::{
    path::{Path, PathBuf},
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
    TraceMeta,
};
use anyhow::{Context as _, Result};
use device::{DeviceNapi, Setting};
use report::{NegativeControl, ScenarioResult, VerifyReport};

use crate::{
    cli::{parse_duration, parse_mode, CliError, INCOMPLETE},
    kernel::{env::Environment, system},
    recorder::{self as record, background},
    signals, traffic as scenario,
};

#[derive(clap::Args)]
pub struct Args {
    /// Fail unless this host runs this mode (A, B or C)
    #[arg(long, value_parser = parse_mode)]
    expect_mode: Option<Mode>,
    /// Print one JSON object: the mode, its evidence and every scenario's verdict
    #[arg(long)]
    json: bool,
    /// Keep the scenario recordings in this directory
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Traffic per scenario (10s, 500ms, 1m; a bare number is seconds)
    #[arg(
        short,
        long,
        alias = "seconds",
        default_value = "2s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    duration: Duration,
}

pub fn run(a: Args) -> Result<u8> {
    run_verify(a.expect_mode, a.json, a.keep.as_deref(), a.duration)
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

fn failed_rules(r: &CheckReport) -> Vec<&'static str> {
    r.rules
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .map(|x| x.id)
        .collect()
}

/// How often `verify` runs a scenario whose recording came out incomplete.
const VERIFY_ATTEMPTS: u32 = 3;

fn run_verify(expect: Option<Mode>, json: bool, keep: Option<&Path>, each: Duration) -> Result<u8> {
    let rights = system::Rights::current();
    // SAFETY: geteuid has no preconditions.
    if !rights.can_trace() || unsafe { libc::geteuid() } != 0 {
        return Err(CliError::usage(
            "verify loads eBPF programs and creates network namespaces: run it as root",
        )
        .into());
    }
    let env = Environment::gather();
    let live = env.mode.mode;
    let checked_as = expect.unwrap_or(live);
    let dir = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.to_path_buf()
        }
        None => std::env::temp_dir().join(format!("napiscope-verify-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let (plan, skipped) = plan(&env.kernel.cpus_online);
    let stop_all = signals::stop_flag_on_signals();
    let mut results = Vec::new();
    for step in plan {
        if stop_all.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted");
        }
        let run = Run {
            step,
            name: step.kind.name(),
            dir: &dir,
            duration: each,
            checked_as,
            json,
            stop_all: &stop_all,
        };
        results.push(run.scenario()?);
    }
    let mode_ok = expect.is_none_or(|m| m == live);
    // An incomplete recording's negative control may find nothing to diverge on: it is
    // inconclusive, not a blind checker.
    let passed = mode_ok
        && results.iter().all(|r| {
            r.verdict != Verdict::Fail
                && r.device_napi.as_ref().is_none_or(|d| d.holds)
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
        text::print_verify(&v);
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(if !passed {
        1
    } else if incomplete {
        INCOMPLETE
    } else {
        0
    })
}

/// One scenario of the plan: its traffic, sender and receive CPU, and the device RPS
/// steers on.
#[derive(Clone, Copy)]
struct Step {
    kind: scenario::Kind,
    sender: u32,
    rx: u32,
    dev: &'static str,
}

/// The scenarios this machine can run (veth-rps and veth-gro-rps first when it has two CPUs
/// and veth), and
/// why the others are skipped.
fn plan(online: &[u32]) -> (Vec<Step>, Vec<String>) {
    let (s_cpu, t_cpu) = (online[0], *online.get(1).unwrap_or(&online[0]));
    let step = |kind, rx, dev| Step {
        kind,
        sender: s_cpu,
        rx,
        dev,
    };
    let mut plan = vec![step(scenario::Kind::Loopback, s_cpu, "lo")];
    let mut skipped = Vec::new();
    if t_cpu != s_cpu {
        match scenario::veth_available() {
            Ok(()) => {
                plan.insert(0, step(scenario::Kind::VethRps, t_cpu, "nsc1"));
                // RPS steered from a device's (veth's GRO) poll: the path with no netif_rx.
                plan.insert(1, step(scenario::Kind::VethGroRps, t_cpu, "nsc1"));
                // The same with the veth's NAPI switched to its napi/ thread halfway.
                plan.insert(2, step(scenario::Kind::VethGroThreaded, t_cpu, "nsc1"));
                // The same instance busy polled by the receiving task.
                match scenario::busy_poll::available() {
                    Ok(()) => plan.insert(3, step(scenario::Kind::VethGroBusyPoll, t_cpu, "nsc1")),
                    Err(why) => skipped.push(format!("veth-gro-busy-poll: {why}")),
                }
            }
            Err(why) => skipped.push(format!("veth-rps, veth-gro-*: {why}")),
        }
        plan.push(step(scenario::Kind::LoopbackRps, t_cpu, "lo"));
    } else {
        skipped.push("veth-rps, veth-gro-*, loopback-rps: only one CPU online".to_string());
    }
    (plan, skipped)
}

/// One scenario's run: record while the traffic runs, then check the recording.
struct Run<'a> {
    step: Step,
    name: String,
    dir: &'a Path,
    duration: Duration,
    checked_as: Mode,
    json: bool,
    stop_all: &'a Arc<AtomicBool>,
}

impl Run<'_> {
    /// A recording the kernel's counters call incomplete proves nothing either way: run the
    /// scenario again (the kernel skipping our programs is rare and brief), up to
    /// VERIFY_ATTEMPTS times.
    fn scenario(&self) -> Result<ScenarioResult> {
        let (name, json) = (&self.name, self.json);
        if !json {
            eprintln!(
                "verify: {name}: sender CPU {} → receive CPU {}, {:?}",
                self.step.sender, self.step.rx, self.duration
            );
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (path, rec, rep) = self.record_traffic()?;
            let trace = analysis::read_trace(&path)?;
            let report = check::check(&trace, Some(self.checked_as));
            let negative_control = (self.step.kind != scenario::Kind::Loopback)
                .then(|| negative_control(&trace, self.checked_as));
            let device_napi = self.device_setting(&trace.events, &rep);
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
                    say_again(name, &report, attempt);
                }
                continue;
            }
            return Ok(ScenarioResult {
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
                device_napi,
                report,
            });
        }
    }

    /// The GRO scenarios poll the veth's own NAPI: its places against the setting.
    fn device_setting(
        &self,
        events: &[analysis::Event],
        rep: &scenario::Report,
    ) -> Option<DeviceNapi> {
        let setting = match self.step.kind {
            scenario::Kind::VethGroRps => Setting::NotThreaded,
            scenario::Kind::VethGroThreaded => Setting::ThreadedHalfway,
            scenario::Kind::VethGroBusyPoll => Setting::BusyPoll {
                tid: rep.busy_poll.as_ref().map_or(0, |b| b.tid),
                napi_id: rep.busy_poll.as_ref().and_then(|b| b.napi_id),
            },
            _ => return None,
        };
        Some(device::device_napi(events, self.step.dev, setting))
    }

    /// Record (in a thread of this process) while the scenario's traffic runs; the
    /// recording carries what the checker must know of the scenario in its metadata.
    fn record_traffic(&self) -> Result<(PathBuf, record::RecordSummary, scenario::Report)> {
        let Step {
            kind,
            sender,
            rx,
            dev,
        } = self.step;
        let path = self.dir.join(format!("{}.parquet", self.name));
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
            encode_buffer_mb: background::default_buffer_mb(),
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
                duration: self.duration,
                rate: 2000,
                hotplug_cpu: None,
            },
            self.stop_all.clone(),
        );
        std::thread::sleep(Duration::from_millis(200));
        {
            let mut m = extra.lock().unwrap_or_else(|e| e.into_inner());
            m.set("scenario", self.name.clone());
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
        Ok((path, rec, rep?))
    }
}

/// The same trace checked against the other mode's model must diverge.
fn negative_control(trace: &analysis::Trace, checked_as: Mode) -> NegativeControl {
    let wrong = if checked_as == Mode::C {
        Mode::B
    } else {
        Mode::C
    };
    let r = check::check(trace, Some(wrong));
    NegativeControl {
        checked_as: wrong,
        diverged: r.divergent(),
        failed_rules: failed_rules(&r),
    }
}

fn say_again(name: &str, report: &CheckReport, attempt: u32) {
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
        "verify: {name}: recording incomplete (the kernel counted {n} events more than were \
         recorded, or the ring lost some): again ({attempt}/{VERIFY_ATTEMPTS})"
    );
}
