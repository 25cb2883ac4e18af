//! What the checker and report benchmarks share: the simulated traces they read, and timing
//! a child with its peak memory and CPU.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

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
