//! `verify`'s text output: one line per scenario, its divergences, its device's NAPI
//! places and its negative control.

use super::{
    device::DeviceNapi,
    report::{ScenarioResult, VerifyReport},
};
use crate::output::fmt_counts;

pub(super) fn print_verify(v: &VerifyReport) {
    println!(
        "kernel {}: live mode {}",
        v.kernel_release,
        v.live_mode.as_str()
    );
    if let Some(e) = v.expected_mode {
        println!(
            "expected mode {}: {}",
            e.as_str(),
            if v.mode_ok { "ok" } else { "MISMATCH" }
        );
    }
    for s in &v.scenarios {
        print_scenario(s);
    }
    for s in &v.skipped {
        println!("skipped           {s}");
    }
    println!("verify: {}", if v.passed { "PASS" } else { "FAIL" });
}

fn print_scenario(s: &ScenarioResult) {
    println!(
        "{:<18} {:<13} sent {:>5} received {:>5}  paths: {}",
        s.scenario,
        s.verdict.name(),
        s.sent,
        s.received,
        fmt_counts(&s.paths, "")
    );
    if !s.failed_rules.is_empty() {
        println!(
            "                   failed rules: {}",
            s.failed_rules.join(" ")
        );
        for d in s.report.rules.iter().flat_map(|r| &r.divergences).take(5) {
            println!(
                "                   {}: {} — expected: {}",
                d.rule, d.message, d.expected
            );
        }
    }
    if let Some(d) = &s.device_napi {
        print_device(d);
    }
    if let Some(n) = &s.negative_control {
        println!(
            "                   negative control (as mode {}): {}{}",
            n.checked_as.as_str(),
            if n.diverged {
                "diverges, as it must"
            } else {
                "DID NOT DIVERGE — the checker is blind here"
            },
            if n.failed_rules.is_empty() {
                String::new()
            } else {
                format!(" ({})", n.failed_rules.join(" "))
            }
        );
    }
}

fn print_device(d: &DeviceNapi) {
    let by = if d.threads.is_empty() {
        "a napi/ thread".to_string()
    } else {
        d.threads.join(", ")
    };
    let after = if d.net_rx_after_thread > 0 {
        format!(
            ", {} NET_RX after the thread's first",
            d.net_rx_after_thread
        )
    } else {
        String::new()
    };
    let verdict = if d.holds {
        "as the setting says".to_string()
    } else {
        format!("NOT as the setting says (expected: {})", d.expected)
    };
    let busy = if d.other_polls > 0 {
        format!(
            ", {} in tasks ({} by the busy-polling receiver, {} packets)",
            d.other_polls, d.busy_polls, d.busy_packets
        )
    } else {
        String::new()
    };
    println!(
        "                   {} ({}): {} NET_RX polls, {} by {by}{after}{busy}: {verdict}",
        d.dev, d.setting, d.net_rx_polls, d.thread_polls
    );
}
