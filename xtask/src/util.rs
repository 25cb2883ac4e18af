//! What every task shares: running commands and reading what they print.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

pub fn step(msg: &str) {
    eprintln!("\x1b[1mxtask:\x1b[0m {msg}");
}

/// Run `cmd`, failing unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Whether `cmd` starts and exits 0; its output is discarded.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `name` is on PATH.
pub fn have_command(name: &str) -> bool {
    succeeds(Command::new("sh").args(["-c", &format!("command -v {name}")]))
}

/// stdout of `cmd`, which may exit 0 or 1 (napiscope's "ran, found a divergence").
pub fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() && out.status.code() != Some(1) {
        bail!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `apt-get install` of `packages`, quiet and non-interactive; the caller runs it.
pub fn apt_install<S: AsRef<std::ffi::OsStr>>(packages: &[S]) -> Command {
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    c
}

/// Now, as the benchmark and matrix write it: "2025-01-31 12:00 UTC".
pub fn utc_now() -> Result<String> {
    Ok(
        capture(Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC"))?
            .trim()
            .to_string(),
    )
}

pub fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

/// The number after `"key": ` on the first line that has it in pretty-printed JSON (0 if none).
pub fn json_num(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("\"{key}\": ")))
        .and_then(|x| x.trim_end_matches(',').parse().ok())
        .unwrap_or(0.0)
}

/// Packets received per second, from `napiscope scenario --json`'s output.
pub fn received_pps(scenario_json: &str) -> f64 {
    json_num(scenario_json, "received") / json_num(scenario_json, "seconds").max(0.001)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// What a recording lacked against the kernel's own counters: from a `kernel_counters` object
/// of napiscope's JSON, the `max` of every `short` check summed per counter.
pub fn short_by_counter(kernel_counters: &Value) -> BTreeMap<String, u64> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for c in kernel_counters["checks"].as_array().into_iter().flatten() {
        if c["result"] == "short" {
            *by.entry(c["counter"].as_str().unwrap_or("?").to_string())
                .or_default() += c["max"].as_u64().unwrap_or(0);
        }
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_num_reads_the_first_pretty_printed_key() {
        let text = "{\n  \"events\": 1200,\n  \"seconds\": 2.5\n}";
        assert_eq!(json_num(text, "events"), 1200.0);
        assert_eq!(json_num(text, "seconds"), 2.5);
        assert_eq!(json_num(text, "lost"), 0.0);
        let sc = "{\n  \"received\": 1000,\n  \"seconds\": 0.5\n}";
        assert_eq!(received_pps(sc), 2000.0);
    }

    #[test]
    fn median_takes_the_upper_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn short_by_counter_sums_only_short_checks() {
        let kc = json!({"checks": [
            {"counter": "processed", "result": "short", "max": 2},
            {"counter": "processed", "result": "short", "max": 3},
            {"counter": "received_rps", "result": "ok", "max": 9},
            {"result": "short", "max": 1},
        ]});
        let by = short_by_counter(&kc);
        assert_eq!(by.get("processed"), Some(&5));
        assert_eq!(by.get("received_rps"), None);
        assert_eq!(by.get("?"), Some(&1));
        assert!(short_by_counter(&Value::Null).is_empty());
    }
}
