//! `bench --only record`: recording under a UDP flood (needs root).

use std::{path::Path, time::Duration};

use anyhow::Result;

use super::{record_json, scenario_json};
use crate::util::json_num;

/// Recording under a UDP flood (needs root): events/s, losses, bytes per event.
pub fn bench_record(bin: &Path, dir: &Path) -> Result<String> {
    let mut rows = Vec::new();
    for mb in [16, 128] {
        let f = dir.join(format!("flood-{mb}.parquet"));
        let rec = record_json(bin, &f)
            .args(["-d", "6s", "--ring-buffer-mb", &mb.to_string()])
            .spawn()?;
        std::thread::sleep(Duration::from_secs(2));
        let sc = scenario_json(bin, "veth-rps", 0, "3s")?;
        let out = rec.wait_with_output()?;
        let v = String::from_utf8_lossy(&out.stdout).into_owned();
        rows.push(format!(
                "| record, veth-rps UDP flood ({:.0} pkts sent in 3 s), ring {mb} MiB | {:.0} events, {:.0} lost | {:.1} s | **{:.0} events/s**, {:.1} bytes/event on disk, recorder CPU {:.0} ns/event ({:.0} user + {:.0} sys), up to {:.0} events queued for the idle encoder, file done {:.2} s after the end |",
                json_num(&sc, "sent"),
                json_num(&v, "events"),
                json_num(&v, "lost_total"),
                json_num(&v, "seconds"),
                json_num(&v, "events_per_second"),
                json_num(&v, "bytes_per_event"),
                per_event_ns(&v, &["recording_user_s", "recording_sys_s"]),
                per_event_ns(&v, &["recording_user_s"]),
                per_event_ns(&v, &["recording_sys_s"]),
                json_num(&v, "max_queued_events"),
                json_num(&v, "encode_after_stop_s"),
            ));
    }
    Ok(format!(
        "## Recording under a flood\n\n| what | work | time | result |\n|---|---|---|---|\n{}\n\n\
         One run each: the flood saturates both cores, so lost events measure how far the \
         single reader falls behind; they are counted per CPU and shown live, never silent. \
         Recorder CPU is what `record` itself spent (all its threads: ring-buffer drain and \
         decoding, Parquet encoding on its writer thread) from the start of recording to the \
         finished file, per event. Its *sys* part is mostly not the recorder's work: without \
         IRQ time accounting (this kernel) the NET_RX softirqs that interrupt the recorder are \
         charged to it; a `perf record -e cpu-clock` profile puts the recorder's own kernel \
         time (poll, page faults, futex) at a few percent of it.",
        rows.join("\n")
    ))
}

/// CPU nanoseconds per recorded event, from `record --json`'s CPU-seconds fields.
fn per_event_ns(record_json: &str, keys: &[&str]) -> f64 {
    let secs: f64 = keys.iter().map(|k| json_num(record_json, k)).sum();
    secs * 1e9 / json_num(record_json, "events").max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_event_ns_sums_the_cpu_keys_over_events() {
        let v = "{\n  \"events\": 2000,\n  \"recording_user_s\": 0.001,\n  \"recording_sys_s\": 0.003\n}";
        assert!((per_event_ns(v, &["recording_user_s", "recording_sys_s"]) - 2000.0).abs() < 1e-6);
        assert!((per_event_ns(v, &["recording_user_s"]) - 500.0).abs() < 1e-6);
        // No events: divided by one, not by zero.
        assert!(
            (per_event_ns("{\n  \"recording_user_s\": 1\n}", &["recording_user_s"]) - 1e9).abs()
                < 1e-3
        );
    }
}
