//! The kernel matrix: one row per kernel from what its guest said, and matrix.md from the rows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::util::short_by_counter;

#[cfg(test)]
use super::markdown::*;
pub use super::markdown::{markdown, readme_table};

// long: one JSON object literal holding every field of a matrix row; the markdown and
// CI read these names, and one literal keeps them in one place.
/// What one kernel's guest (or the host) said: `status --json`, `verify --json` and its exit
/// code, the seconds the boot took, and the boot's flood and top summaries (null on the host).
#[allow(clippy::too_many_arguments)]
pub fn row(
    name: &str,
    cmdline: &str,
    expect: &str,
    status: &Value,
    verify: &Value,
    rc: Option<i32>,
    secs: f64,
    flood: &Value,
    top: &Value,
) -> Value {
    let probes = status["probes"].as_array().cloned().unwrap_or_default();
    let (attached, kinds) = attached_event_probes(&probes);
    let missing: Vec<String> = probes
        .iter()
        .filter(|p| p["attached"] == false && p["kind"] != "kprobe")
        .map(|p| {
            format!(
                "{} ({})",
                p["name"].as_str().unwrap_or(""),
                p["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    let scenarios: Vec<Value> = verify["scenarios"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            json!({
                "scenario": s["scenario"],
                "verdict": s["verdict"],
                "failed_rules": s["failed_rules"],
                "paths": s["paths"],
                "negative_control": s["negative_control"],
                "completeness": s["completeness"],
                "attempts": s["attempts"],
                "sent": s["sent"],
                "received": s["received"],
                "rules": rule_verdicts(&s["report"]["rules"]),
                "divergences": failed_divergences(&s["report"]["rules"]),
                "short": short_of(s),
            })
        })
        .collect();
    // The mode comes from the guest's evidence; the table's expectation is only compared.
    let mode = status["mode"].as_str().unwrap_or("?");
    let mode_check = if mode == expect {
        "matches".to_string()
    } else {
        format!(
            "MISMATCH: the table expects {expect}, the guest's evidence says {mode} ({})",
            strs(&status["mode_evidence"]).join("; ")
        )
    };
    let mut why = Vec::new();
    if mode != expect {
        why.push(format!("mode {mode}, expected {expect}"));
    }
    if !(verify_ok(rc, &scenarios) && verify["passed"] == true) {
        why.push(format!(
            "verify exit {}",
            rc.map_or("none".to_string(), |c| c.to_string())
        ));
    }
    if verify["checked_as"].as_str().is_some_and(|m| m != mode) {
        why.push("verify checked another mode".into());
    }
    if !top_ok(top) {
        why.push(format!("top exit {}", top["rc"]));
    }
    let passed = why.is_empty();
    json!({
        "kernel": name,
        "release": status["kernel_release"],
        "cmdline": cmdline,
        "expected_mode": expect,
        "mode": mode,
        "mode_check": mode_check,
        "verified_as": verify["checked_as"],
        "mode_evidence": status["mode_evidence"],
        "anomalies": status["anomalies"],
        "backlog_threads": status["kernel"]["backlog_threads"],
        "event_probes_attached": attached,
        "event_probe_kinds": kinds,
        "not_attached": missing,
        "scenarios": scenarios,
        "skipped": verify["skipped"],
        "verify_passed": verify["passed"],
        "passed": passed,
        "failed_because": why,
        "seconds": (secs * 10.0).round() / 10.0,
        "flood": flood,
        "top": top,
    })
}

/// Each rule of a check report: its verdict and instance counts ("A-1": PASS, 5960 passed).
pub(super) fn rule_verdicts(rules: &Value) -> Value {
    let rules: Vec<Value> = rules
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    json!({
                        "id": r["id"],
                        "verdict": r["verdict"],
                        "passed": r["passed"],
                        "failed": r["failed"],
                        "warned": r["warned"],
                        "inconclusive": r["inconclusive"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!(rules)
}

/// The first divergence of each FAIL rule, as the checker wrote it (message, what the model
/// expected, the events): the evidence a failing row carries.
pub(super) fn failed_divergences(rules: &Value) -> Value {
    let out: Vec<Value> = rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["verdict"] == "FAIL")
        .filter_map(|r| r["divergences"].as_array()?.first().cloned())
        .map(|d| {
            json!({
                "rule": d["rule"],
                "cpu": d["cpu"],
                "message": d["message"],
                "expected": d["expected"],
                "events": d["events"],
            })
        })
        .collect();
    json!(out)
}

/// The mode evidence, short: "patch symbols; 2 backlog_napi threads; PREEMPT_RT" (the
/// sentences `status` writes, each shortened where it is one of the known ones).
pub fn evidence_cell(evidence: &Value) -> String {
    strs(evidence)
        .iter()
        .map(|e| {
            if e.starts_with("patch present: /proc/kallsyms") {
                "patch symbols in kallsyms".to_string()
            } else if e.starts_with("patch absent: /proc/kallsyms") {
                "no patch symbols in kallsyms".to_string()
            } else if e.starts_with("no backlog_napi/N threads") {
                "no backlog_napi threads".to_string()
            } else if let Some(n) = e
                .split_once(" backlog_napi thread(s) running")
                .map(|(n, _)| n)
            {
                format!("{n} backlog_napi threads")
            } else if *e == "cmdline has thread_backlog_napi" {
                "thread_backlog_napi on cmdline".to_string()
            } else if *e == "kernel is PREEMPT_RT" {
                "PREEMPT_RT".to_string()
            } else {
                e.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "PASS A-1 A-2; WARN A-3; INCONCLUSIVE A-8 (1)" — rule ids by verdict; failed ones with
/// their failing instance count.
pub(super) fn rules_cell(rules: &Value) -> String {
    let mut by: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for r in rules.as_array().into_iter().flatten() {
        let v = r["verdict"].as_str().unwrap_or("?");
        let rank = match v {
            "FAIL" => 0,
            "WARN" => 1,
            "PASS" => 2,
            _ => 3,
        };
        let id = r["id"].as_str().unwrap_or("?");
        let n = match v {
            "FAIL" => r["failed"].as_u64(),
            "WARN" => r["warned"].as_u64(),
            _ => None,
        };
        by.entry(rank).or_default().push(match n {
            Some(n) => format!("{id} ({n})"),
            None => id.to_string(),
        });
    }
    by.iter()
        .map(|(rank, ids)| {
            let name = ["**FAIL**", "WARN", "PASS", "INCONCLUSIVE"][*rank as usize];
            format!("{name} {}", ids.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How many event probes attached, and how: tp_btf / raw_tracepoint / tracepoint / kprobe,
/// e.g. "6 tp_btf, 14 raw".
pub(super) fn attached_event_probes(probes: &[Value]) -> (usize, String) {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let attached = probes
        .iter()
        .filter(|p| p["attached"] == true && p["role"] == "event");
    let mut n = 0;
    for p in attached {
        n += 1;
        let k = p["kind"].as_str().unwrap_or("?");
        *kinds
            .entry(
                k.replace("raw_tracepoint", "raw")
                    .replace("tracepoint", "classic"),
            )
            .or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    (n, kinds.join(", "))
}

/// top runs where the guest ran it (the host row has none): 5 intervals, no divergence.
pub(super) fn top_ok(top: &Value) -> bool {
    top.is_null()
        || (top["rc"] == 0
            && top["intervals"] == 5
            && top["rejected"].as_array().is_none_or(|r| r.is_empty()))
}

/// Exit 3: no rule diverged, but a recording stayed short of the kernel's counters (6.1's
/// kprobe on rps_trigger_softirq is skipped without a count while another kprobe program
/// runs). It still qualifies the kernel when every negative control diverged: the trace
/// had the evidence to tell the modes apart.
pub(super) fn verify_ok(rc: Option<i32>, scenarios: &[Value]) -> bool {
    let controls_diverged = scenarios
        .iter()
        .all(|s| s["negative_control"].is_null() || s["negative_control"]["diverged"] == true);
    rc == Some(0) || (rc == Some(3) && controls_diverged)
}

/// "received_rps 4, processed 2": what a scenario's recording lacked against the kernel's
/// counters, summed over CPUs (empty when complete).
pub(super) fn short_of(s: &Value) -> String {
    short_by_counter(&s["report"]["kernel_counters"])
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The strings in a JSON array (none if it is not one).
pub(super) fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Value {
        json!({"mode": "C", "kernel_release": "6.12.9-amd64",
               "mode_evidence": ["patch present: /proc/kallsyms has backlog_napi_should_run, run_backlog_napi",
                                 "2 backlog_napi thread(s) running: backlog_napi/0 backlog_napi/1",
                                 "cmdline has thread_backlog_napi"],
               "probes": [
            {"name": "napi_poll", "attached": true, "role": "event", "kind": "tp_btf"},
            {"name": "softirq_raise", "attached": true, "role": "event", "kind": "raw_tracepoint"},
            {"name": "softirq_entry", "attached": true, "role": "event", "kind": "raw_tracepoint"},
            {"name": "netif_rx", "attached": true, "role": "event", "kind": "tracepoint"},
            {"name": "ctx", "attached": true, "role": "context", "kind": "raw_tracepoint"},
            {"name": "csd_queue_cpu", "attached": false, "kind": "tp_btf", "reason": "no such tracepoint"},
            {"name": "rps_trigger", "attached": false, "kind": "kprobe", "reason": "busy"},
        ]})
    }

    fn verify(diverged: bool) -> Value {
        json!({"passed": true, "checked_as": "C", "scenarios": [{
            "scenario": "loopback-rps", "verdict": "PASS", "sent": 2000, "received": 1999,
            "paths": {"backlog_thread": 1999},
            "negative_control": {"diverged": diverged, "checked_as": "B", "failed_rules": ["C1", "C4"]},
            "report": {"kernel_counters": {"checks": [
                {"counter": "received_rps", "result": "short", "max": 4}]},
                "rules": [
                    {"id": "C-1", "verdict": "PASS", "passed": 1999, "failed": 0, "warned": 0, "inconclusive": 0},
                    {"id": "C-2", "verdict": "WARN", "passed": 10, "failed": 0, "warned": 3, "inconclusive": 0},
                    {"id": "G6", "verdict": "INCONCLUSIVE", "passed": 0, "failed": 0, "warned": 0, "inconclusive": 0},
                    {"id": "C-3", "verdict": "PASS", "passed": 5, "failed": 0, "warned": 0, "inconclusive": 0}]},
        }]})
    }

    /// A passing 6.12-threads row, with `top` as the guest's top summary.
    fn threads_row(top: &Value) -> Value {
        let (status, verify) = (status(), verify(true));
        let null = Value::Null;
        row(
            "6.12-threads",
            "thread_backlog_napi",
            "C",
            &status,
            &verify,
            Some(0),
            12.34,
            &null,
            top,
        )
    }

    #[test]
    fn a_row_counts_probes_and_decides_the_verdict() {
        let r = threads_row(&Value::Null);
        assert_eq!(r["event_probes_attached"], 4);
        assert_eq!(r["event_probe_kinds"], "1 classic, 2 raw, 1 tp_btf");
        assert_eq!(
            r["not_attached"],
            json!(["csd_queue_cpu (no such tracepoint)"])
        );
        assert_eq!(r["scenarios"][0]["short"], "received_rps 4");
        assert_eq!(r["seconds"], 12.3);
        assert_eq!(r["passed"], true);
        let passed = |expect, verify: &Value, rc, top: &Value| {
            row(
                "k",
                "",
                expect,
                &status(),
                verify,
                rc,
                1.0,
                &Value::Null,
                top,
            )["passed"]
                == true
        };
        assert!(
            !passed("B", &verify(true), Some(0), &Value::Null),
            "wrong mode"
        );
        let mismatch = row(
            "k",
            "",
            "B",
            &status(),
            &verify(true),
            Some(0),
            1.0,
            &Value::Null,
            &Value::Null,
        );
        assert_eq!(
            mismatch["mode"], "C",
            "the mode is the guest's, not the table's"
        );
        assert!(
            mismatch["mode_check"].as_str().unwrap().starts_with(
                "MISMATCH: the table expects B, the guest's evidence says C (patch present"
            ),
            "{}",
            mismatch["mode_check"]
        );
        assert_eq!(r["mode_check"], "matches");
        assert_eq!(mismatch["failed_because"], json!(["mode C, expected B"]));
        assert_eq!(r["failed_because"], json!([]));
        assert_eq!(r["verified_as"], "C");
        assert_eq!(r["scenarios"][0]["rules"][1]["warned"], 3);
        let mut verified_as_b = verify(true);
        verified_as_b["checked_as"] = json!("B");
        assert!(
            !passed("C", &verified_as_b, Some(0), &Value::Null),
            "verify must have checked in the found mode"
        );
        assert!(
            passed("C", &verify(true), Some(3), &Value::Null),
            "short, controls diverged"
        );
        assert!(
            !passed("C", &verify(false), Some(3), &Value::Null),
            "short, a control did not"
        );
        assert!(!passed("C", &verify(true), Some(1), &Value::Null));
        let top = json!({"rc": 0, "intervals": 5, "rejected": []});
        assert!(passed("C", &verify(true), Some(0), &top));
        let refused = json!({"rc": 0, "intervals": 5, "rejected": ["napi_poll: verifier"]});
        assert!(!passed("C", &verify(true), Some(0), &refused));
    }

    #[test]
    fn evidence_is_shortened_only_where_it_is_known() {
        let e = json!([
            "patch absent: /proc/kallsyms has neither backlog_napi_should_run nor run_backlog_napi",
            "no backlog_napi/N threads",
            "kernel is PREEMPT_RT",
            "/proc/kallsyms unreadable; guessing from release 6.1.0"
        ]);
        assert_eq!(
            evidence_cell(&e),
            "no patch symbols in kallsyms; no backlog_napi threads; PREEMPT_RT; \
             /proc/kallsyms unreadable; guessing from release 6.1.0"
        );
        let failed =
            json!([{"id": "C-3", "verdict": "FAIL", "failed": 7}, {"id": "G1", "verdict": "PASS"}]);
        assert_eq!(rules_cell(&failed), "**FAIL** C-3 (7); PASS G1");
    }

    #[test]
    fn the_markdown_has_a_line_per_kernel_in_each_table() {
        let top = json!({"rc": 0, "intervals": 5, "rejected": [], "failed_rules": [],
                         "cpu1": {"remote_softirq": 12.0, "backlog_thread": 3.0}});
        let mut r = threads_row(&top);
        r["hotplug"] = json!({"scenario": {"offline_at": 1.0, "online_at": 2.5}, "received": 900,
                              "events": 5000, "cpuhp_events": 7, "verdict": "PASS", "check_rc": 0});
        let host = row(
            "host",
            "",
            "B",
            &Value::Null,
            &Value::Null,
            None,
            1.0,
            &Value::Null,
            &Value::Null,
        );
        let md = markdown(
            &[r, host],
            "2025-01-31 12:00 UTC",
            "cargo xtask vm-test --all",
        );
        assert!(md.starts_with(
            "# napiscope kernel matrix\n\n`cargo xtask vm-test --all`, 2025-01-31 12:00 UTC."
        ));
        assert!(md.contains(
            "| 6.12-threads | 6.12.9-amd64 | thread_backlog_napi | C | C | patch symbols in kallsyms; 2 backlog_napi threads; \
             thread_backlog_napi on cmdline | 4 (1 classic, 2 raw, 1 tp_btf) | \
             loopback-rps PASS; as B diverges: C1 C4; incomplete: short of the kernel's received_rps 4 | PASS | 12.3 s |\n"
        ), "{md}");
        assert!(
            md.contains(
                "| host | ? | – | B | **? (MISMATCH)** |  | 0 () |  | **FAIL** (mode ?, expected B; verify exit none) | 1.0 s |\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 6.12-threads | loopback-rps | 2000 / 1999 | backlog_thread 1999 | \
                 WARN C-2 (3); PASS C-1 C-3; INCONCLUSIVE G6 | as B: diverges (C1 C4) | received_rps 4 |\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 6.12-threads | thread_backlog_napi | 0 | 12 | 3 | – | – | – | – |\n"),
            "{md}"
        );
        assert!(md.contains("| 6.12-threads | thread_backlog_napi | 1.00 → 2.50 | 900 | 5000 | 7 | PASS (exit 0) |\n"), "{md}");
        let mut rt = threads_row(&top);
        rt["kernel"] = json!("7.3-rt");
        rt["hotplug"] = json!({"scenario": {"offline_at": 1.0, "online_at": 2.0}, "received": 5991,
                               "events": 66235, "cpuhp_events": 158, "verdict": "PASS", "check_rc": 3,
                               "missed_by_event": {"softirq_entry": 1, "softirq_exit": 2}});
        assert!(hotplug_markdown(&[rt]).contains(
            "| 7.3-rt | thread_backlog_napi | 1.00 → 2.00 | 5991 | 66235 | 158 | PASS (exit 3; recording \
             incomplete, the kernel skipped programs: softirq_entry 1, softirq_exit 2) |\n"
        ));
        assert!(
            md.ends_with("- 6.12-threads: csd_queue_cpu (no such tracepoint)\n"),
            "{md}"
        );
        assert!(!md.contains("| host | – | 0"), "the host has no top row");
        let mut split = threads_row(&top);
        split["package_layout"] = json!("split (linux-image metapackage; vmlinuz in linux-binary)");
        split["mode"] = json!("B");
        let t = readme_table(&[split]);
        assert!(
            t.ends_with(
                "| 6.12-threads (thread_backlog_napi) | 6.12.9-amd64 | linux-binary + linux-modules + linux-base | \
                 C → B **MISMATCH** (patch symbols in kallsyms; 2 backlog_napi threads; thread_backlog_napi on cmdline) | \
                 loopback-rps PASS | loopback-rps as B: FAIL C1 C4 | loopback-rps: received_rps 4 | PASS | 12.3 s |\n"
            ),
            "{t}"
        );
    }
}
