//! `napiscope`: how this Linux kernel schedules receive-path work (NAPI, NET_RX softirq,
//! ksoftirqd, RPS IPIs, backlog_napi threads), live and on record.
//!
//! The layers, each importing only those below it:
//! - `main`: the command line (clap) and dispatch;
//! - `cmd`: one module per subcommand, none importing another;
//! - `recorder` (kernel events → Parquet, for `record` and `verify`) and `traffic` (test
//!   traffic through network namespaces, for `scenario` and `verify`);
//! - `cli` (errors, exit codes, shared argument parsers), `output` (shared formatting),
//!   `signals` (SIGINT/SIGTERM as a stop request);
//! - `kernel`: the code that talks to the kernel (probes, BTF, tracefs, rings, decoding,
//!   symbols, the kernel's counters, system facts).

#[cfg(test)]
mod bench;
mod build_info;
mod cli;
mod cmd;
mod kernel;
mod live;
mod output;
mod recorder;
mod signals;
mod traffic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: kernel::huge_alloc::HugeAlloc = kernel::huge_alloc::HugeAlloc;

#[derive(Parser)]
#[command(
    name = "napiscope",
    version = build_info::VERSION,
    about = "See how this kernel schedules receive-path work: NAPI, NET_RX softirq, ksoftirqd, \
             RPS IPIs and backlog_napi threads",
    long_about = "napiscope traces the Linux receive path with eBPF tracepoints and tells which \
                  backlog-NAPI mode the kernel runs in:\n  \
                  A  no backlog-NAPI patch (before 6.10): remote RPS work goes by IPI\n  \
                  B  patch present, threads off: same paths as A\n  \
                  C  threads on (thread_backlog_napi or PREEMPT_RT): remote work wakes backlog_napi/N\n\n\
                  Start with `napiscope status`, then `napiscope record -o trace.parquet -d 5`.",
    after_help = "Exit codes: 0 ok, 1 failure, 2 bad input or missing rights (root, or CAP_BPF + CAP_PERFMON + CAP_DAC_READ_SEARCH), \
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
    Status(cmd::status::Args),
    /// Live view: where NET_RX work runs on each CPU, RPS IPIs, backlog threads, latency,
    /// and the model's counter rules (counted in the kernel; q quits, ? lists the keys)
    #[command(after_help = cmd::top::AFTER_HELP)]
    Top(cmd::top::TopArgs),
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
    Record(cmd::record::Args),
    /// Where receive work ran, per CPU and per packet path: deliveries, latencies, NAPI
    /// batches, softirq time, RPS IPIs and thread wake-ups per packet, losses
    #[command(after_help = REPORT_HELP)]
    Report(cmd::report::Args),
    /// Drive test traffic through one receive path, inside network namespaces napiscope
    /// creates and removes (nothing leaves them). Run `record` alongside to see it.
    #[command(
        after_help = "Example (two shells):\n  napiscope record -o rps.parquet -d 5\n  \
                            napiscope scenario veth-rps --sender-cpu 0 --rx-cpu 1 -d 3s"
    )]
    Scenario(cmd::scenario::Args),
    /// Generate a trace from the reference model (same schema as `record`)
    #[command(
        after_help = "Example: napiscope simulate --mode C --cpus 2 --workload rps -o sim.parquet\n\
                            then: napiscope check sim.parquet"
    )]
    Simulate(cmd::simulate::Args),
    /// Make a trace from an interrupted recording (killed, or stopped by a full disk): every
    /// event up to its last checkpoint, marked partial
    #[command(
        after_help = "Examples:\n  napiscope recover trace.parquet        (finds .trace.parquet.napiscope-PID.partial)\n  \
                            napiscope recover .trace.parquet.napiscope-4242.partial -o saved.parquet"
    )]
    Recover(cmd::recover::Args),
    /// Check a trace against the reference model; exit 0 conformant, 1 divergent, 2 unusable,
    /// 3 incomplete
    #[command(
        // The rule list is the checker's table (analysis::check::rules::RULES).
        after_help = format!("Rules: {}, \
                            each with the kernel code it checks in docs/rules.md\n\
                            (the specification: docs/model.md §11).\n\
                            Windows with lost events are INCONCLUSIVE, never FAIL; so are the events a\n\
                            recording's kernel-counter check says are missing (its start/end snapshots\n\
                            of softnet_stat and /proc/softirqs, held against the trace per CPU).\n\
                            Exit codes: 0 conformant and complete, 1 a rule diverged, 2 unusable input,\n\
                            3 no rule diverged but the trace misses events (inconclusive).",
            analysis::check::rules::summary())
    )]
    Check(cmd::check::Args),
    /// CI entry point: run the built-in scenarios on this host, record and check them;
    /// fail if the kernel's mode is not the expected one or a trace diverges. A scenario whose
    /// recording the kernel's counters call incomplete runs again (3 tries); exit 3 if one
    /// stays incomplete and nothing diverged
    #[command(
        after_help = "Scenarios, each recorded and checked (all rules of the mode, \
        and the device NAPI rules N-1..N-3):\n  \
        veth-rps            netif_rx on the sender's CPU, RPS to the other (negative control: \
        checked as the other mode, it must diverge)\n  \
        veth-gro-rps        the veth's own NAPI (GRO on), RPS from its poll; every poll of it in \
        NET_RX (not threaded)\n  \
        veth-gro-threaded   the same, `threaded` switched on halfway: NET_RX, then only its \
        napi/<dev>-<id> thread\n  \
        veth-gro-busy-poll  the same, busy polled (SO_BUSY_POLL) by the receiving task: its \
        polls are that task's own, none a napi/ thread's\n  \
        loopback            local delivery\n  \
        loopback-rps        loopback with RPS to the other CPU\n\n\
        Exit: 0 pass, 1 a rule or setting diverged or the mode is not --expect-mode, \
        2 bad usage or no rights (run as root), 3 a recording stayed incomplete and nothing \
        diverged."
    )]
    Verify(cmd::verify::Args),
    /// Prometheus exporter: the live counters (as `top` counts them, in the kernel), latency
    /// histograms, the mode and the model's counter rules on /metrics
    #[command(after_help = cmd::serve::AFTER_HELP)]
    Serve(cmd::serve::Args),
    /// Replay a recording's packets through the model of another mode: RPS IPIs that would
    /// disappear, backlog_napi wake-ups and runs, latency by path, work by CPU (observed
    /// against predicted)
    #[command(after_help = cmd::whatif::AFTER_HELP)]
    Whatif(cmd::whatif::Args),
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

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.cmd {
        Cmd::Status(a) => cmd::status::run(a),
        Cmd::Top(a) => cmd::top::run(a),
        Cmd::Record(a) => cmd::record::run(a),
        Cmd::Report(a) => cmd::report::run(a),
        Cmd::Scenario(a) => cmd::scenario::run(a),
        Cmd::Simulate(a) => cmd::simulate::run(a),
        Cmd::Recover(a) => cmd::recover::run(a),
        Cmd::Check(a) => cmd::check::run(a),
        Cmd::Verify(a) => cmd::verify::run(a),
        Cmd::Serve(a) => cmd::serve::run(a),
        Cmd::Whatif(a) => cmd::whatif::run(a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only print end quietly when their reader goes (`check t.parquet | head`),
    // as Unix tools do, instead of panicking on a failed print. Not the ones that hold
    // probes, network namespaces or a recording open: those clean up first.
    if matches!(
        cli.cmd,
        Cmd::Status(_) | Cmd::Check(_) | Cmd::Simulate(_) | Cmd::Report(_) | Cmd::Whatif(_)
    ) {
        // SAFETY: restores the default action for one signal before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Commands that build a trace's worth of data in memory on one thread. Not `report`:
    // polars allocates from many threads' arenas, and there the tuning hurt (50M events,
    // two runs minutes apart: 15.9 s and 1133 MiB peak with it, 12.4 s and 966 MiB without).
    if matches!(cli.cmd, Cmd::Check(_) | Cmd::Simulate(_)) {
        kernel::huge_alloc::tune_heap();
    }
    quiet_stdout_panics();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli)));
    match outcome {
        Ok(Ok(code)) => ExitCode::from(code),
        // The reader went away (`top --no-tui | head -1`): the command has cleaned up while the
        // error travelled here; end quietly, as the print-only commands do by SIGPIPE.
        Ok(Err(e)) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            let code = e.downcast_ref::<cli::CliError>().map_or(1, |c| c.code);
            eprintln!("napiscope: error: {e:#}");
            ExitCode::from(code)
        }
        Err(panic) => match stdout_failure(panic.as_ref()) {
            Some(why) => {
                eprintln!("napiscope: error: cannot write to standard output: {why}");
                ExitCode::from(1)
            }
            None => std::panic::resume_unwind(panic),
        },
    }
}

/// What `println!` panics with when stdout fails (a full disk, a closed pipe with SIGPIPE
/// ignored): the standard library's message, the only handle it gives.
const STDOUT_PANIC: &str = "failed printing to stdout: ";

fn stdout_failure(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())?;
    msg.strip_prefix(STDOUT_PANIC).map(str::to_string)
}

/// A failed print is an I/O error, not a bug: keep the panic's report off stderr (main says it
/// in one line after the command's destructors ran) and leave every other panic's as it is.
fn quiet_stdout_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if stdout_failure(info.payload()).is_none() {
            default(info);
        }
    }));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_parses_its_defaults() {
        // Type mismatches between an arg's parser and its field only show when parsing.
        for args in [
            vec!["napiscope", "status"],
            vec!["napiscope", "check", "t.parquet"],
            vec!["napiscope", "check", "t.parquet", "--mode", "c", "--json"],
            vec!["napiscope", "simulate", "--mode", "B"],
            vec!["napiscope", "whatif", "--mode", "C", "t.parquet"],
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
            if let Cmd::Check(a) = cli.cmd {
                assert!(a.mode.0.is_none() || a.mode.0 == Some(analysis::mode::Mode::C));
            }
        }
        assert!(Cli::try_parse_from(["napiscope", "check", "t", "--mode", "D"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "report"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "record", "-d", "1"]).is_err());
        assert!(Cli::try_parse_from(["napiscope", "record", "-o", "x", "--hive", "d"]).is_err());
    }

    #[test]
    fn a_failed_print_is_told_apart_from_other_panics() {
        let full = std::panic::catch_unwind(|| {
            panic!("{STDOUT_PANIC}No space left on device (os error 28)")
        })
        .unwrap_err();
        assert_eq!(
            stdout_failure(full.as_ref()).as_deref(),
            Some("No space left on device (os error 28)")
        );
        let bug = std::panic::catch_unwind(|| panic!("index out of bounds")).unwrap_err();
        assert!(stdout_failure(bug.as_ref()).is_none());
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the table");
        assert!(is_broken_pipe(&pipe));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }

    /// `--help` teaches: every argument of every subcommand says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        use clap::CommandFactory;
        let mut bare = Vec::new();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    bare.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(bare.is_empty(), "arguments without help: {bare:?}");
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
