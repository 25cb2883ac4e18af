//! `bench --only check`: `napiscope check` on simulated traces.

use std::{path::Path, process::Command};

use anyhow::Result;

use super::measure::{timed, trace, Timed, B_PACKETS_PER_1M};
use crate::util::{capture, json_num};

/// Trace sizes in the order `--check-max` cuts them.
const SIZES: [&str; 3] = ["1M", "10M", "50M"];

/// (mode, size name, packets per copy, copies) of every trace the checker benchmark reads
/// up to `max` ("1M", "10M" or "50M"; anything else means all).
fn cases(max: &str) -> Vec<(&'static str, &'static str, u64, u64)> {
    // Packets per ~1M events: the model emits ~8 events per packet in mode C.
    let b = B_PACKETS_PER_1M;
    let cases = [
        ("B", "1M", b, 1),
        ("B", "10M", b, 10),
        ("B", "50M", b, 50),
        ("C", "1M", 125_000, 1),
        ("C", "10M", 125_000, 10),
    ];
    let limit = SIZES.iter().position(|n| *n == max).unwrap_or(2);
    cases
        .into_iter()
        .filter(|c| SIZES.iter().position(|n| *n == c.1).unwrap_or(0) <= limit)
        .collect()
}

/// `napiscope check` on simulated traces of 1M, 10M and 50M events (mode B, 4 CPUs, mixed
/// RPS; `simulate --copies` writes them with napiscope's own writer, as `record` would), and
/// mode C ones of 1M and 10M: best and median of 5 runs pinned to CPU 0, peak RSS of the child.
pub fn bench_check(bin: &Path, dir: &Path, max: &str) -> Result<String> {
    let cases = cases(max);
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
        let f = trace(bin, dir, mode, *packets, name, *copies)?;
        let events = json_num(&capture(&mut check(mode, &f))?, "events");
        runs.push((f, events, Vec::<Timed>::new(), 0f64));
    }
    // Round by round over the cases, not 5 runs of one case back to back: this VM's host has
    // slow phases lasting seconds, and spread out each case gets samples from several.
    for round in 1..=5 {
        println!("    round {round} of 5");
        for ((mode, ..), (f, _, times, rss)) in cases.iter().zip(&mut runs) {
            let t = timed(&mut check(mode, f))?;
            times.push(t);
            *rss = rss.max(t.rss_mib);
        }
    }
    let mut rows = Vec::new();
    for ((mode, name, ..), (f, events, times, rss)) in cases.iter().zip(runs) {
        let mb = std::fs::metadata(&f)?.len() as f64 / 1e6;
        rows.push(row(mode, name, mb, events, times, rss));
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

/// One trace's table row from its timed runs (printing its summary line on the way).
fn row(mode: &str, name: &str, mb: f64, events: f64, mut times: Vec<Timed>, rss: f64) -> String {
    times.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let (best, median) = (times[0], times[times.len() / 2]);
    let range = |f: fn(&Timed) -> f64| {
        let mut v: Vec<f64> = times.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (users, kernel) = (range(|t| t.user), range(|t| t.sys));
    println!(
        "    check, mode {mode}, {name}: best {:.2} s ({:.2} user + {:.2} sys), median {:.2} s, peak RSS {rss:.0} MiB",
        best.secs, best.user, best.sys, median.secs
    );
    format!(
        "| checker, mode {mode}, {name} events ({mb:.0} MB file), 1 core | {events:.0} events | {:.2} s (median {:.2} s); CPU over the 5 runs: user {:.2}–{:.2} s, kernel {:.2}–{:.2} s | **{:.1}M events/s** (median {:.1}M), peak RSS {rss:.0} MiB |",
        best.secs,
        median.secs,
        users[0],
        users[users.len() - 1],
        kernel[0],
        kernel[kernel.len() - 1],
        events / best.secs / 1e6,
        events / median.secs / 1e6,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_max_cuts_the_cases_by_size() {
        let names = |max| {
            cases(max)
                .iter()
                .map(|c| format!("{}{}", c.0, c.1))
                .collect::<Vec<_>>()
        };
        assert_eq!(names("1M"), ["B1M", "C1M"]);
        assert_eq!(names("10M"), ["B1M", "B10M", "C1M", "C10M"]);
        assert_eq!(names("50M"), ["B1M", "B10M", "B50M", "C1M", "C10M"]);
        assert_eq!(cases("10M")[1].3, 10);
    }

    #[test]
    fn a_row_reports_best_median_and_cpu_ranges() {
        let t = |secs, user, sys| Timed {
            secs,
            rss_mib: 0.0,
            user,
            sys,
        };
        let times = vec![t(2.0, 1.5, 0.5), t(1.0, 0.9, 0.1), t(4.0, 1.6, 2.4)];
        let r = row("B", "1M", 12.3, 1e6, times, 99.0);
        assert!(r.contains("| 1.00 s (median 2.00 s)"), "{r}");
        assert!(r.contains("user 0.90–1.60 s, kernel 0.10–2.40 s"), "{r}");
        assert!(
            r.contains("**1.0M events/s** (median 0.5M), peak RSS 99 MiB"),
            "{r}"
        );
        assert!(r.contains("(12 MB file)"), "{r}");
    }
}
