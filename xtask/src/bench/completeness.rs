//! `bench --only completeness`: the highest packet rate at which every recording matches the
//! kernel's own counters (needs root).

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{record_json, scenario_json};
use crate::util::{received_pps, short_by_counter, signal};

/// Send rates for the completeness bench; 0 floods.
const COMPLETENESS_RATES: [u64; 5] = [10_000, 50_000, 100_000, 200_000, 0];
const COMPLETENESS_RUNS: usize = 3;

/// The highest packet rate at which every recording matches the kernel's own counters, and
/// what happens above it (needs root): veth + RPS to CPU 1 at fixed rates, 2 s each, 3 runs.
pub fn bench_completeness(bin: &Path, dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    let mut highest_clean: Option<f64> = None;
    let mut above = false;
    for rate in COMPLETENESS_RATES {
        let mut cells = Vec::new();
        let (mut complete, mut pps_sum) = (0, 0.0);
        for run in 0..COMPLETENESS_RUNS {
            let (pps, v) = record_at(
                bin,
                &dir.join(format!("complete-{rate}-{run}.parquet")),
                rate,
            )?;
            pps_sum += pps;
            let (cell, is_complete) = cell(&v);
            complete += usize::from(is_complete);
            cells.push(cell);
        }
        let pps = pps_sum / COMPLETENESS_RUNS as f64;
        if complete == COMPLETENESS_RUNS && !above {
            highest_clean = Some(pps);
        } else {
            above = true;
        }
        rows.push(format!(
            "| {} | {:.0} | {complete}/{COMPLETENESS_RUNS} | {} |",
            if rate == 0 {
                "flood".to_string()
            } else {
                rate.to_string()
            },
            pps,
            cells.join("<br>")
        ));
    }
    Ok(format!(
        "## Completeness: recordings against the kernel's own counters\n\n\
         `napiscope record` (default settings) around `napiscope scenario veth-rps --rate R \
         -d 2s` (RPS from CPU 0 to CPU 1), {COMPLETENESS_RUNS} runs per rate; each run's \
         verdict from its per-CPU check of softnet_stat processed / received_rps and \
         /proc/softirqs NET_RX against netif_receive_skb / \
         csd_function_entry(rps_trigger_softirq) / softirq_entry(NET_RX) \
         (docs/completeness.md). Shortfalls are the most the recording can miss, summed over \
         CPUs; blind = windows in which the kernel ran no napiscope program, and their total \
         length (each window ends at the next event seen, so it can include quiet time).\n\n\
         | rate asked (pkt/s) | received (pkt/s, mean) | complete | runs |\n\
         |---|---|---|---|\n{}\n\n\
         Highest rate at which every run matched: {}. Recordings that go short without a ring \
         loss do so because the kernel of this VM runs no eBPF program while its agent's \
         threads are current (docs/completeness.md); every such run says so (INCOMPLETE, \
         exit 3), and its blind windows say when.",
        rows.join("\n"),
        highest_clean.map_or("none of the rates measured".into(), |p| format!(
            "{p:.0} pkt/s received"
        ))
    ))
}

/// One run: `record` to `f` around 2 s of veth-rps at `rate`; the packets/s received and
/// `record --json`'s summary.
fn record_at(bin: &Path, f: &Path, rate: u64) -> Result<(f64, Value)> {
    let rec = record_json(bin, f).stderr(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_secs(4)); // attaching takes ~3 s
    let sc = scenario_json(bin, "veth-rps", rate, "2s")?;
    std::thread::sleep(Duration::from_millis(300));
    signal(&rec, "-INT");
    let out = rec.wait_with_output()?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("record --json at rate {rate}"))?;
    Ok((received_pps(&sc), v))
}

/// A run's table cell from `record --json`'s summary, and whether it was complete.
fn cell(v: &Value) -> (String, bool) {
    let (blind_n, blind_ms) =
        v["blind"]
            .as_array()
            .into_iter()
            .flatten()
            .fold((0, 0.0), |(n, ms), b| {
                (
                    n + b["windows"].as_u64().unwrap_or(0),
                    ms + b["ns"].as_f64().unwrap_or(0.0) / 1e6,
                )
            });
    let verdict = v["completeness"].as_str().unwrap_or("?");
    if verdict == "complete" {
        return (
            format!("complete (blind {blind_n}, {blind_ms:.1} ms)"),
            true,
        );
    }
    let lost = v["lost_total"].as_u64().unwrap_or(0);
    let gaps: u64 = v["seq_gaps_per_cpu"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_u64())
        .sum();
    let misses: u64 = v["missed_by_event"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    let short: Vec<String> = short_by_counter(&v["kernel_counters"])
        .iter()
        .map(|(k, n)| format!("{k} −{n}"))
        .collect();
    let cell = format!(
        "**{verdict}**: {}{} (blind {blind_n}, {blind_ms:.1} ms)",
        if short.is_empty() {
            "–".into()
        } else {
            short.join(", ")
        },
        [
            ("ring lost", lost),
            ("seq gaps", gaps),
            ("recursion misses", misses)
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!(", {what} {n}"))
        .collect::<String>()
    );
    (cell, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_complete_run_shows_its_blind_windows() {
        let v = json!({"completeness": "complete",
                       "blind": [{"windows": 2, "ns": 1.5e6}, {"windows": 1, "ns": 0.25e6}]});
        assert_eq!(cell(&v), ("complete (blind 3, 1.8 ms)".to_string(), true));
    }

    #[test]
    fn an_incomplete_run_names_its_shortfalls_and_losses() {
        let v = json!({
            "completeness": "INCOMPLETE",
            "kernel_counters": {"checks": [
                {"counter": "processed", "result": "short", "max": 4},
                {"counter": "net_rx", "result": "ok", "max": 7},
            ]},
            "lost_total": 0,
            "seq_gaps_per_cpu": [1, 2],
            "missed_by_event": {"napi_poll": 3},
        });
        assert_eq!(
            cell(&v),
            (
                "**INCOMPLETE**: processed −4, seq gaps 3, recursion misses 3 (blind 0, 0.0 ms)"
                    .to_string(),
                false
            )
        );
        let bare = cell(&json!({}));
        assert_eq!(bare.0, "**?**: – (blind 0, 0.0 ms)");
    }
}
