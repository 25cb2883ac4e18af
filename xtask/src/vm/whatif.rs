//! `cargo xtask vm-test --whatif`: the validation of `napiscope whatif`. The same scenario
//! (loopback-rps, 2000 packets/s for 3 s) is recorded in the 6.12 guest (mode B) and the
//! 6.12 + thread_backlog_napi guest (mode C); each guest predicts the other mode from its
//! own recording; the host holds each prediction against the other guest's observation,
//! per packet (the two boots' rates and timing differ, so absolute counts are not the
//! honest measure). Writes target/vm-test/whatif.{json,md} and keeps the recordings in
//! target/vm-test/<kernel>/whatif.parquet.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::{boot, builder, KernelSpec, KERNELS};
use crate::util::{step, utc_now};

/// Per-packet quantities compared, as `whatif --json` names them.
const QUANTITIES: &[&str] = &[
    "rps_ipis_received",
    "thread_wakeups",
    "thread_runs",
    "backlog_polls",
    "batches",
    "net_rx_raises",
    "remote_softirq",
    "backlog_thread",
];

pub fn run(dir: &Path, initrd: &Path) -> Result<()> {
    let mut guests = Vec::new();
    for name in ["6.12", "6.12-threads"] {
        let k = KERNELS.iter().find(|k| k.name == name).unwrap();
        guests.push(guest(k, dir, initrd).with_context(|| format!("guest {name}"))?);
    }
    let date = utc_now()?;
    let rows = compare(&guests[0], &guests[1]);
    let out = json!({ "date": date, "guests": guests, "rows": rows,
                      "command": "cargo xtask vm-test --whatif" });
    std::fs::write(dir.join("whatif.json"), serde_json::to_string_pretty(&out)?)?;
    let md = markdown(&out);
    std::fs::write(dir.join("whatif.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// Boot `k` with `napiscope.whatif`, and read what its /init said: the recording's summary,
/// `whatif --json` and the recording itself (base64), kept in dir/<kernel>/whatif.parquet.
fn guest(k: &KernelSpec, dir: &Path, initrd: &Path) -> Result<Value> {
    let name: &'static str = Box::leak(format!("whatif-{}", k.name).into_boxed_str());
    let cmdline: &'static str =
        Box::leak(format!("{} napiscope.whatif", k.cmdline).into_boxed_str());
    let spec = KernelSpec {
        name,
        cmdline,
        ..*k
    };
    let fetched = builder::fetch_kernel(&spec, dir)?;
    let kinitrd = dir.join(format!("initramfs-{name}.cpio.gz"));
    builder::kernel_initrd(initrd, &fetched, &kinitrd)?;
    step(&format!("booting {} ({})", k.name, spec.cmdline.trim()));
    let (_, secs) = boot::boot(&spec, &fetched.vmlinuz, &kinitrd, dir)?;
    let log = dir.join(format!("{name}.log"));
    let text = String::from_utf8_lossy(&std::fs::read(&log)?).replace('\r', "");
    let w = boot::between(&text, "@@WHATIF-JSON", "@@WHATIF-RC")
        .and_then(boot::json_in)
        .with_context(|| format!("no whatif JSON in {}", log.display()))?;
    let kept = dir.join(k.name).join("whatif.parquet");
    if let Some(b64) = boot::between(&text, "@@WHATIF-PARQUET-BEGIN", "@@WHATIF-PARQUET-END") {
        keep_recording(b64, &kept)?;
    }
    let rec = boot::between(&text, "@@WHATIF-REC-RC", "@@WHATIF-JSON")
        .map(boot::json_objects)
        .unwrap_or_default();
    Ok(json!({
        "kernel": k.name,
        "cmdline": k.cmdline,
        "uname": boot::tagged(&text, "@@UNAME "),
        "mode": w["observed"]["mode"],
        "seconds": secs,
        "record_rc": boot::tagged(&text, "@@WHATIF-REC-RC "),
        "record_completeness": rec.first().map(|r| r["completeness"].clone()),
        "recording": kept.display().to_string(),
        "whatif": w,
    }))
}

/// The base64 lines between the tags (kernel messages may interleave) into `out`.
fn keep_recording(b64: &str, out: &Path) -> Result<()> {
    let clean: String = b64
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let tmp = out.with_extension("b64");
    std::fs::write(&tmp, clean)?;
    builder::sh(
        &format!("base64 -d {} > {}", tmp.display(), out.display()),
        Path::new("/"),
    )?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn per_packet(side: &Value, q: &str) -> f64 {
    side["per_packet"][q].as_f64().unwrap_or(0.0)
}

/// Rows: per quantity and direction, predicted (from the other guest's recording) against
/// observed (this guest's), per packet, and the error (relative where observed ≠ 0).
fn compare(b: &Value, c: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for (pred_from, obs_in, dir) in [(b, c, "B → C"), (c, b, "C → B")] {
        let (p, o) = (
            &pred_from["whatif"]["predicted"],
            &obs_in["whatif"]["observed"],
        );
        for q in QUANTITIES {
            let (pv, ov) = (per_packet(p, q), per_packet(o, q));
            let err = if ov != 0.0 {
                json!((pv - ov) / ov)
            } else {
                Value::Null
            };
            rows.push(json!({"direction": dir, "quantity": q, "predicted": pv,
                             "observed": ov, "abs_error": pv - ov, "rel_error": err}));
        }
        let lat = |s: &Value, path: &str| s["latency_us"][path].as_f64();
        let path = if dir == "B → C" {
            "backlog_thread"
        } else {
            "remote_softirq"
        };
        rows.push(
            json!({"direction": dir, "quantity": format!("latency_us {path}"),
                         "predicted": lat(p, path), "observed": lat(o, path)}),
        );
    }
    rows
}

fn markdown(out: &Value) -> String {
    let mut s = format!(
        "What if (`{}`, {}): scenario loopback-rps (2000 packets/s, 3 s, sender CPU 0, RPS to \
         CPU 1), 2 vCPUs under QEMU TCG.\n\n",
        out["command"].as_str().unwrap_or(""),
        out["date"].as_str().unwrap_or("")
    );
    for g in out["guests"].as_array().into_iter().flatten() {
        let w = &g["whatif"];
        s += &format!(
            "- {} ({}, mode {}): {} packets; assumed IPI {:.1} µs ({}), wake-up {:.1} µs ({})\n",
            g["kernel"].as_str().unwrap_or(""),
            g["uname"].as_str().unwrap_or("?"),
            g["mode"].as_str().unwrap_or("?"),
            w["packets"],
            w["ipi"]["ns"].as_f64().unwrap_or(0.0) / 1e3,
            w["ipi"]["source"].as_str().unwrap_or(""),
            w["wake"]["ns"].as_f64().unwrap_or(0.0) / 1e3,
            w["wake"]["source"].as_str().unwrap_or(""),
        );
    }
    s += "\n| prediction | per packet | predicted | observed | error |\n|---|---|---:|---:|---:|\n";
    for r in out["rows"].as_array().into_iter().flatten() {
        let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.3}"));
        let err = match (r["rel_error"].as_f64(), r["abs_error"].as_f64()) {
            (Some(e), _) => format!("{:+.1} %", e * 100.0),
            (None, Some(a)) => format!("{a:+.3} (abs)"),
            _ => "-".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} |\n",
            r["direction"].as_str().unwrap_or(""),
            r["quantity"].as_str().unwrap_or(""),
            f(&r["predicted"]),
            f(&r["observed"]),
            err
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(mode: &str, per_packet: Value, predicted: Value) -> Value {
        json!({"kernel": mode, "mode": mode, "whatif": {
            "packets": 100,
            "observed": {"per_packet": per_packet, "latency_us": {"remote_softirq": 30.0}},
            "predicted": {"per_packet": predicted, "latency_us": {"backlog_thread": 40.0}},
        }})
    }

    #[test]
    fn each_prediction_is_held_against_the_other_guests_observation_per_packet() {
        let b = guest(
            "B",
            json!({"rps_ipis_received": 0.5, "thread_wakeups": 0.0}),
            json!({"rps_ipis_received": 0.0, "thread_wakeups": 0.6}),
        );
        let c = guest(
            "C",
            json!({"rps_ipis_received": 0.0, "thread_wakeups": 0.8}),
            json!({"rps_ipis_received": 0.4, "thread_wakeups": 0.0}),
        );
        let rows = compare(&b, &c);
        let find = |dir: &str, q: &str| {
            rows.iter()
                .find(|r| r["direction"] == dir && r["quantity"] == q)
                .unwrap()
                .clone()
        };
        let w = find("B → C", "thread_wakeups");
        assert_eq!(
            (w["predicted"].as_f64(), w["observed"].as_f64()),
            (Some(0.6), Some(0.8))
        );
        assert!((w["rel_error"].as_f64().unwrap() + 0.25).abs() < 1e-9);
        let i = find("C → B", "rps_ipis_received");
        assert!((i["rel_error"].as_f64().unwrap() + 0.2).abs() < 1e-9);
        // Observed 0: the error is absolute, not a division by zero.
        let z = find("B → C", "rps_ipis_received");
        assert_eq!(z["rel_error"], Value::Null);
        assert_eq!(z["abs_error"], 0.0);
        let l = find("B → C", "latency_us backlog_thread");
        assert_eq!(l["predicted"], 40.0);
        let md = markdown(&json!({"date": "d", "command": "x", "guests": [b, c], "rows": rows}));
        assert!(
            md.contains("| B → C | thread_wakeups | 0.600 | 0.800 | -25.0 % |"),
            "{md}"
        );
    }

    #[test]
    fn the_recording_is_decoded_from_between_kernel_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-whatif-{}", std::process::id()));
        let out = dir.join("k/whatif.parquet");
        // "PAR1 napiscope\n" in base64, split, with a kernel line in between.
        keep_recording("\nUEFSMSBuYXBp\n[ 3.2] random: crng init\nc2NvcGUK\n", &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"PAR1 napiscope\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
