//! Device NAPI on the real kernel: the receiving veth with GRO on polls through its own NAPI
//! instance; `veth-gro-threaded` switches that instance to threaded halfway, and `top`'s
//! per-NAPI rows must show its polls move from the NET_RX softirq to its `napi/nsc1-<id>`
//! thread. Needs root (NAPISCOPE_SKIP_KERNEL_TESTS=1 skips).

use std::process::Command;

use serde_json::Value;

mod common;
use common::{kernel_lock, kernel_tests_enabled, start_top_json, BIN};

/// `top --json` for `intervals` seconds while `scenario` runs; its JSON lines.
fn top_during(intervals: u32, scenario: &[&str]) -> (Vec<Value>, Value) {
    let (top, mut err, mut stderr) = start_top_json(intervals);
    let sc = Command::new(BIN)
        .arg("scenario")
        .args(scenario)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        sc.status.success(),
        "scenario failed: {}",
        String::from_utf8_lossy(&sc.stderr)
    );
    let report: Value = serde_json::from_slice(&sc.stdout).unwrap();
    let out = top.wait_with_output().unwrap();
    std::io::Read::read_to_string(&mut err, &mut stderr).unwrap();
    assert!(out.status.success(), "top failed: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (lines, report)
}

fn f(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0)
}

fn softirq_polls(n: &Value) -> f64 {
    ["irq-exit", "bh-enable", "ksoftirqd"]
        .iter()
        .map(|w| f(n, &["polls_by_where", w]))
        .sum()
}

#[test]
fn a_veth_napi_moves_from_softirq_to_its_thread_when_threaded_is_switched_on() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let (lines, report) = top_during(
        8,
        &[
            "veth-gro-threaded",
            "--sender-cpu",
            "0",
            "--rx-cpu",
            "1",
            "-d",
            "6s",
            "--rate",
            "5000",
        ],
    );
    let threaded = &report["threaded"];
    assert!(
        threaded["switched_at_s"].is_number(),
        "nsc1 did not go threaded: {threaded}"
    );
    let thread = threaded["threads"][0][0].as_str().unwrap_or("").to_string();
    assert!(thread.starts_with("napi/nsc1-"), "{threaded}");
    // The device's rows (GRO on: veth_poll is napi:napi_poll with dev nsc1).
    let rows: Vec<(usize, &Value)> = lines
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l["napi"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["dev"] == "nsc1")
                .map(move |n| (i, n))
        })
        .collect();
    let dump =
        || serde_json::to_string_pretty(&rows.iter().map(|r| r.1).collect::<Vec<_>>()).unwrap();
    let before = rows
        .iter()
        .find(|(_, n)| softirq_polls(n) > 0.0 && f(n, &["polls_by_where", "napi_thread"]) == 0.0);
    // The busiest interval polled only by the thread (the last one may hold the tail only).
    let after = rows
        .iter()
        .filter(|(_, n)| f(n, &["polls_by_where", "napi_thread"]) > 0.0 && softirq_polls(n) == 0.0)
        .max_by(|a, b| f(a.1, &["packets"]).total_cmp(&f(b.1, &["packets"])));
    let (Some((i, b)), Some((j, a))) = (before, after) else {
        panic!(
            "no interval of nsc1 polled only in softirq and a later one only by its thread:\n{}",
            dump()
        );
    };
    assert!(i < j, "the thread's polls came first:\n{}", dump());
    assert_eq!(b["napi_id"], a["napi_id"], "one instance, before and after");
    assert_eq!(b["kind"], "device");
    assert_eq!(a["threaded"], true);
    assert_eq!(
        a["task"]["comm"].as_str(),
        Some(thread.as_str()),
        "the polling task is the device's NAPI thread:\n{}",
        dump()
    );
    assert!(f(a, &["packets"]) > 1000.0, "{a}");
    // The napi thread's name carries the instance's id: napi/<dev>-<napi id>.
    let id = a["napi_id"].as_u64().unwrap();
    assert!(
        thread.ends_with(&format!("-{id}")),
        "{thread} vs napi_id {id}"
    );
}
