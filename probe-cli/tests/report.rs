//! `napiscope report` through the CLI, on simulated traces (no kernel needed): tables and
//! JSON agree, plots are written, bad input exits 2. The README's SQL in DuckDB and Spark:
//! `report_sql.rs`.

#![cfg(feature = "report")]

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{napiscope, report_json};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("napiscope-rtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn simulate(mode: &str, workload: &str, packets: usize, out: &Path) {
    let o = napiscope(&[
        "simulate",
        "--mode",
        mode,
        "--cpus",
        "2",
        "--workload",
        workload,
        "--packets",
        &packets.to_string(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

#[test]
fn mode_c_json_matches_the_tables_and_plots_are_written() {
    let d = tmp_dir("modec");
    let f = d.join("c.parquet");
    simulate("C", "rps", 1500, &f);
    let v = report_json(&[f.to_str().unwrap()]);
    let cpu1 = v["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cpu"] == 1)
        .unwrap();
    let bt = u(&cpu1["deliveries"]["backlog_thread"]);
    assert!(bt * 10 >= u(&cpu1["delivered"]) * 9, "{cpu1:#}");
    assert_eq!(v["totals"]["ipis_per_packet"], 0.0);
    assert_eq!(v["recordings"][0]["mode"], "C");
    assert_eq!(v["recordings"][0]["source"], "simulate");

    // The tables print the JSON's numbers.
    let o = napiscope(&["report", f.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("cpu1 "))
        .unwrap_or_else(|| panic!("no cpu1 row in\n{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // cpu enqueued local remote ksoftirqd backlog_thread ...
    assert_eq!(cells[1], v["cpus"][1]["enqueued"].to_string(), "{row}");
    assert_eq!(cells[5], bt.to_string(), "{row}");
    let p = text
        .lines()
        .find(|l| l.starts_with("backlog_thread "))
        .unwrap();
    assert!(p.contains(&v["paths"][3]["deliveries"].to_string()), "{p}");
    assert!(text.contains("mode C"), "{text}");

    let plots = d.join("plots");
    let o = napiscope(&[
        "report",
        f.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["latency-backlog_thread.svg", "timeline-cpu1.svg"] {
        let s = std::fs::read_to_string(plots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.contains("<svg") && s.len() > 1000, "{name}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn baseline_comparison_marks_what_changed() {
    let d = tmp_dir("baseline");
    let (b, c) = (d.join("b.parquet"), d.join("c.parquet"));
    simulate("B", "rps", 800, &b);
    simulate("C", "rps", 800, &c);
    let v = report_json(&[c.to_str().unwrap(), "--baseline", b.to_str().unwrap()]);
    assert_eq!(v["new"]["recordings"][0]["mode"], "C");
    assert_eq!(v["baseline"]["recordings"][0]["mode"], "B");
    let d_ipi = v["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["metric"] == "RPS IPIs per packet")
        .unwrap();
    assert_eq!(d_ipi["matters"], true, "{d_ipi}");
    assert_eq!(d_ipi["new"], 0.0);
    let o = napiscope(&[
        "report",
        c.to_str().unwrap(),
        "--baseline",
        b.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("backlog_thread share %"))
        .unwrap();
    assert!(line.ends_with('!'), "{line}");
    assert!(
        !text.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn unusable_input_exits_2_with_a_clear_message() {
    let d = tmp_dir("bad");
    let junk = d.join("junk.parquet");
    std::fs::write(&junk, b"this is not parquet at all").unwrap();
    let csv = d.join("x.parquet");
    analysis::write_trace(&d.join("empty.parquet"), &[], &Default::default()).unwrap();
    write_other_parquet(&csv);
    for (args, needle) in [
        (vec![d.join("missing.parquet")], "cannot open"),
        (vec![junk.clone()], "is not a Parquet file"),
        (vec![csv.clone()], "not a napiscope trace: "),
        (vec![d.join("empty.parquet")], "empty recording"),
    ] {
        let mut a = vec!["report".to_string()];
        a.extend(args.iter().map(|p| p.display().to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = napiscope(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(needle), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let o = napiscope(&["report", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing column `cpu`"));
    // A bad baseline is bad input too.
    let good = d.join("good.parquet");
    simulate("B", "loopback", 100, &good);
    let o = napiscope(&[
        "report",
        good.to_str().unwrap(),
        "--baseline",
        junk.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&d);
}

/// A valid Parquet file whose only column is not napiscope's.
fn write_other_parquet(path: &Path) {
    use arrow::{
        array::{RecordBatch, UInt64Array},
        datatypes::{DataType, Field, Schema},
    };
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "ts_ns",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![1u64]))],
    )
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_schema_1_recording_reports_beside_a_schema_2_one() {
    let d = tmp_dir("schemas");
    let new = d.join("new.parquet");
    simulate("B", "rps", 300, &new);
    let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/rec-complete.parquet");
    let alone = report_json(&[old.to_str().unwrap()]);
    let both = report_json(&[old.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(
        both["recordings"].as_array().map(Vec::len),
        Some(2),
        "{both:#}"
    );
    // The old file's packets count the same beside the new one.
    let total = |v: &Value| u(&v["totals"]["delivered"]);
    assert!(total(&both) > total(&alone), "{both:#}");
    let _ = std::fs::remove_dir_all(&d);
}
