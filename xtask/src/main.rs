//! `cargo xtask`: set up the eBPF toolchain, run napiscope, run the tests.
//!
//! Every command does its own set-up first, so both README commands work from a fresh clone
//! on a fresh Debian 12 machine (as root, with network access to the package registries).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

mod bench_md;
mod bench_report;
mod vm;

/// Pinned: bpf-linker 0.13 is built against LLVM 22, which matches rustc 1.95's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// Debian packages the build and the tests need.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "util-linux",
    // The real-terminal test of `napiscope top`.
    "tmux",
];

#[derive(Parser)]
#[command(name = "cargo xtask", about = "napiscope's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs (idempotent): Debian packages, nightly
    /// rust-src, bpf-linker; mount tracefs if it is missing
    Setup,
    /// Set up, build, show `napiscope status`, then `napiscope top` while a veth+RPS scenario
    /// runs (q quits; three tables when not on a terminal), then record 5 s of it, print the
    /// recording's summary and check it against the model
    Run {
        /// Where to write the recording
        #[arg(short, long, default_value = "target/napiscope-demo.parquet")]
        output: PathBuf,
        /// Recording length in seconds
        #[arg(short, long, default_value_t = 5)]
        duration: u64,
    },
    /// Boot Debian kernels under QEMU and run `napiscope status` and `verify` inside; writes
    /// target/vm-test/matrix.{json,md}
    VmTest {
        /// Kernels to boot: 6.1, 6.1-rt, 6.12, 6.12-threads, 6.12-rt
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Every kernel, plus the host
        #[arg(long)]
        all: bool,
    },
    /// Measure napiscope's throughput and cost on this machine; writes BENCHMARKS.md
    Bench {
        /// Largest trace for the checker benchmark: 1M, 10M or 50M events
        #[arg(long, default_value = "50M", value_parser = ["1M", "10M", "50M"])]
        check_max: String,
        /// Run one part and keep the other sections of BENCHMARKS.md
        #[arg(long, value_parser = ["check", "record", "overhead", "completeness"])]
        only: Option<String>,
        /// Only `napiscope report` on 1M/10M/50M events (BENCH_REPORT_MAX=10M stops early)
        #[arg(long)]
        report: bool,
    },
    /// Set up, then run formatting and lint checks and the whole test suite (unit, property
    /// and real-kernel integration tests; the latter need root)
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`
        #[arg(long)]
        no_lint: bool,
        /// Skip booting the mode C kernel (6.12 + thread_backlog_napi) under QEMU
        #[arg(long)]
        no_vm: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Run { output, duration } => {
            setup()?;
            run_demo(&output, duration)
        }
        Cmd::VmTest { kernels, all } => {
            setup()?;
            let bin = build_napiscope()?;
            vm::vm_test(&kernels, all, all, &bin)
        }
        Cmd::Bench {
            check_max,
            only,
            report,
        } => {
            setup()?;
            if report {
                return bench_report::run(&build_napiscope_full()?);
            }
            bench(&check_max, only.as_deref())
        }
        Cmd::Test { no_lint, no_vm } => {
            setup()?;
            test(no_lint)?;
            if no_vm {
                return Ok(());
            }
            if !is_root() {
                bail!(
                    "the QEMU kernel test needs root (apt-get); use --no-vm to skip it knowingly"
                );
            }
            // Mode C exists only on kernels this host does not run, and so does mode A (6.1,
            // before the patch; also the oldest kernel napiscope supports, where mremap and
            // the tracepoints differ): prove both on every run.
            step(
                "booting Debian 6.12 with thread_backlog_napi (mode C) and 6.1 (mode A) under QEMU",
            );
            let bin = build_napiscope()?;
            vm::vm_test(
                &["6.12-threads".to_string(), "6.1".to_string()],
                false,
                false,
                &bin,
            )
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn step(msg: &str) {
    eprintln!("\x1b[1mxtask:\x1b[0m {msg}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

fn have_bpf_linker() -> bool {
    let bin = cargo_bin_dir().join("bpf-linker");
    Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
}

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn setup() -> Result<()> {
    let t = Instant::now();
    let missing = missing_apt_packages();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing Debian packages {}: install them as root \
                 (apt-get install {}) or run this command as root",
                missing.join(" "),
                missing.join(" ")
            );
        }
        step(&format!(
            "installing Debian packages: {}",
            missing.join(" ")
        ));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        step("installing the nightly toolchain (the eBPF target needs -Z build-std)");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let src = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup")?;
    if !String::from_utf8_lossy(&src.stdout).contains("rust-src") {
        step("adding rust-src to nightly");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if !have_bpf_linker() {
        step(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about 2 minutes)"
        ));
        run(Command::new("cargo")
            .args(["install", "--locked", "--force", "bpf-linker", "--version"])
            .arg(BPF_LINKER_VERSION)
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
    }
    bench_report::ensure_duckdb()?;
    // build.rs looks for bpf-linker on PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !dirs.contains(&cargo_bin_dir()) {
        dirs.insert(0, cargo_bin_dir());
        std::env::set_var("PATH", std::env::join_paths(dirs)?);
    }
    if is_root()
        && !Path::new("/sys/kernel/tracing/events").exists()
        && !Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        step("mounting tracefs at /sys/kernel/tracing");
        let _ =
            run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]));
    }
    if t.elapsed() > Duration::from_secs(2) {
        step(&format!("set-up done in {:.0}s", t.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// Where cargo puts release binaries: `$CARGO_TARGET_DIR/release`, by default target/release.
fn release_bin() -> PathBuf {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    dir.join("release").join("napiscope")
}

/// napiscope with `report` (polars), for the report benchmark.
fn build_napiscope_full() -> Result<PathBuf> {
    step("building napiscope with report (release; polars takes a while the first time)");
    run(Command::new("cargo").args(["build", "--release", "-p", "probe-cli"]))?;
    Ok(release_bin())
}

fn build_napiscope() -> Result<PathBuf> {
    step("building napiscope (release)");
    // The lean tracing binary: `report` (polars) is most of a cold release build and none of
    // run / vm-test / bench's tracing needs it. `bench --report` builds the full one.
    run(Command::new("cargo").args([
        "build",
        "--release",
        "-p",
        "probe-cli",
        "--no-default-features",
    ]))?;
    Ok(release_bin())
}

fn run_demo(output: &Path, duration: u64) -> Result<()> {
    let bin = build_napiscope()?;
    if !is_root() {
        bail!("napiscope loads eBPF programs: run `cargo xtask run` as root");
    }
    run(Command::new(&bin).arg("status"))?;
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let rx_cpu = if cpus.trim() == "0" { "0" } else { "1" };
    live_view(&bin, rx_cpu)?;
    step(&format!(
        "recording {duration}s to {} while `napiscope scenario veth-rps` sends UDP from CPU 0 \
         to CPU 1 through a veth pair in private network namespaces",
        output.display()
    ));
    let mut rec = Command::new(&bin)
        .args(["record", "--force", "-o"])
        .arg(output)
        .args(["-d", &format!("{duration}s")])
        .spawn()
        .context("starting napiscope record")?;
    std::thread::sleep(Duration::from_secs(2));
    let scenario_secs = duration.saturating_sub(3).max(1);
    run(Command::new(&bin).args([
        "scenario",
        "veth-rps",
        "--sender-cpu",
        "0",
        "--rx-cpu",
        rx_cpu,
        "-d",
        &format!("{scenario_secs}s"),
    ]))?;
    let status = rec.wait()?;
    // 3: written, and it says which events the kernel counted that it lacks.
    if !matches!(status.code(), Some(0) | Some(3)) {
        bail!("napiscope record failed ({status})");
    }
    step("checking the recording against the reference model");
    let check = Command::new(&bin).arg("check").arg(output).status()?;
    if check.code() == Some(2) {
        bail!("napiscope check could not read {}", output.display());
    }
    step(&format!(
        "query it: duckdb -c \"SELECT event, cpu, count(*) FROM '{}' GROUP BY ALL ORDER BY ALL\"",
        output.display()
    ));
    Ok(())
}

/// `napiscope top` while the veth+RPS scenario sends: full screen on a terminal (q ends it),
/// three one-second tables otherwise.
fn live_view(bin: &Path, rx_cpu: &str) -> Result<()> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    step(&format!(
        "napiscope top while `napiscope scenario veth-rps` sends UDP from CPU 0 to CPU {rx_cpu}{}",
        if tty { " (q quits)" } else { "" }
    ));
    let mut traffic = Command::new(bin)
        .args([
            "scenario",
            "veth-rps",
            "--sender-cpu",
            "0",
            "--rx-cpu",
            rx_cpu,
        ])
        .args(["-d", if tty { "120s" } else { "8s" }])
        .stdout(Stdio::null())
        .spawn()
        .context("starting napiscope scenario")?;
    let top = if tty {
        Command::new(bin).arg("top").status()
    } else {
        Command::new(bin)
            .args(["top", "--no-tui", "-n", "3"])
            .status()
    };
    signal(&traffic, "-TERM");
    let _ = traffic.wait();
    let top = top.context("running napiscope top")?;
    // 1: a counter rule diverged, which top has printed; the check below says more.
    if !matches!(top.code(), Some(0) | Some(1)) {
        bail!("napiscope top failed ({top})");
    }
    Ok(())
}

fn test(no_lint: bool) -> Result<()> {
    if !no_lint {
        step("cargo fmt --check");
        run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
        step("cargo clippy -D warnings");
        run(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    }
    if !is_root() {
        eprintln!(
            "xtask: not root — the real-kernel integration tests will fail; run as root, or set \
             NAPISCOPE_SKIP_KERNEL_TESTS=1 to skip them knowingly"
        );
    }
    step("cargo test (unit, property and real-kernel integration tests)");
    run(Command::new("cargo").args(["test", "--", "--test-threads=2"]))
}

fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() && out.status.code() != Some(1) {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = capture(Command::new("uname").arg("-rv")).unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |k| k / 1024 / 1024);
    format!("{cpu}, {cores} cores, {mem} GiB, kernel {}", kernel.trim())
}

/// Parts of `cargo xtask bench`, each a section of BENCHMARKS.md that a run replaces; the
/// sections of parts not run are kept (`--only`), as is `--report`'s.
const PARTS: &[&str] = &["check", "record", "overhead", "completeness"];

fn bench(check_max: &str, only: Option<&str>) -> Result<()> {
    let bin = build_napiscope()?;
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir)?;
    let date = capture(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC"))?;
    let stamp = format!("Measured on {} — {}.", date.trim(), machine());
    let old = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    let mut md = old.clone();
    if !md.contains(&bench_md::marker("check", true)) {
        md = String::new(); // an older layout: start over (the report section is kept below)
    }
    for part in PARTS.iter().filter(|p| only.is_none_or(|o| o == **p)) {
        let text = match *part {
            "check" => bench_check(&bin, &dir, check_max)?,
            "record" if is_root() => bench_record(&bin, &dir)?,
            "overhead" if is_root() => bench_overhead(&bin, &dir)?,
            "completeness" if is_root() => bench_completeness(&bin, &dir)?,
            _ => format!("## {part}\n\n(skipped: needs root)\n"),
        };
        md = bench_md::put(&md, part, &format!("{}\n\n{stamp}\n", text.trim_end()));
    }
    let report = bench_report::section_of(&old).unwrap_or_default();
    let mut out = String::from(
        "# napiscope benchmarks\n\nProduced by `cargo xtask bench` (all parts, or one with \
         `--only check|record|overhead|completeness`) and `cargo xtask bench --report`; each section says \
         when and where it was measured. Release build.\n",
    );
    for part in PARTS {
        out.push('\n');
        out.push_str(
            &bench_md::get(&md, part).unwrap_or_else(|| {
                format!("(not measured yet: `cargo xtask bench --only {part}`)\n")
            }),
        );
    }
    if !report.is_empty() {
        out.push('\n');
        out.push_str(&report);
    }
    std::fs::write("BENCHMARKS.md", &out)?;
    print!("{out}");
    Ok(())
}

/// Send rates for the completeness bench; 0 floods.
const COMPLETENESS_RATES: [u64; 5] = [10_000, 50_000, 100_000, 200_000, 0];
const COMPLETENESS_RUNS: usize = 3;

/// The highest packet rate at which every recording matches the kernel's own counters, and
/// what happens above it (needs root): veth + RPS to CPU 1 at fixed rates, 2 s each, 3 runs.
fn bench_completeness(bin: &Path, dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    let mut highest_clean: Option<f64> = None;
    let mut above = false;
    for rate in COMPLETENESS_RATES {
        let mut cells = Vec::new();
        let (mut complete, mut pps_sum) = (0, 0.0);
        for run in 0..COMPLETENESS_RUNS {
            let f = dir.join(format!("complete-{rate}-{run}.parquet"));
            let rec = Command::new(bin)
                .args(["record", "-q", "--json", "--force", "-o"])
                .arg(&f)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()?;
            std::thread::sleep(Duration::from_secs(4)); // attaching takes ~3 s
            let sc = capture(Command::new(bin).args([
                "scenario",
                "veth-rps",
                "--rate",
                &rate.to_string(),
                "-d",
                "2s",
                "--json",
            ]))?;
            std::thread::sleep(Duration::from_millis(300));
            signal(&rec, "-INT");
            let out = rec.wait_with_output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .with_context(|| format!("record --json at rate {rate}"))?;
            pps_sum += json_num(&sc, "received") / json_num(&sc, "seconds").max(0.001);
            let mut short: std::collections::BTreeMap<String, u64> = Default::default();
            for c in v["kernel_counters"]["checks"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if c["result"] == "short" {
                    *short
                        .entry(c["counter"].as_str().unwrap_or("?").into())
                        .or_default() += c["max"].as_u64().unwrap_or(0);
                }
            }
            let (blind_n, blind_ms) =
                v["blind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .fold((0, 0.0), |(n, ms), b| {
                        (
                            n + b["windows"].as_u64().unwrap_or(0),
                            ms + b["ns"].as_f64().unwrap_or(0.0) / 1e6,
                        )
                    });
            let lost = v["lost_total"].as_u64().unwrap_or(0);
            let gaps: u64 = v["seq_gaps_per_cpu"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_u64())
                .sum();
            let misses: u64 = v["missed_by_event"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, n)| n.as_u64())
                .sum();
            let verdict = v["completeness"].as_str().unwrap_or("?").to_string();
            if verdict == "complete" {
                complete += 1;
            }
            cells.push(if verdict == "complete" {
                format!("complete (blind {blind_n}, {blind_ms:.1} ms)")
            } else {
                let s: Vec<String> = short.iter().map(|(k, n)| format!("{k} −{n}")).collect();
                format!(
                    "**{verdict}**: {}{} (blind {blind_n}, {blind_ms:.1} ms)",
                    if s.is_empty() {
                        "–".into()
                    } else {
                        s.join(", ")
                    },
                    [
                        ("ring lost", lost),
                        ("seq gaps", gaps),
                        ("recursion misses", misses)
                    ]
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(what, n)| format!(", {what} {n}"))
                    .collect::<String>()
                )
            });
        }
        let pps = pps_sum / COMPLETENESS_RUNS as f64;
        if complete == COMPLETENESS_RUNS && !above {
            highest_clean = Some(pps);
        } else {
            above = true;
        }
        rows.push(format!(
            "| {} | {:.0} | {complete}/{COMPLETENESS_RUNS} | {} |",
            if rate == 0 {
                "flood".to_string()
            } else {
                rate.to_string()
            },
            pps,
            cells.join("<br>")
        ));
    }
    Ok(format!(
        "## Completeness: recordings against the kernel's own counters\n\n\
         `napiscope record` (default settings) around `napiscope scenario veth-rps --rate R \
         -d 2s` (RPS from CPU 0 to CPU 1), {COMPLETENESS_RUNS} runs per rate; each run's \
         verdict from its per-CPU check of softnet_stat processed / received_rps and \
         /proc/softirqs NET_RX against netif_receive_skb / \
         csd_function_entry(rps_trigger_softirq) / softirq_entry(NET_RX) \
         (docs/completeness.md). Shortfalls are the most the recording can miss, summed over \
         CPUs; blind = windows in which the kernel ran no napiscope program, and their total \
         length (each window ends at the next event seen, so it can include quiet time).\n\n\
         | rate asked (pkt/s) | received (pkt/s, mean) | complete | runs |\n\
         |---|---|---|---|\n{}\n\n\
         Highest rate at which every run matched: {}. Recordings that go short without a ring \
         loss do so because the kernel of this VM runs no eBPF program while its agent's \
         threads are current (docs/completeness.md); every such run says so (INCOMPLETE, \
         exit 3), and its blind windows say when.",
        rows.join("\n"),
        highest_clean.map_or("none of the rates measured".into(), |p| format!(
            "{p:.0} pkt/s received"
        ))
    ))
}

/// Recording under a UDP flood (needs root): events/s, losses, bytes per event.
fn bench_record(bin: &Path, dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    for mb in [16, 128] {
        let f = dir.join(format!("flood-{mb}.parquet"));
        let rec = Command::new(bin)
            .args([
                "record",
                "-q",
                "--json",
                "--force",
                "-d",
                "6s",
                "--ring-buffer-mb",
                &mb.to_string(),
                "-o",
            ])
            .arg(&f)
            .stdout(Stdio::piped())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(2));
        let sc = capture(
            Command::new(bin).args(["scenario", "veth-rps", "--rate", "0", "-d", "3s", "--json"]),
        )?;
        let out = rec.wait_with_output()?;
        let v = String::from_utf8_lossy(&out.stdout).into_owned();
        rows.push(format!(
                "| record, veth-rps UDP flood ({:.0} pkts sent in 3 s), ring {mb} MiB | {:.0} events, {:.0} lost | {:.1} s | **{:.0} events/s**, {:.1} bytes/event on disk, recorder CPU {:.0} ns/event ({:.0} user + {:.0} sys), up to {:.0} events queued for the idle encoder, file done {:.2} s after the end |",
                json_num(&sc, "sent"),
                json_num(&v, "events"),
                json_num(&v, "lost_total"),
                json_num(&v, "seconds"),
                json_num(&v, "events_per_second"),
                json_num(&v, "bytes_per_event"),
                per_event_ns(&v, &["recording_user_s", "recording_sys_s"]),
                per_event_ns(&v, &["recording_user_s"]),
                per_event_ns(&v, &["recording_sys_s"]),
                json_num(&v, "max_queued_events"),
                json_num(&v, "encode_after_stop_s"),
            ));
    }
    Ok(format!(
        "## Recording under a flood\n\n| what | work | time | result |\n|---|---|---|---|\n{}\n\n\
         One run each: the flood saturates both cores, so lost events measure how far the \
         single reader falls behind; they are counted per CPU and shown live, never silent. \
         Recorder CPU is what `record` itself spent (all its threads: ring-buffer drain and \
         decoding, Parquet encoding on its writer thread) from the start of recording to the \
         finished file, per event. Its *sys* part is mostly not the recorder's work: without \
         IRQ time accounting (this kernel) the NET_RX softirqs that interrupt the recorder are \
         charged to it; a `perf record -e cpu-clock` profile puts the recorder's own kernel \
         time (poll, page faults, futex) at a few percent of it.",
        rows.join("\n")
    ))
}

/// `napiscope check` on simulated traces of 1M, 10M and 50M events (mode B, 4 CPUs, mixed
/// RPS; `simulate --copies` writes them with napiscope's own writer, as `record` would), and
/// mode C ones of 1M and 10M: best and median of 5 runs pinned to CPU 0, peak RSS of the child.
fn bench_check(bin: &Path, dir: &Path, max: &str) -> Result<String> {
    // Packets per ~1M events: the model emits ~8 events per packet in mode C.
    let b = bench_report::B_PACKETS_PER_1M;
    let cases = [
        ("B", "1M", b, 1),
        ("B", "10M", b, 10),
        ("B", "50M", b, 50),
        ("C", "1M", 125_000, 1),
        ("C", "10M", 125_000, 10),
    ];
    let order = ["1M", "10M", "50M"];
    let limit = order.iter().position(|n| *n == max).unwrap_or(2);
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| order.iter().position(|n| *n == c.1).unwrap_or(0) <= limit)
        .collect();
    let check = |mode: &str, f: &Path| {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"])
            .arg(bin)
            .args(["check", "--json", "--mode", mode])
            .arg(f);
        c
    };
    let mut runs = Vec::new();
    for (mode, name, packets, copies) in &cases {
        let f = bench_report::trace(bin, dir, mode, *packets, name, *copies)?;
        let events = json_num(&capture(&mut check(mode, &f))?, "events");
        runs.push((f, events, Vec::<bench_report::Timed>::new(), 0f64));
    }
    // Round by round over the cases, not 5 runs of one case back to back: this VM's host has
    // slow phases lasting seconds, and spread out each case gets samples from several.
    for round in 1..=5 {
        println!("    round {round} of 5");
        for ((mode, ..), (f, _, times, rss)) in cases.iter().zip(&mut runs) {
            let t = bench_report::timed(&mut check(mode, f))?;
            times.push(t);
            *rss = rss.max(t.rss_mib);
        }
    }
    let mut rows = Vec::new();
    for ((mode, name, ..), (f, events, mut times, rss)) in cases.iter().zip(runs) {
        times.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let (best, median) = (times[0], times[times.len() / 2]);
        let range = |f: fn(&bench_report::Timed) -> f64| {
            let mut v: Vec<f64> = times.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (users, kernel) = (range(|t| t.user), range(|t| t.sys));
        let mb = std::fs::metadata(&f)?.len() as f64 / 1e6;
        println!(
            "    check, mode {mode}, {name}: best {:.2} s ({:.2} user + {:.2} sys), median {:.2} s, peak RSS {rss:.0} MiB",
            best.secs, best.user, best.sys, median.secs
        );
        rows.push(format!(
            "| checker, mode {mode}, {name} events ({mb:.0} MB file), 1 core | {events:.0} events | {:.2} s (median {:.2} s); CPU over the 5 runs: user {:.2}–{:.2} s, kernel {:.2}–{:.2} s | **{:.1}M events/s** (median {:.1}M), peak RSS {rss:.0} MiB |",
            best.secs,
            median.secs,
            users[0],
            users[users.len() - 1],
            kernel[0],
            kernel[kernel.len() - 1],
            events / best.secs / 1e6,
            events / median.secs / 1e6,
        ));
    }
    Ok(format!(
        "## Checker\n\n| what | work | time | result |\n|---|---|---|---|\n{}\n\n\
         Best and median of 5 runs (taken round by round over the traces) of \
         `napiscope check --json` (Parquet read, indexing and every rule) \
         pinned to CPU 0 with taskset, on traces `napiscope simulate --copies` wrote (4 CPUs, \
         mixed RPS; the 10M and 50M ones are 10 and 50 copies of the 1M run of their mode \
         back to back). \
         Peak RSS is the child's `ru_maxrss`; user and kernel CPU are its `ru_utime` and \
         `ru_stime`. User time is the checker's own work and varies little from run to run. \
         Kernel time is mostly zeroing the fresh pages the trace's columns and index fill; \
         on this VM it swings from run to run (pages another process has just freed come back \
         cheap, pages the guest has returned to its host cost a host fault each), which is \
         why wall times vary by up to 2×. The best run is the checker's speed, the median \
         closer to what a busy CI machine sees.",
        rows.join("\n")
    ))
}

/// The tracepoints napiscope records, for bpftrace and perf to trace the same.
const TRACEPOINTS: &[&str] = &[
    "irq:softirq_raise",
    "irq:softirq_entry",
    "irq:softirq_exit",
    "napi:napi_poll",
    "net:netif_rx",
    "net:netif_rx_exit",
    "net:netif_receive_skb",
    "sched:sched_switch",
    "sched:sched_waking",
    "sched:sched_wakeup",
    "sched:sched_wake_idle_without_ipi",
    "ipi:ipi_send_cpu",
    "csd:csd_queue_cpu",
    "csd:csd_function_entry",
];

/// CPU nanoseconds per recorded event, from `record --json`'s CPU-seconds fields.
fn per_event_ns(record_json: &str, keys: &[&str]) -> f64 {
    let secs: f64 = keys.iter().map(|k| json_num(record_json, k)).sum();
    secs * 1e9 / json_num(record_json, "events").max(1.0)
}

fn json_num(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("\"{key}\": ")))
        .and_then(|x| x.trim_end_matches(',').parse().ok())
        .unwrap_or(0.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn signal(child: &std::process::Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// Overhead rounds: medians of this many, every tracer in every round.
const ROUNDS: usize = 5;

/// One overhead run: packets/s, events recorded, file bytes, lost events, seconds from
/// SIGINT to the tracer's exit.
struct Run {
    pps: f64,
    events: f64,
    bytes: f64,
    lost: f64,
    finish: f64,
}

/// Traced-system overhead: packets/s of a UDP flood with no tracer, napiscope record,
/// bpftrace printing the same tracepoints, and perf record on them — median of 3 runs each,
/// interleaved so drift hits every tracer alike.
fn bench_overhead(bin: &Path, dir: &Path) -> Result<String> {
    for (tool, pkg) in [("bpftrace", "bpftrace"), ("perf", "linux-perf")] {
        if !succeeds(Command::new("sh").args(["-c", &format!("command -v {tool}")])) {
            step(&format!("installing {pkg} for the comparison"));
            run(Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", pkg])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
    }
    let bt_script = dir.join("same-tracepoints.bt");
    let probes: Vec<String> = TRACEPOINTS
        .iter()
        .map(|t| format!("tracepoint:{t}"))
        .collect();
    std::fs::write(
        &bt_script,
        format!(
            "{} {{ printf(\"%llu %d %s %d\\n\", nsecs, cpu, probe, pid); }}\n",
            probes.join(",\n")
        ),
    )?;
    let tracers = [
        "none",
        "napiscope",
        "napiscope-inline",
        "napiscope-classic",
        "napiscope-top",
        "bpftrace",
        "perf",
    ];
    let mut results: std::collections::BTreeMap<(&str, &str), Vec<Run>> = Default::default();
    for round in 0..ROUNDS {
        for scenario in ["loopback-rps", "veth-rps"] {
            for tracer in tracers {
                step(&format!(
                    "overhead round {}: {scenario} under {tracer}",
                    round + 1
                ));
                let out = dir.join(format!("ovh-{tracer}"));
                let _ = std::fs::remove_file(&out);
                let child = match tracer {
                    "none" => None,
                    "napiscope" | "napiscope-inline" | "napiscope-classic" => Some(
                        Command::new(bin)
                            .args(["record", "-q", "--json", "--force", "-o"])
                            .arg(&out)
                            .args(match tracer {
                                "napiscope-inline" => &["--encode-buffer-mb", "0"][..],
                                "napiscope-classic" => &["--classic-tracepoints"][..],
                                _ => &[][..],
                            })
                            .stdout(Stdio::piped())
                            .spawn()?,
                    ),
                    "napiscope-top" => Some(
                        Command::new(bin)
                            .args(["top", "--json"])
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .spawn()?,
                    ),
                    "bpftrace" => Some(
                        Command::new("bpftrace")
                            .arg("-o")
                            .arg(&out)
                            .arg(&bt_script)
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()?,
                    ),
                    _ => Some(
                        Command::new("perf")
                            .args(["record", "-q", "-a", "-o"])
                            .arg(&out)
                            .args(TRACEPOINTS.iter().flat_map(|t| ["-e", t]))
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()?,
                    ),
                };
                // Attaching ~30 tracepoints takes napiscope ~3 s (kernel text patching).
                std::thread::sleep(Duration::from_secs(if child.is_some() { 4 } else { 1 }));
                let sc = capture(
                    Command::new(bin)
                        .args(["scenario", scenario, "--rate", "0", "-d", "3s", "--json"]),
                )?;
                let pps = json_num(&sc, "received") / json_num(&sc, "seconds").max(0.001);
                let (mut events, mut bytes, mut lost, mut finish) = (0.0, 0.0, 0.0, 0.0);
                if let Some(c) = child {
                    let stopped = Instant::now();
                    signal(&c, "-INT");
                    let o = c.wait_with_output()?;
                    finish = stopped.elapsed().as_secs_f64();
                    bytes = std::fs::metadata(&out).map_or(0.0, |m| m.len() as f64);
                    match tracer {
                        "napiscope" | "napiscope-inline" | "napiscope-classic" => {
                            let j = String::from_utf8_lossy(&o.stdout);
                            events = json_num(&j, "events");
                            lost = json_num(&j, "lost_total");
                        }
                        "napiscope-top" => {
                            // Counted in the kernel: events = sum of events/s × interval.
                            events = String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                                .map(|v| {
                                    let o = &v["overall"];
                                    o["events_per_s"].as_f64().unwrap_or(0.0)
                                        * o["interval_s"].as_f64().unwrap_or(0.0)
                                })
                                .sum();
                        }
                        "bpftrace" => {
                            events = std::fs::read_to_string(&out).map_or(0.0, |t| {
                                t.lines()
                                    .filter(|l| l.starts_with(char::is_numeric))
                                    .count() as f64
                            });
                        }
                        _ => {
                            let st = capture(
                                Command::new("perf")
                                    .args(["report", "--stats", "-i"])
                                    .arg(&out),
                            )
                            .unwrap_or_default();
                            events = st
                                .lines()
                                .find_map(|l| l.trim().strip_prefix("SAMPLE events:"))
                                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                                .unwrap_or(0.0);
                            lost = st
                                .lines()
                                .find_map(|l| l.trim().strip_prefix("LOST events:"))
                                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                                .unwrap_or(0.0);
                        }
                    }
                }
                results.entry((scenario, tracer)).or_default().push(Run {
                    pps,
                    events,
                    bytes,
                    lost,
                    finish,
                });
            }
        }
    }
    let mut s = format!(
        "\n## Traced-system overhead, side by side\n\n\
         UDP flood (`napiscope scenario S --rate 0 -d 3s`, packets received per second) under \
         each tracer: `napiscope record` (its full probe set: the 14 tracepoints below, cpuhp, \
         and 12 IRQ entry/exit raw tracepoints that track context; BTF tracepoints for the \
         receive path and the scheduler, raw tracepoints for the rest), with its Parquet \
         encoder idling behind a memory queue (the default), encoding \
         as events come (`napiscope-inline`, `--encode-buffer-mb 0`), and on classic \
         tracepoints only (`napiscope-classic`, `--classic-tracepoints`); `napiscope top --json` (counts in the \
         kernel, nothing per event leaves it); bpftrace printing nsecs/cpu/probe/pid for each \
         event of the 14 tracepoints to a file; `perf record -a -e` on the 14 tracepoints. \
         Median of {ROUNDS} rounds, tracers interleaved within each round (the flood's rate \
         moves ±30% from run to run on this shared 2-vCPU machine, untraced too). *Done after stop* is the \
         time from SIGINT to the tracer's exit with its file complete.\n\n\
         | scenario | tracer | packets/s | vs untraced | events recorded | lost | bytes/event on disk | done after stop |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for scenario in ["loopback-rps", "veth-rps"] {
        let base = median(results[&(scenario, "none")].iter().map(|r| r.pps).collect());
        for tracer in tracers {
            let v = &results[&(scenario, tracer)];
            let m = |f: fn(&Run) -> f64| median(v.iter().map(f).collect());
            let (pps, ev, by, lost) =
                (m(|r| r.pps), m(|r| r.events), m(|r| r.bytes), m(|r| r.lost));
            let none = tracer == "none";
            s.push_str(&format!(
                "| {scenario} | {tracer} | {pps:.0} | {:.1}% | {} | {} | {} | {} |\n",
                100.0 * pps / base.max(1.0),
                if none {
                    "–".into()
                } else {
                    format!("{ev:.0}")
                },
                if none || tracer == "bpftrace" || tracer == "napiscope-top" {
                    "–".into()
                } else {
                    format!("{lost:.0}")
                },
                if ev > 0.0 && by > 0.0 {
                    format!("{:.1}", by / ev)
                } else {
                    "–".into()
                },
                if none {
                    "–".into()
                } else {
                    format!("{:.1} s", m(|r| r.finish))
                },
            ));
        }
    }
    s.push_str(
        "\nbpftrace's losses are not counted here (it reports them on stderr only); its bytes/event \
         are those of its text lines.\n",
    );
    Ok(s)
}
