//! `napiscope`: how this Linux kernel schedules receive-path work (NAPI, NET_RX softirq,
//! ksoftirqd, RPS IPIs, backlog_napi threads), live and on record.

mod cmd;
mod kernel;
mod recorder;
mod traffic;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use cmd::{report, status, top, verify as conformance};
use kernel::{huge_alloc, system};
use recorder::{self as record, background};
use traffic as scenario;

#[global_allocator]
static ALLOC: huge_alloc::HugeAlloc = huge_alloc::HugeAlloc;

/// Exit codes: 0 success, 1 failure / divergence, 2 unusable input or missing rights,
/// 3 (`INCOMPLETE`) inconclusive: the recording misses events (the kernel's counters say so,
/// or the ring lost some) and nothing diverged.
pub const INCOMPLETE: u8 = 3;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub msg: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            msg: msg.into(),
        }
    }
    pub fn rights(r: &system::Rights) -> CliError {
        CliError::usage(format!(
            "missing {} (euid {}): tracing loads eBPF programs. Run as root (sudo napiscope ...) \
             or grant the binary the capabilities: sudo setcap cap_bpf,cap_perfmon+ep $(which napiscope)",
            r.missing().join(" and "),
            r.euid
        ))
    }
}

#[derive(Parser)]
#[command(
    name = "napiscope",
    version,
    about = "See how this kernel schedules receive-path work: NAPI, NET_RX softirq, ksoftirqd, \
             RPS IPIs and backlog_napi threads",
    long_about = "napiscope traces the Linux receive path with eBPF tracepoints and tells which \
                  backlog-NAPI mode the kernel runs in:\n  \
                  A  no backlog-NAPI patch (before 6.10): remote RPS work goes by IPI\n  \
                  B  patch present, threads off: same paths as A\n  \
                  C  threads on (thread_backlog_napi or PREEMPT_RT): remote work wakes backlog_napi/N\n\n\
                  Start with `napiscope status`, then `napiscope record -o trace.parquet -d 5`.",
    after_help = "Exit codes: 0 ok, 1 failure, 2 bad input or missing rights (CAP_BPF + CAP_PERFMON), \
                  3 incomplete (record, check, verify: the recording misses events the kernel \
                  counted or the ring lost; nothing diverged)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Kernel, mode (A/B/C) with evidence, rights, tracefs/BTF/kprobes, and which probes attach
    Status {
        /// Machine-readable output (one JSON object)
        #[arg(long)]
        json: bool,
    },
    /// Live view: where NET_RX work runs on each CPU, RPS IPIs, backlog threads, latency,
    /// and the model's counter rules (counted in the kernel; q quits, ? lists the keys)
    #[command(after_help = top::AFTER_HELP)]
    Top(top::TopArgs),
    /// Record receive-path events to a Parquet file (one row per event; see docs/schema.md)
    #[command(
        after_help = "Examples:\n  napiscope record -o trace.parquet -d 10\n  \
                            napiscope record -o rps.parquet -C 0,1 --ring-buffer-mb 256\n  \
                            napiscope record --hive fleet/ -d 60   (then: napiscope report fleet/)\n\n\
                            Ctrl-C or SIGTERM stops the recording and still writes a valid file.\n\
                            Query it with DuckDB: SELECT event, cpu, count(*) FROM 'trace.parquet' GROUP BY ALL;\n\n\
                            The file: events go to .FILE.napiscope-PID.partial beside FILE, which is\n\
                            replaced only when the recording is complete. An existing FILE or a symbolic\n\
                            link is refused (exit 2) unless --force, which replaces it (a link: the link\n\
                            itself, never the file it points to).\n\
                            Killed (SIGKILL, out of memory): every second, or every 262,144 events, the\n\
                            rows so far are flushed and checkpointed; `napiscope recover FILE` then makes\n\
                            a trace of all events up to the last checkpoint (marked partial). A kill loses\n\
                            the events since that checkpoint (about 1 s) plus those still waiting for the\n\
                            encoder (the progress line's \"to encode\").\n\
                            Disk full or I/O error: the recording stops at once (probes detached, exit 1)\n\
                            and FILE keeps the events up to the last checkpoint, marked partial.\n\n\
                            Complete? At start and end record reads the kernel's own per-CPU counters\n\
                            (/proc/net/softnet_stat processed and received_rps, /proc/softirqs NET_RX) and\n\
                            holds the events against them: netif_receive_skb, csd_function_entry of\n\
                            rps_trigger_softirq and softirq_entry(NET_RX), per CPU. The summary says per CPU\n\
                            and counter what matches and what is short (docs/completeness.md).\n\
                            Exit codes: 0 complete, 3 written but incomplete (short against the kernel's\n\
                            counters, ring losses, sequence gaps or recursion misses), 1 failed, 2 bad usage."
    )]
    Record {
        /// Output Parquet file
        #[arg(
            short,
            long,
            value_name = "FILE.parquet",
            required_unless_present = "hive"
        )]
        output: Option<PathBuf>,
        /// Replace FILE if it exists (also a symbolic link: the link is replaced, not
        /// written through)
        #[arg(long)]
        force: bool,
        /// Write into a hive-partitioned tree instead of -o:
        /// DIR/host=<hostname>/kernel=<release>/<UTC start>.parquet (read it with `report DIR`)
        #[arg(long, value_name = "DIR", conflicts_with = "output")]
        hive: Option<PathBuf>,
        /// How long to record: 10, 10s, 500ms, 2m (default: until Ctrl-C)
        #[arg(short, long, value_parser = parse_duration, value_name = "DURATION")]
        duration: Option<Duration>,
        /// Only record these CPUs, e.g. 0,2-3 (default: all)
        #[arg(short = 'C', long, value_name = "CPUS")]
        cpus: Option<String>,
        /// Ring buffer size in MiB (a power of two); raise it if events are lost
        #[arg(long, default_value_t = 64, value_parser = parse_ring_mb)]
        ring_buffer_mb: u32,
        /// Memory in MiB for events waiting to be encoded (default: 1024; at most a quarter
        /// of available memory, larger values are lowered to that). While it has room,
        /// Parquet encoding runs only on CPU time the traced workload leaves idle, so a busy
        /// machine is disturbed less and the file is finished after the recording stops; 0
        /// encodes at normal priority as events come. A bound, not allocated up front
        #[arg(long, value_name = "MiB")]
        encode_buffer_mb: Option<u64>,
        /// Write kernel addresses (skb, napi, csd) as they are, not as a per-recording hash
        #[arg(long)]
        raw_pointers: bool,
        /// Record softirq raise/entry/exit of every vector, not only NET_RX
        #[arg(long)]
        all_softirqs: bool,
        /// Attach classic tracepoints everywhere, also where a raw tracepoint reads the same
        /// values for less (to compare the two; `status` lists which kind each probe uses)
        #[arg(long)]
        classic_tracepoints: bool,
        /// No progress line
        #[arg(short, long)]
        quiet: bool,
        /// Print the final summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Where receive work ran, per CPU and per packet path: deliveries, latencies, NAPI
    /// batches, softirq time, RPS IPIs and thread wake-ups per packet, losses
    #[command(after_help = REPORT_HELP)]
    Report {
        /// Trace files, or directories searched for *.parquet (hive `key=value/` directories
        /// become partitions, each reported on its own as well)
        #[arg(required = true, value_name = "TRACE.parquet|DIR")]
        inputs: Vec<PathBuf>,
        /// Machine-readable output: the same numbers as the tables, as one JSON object
        #[arg(long)]
        json: bool,
        /// Also write SVG charts into DIR: latency-<path>.svg, timeline-cpu<N>.svg
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// Compare with this older recording (file or directory): both side by side,
        /// differences that matter marked `!`
        #[arg(long, value_name = "OLD")]
        baseline: Option<PathBuf>,
    },
    /// Drive test traffic through one receive path, inside network namespaces napiscope
    /// creates and removes (nothing leaves them). Run `record` alongside to see it.
    #[command(
        after_help = "Example (two shells):\n  napiscope record -o rps.parquet -d 5\n  \
                            napiscope scenario veth-rps --sender-cpu 0 --rx-cpu 1 -d 3s"
    )]
    Scenario(ScenarioArgs),
    /// Generate a trace from the reference model (same schema as `record`)
    #[command(
        after_help = "Example: napiscope simulate --mode C --cpus 2 --workload rps -o sim.parquet\n\
                            then: napiscope check sim.parquet"
    )]
    Simulate {
        /// A: no patch; B: patch, threads off; C: backlog_napi threads on
        #[arg(long, value_parser = conformance::parse_mode)]
        mode: analysis::mode::Mode,
        #[arg(long, default_value_t = 2)]
        cpus: usize,
        /// rps: CPU 0 → RPS → CPU 1; loopback: local; mixed: every CPU, random targets
        #[arg(long, default_value = "rps", value_parser = conformance::parse_workload)]
        workload: analysis::model::sim::Workload,
        #[arg(long, default_value_t = 2000)]
        packets: usize,
        /// Seed for the kernel's free choices (same seed, same trace)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Kernel release whose version features to model (e.g. 6.1.0, 6.12.118)
        #[arg(long)]
        kernel: Option<String>,
        #[arg(short, long, value_name = "FILE.parquet")]
        output: Option<PathBuf>,
        /// Write N copies of the run back to back (each one second after the last, per-CPU
        /// seq continued): traces of any size with the model's mix of events, to measure
        /// `check` and `report` without holding them in memory here
        #[arg(long, default_value_t = 1, value_name = "N", requires = "output")]
        copies: u32,
    },
    /// Make a trace from an interrupted recording (killed, or stopped by a full disk): every
    /// event up to its last checkpoint, marked partial
    #[command(
        after_help = "Examples:\n  napiscope recover trace.parquet        (finds .trace.parquet.napiscope-PID.partial)\n  \
                            napiscope recover .trace.parquet.napiscope-4242.partial -o saved.parquet"
    )]
    Recover {
        /// The file that was being recorded, or its partial file (.FILE.napiscope-PID.partial)
        #[arg(value_name = "FILE|PARTIAL")]
        input: PathBuf,
        /// Where to write the trace (default: the file that was being recorded)
        #[arg(short, long, value_name = "FILE.parquet")]
        output: Option<PathBuf>,
        /// Replace the output file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Check a trace against the reference model; exit 0 conformant, 1 divergent, 2 unusable,
    /// 3 incomplete
    #[command(
        after_help = "Rules: G1-G7 (all modes), A-1..A-8 (modes A/B), C-1..C-11 (mode C), \
                            from docs/model.md section 11.\n\
                            Windows with lost events are INCONCLUSIVE, never FAIL; so are the events a\n\
                            recording's kernel-counter check says are missing (its start/end snapshots\n\
                            of softnet_stat and /proc/softirqs, held against the trace per CPU).\n\
                            Exit codes: 0 conformant and complete, 1 a rule diverged, 2 unusable input,\n\
                            3 no rule diverged but the trace misses events (inconclusive)."
    )]
    Check {
        trace: PathBuf,
        /// Mode to check against: auto (from the trace, then its metadata), A, B or C
        #[arg(long, default_value = "auto", value_parser = conformance::parse_mode_auto)]
        mode: conformance::ModeArg,
        #[arg(long)]
        json: bool,
        /// Also write a JUnit XML report (one test case per rule)
        #[arg(long, value_name = "FILE.xml")]
        junit: Option<PathBuf>,
    },
    /// CI entry point: run the built-in scenarios on this host, record and check them;
    /// fail if the kernel's mode is not the expected one or a trace diverges. A scenario whose
    /// recording the kernel's counters call incomplete runs again (3 tries); exit 3 if one
    /// stays incomplete and nothing diverged
    Verify {
        /// Fail unless this host runs this mode (A, B or C)
        #[arg(long, value_parser = conformance::parse_mode)]
        expect_mode: Option<analysis::mode::Mode>,
        #[arg(long)]
        json: bool,
        /// Keep the scenario recordings in this directory
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Seconds of traffic per scenario
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
}

const REPORT_HELP: &str = "Examples:
  napiscope report trace.parquet                  tables: paths, latencies, per-CPU work
  napiscope report trace.parquet --json | jq '.cpus[] | {cpu, deliveries}'
  napiscope report trace.parquet --plot plots/    + latency histograms and per-CPU timelines (SVG)
  napiscope report threads-on.parquet --baseline threads-off.parquet
  napiscope report fleet/                         every *.parquet below fleet/, per host=/kernel=
  napiscope record --hive fleet/ -d 30            (writes fleet/host=H/kernel=K/<start>.parquet)

Paths: local_softirq (enqueued and processed on one CPU), remote_softirq (RPS: IPI, then the
target's NET_RX softirq), ksoftirqd, backlog_thread (mode C: backlog_napi/N). Latency is
netif_rx to netif_receive_skb of the same skb. Exit 2: missing file, not Parquet, not a
napiscope trace, or no events.";

#[derive(clap::Args)]
struct ScenarioArgs {
    /// veth-rps: remote backlog path (RPS to --rx-cpu); loopback: local path;
    /// loopback-rps: loopback with RPS to --rx-cpu
    #[arg(value_enum)]
    kind: scenario::Kind,
    /// CPU the UDP sender is pinned to
    #[arg(long, default_value_t = 0)]
    sender_cpu: u32,
    /// CPU RPS steers receive work to
    #[arg(long, default_value_t = 1)]
    rx_cpu: u32,
    /// How long to send
    #[arg(short, long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Packets per second; 0 floods
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Take this CPU offline for the middle third of the run, then back online (exercises
    /// dev_cpu_dead; the CPU is brought back online however the scenario ends)
    #[arg(long, value_name = "CPU")]
    hotplug_cpu: Option<u32>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 10, 10s, 500ms, 2m"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive, got `{s}`"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_ring_mb(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of MiB"))?;
    if v == 0 || !v.is_power_of_two() || v > 2048 {
        return Err(format!(
            "ring buffer size must be a power of two between 1 and 2048 MiB, got {v}"
        ));
    }
    Ok(v)
}

fn parse_cpus(s: &str) -> Result<Vec<u32>, CliError> {
    let online = system::online_cpus();
    let cpus = system::parse_cpu_list(s)
        .ok_or_else(|| CliError::usage(format!("`{s}` is not a CPU list; use e.g. 0,2-3")))?;
    if cpus.is_empty() {
        return Err(CliError::usage("the CPU list is empty"));
    }
    for c in &cpus {
        if !online.contains(c) {
            return Err(CliError::usage(format!(
                "unknown CPU {c}: online CPUs are {}",
                fmt_cpus(&online)
            )));
        }
    }
    Ok(cpus)
}

/// "k=v k=v …" (each key after `prefix`), or "none" — the one way counts are printed.
pub fn fmt_counts<K: std::fmt::Display, V: std::fmt::Display>(
    items: impl IntoIterator<Item = (K, V)>,
    prefix: &str,
) -> String {
    let parts: Vec<String> = items
        .into_iter()
        .map(|(k, v)| format!("{prefix}{k}={v}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn fmt_cpus(c: &[u32]) -> String {
    c.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn run_scenario(a: ScenarioArgs) -> anyhow::Result<u8> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::usage(
            "scenarios create network namespaces and need root (CAP_SYS_ADMIN + CAP_NET_ADMIN)",
        )
        .into());
    }
    let online = system::online_cpus();
    for c in [a.sender_cpu, a.rx_cpu] {
        if !online.contains(&c) {
            return Err(CliError::usage(format!(
                "unknown CPU {c}: online CPUs are {}",
                fmt_cpus(&online)
            ))
            .into());
        }
    }
    if let Some(cpu) = a.hotplug_cpu {
        scenario::check_hotplug(cpu, a.sender_cpu)
            .map_err(|e| CliError::usage(format!("{e:#}")))?;
    }
    let stop = record::stop_flag_on_signals();
    let report = scenario::run(
        &scenario::Opts {
            kind: a.kind,
            sender_cpu: a.sender_cpu,
            rx_cpu: a.rx_cpu,
            duration: a.duration,
            rate: a.rate,
            hotplug_cpu: a.hotplug_cpu,
        },
        stop,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: sent {} UDP packets, received {} in {:.1}s",
            report.scenario, report.sent, report.received, report.seconds
        );
    }
    Ok(0)
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Scenario(a) => run_scenario(a),
        Cmd::Top(a) => top::run(a),
        Cmd::Simulate {
            mode,
            cpus,
            workload,
            packets,
            seed,
            kernel,
            output,
            copies,
        } => conformance::run_simulate(
            conformance::SimArgs {
                mode,
                cpus,
                workload,
                packets,
                seed,
                kernel,
                copies,
            },
            output.as_deref(),
        ),
        Cmd::Check {
            trace,
            mode,
            json,
            junit,
        } => conformance::run_check(&trace, mode.0, json, junit.as_deref()),
        Cmd::Verify {
            expect_mode,
            json,
            keep,
            seconds,
        } => conformance::run_verify(expect_mode, json, keep.as_deref(), seconds),
        Cmd::Status { json } => {
            let s = status::gather();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                status::print(&s);
            }
            Ok(0)
        }
        Cmd::Report {
            inputs,
            json,
            plot,
            baseline,
        } => report::run(report::ReportOpts {
            inputs,
            json,
            plot,
            baseline,
        }),
        Cmd::Recover {
            input,
            output,
            force,
        } => record::run_recover(&input, output.as_deref(), force),
        Cmd::Record {
            output,
            force,
            hive,
            duration,
            cpus,
            ring_buffer_mb,
            encode_buffer_mb,
            raw_pointers,
            all_softirqs,
            classic_tracepoints,
            quiet,
            json,
        } => {
            let cpus = cpus.as_deref().map(parse_cpus).transpose()?;
            let output = match (output, hive) {
                (Some(o), _) => o,
                (None, Some(dir)) => report::hive_output(&dir)?,
                (None, None) => return Err(CliError::usage("give -o FILE or --hive DIR").into()),
            };
            let summary = record::run(record::RecordOpts {
                output,
                duration,
                cpus,
                ring_buffer_mb,
                encode_buffer_mb: match encode_buffer_mb {
                    Some(mb) => background::cap_buffer_mb(mb, quiet),
                    None => background::default_buffer_mb(),
                },
                force,
                raw_pointers,
                all_softirqs,
                classic_tracepoints,
                quiet,
                control: None,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                record::print_summary(&summary);
            }
            Ok(if summary.incomplete() { INCOMPLETE } else { 0 })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only print end quietly when their reader goes (`check t.parquet | head`),
    // as Unix tools do, instead of panicking on a failed print. Not the ones that hold
    // probes, network namespaces or a recording open: those clean up first.
    if matches!(
        cli.cmd,
        Cmd::Status { .. } | Cmd::Check { .. } | Cmd::Simulate { .. } | Cmd::Report { .. }
    ) {
        // SAFETY: restores the default action for one signal before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Commands that build a trace's worth of data in memory on one thread. Not `report`:
    // polars allocates from many threads' arenas, and there the tuning hurt (50M events,
    // two runs minutes apart: 15.9 s and 1133 MiB peak with it, 12.4 s and 966 MiB without).
    if matches!(cli.cmd, Cmd::Check { .. } | Cmd::Simulate { .. }) {
        huge_alloc::tune_heap();
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.downcast_ref::<CliError>().map_or(1, |c| c.code);
            eprintln!("napiscope: error: {e:#}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn counts_format() {
        assert_eq!(fmt_counts([(0, 3), (1, 0)], "cpu"), "cpu0=3 cpu1=0");
        assert_eq!(fmt_counts(Vec::<(u32, u64)>::new(), ""), "none");
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_mb("16").unwrap(), 16);
        assert!(parse_ring_mb("3").is_err());
        assert!(parse_ring_mb("0").is_err());
    }

    #[test]
    fn every_subcommand_parses_its_defaults() {
        // Type mismatches between an arg's parser and its field only show when parsing.
        for args in [
            vec!["napiscope", "status"],
            vec!["napiscope", "check", "t.parquet"],
            vec!["napiscope", "check", "t.parquet", "--mode", "c", "--json"],
            vec!["napiscope", "simulate", "--mode", "B"],
            vec!["napiscope", "verify"],
            vec!["napiscope", "top"],
            vec![
                "napiscope",
                "top",
                "--json",
                "-n",
                "3",
                "--expect-mode",
                "C",
            ],
            vec!["napiscope", "report", "a.parquet", "dir/", "--json"],
            vec![
                "napiscope",
                "report",
                "a.parquet",
                "--baseline",
                "b.parquet",
            ],
            vec!["napiscope", "record", "--hive", "fleet", "-d", "1"],
            vec!["napiscope", "verify", "--expect-mode", "B"],
            vec!["napiscope", "scenario", "veth-rps"],
            vec![
                "napiscope",
                "recover",
                "t.parquet",
                "-o",
                "u.parquet",
                "--force",
            ],
            vec!["napiscope", "record", "-o", "x.parquet", "--force"],
            vec![
                "napiscope",
                "record",
                "-o",
                "x.parquet",
                "-d",
                "1s",
                "-C",
                "0",
            ],
        ] {
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            if let Cmd::Check { mode, .. } = cli.cmd {
                assert!(mode.0.is_none() || mode.0 == Some(analysis::mode::Mode::C));
            }
        }
        assert!(Cli::try_parse_from(["napiscope", "check", "t", "--mode", "D"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "report"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "record", "-d", "1"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "record", "-o", "x", "--hive", "d"]).is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
