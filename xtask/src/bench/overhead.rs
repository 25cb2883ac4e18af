//! `bench --only overhead`: the traced system's throughput under napiscope (four ways),
//! bpftrace and perf, side by side (needs root).

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{record_json, scenario_json};
use crate::util::{
    apt_install, capture, have_command, json_num, median, received_pps, run, signal, step,
};

/// The tracepoints napiscope records, for bpftrace and perf to trace the same.
const TRACEPOINTS: &[&str] = &[
    "irq:softirq_raise",
    "irq:softirq_entry",
    "irq:softirq_exit",
    "napi:napi_poll",
    "net:netif_rx",
    "net:netif_rx_exit",
    "net:netif_receive_skb",
    "sched:sched_switch",
    "sched:sched_waking",
    "sched:sched_wakeup",
    "sched:sched_wake_idle_without_ipi",
    "ipi:ipi_send_cpu",
    "csd:csd_queue_cpu",
    "csd:csd_function_entry",
];

/// Overhead rounds: medians of this many, every tracer in every round.
const ROUNDS: usize = 5;

const SCENARIOS: [&str; 2] = ["loopback-rps", "veth-rps"];

const TRACERS: [&str; 7] = [
    "none",
    "napiscope",
    "napiscope-inline",
    "napiscope-classic",
    "napiscope-top",
    "bpftrace",
    "perf",
];

/// One overhead run: packets/s, events recorded, file bytes, lost events, seconds from
/// SIGINT to the tracer's exit.
#[derive(Default)]
struct Run {
    pps: f64,
    events: f64,
    bytes: f64,
    lost: f64,
    finish: f64,
}

/// Traced-system overhead: packets/s of a UDP flood with no tracer, napiscope record,
/// bpftrace printing the same tracepoints, and perf record on them — median of 3 runs each,
/// interleaved so drift hits every tracer alike.
pub fn bench_overhead(bin: &Path, dir: &Path) -> Result<String> {
    for (tool, pkg) in [("bpftrace", "bpftrace"), ("perf", "linux-perf")] {
        if !have_command(tool) {
            step(&format!("installing {pkg} for the comparison"));
            run(&mut apt_install(&[pkg]))?;
        }
    }
    let bt_script = dir.join("same-tracepoints.bt");
    let probes: Vec<String> = TRACEPOINTS
        .iter()
        .map(|t| format!("tracepoint:{t}"))
        .collect();
    std::fs::write(
        &bt_script,
        format!(
            "{} {{ printf(\"%llu %d %s %d\\n\", nsecs, cpu, probe, pid); }}\n",
            probes.join(",\n")
        ),
    )?;
    let mut results: BTreeMap<(&str, &str), Vec<Run>> = Default::default();
    for round in 0..ROUNDS {
        for scenario in SCENARIOS {
            for tracer in TRACERS {
                step(&format!(
                    "overhead round {}: {scenario} under {tracer}",
                    round + 1
                ));
                let out = dir.join(format!("ovh-{tracer}"));
                let _ = std::fs::remove_file(&out);
                let child = start_tracer(bin, tracer, &out, &bt_script)?;
                // Attaching ~30 tracepoints takes napiscope ~3 s (kernel text patching).
                std::thread::sleep(Duration::from_secs(if child.is_some() { 4 } else { 1 }));
                let sc = scenario_json(bin, scenario, 0, "3s")?;
                let mut r = Run {
                    pps: received_pps(&sc),
                    ..Run::default()
                };
                if let Some(c) = child {
                    let stopped = Instant::now();
                    signal(&c, "-INT");
                    let o = c.wait_with_output()?;
                    r.finish = stopped.elapsed().as_secs_f64();
                    r.bytes = std::fs::metadata(&out).map_or(0.0, |m| m.len() as f64);
                    (r.events, r.lost) = counted(tracer, &o.stdout, &out);
                }
                results.entry((scenario, tracer)).or_default().push(r);
            }
        }
    }
    Ok(table(&results))
}

/// `tracer` started on its way to `out` (`none`: nothing to start).
fn start_tracer(bin: &Path, tracer: &str, out: &Path, bt_script: &Path) -> Result<Option<Child>> {
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut c = match tracer {
        "none" => return Ok(None),
        "napiscope" | "napiscope-inline" | "napiscope-classic" => {
            let mut c = record_json(bin, out);
            c.args(match tracer {
                "napiscope-inline" => &["--encode-buffer-mb", "0"][..],
                "napiscope-classic" => &["--classic-tracepoints"][..],
                _ => &[][..],
            });
            c
        }
        "napiscope-top" => {
            let mut c = Command::new(bin);
            c.args(["top", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            c
        }
        "bpftrace" => {
            let mut c = Command::new("bpftrace");
            c.arg("-o").arg(out).arg(bt_script);
            quiet(&mut c);
            c
        }
        _ => {
            let mut c = Command::new("perf");
            c.args(["record", "-q", "-a", "-o"])
                .arg(out)
                .args(TRACEPOINTS.iter().flat_map(|t| ["-e", t]));
            quiet(&mut c);
            c
        }
    };
    Ok(Some(c.spawn()?))
}

/// (events recorded, events lost) as `tracer` reports them, from its stdout or its file.
fn counted(tracer: &str, stdout: &[u8], out: &Path) -> (f64, f64) {
    match tracer {
        "napiscope" | "napiscope-inline" | "napiscope-classic" => {
            let j = String::from_utf8_lossy(stdout);
            (json_num(&j, "events"), json_num(&j, "lost_total"))
        }
        // Counted in the kernel: events = sum of events/s × interval.
        "napiscope-top" => (top_events(&String::from_utf8_lossy(stdout)), 0.0),
        "bpftrace" => {
            let events = std::fs::read_to_string(out).map_or(0.0, |t| {
                t.lines()
                    .filter(|l| l.starts_with(char::is_numeric))
                    .count() as f64
            });
            (events, 0.0)
        }
        _ => {
            let st = capture(
                Command::new("perf")
                    .args(["report", "--stats", "-i"])
                    .arg(out),
            )
            .unwrap_or_default();
            (
                perf_stat(&st, "SAMPLE events:"),
                perf_stat(&st, "LOST events:"),
            )
        }
    }
}

/// Events `napiscope top --json` counted: events/s × interval, summed over its lines.
fn top_events(lines: &str) -> f64 {
    lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            let o = &v["overall"];
            o["events_per_s"].as_f64().unwrap_or(0.0) * o["interval_s"].as_f64().unwrap_or(0.0)
        })
        .sum()
}

/// The count after `label` in `perf report --stats` (0 if absent).
fn perf_stat(stats: &str, label: &str) -> f64 {
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The section: medians per scenario and tracer, against the untraced runs.
fn table(results: &BTreeMap<(&str, &str), Vec<Run>>) -> String {
    let mut s = format!(
        "\n## Traced-system overhead, side by side\n\n\
         UDP flood (`napiscope scenario S --rate 0 -d 3s`, packets received per second) under \
         each tracer: `napiscope record` (its full probe set: the 14 tracepoints below, cpuhp, \
         and 12 IRQ entry/exit raw tracepoints that track context; BTF tracepoints for the \
         receive path and the scheduler, raw tracepoints for the rest), with its Parquet \
         encoder idling behind a memory queue (the default), encoding \
         as events come (`napiscope-inline`, `--encode-buffer-mb 0`), and on classic \
         tracepoints only (`napiscope-classic`, `--classic-tracepoints`); `napiscope top --json` (counts in the \
         kernel, nothing per event leaves it); bpftrace printing nsecs/cpu/probe/pid for each \
         event of the 14 tracepoints to a file; `perf record -a -e` on the 14 tracepoints. \
         Median of {ROUNDS} rounds, tracers interleaved within each round (the flood's rate \
         moves ±30% from run to run on this shared 2-vCPU machine, untraced too). *Done after stop* is the \
         time from SIGINT to the tracer's exit with its file complete.\n\n\
         | scenario | tracer | packets/s | vs untraced | events recorded | lost | bytes/event on disk | done after stop |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let dash = || "–".to_string();
    for scenario in SCENARIOS {
        let base = median(results[&(scenario, "none")].iter().map(|r| r.pps).collect());
        for tracer in TRACERS {
            let v = &results[&(scenario, tracer)];
            let m = |f: fn(&Run) -> f64| median(v.iter().map(f).collect());
            let (pps, ev, by, lost) =
                (m(|r| r.pps), m(|r| r.events), m(|r| r.bytes), m(|r| r.lost));
            let none = tracer == "none";
            s.push_str(&format!(
                "| {scenario} | {tracer} | {pps:.0} | {:.1}% | {} | {} | {} | {} |\n",
                100.0 * pps / base.max(1.0),
                if none { dash() } else { format!("{ev:.0}") },
                if none || tracer == "bpftrace" || tracer == "napiscope-top" {
                    dash()
                } else {
                    format!("{lost:.0}")
                },
                if ev > 0.0 && by > 0.0 {
                    format!("{:.1}", by / ev)
                } else {
                    dash()
                },
                if none {
                    dash()
                } else {
                    format!("{:.1} s", m(|r| r.finish))
                },
            ));
        }
    }
    s.push_str(
        "\nbpftrace's losses are not counted here (it reports them on stderr only); its bytes/event \
         are those of its text lines.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_and_top_counts_are_read() {
        let st = "Aggregated stats:\n  SAMPLE events:      1234\n   LOST events:   7  ( 0.1%)\n";
        assert_eq!(perf_stat(st, "SAMPLE events:"), 1234.0);
        assert_eq!(perf_stat(st, "LOST events:"), 7.0);
        assert_eq!(perf_stat(st, "THROTTLE events:"), 0.0);
        let top = "{\"overall\":{\"events_per_s\":100,\"interval_s\":2}}\nnot json\n\
                   {\"overall\":{\"events_per_s\":10,\"interval_s\":0.5}}\n";
        assert_eq!(top_events(top), 205.0);
    }

    #[test]
    fn the_table_compares_each_tracer_with_the_untraced_median() {
        let mut results: BTreeMap<(&str, &str), Vec<Run>> = Default::default();
        for scenario in SCENARIOS {
            for tracer in TRACERS {
                let run = |pps| Run {
                    pps,
                    events: 100.0,
                    bytes: 2500.0,
                    lost: 1.0,
                    finish: 0.3,
                };
                let pps = if tracer == "none" { 1000.0 } else { 500.0 };
                results.entry((scenario, tracer)).or_default().extend([
                    run(pps),
                    run(pps * 3.0),
                    run(pps),
                ]);
            }
        }
        let t = table(&results);
        assert!(
            t.contains("| veth-rps | none | 1000 | 100.0% | – | – | 25.0 | – |\n"),
            "{t}"
        );
        assert!(
            t.contains("| veth-rps | perf | 500 | 50.0% | 100 | 1 | 25.0 | 0.3 s |\n"),
            "{t}"
        );
        assert!(
            t.contains("| loopback-rps | bpftrace | 500 | 50.0% | 100 | – | 25.0 |"),
            "{t}"
        );
    }
}
