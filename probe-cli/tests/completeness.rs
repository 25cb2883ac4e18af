//! "Complete" must mean complete: floods of veth + RPS traffic (hundreds of thousands of
//! packets, bounded in time), each recorded, and per run either an exact per-CPU match with
//! the kernel's own counters or a reported deficit equal to the difference — recomputed here
//! from the file's events and the snapshots in its metadata, and bounded by counters this
//! test reads itself around the whole recording. Needs root (eBPF, network namespaces).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use analysis::EventKind;
use serde_json::Value;

mod common;
use common::{kernel_lock, kernel_tests_enabled, start_record_args, BIN};

/// softnet_stat processed per CPU (the test's own reading, outside napiscope).
fn processed() -> Vec<u32> {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .map(|l| u32::from_str_radix(l.split_whitespace().next().unwrap(), 16).unwrap())
        .collect()
}

fn record_around_a_flood(out: &Path) -> Output {
    let args = ["--force", "--json", "--ring-buffer-mb", "256", "-o"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect::<Vec<_>>();
    let rec = start_record_args(&args);
    std::thread::sleep(Duration::from_millis(300));
    let sc = Command::new(BIN)
        .args(["scenario", "veth-rps", "--sender-cpu", "0", "--rx-cpu", "1"])
        .args(["--rate", "0", "-d", "1s"])
        .output()
        .unwrap();
    assert!(sc.status.success(), "{sc:?}");
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    rec.wait_with_output().unwrap()
}

/// (kernel delta, events surely in the window, events possibly in it) per (cpu, counter),
/// recomputed from the file: the snapshots in its metadata and its events.
fn recompute(path: &Path) -> Vec<(u64, &'static str, u64, u64, u64)> {
    let t = analysis::read_trace(path).unwrap();
    let snaps: Value = serde_json::from_str(t.meta.get("kernel_counters").unwrap()).unwrap();
    let (s, e) = (&snaps["start"], &snaps["end"]);
    let ts = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let (slo, shi, elo, ehi) = (
        ts(s, "ts_lo"),
        ts(s, "ts_hi"),
        ts(e, "ts_lo"),
        ts(e, "ts_hi"),
    );
    let mut out = Vec::new();
    for (name, pick) in [
        (
            "processed",
            &(|ev: &analysis::Event| ev.event == EventKind::NetifReceiveSkb)
                as &dyn Fn(&analysis::Event) -> bool,
        ),
        ("received_rps", &|ev: &analysis::Event| {
            ev.event == EventKind::CsdFunctionEntry
                && ev.func.as_deref() == Some("rps_trigger_softirq")
        }),
        ("net_rx", &|ev: &analysis::Event| {
            ev.event == EventKind::SoftirqEntry && ev.vec == Some(3)
        }),
    ] {
        for cpu in s["cpus"].as_array().unwrap() {
            let c = cpu["cpu"].as_u64().unwrap();
            let end = e["cpus"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["cpu"] == cpu["cpu"])
                .unwrap();
            let kernel = (end[name].as_u64().unwrap() as u32)
                .wrapping_sub(cpu[name].as_u64().unwrap() as u32) as u64;
            let mine = t.events.iter().filter(|ev| ev.cpu as u64 == c && pick(ev));
            let (mut inner, mut outer) = (0, 0);
            for ev in mine {
                if ev.ts_ns >= slo && ev.ts_ns < ehi {
                    outer += 1;
                    if ev.ts_ns >= shi && ev.ts_ns < elo {
                        inner += 1;
                    }
                }
            }
            out.push((c, name, kernel, inner, outer));
        }
    }
    out
}

#[test]
fn repeated_floods_match_the_kernels_counters_or_say_exactly_what_is_missing() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("napiscope-complete-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut verdicts = Vec::new();
    for run in 0..3 {
        let out: PathBuf = dir.join(format!("flood-{run}.parquet"));
        let before = processed();
        let o = record_around_a_flood(&out);
        let after = processed();
        let summary: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("record --json: {e}: {o:?}"));
        let completeness = summary["completeness"].as_str().unwrap().to_string();
        // Exit code and verdict agree: 0 complete, 3 incomplete.
        let want = if completeness == "complete" { 0 } else { 3 };
        assert_eq!(o.status.code(), Some(want), "{completeness}: {o:?}");
        let checks = summary["kernel_counters"]["checks"].as_array().unwrap();
        let mut delivered = 0;
        for (cpu, name, kernel, inner, outer) in recompute(&out) {
            let c = checks
                .iter()
                .find(|c| c["cpu"] == cpu && c["counter"] == name)
                .unwrap_or_else(|| panic!("no check for cpu{cpu} {name}"));
            if name == "processed" {
                delivered += kernel;
                // The recording's window lies inside the test's own readings.
                let outside = (after[cpu as usize].wrapping_sub(before[cpu as usize])) as u64;
                assert!(kernel <= outside, "cpu{cpu}: {kernel} > {outside}");
            }
            match c["result"].as_str().unwrap() {
                "match" => assert!(
                    inner <= kernel && kernel <= outer,
                    "run {run} cpu{cpu} {name}: said match, kernel {kernel}, events \
                     {inner}..{outer}"
                ),
                "short" => {
                    assert!(kernel > outer, "run {run} cpu{cpu} {name}: said short");
                    assert_eq!(c["min"].as_u64(), Some(kernel - outer), "{c}");
                    assert_eq!(c["max"].as_u64(), Some(kernel - inner), "{c}");
                    assert_eq!(completeness, "incomplete");
                }
                other => panic!("run {run} cpu{cpu} {name}: {other}: {c}"),
            }
        }
        // A deficit the ring does not explain lies in a window the kernel's own tracking
        // found blind on that CPU (a task it runs no eBPF program for was current).
        let ring_lost = summary["lost_total"].as_u64().unwrap_or(0) > 0
            || summary["seq_gaps_per_cpu"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g.as_u64() != Some(0));
        if !ring_lost {
            for c in checks.iter().filter(|c| c["result"] == "short") {
                let blind = summary["blind"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["cpu"] == c["cpu"] && b["windows"].as_u64() > Some(0));
                assert!(
                    blind,
                    "run {run}: short without a blind window: {c} {summary}"
                );
            }
        }
        eprintln!(
            "run {run}: ring lost {ring_lost}, blind {}",
            summary["blind"]
        );
        assert!(
            delivered > 50_000,
            "run {run}: the flood delivered only {delivered} packets: proves nothing"
        );
        // `check` agrees: exit 3 for an incomplete recording, and no FAIL either way.
        let chk = Command::new(BIN).arg("check").arg(&out).output().unwrap();
        let text = String::from_utf8_lossy(&chk.stdout);
        assert_eq!(chk.status.code(), Some(want), "check: {text}");
        assert!(
            !text
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some("FAIL")),
            "a rule failed: {text}"
        );
        assert!(text.contains("verdict: CONFORMANT"), "check: {text}");
        eprintln!("run {run}: {delivered} packets delivered, {completeness}");
        verdicts.push(completeness);
    }
    eprintln!("verdicts: {verdicts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
