//! The README's SQL (docs/report.sql) gets the same numbers as `napiscope report --json`: in
//! DuckDB on one recording, and in DuckDB and Spark over a hive tree of several hosts'
//! recordings. The engines run in Python (`sql_engines.py`); `cargo xtask test` installs
//! them. Outside CI a missing engine skips its test, saying so; in CI (CI=true) it fails.

#![cfg(feature = "report")]

use std::{path::Path, process::Command};

use serde_json::Value;

mod common;
use common::{napiscope, report_json, tmp_dir};

fn simulate(mode: &str, packets: usize, seed: u64, out: &Path) {
    let o = napiscope(&[
        "simulate",
        "--mode",
        mode,
        "--cpus",
        "2",
        "--workload",
        "mixed",
        "--packets",
        &packets.to_string(),
        "--seed",
        &seed.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as u64))
        .unwrap_or_else(|| panic!("not a whole number: {v}"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// docs/report.sql's result sets from `engine` on `path` (a file, or with `tree` a hive
/// directory); None when the engine is missing and this is not CI.
fn run_sql(engine: &str, path: &Path, tree: bool) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_engines.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(engine)
        .arg(root().join("docs/report.sql"))
        .arg(if tree { "tree" } else { "file" })
        .arg(path)
        .output()
        .expect("python3 runs the SQL engines (cargo xtask setup installs it)");
    let stdout = String::from_utf8_lossy(&o.stdout);
    if stdout.starts_with("MISSING_") {
        let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
        assert!(
            !ci,
            "{}: CI must run the {engine} test; `cargo xtask test` installs it",
            stdout.trim()
        );
        eprintln!(
            "{}: skipping the {engine} comparison (cargo xtask test installs it)",
            stdout.trim()
        );
        return None;
    }
    assert!(
        o.status.success(),
        "{engine} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap())
}

/// Every number of the four result sets is `report`'s.
fn assert_matches_report(sets: &Value, v: &Value, what: &str) {
    let sets = sets.as_array().unwrap();
    assert_eq!(sets.len(), 4, "{what}: {sets:?}");
    let cpu_row = |cpu: u64| {
        (v["cpus"].as_array().unwrap().iter())
            .find(|c| u(&c["cpu"]) == cpu)
            .unwrap_or_else(|| panic!("{what}: no cpu {cpu} in report"))
    };
    // Deliveries per CPU and path.
    let mut n = 0;
    for row in sets[0].as_array().unwrap() {
        let (cpu, path) = (u(&row["cpu"]), row["path"].as_str().unwrap());
        let c = cpu_row(cpu);
        assert_eq!(
            u(&c["deliveries"][path]),
            u(&row["packets"]),
            "{what} cpu {cpu} {path}"
        );
        n += u(&row["packets"]);
    }
    assert_eq!(n, u(&v["totals"]["delivered"]), "{what}");
    // Latency percentiles per path.
    for row in sets[1].as_array().unwrap() {
        let p = (v["paths"].as_array().unwrap().iter())
            .find(|p| p["path"] == row["path"])
            .unwrap();
        for k in ["p50", "p90", "p99", "max"] {
            assert_eq!(
                u(&p["latency_ns"][k]),
                u(&row[k]),
                "{what} {} {k}",
                row["path"]
            );
        }
        assert_eq!(u(&p["deliveries"]), u(&row["packets"]), "{what}");
    }
    // RPS IPIs per CPU and per packet.
    for row in sets[2].as_array().unwrap() {
        let cpu = u(&row["cpu"]);
        let c = cpu_row(cpu);
        assert_eq!(
            u(&c["rps_ipis_sent"]),
            u(&row["ipis_sent"]),
            "{what} cpu {cpu}"
        );
        assert_eq!(
            u(&c["rps_ipis_received"]),
            u(&row["ipis_received"]),
            "{what} cpu {cpu}"
        );
    }
    let ours = v["totals"]["ipis_per_packet"].as_f64().unwrap();
    let theirs = sets[3][0]["ipis_per_packet"].as_f64().unwrap();
    assert!((ours - theirs).abs() < 1e-9, "{what}: {ours} vs {theirs}");
}

#[test]
fn duckdb_running_the_readme_sql_gets_the_same_numbers() {
    if std::env::var_os("NAPISCOPE_SKIP_DUCKDB").is_some_and(|v| v == "1") {
        eprintln!("NAPISCOPE_SKIP_DUCKDB=1: skipping the DuckDB comparison");
        return;
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let sql_text = std::fs::read_to_string(root().join("docs/report.sql")).unwrap();
    assert!(
        readme.contains(sql_text.trim()),
        "README.md must show docs/report.sql verbatim (the SQL this test runs)"
    );
    let d = tmp_dir("duckdb");
    for (mode, seed) in [("B", 1), ("C", 2)] {
        let f = d.join(format!("{mode}.parquet"));
        simulate(mode, 1200, seed, &f);
        let v = report_json(&[f.to_str().unwrap()]);
        let Some(sets) = run_sql("duckdb", &f, false) else {
            return;
        };
        assert_matches_report(&sets, &v, &format!("duckdb, mode {mode}"));
        if mode == "B" {
            assert!(
                v["totals"]["ipis_per_packet"].as_f64() > Some(0.0),
                "mode B sends RPS IPIs"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A fleet's tree: two hosts (modes B and C), two hours of one of them. The same SQL in
/// DuckDB and in Spark, and `report` on the directory, give the same numbers; the packets of
/// one file are paired only within it (skb hashes are per recording).
#[test]
fn spark_and_duckdb_get_reports_numbers_over_a_fleets_tree() {
    let d = tmp_dir("fleet");
    for (host, hour, mode, packets, seed) in [
        ("a", "10", "B", 900, 11),
        ("a", "11", "B", 700, 12),
        ("b", "10", "C", 800, 13),
    ] {
        let dir = d.join(format!("host={host}/date=2026-12-04/hour={hour}"));
        std::fs::create_dir_all(&dir).unwrap();
        simulate(mode, packets, seed, &dir.join("t.parquet"));
    }
    let v = report_json(&[d.to_str().unwrap()]);
    assert_eq!(v["recordings"].as_array().map(Vec::len), Some(3));
    let Some(duck) = run_sql("duckdb", &d, true) else {
        return;
    };
    assert_matches_report(&duck, &v, "duckdb, fleet");
    let Some(spark) = run_sql("spark", &d, true) else {
        return;
    };
    assert_matches_report(&spark, &v, "spark, fleet");
    let _ = std::fs::remove_dir_all(&d);
}
