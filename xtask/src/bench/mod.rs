//! `cargo xtask bench`: napiscope's throughput and cost on this machine, written to
//! BENCHMARKS.md as one section per part (`md`), so that `--only` re-runs one part and keeps
//! the others, and `--report`'s section (`report`) survives both.
//!
//! The parts: `check` (the checker on simulated traces), `record` (recording under a flood),
//! `overhead` (the traced system's throughput under napiscope, bpftrace and perf) and
//! `completeness` (recordings against the kernel's own counters); `measure` holds what the
//! check and report benchmarks share.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Result;

use crate::{
    setup::build_tracer,
    util::{capture, is_root, utc_now},
};

mod check;
mod completeness;
mod md;
mod measure;
mod overhead;
mod record;
pub mod report;

/// Parts of `cargo xtask bench`, each a section of BENCHMARKS.md that a run replaces; the
/// sections of parts not run are kept (`--only`), as is `--report`'s.
const PARTS: &[&str] = &["check", "record", "overhead", "completeness"];

/// Parts whose numbers are eBPF programs' cost, which `kernel.bpf_stats_enabled=1` inflates.
const TRACING_PARTS: &[&str] = &["record", "overhead", "completeness"];

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Why these parts must not run now, if they must not: with BPF statistics on, every eBPF
/// program run also takes two timestamps and updates per-CPU counters, which napiscope (many
/// programs per packet) pays far more for than perf (none): on 2026-12-03 it turned the overhead
/// table upside down (napiscope 47–49% of untraced packets/s with them on, 51–52% off).
fn bpf_stats_refusal(parts: &[&str], stats_on: bool) -> Option<String> {
    let hit: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|p| TRACING_PARTS.contains(p))
        .collect();
    (stats_on && !hit.is_empty()).then(|| {
        format!(
            "kernel.bpf_stats_enabled is 1: every eBPF program run is also timed and counted, \
             which would overstate the eBPF tracers' cost in {} (napiscope runs several \
             programs per packet, perf none). Switch it off with `sysctl -w kernel.bpf_stats_enabled=0` and run \
             the bench again (or run `--only check`, which does not trace)",
            hit.join(", ")
        )
    })
}

fn bpf_stats_on() -> bool {
    std::fs::read_to_string(BPF_STATS).is_ok_and(|v| v.trim() != "0")
}

pub fn bench(check_max: &str, only: Option<&str>) -> Result<()> {
    let parts: Vec<&str> = PARTS
        .iter()
        .copied()
        .filter(|p| only.is_none_or(|o| o == *p))
        .collect();
    if let Some(why) = bpf_stats_refusal(&parts, bpf_stats_on()) {
        anyhow::bail!(why);
    }
    let bin = build_tracer()?;
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir)?;
    let stamp = format!("Measured on {} — {}.", utc_now()?, machine());
    let old = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    let mut md = old.clone();
    if !md.contains(&md::marker("check", true)) {
        md = String::new(); // an older layout: start over (the report section is kept below)
    }
    for part in parts {
        let text = match part {
            "check" => check::bench_check(&bin, &dir, check_max)?,
            "record" if is_root() => record::bench_record(&bin, &dir)?,
            "overhead" if is_root() => overhead::bench_overhead(&bin, &dir)?,
            "completeness" if is_root() => completeness::bench_completeness(&bin, &dir)?,
            _ => format!("## {part}\n\n(skipped: needs root)\n"),
        };
        // Something else may have switched BPF statistics on while this part ran: say so
        // beside its numbers rather than publish them as clean.
        let warn = match bpf_stats_refusal(&[part], bpf_stats_on()) {
            Some(_) => {
                "\n\n**Warning:** `kernel.bpf_stats_enabled` was 1 at the end of this part; its \
                        eBPF costs are overstated."
                    .to_string()
            }
            None => String::new(),
        };
        md = md::put(
            &md,
            part,
            &format!("{}{warn}\n\n{stamp}\n", text.trim_end()),
        );
    }
    let out = assemble(&md, &report::section_of(&old).unwrap_or_default());
    std::fs::write("BENCHMARKS.md", &out)?;
    print!("{out}");
    Ok(())
}

/// BENCHMARKS.md from the parts' sections in `md` (in `PARTS` order, a placeholder for each
/// part never measured) and the report section.
fn assemble(md: &str, report: &str) -> String {
    let mut out = String::from(
        "# napiscope benchmarks\n\nProduced by `cargo xtask bench` (all parts, or one with \
         `--only check|record|overhead|completeness`) and `cargo xtask bench --report`; each section says \
         when and where it was measured. Release build.\n",
    );
    for part in PARTS {
        out.push('\n');
        out.push_str(
            &md::get(md, part).unwrap_or_else(|| {
                format!("(not measured yet: `cargo xtask bench --only {part}`)\n")
            }),
        );
    }
    if !report.is_empty() {
        out.push('\n');
        out.push_str(report);
    }
    out
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

/// `napiscope record -q --json --force -o out`, its JSON summary piped; the caller adds
/// options and spawns it.
fn record_json(bin: &Path, out: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["record", "-q", "--json", "--force", "-o"])
        .arg(out)
        .stdout(Stdio::piped());
    c
}

/// `napiscope scenario NAME --rate RATE -d SECONDS --json` (rate 0 floods): its JSON output.
fn scenario_json(bin: &Path, name: &str, rate: u64, secs: &str) -> Result<String> {
    capture(Command::new(bin).args([
        "scenario",
        name,
        "--rate",
        &rate.to_string(),
        "-d",
        secs,
        "--json",
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_statistics_refuse_only_the_tracing_parts() {
        assert!(bpf_stats_refusal(PARTS, false).is_none());
        assert!(bpf_stats_refusal(&["check"], true).is_none());
        let why = bpf_stats_refusal(PARTS, true).expect("refused");
        assert!(why.contains("record, overhead, completeness"), "{why}");
        assert!(
            why.contains("sysctl -w kernel.bpf_stats_enabled=0"),
            "{why}"
        );
        assert!(bpf_stats_refusal(&["overhead"], true).is_some());
    }

    #[test]
    fn assemble_orders_parts_fills_gaps_and_appends_the_report() {
        let md = md::put(&md::put("", "overhead", "## O"), "check", "## C");
        let out = assemble(
            &md,
            "<!-- bench-report: begin -->\nR\n<!-- bench-report: end -->\n",
        );
        let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(out.starts_with("# napiscope benchmarks\n"));
        assert!(at("## C") < at("bench --only record") && at("bench --only record") < at("## O"));
        assert!(at("## O") < at("bench --only completeness"));
        assert!(at("bench --only completeness") < at("bench-report: begin"));
        assert!(!out.contains("bench --only check`"));
        assert!(!assemble(&md, "").contains("bench-report"));
    }
}
