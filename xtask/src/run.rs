//! `cargo xtask run`: the README's demo — `status`, `top` under traffic, a recording of it,
//! its check against the model.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    setup::build_napiscope_full,
    util::{is_root, run, signal, step},
};

pub fn run_demo(output: &Path, duration: u64) -> Result<()> {
    let bin = build_napiscope_full()?;
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
    run(veth_rps(&bin, rx_cpu).args(["-d", &format!("{scenario_secs}s")]))?;
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

/// `napiscope scenario veth-rps` sending from CPU 0 to `rx_cpu`; the caller adds `-d`.
fn veth_rps(bin: &Path, rx_cpu: &str) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "scenario",
        "veth-rps",
        "--sender-cpu",
        "0",
        "--rx-cpu",
        rx_cpu,
    ]);
    c
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
    let mut traffic = veth_rps(bin, rx_cpu)
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
