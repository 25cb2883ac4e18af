//! `cargo xtask setup`, which every other task runs first: the Debian packages, the nightly
//! toolchain with rust-src, bpf-linker, DuckDB's Python package, tracefs; and building the
//! napiscope binary the tasks run.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::util::{apt_install, have_command, is_root, run, step, succeeds};

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

pub fn setup() -> Result<()> {
    let t = Instant::now();
    ensure_apt_packages()?;
    ensure_nightly()?;
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
    ensure_duckdb()?;
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

fn ensure_apt_packages() -> Result<()> {
    let missing = missing_apt_packages();
    if missing.is_empty() {
        return Ok(());
    }
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
    run(&mut apt_install(&missing))
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

/// The nightly toolchain and its rust-src: the eBPF target is built with -Z build-std.
fn ensure_nightly() -> Result<()> {
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
    Ok(())
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

/// Install the DuckDB Python package if it is missing (the DuckDB test and the report
/// benchmark need it). Debian's Python is "externally managed": fall back to
/// --break-system-packages there, as CI machines are throw-away.
fn ensure_duckdb() -> Result<()> {
    ensure_python_package("duckdb", "duckdb", "the DuckDB test runs the README's SQL")
}

/// Pinned: Spark 4.3 runs on Java 17, Debian 12's.
const PYSPARK: &str = "pyspark==4.3.0";

/// Java and PySpark for the test that runs the README's SQL in Spark too (`cargo xtask test`
/// only: PySpark is a 450 MB download no other task needs).
pub fn ensure_spark() -> Result<()> {
    if !have_command("java") {
        step("installing openjdk-17-jre-headless (Spark runs on Java)");
        run(&mut apt_install(&["openjdk-17-jre-headless"]))?;
    }
    ensure_python_package(
        "pyspark",
        PYSPARK,
        "a test runs the README's SQL in Spark (about a minute, 450 MB)",
    )
}

/// `import module` works in python3, after `pip install spec` if it did not.
fn ensure_python_package(module: &str, spec: &str, why: &str) -> Result<()> {
    let import = format!("import {module}");
    let has = || succeeds(Command::new("python3").args(["-c", &import]));
    if has() {
        return Ok(());
    }
    if !succeeds(Command::new("python3").args(["-m", "pip", "--version"])) {
        println!("==> installing python3-pip (for the {module} package)");
        let st = apt_install(&["python3-pip"])
            .status()
            .context("apt-get install python3-pip")?;
        if !st.success() {
            bail!("could not install python3-pip; install it, then `pip install {spec}`");
        }
    }
    println!("==> pip install {spec} ({why})");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", spec])
            .args(extra)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        bail!("pip install {spec} failed; install the {module} Python package by hand");
    }
    if !has() {
        bail!("{spec} installed but `python3 -c '{import}'` still fails");
    }
    Ok(())
}

/// Where cargo puts a profile's binaries: `$CARGO_TARGET_DIR/<profile>`, by default target/.
fn bin_of(profile: &str) -> PathBuf {
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    dir.join(profile).join("napiscope")
}

/// The whole tool (`report` included) at target/release/napiscope: what `cargo xtask run`
/// and `bench --report` run, and what a user installs.
pub fn build_napiscope_full() -> Result<PathBuf> {
    step(
        "building napiscope (release, the whole tool; a first build takes about 15 min on 2 \
         cores, polars most of it)",
    );
    run(Command::new("cargo").args(["build", "--release", "-p", "probe-cli"]))?;
    Ok(bin_of("release"))
}

/// The lean tracer at target/lean/napiscope: every command but `report`, for QEMU guests
/// and benchmarks, where polars (most of a cold build) would only cost time. Its own
/// profile's directory, so it never stands where the whole tool is expected.
pub fn build_tracer() -> Result<PathBuf> {
    step("building the lean napiscope tracer (target/lean; no `report`)");
    run(Command::new("cargo").args([
        "build",
        "--profile",
        "lean",
        "-p",
        "probe-cli",
        "--no-default-features",
    ]))?;
    Ok(bin_of("lean"))
}
