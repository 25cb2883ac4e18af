//! `cargo xtask bench --report`: time and peak memory of `napiscope report --json` on
//! recordings of 1M, 10M and 50M events; a section of BENCHMARKS.md.
//!
//! The traces: one simulated recording of about 1M events (mode B, 4 CPUs, mixed RPS),
//! written 1, 10 and 50 times back to back by `napiscope simulate --copies` (timestamps
//! shifted past the packet pairing window, per-CPU seq continued), so the big files have the
//! simulator's mix of events without holding 50M events in the simulator's memory. The
//! checker benchmark reads the same files.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

const SIZES: &[(&str, u64)] = &[("1M", 1), ("10M", 10), ("50M", 50)];
const BEGIN: &str = "<!-- bench-report: begin -->";
const END: &str = "<!-- bench-report: end -->";

/// Install the DuckDB Python package if it is missing (the DuckDB test and this benchmark
/// need it). Debian's Python is "externally managed": fall back to
/// --break-system-packages there, as CI machines are throw-away.
pub fn ensure_duckdb() -> Result<()> {
    let has = |py: &str| {
        Command::new(py)
            .args(["-c", "import duckdb"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("python3") {
        return Ok(());
    }
    let pip_ok = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip_ok {
        println!("==> installing python3-pip (for the DuckDB package)");
        let st = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "python3-pip",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("apt-get install python3-pip")?;
        if !st.success() {
            bail!("could not install python3-pip; install it, then `pip install duckdb`");
        }
    }
    println!("==> pip install duckdb (the DuckDB test runs the README's SQL)");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .args(extra)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !pip(&[]) && !pip(&["--break-system-packages"]) {
        bail!("pip install duckdb failed; install the DuckDB Python package by hand");
    }
    if !has("python3") {
        bail!("duckdb installed but `python3 -c 'import duckdb'` still fails");
    }
    Ok(())
}

/// A simulated trace of `copies` million events the checker and report benchmarks read
/// (`napiscope simulate --copies`, napiscope's own Parquet writer), made once. `packets` is
/// what makes ~1M events in `mode` (4 CPUs, mixed RPS).
pub fn trace(
    bin: &Path,
    dir: &Path,
    mode: &str,
    packets: u64,
    name: &str,
    copies: u64,
) -> Result<PathBuf> {
    let f = dir.join(format!("check-{mode}-{name}.parquet"));
    if !f.exists() {
        println!("==> simulating {}", f.display());
        let st = Command::new(bin)
            .args([
                "simulate",
                "--mode",
                mode,
                "--cpus",
                "4",
                "--workload",
                "mixed",
            ])
            .args(["--packets", &packets.to_string()])
            .args(["--copies", &copies.to_string(), "-o"])
            .arg(&f)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            bail!("napiscope simulate failed");
        }
    }
    Ok(f)
}

/// Packets per ~1M simulated events in mode B (the model emits ~12 events per packet).
pub const B_PACKETS_PER_1M: u64 = 83_000;

/// One run of a command: wall seconds, and from wait4's rusage the child's peak RSS (MiB)
/// and CPU seconds in user space and in the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub secs: f64,
    pub rss_mib: f64,
    pub user: f64,
    pub sys: f64,
}

/// Run `cmd` and time it (`Timed`).
pub fn timed(cmd: &mut Command) -> Result<Timed> {
    let t = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("spawn")?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Timed {
        secs,
        rss_mib: ru.ru_maxrss as f64 / 1024.0,
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
    })
}

pub fn run(bin: &Path) -> Result<()> {
    let max = std::env::var("BENCH_REPORT_MAX").ok();
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for (name, copies) in SIZES {
        let f = trace(bin, &dir, "B", B_PACKETS_PER_1M, name, *copies)?;
        let size = std::fs::metadata(&f)?.len() as f64 / 1e6;
        println!("==> napiscope report --json {}", f.display());
        let Timed {
            secs, rss_mib: rss, ..
        } = timed(Command::new(bin).args(["report", "--json"]).arg(&f))?;
        let out = Command::new(bin)
            .args(["report", "--json"])
            .arg(&f)
            .output()?;
        let events = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["totals"]["events"].as_f64())
            .filter(|n| *n > 0.0)
            .context("`napiscope report --json` gave no totals.events")?;
        println!("    {events} events, {secs:.1} s, peak RSS {rss:.0} MiB");
        rows.push(format!(
            "| {name} | {events:.0} | {size:.0} MB | {secs:.1} s | {:.2} M events/s | {rss:.0} MiB |",
            events / secs / 1e6
        ));
        if max.as_deref() == Some(*name) {
            break;
        }
    }
    let section = format!(
        "{BEGIN}\n## `napiscope report`\n\n\
         | trace | events | file | time | rate | peak RSS |\n|---|---|---|---|---|---|\n{}\n\n\
         One run each of `napiscope report --json FILE` (release build, all cores), on the \
         checker's traces: a simulated mode B run (4 CPUs, mixed RPS, 83k packets, 1M events) \
         written 1, 10 and 50 times back to back by `napiscope simulate --copies`. Peak RSS is \
         the child's `ru_maxrss`. Produced by `cargo xtask bench --report` on {}.\n{END}\n",
        rows.join("\n"),
        crate::capture(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC"))?.trim()
    );
    let md = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    let md = match (md.find(BEGIN), md.find(END)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{section}{}",
            &md[..a],
            &md[b + END.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n{section}", md.trim_end()),
    };
    std::fs::write("BENCHMARKS.md", md)?;
    print!("{section}");
    Ok(())
}

/// The report section of an existing BENCHMARKS.md, markers included.
pub fn section_of(md: &str) -> Option<String> {
    let (a, b) = (md.find(BEGIN)?, md.find(END)?);
    (b > a).then(|| format!("{}\n", &md[a..b + END.len()]))
}
