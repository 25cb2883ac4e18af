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
    /// Set up, build, show `napiscope status`, record 5 s while a veth+RPS scenario runs,
    /// and print the recording's summary
    Run {
        /// Where to write the recording
        #[arg(short, long, default_value = "target/napiscope-demo.parquet")]
        output: PathBuf,
        /// Recording length in seconds
        #[arg(short, long, default_value_t = 5)]
        duration: u64,
    },
    /// Set up, then run formatting and lint checks and the whole test suite (unit, property
    /// and real-kernel integration tests; the latter need root)
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`
        #[arg(long)]
        no_lint: bool,
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
        Cmd::Test { no_lint } => {
            setup()?;
            test(no_lint)
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

fn build_napiscope() -> Result<PathBuf> {
    step("building napiscope (release)");
    run(Command::new("cargo").args(["build", "--release", "-p", "probe-cli"]))?;
    Ok(PathBuf::from("target/release/napiscope"))
}

fn run_demo(output: &Path, duration: u64) -> Result<()> {
    let bin = build_napiscope()?;
    if !is_root() {
        bail!("napiscope loads eBPF programs: run `cargo xtask run` as root");
    }
    run(Command::new(&bin).arg("status"))?;
    step(&format!(
        "recording {duration}s to {} while `napiscope scenario veth-rps` sends UDP from CPU 0 \
         to CPU 1 through a veth pair in private network namespaces",
        output.display()
    ));
    let mut rec = Command::new(&bin)
        .args(["record", "-o"])
        .arg(output)
        .args(["-d", &format!("{duration}s")])
        .spawn()
        .context("starting napiscope record")?;
    std::thread::sleep(Duration::from_secs(2));
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let rx_cpu = if cpus.trim() == "0" { "0" } else { "1" };
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
    if !status.success() {
        bail!("napiscope record failed ({status})");
    }
    step(&format!(
        "query it: duckdb -c \"SELECT event, cpu, count(*) FROM '{}' GROUP BY ALL ORDER BY ALL\"",
        output.display()
    ));
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
