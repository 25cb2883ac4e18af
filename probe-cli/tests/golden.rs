//! Golden outputs on fixed inputs: the proof that a restructure changed no behaviour.
//!
//! Every case runs the real binary on a fixed input — `simulate` with a fixed seed, or one of
//! the two recordings kept in tests/golden/ (veth + RPS on a 6.18 host: one whose kernel
//! counters match, one the counters call short) — and compares its output byte for byte with
//! the file kept beside it: the events of each simulated trace, `check --json`, `report
//! --json`, the Parquet schema and metadata, and every subcommand's `--help`.
//!
//! A change of output that is meant: `NAPISCOPE_BLESS=1 cargo test --test golden`, then read
//! the diff of tests/golden/ before committing it. No kernel needed.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

mod common;
use common::{tmp_dir, BIN};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compare `got` with tests/golden/`name`, or write it there under NAPISCOPE_BLESS=1.
fn golden(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("NAPISCOPE_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (NAPISCOPE_BLESS=1 writes it)", path.display()));
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let at = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    panic!(
        "{name} differs from its golden file at line {} ({} lines kept, {} now):\n  kept: {}\n  now:  {}",
        at + 1,
        w.len(),
        g.len(),
        w.get(at).unwrap_or(&"<end>"),
        g.get(at).unwrap_or(&"<end>"),
    );
}

/// Run napiscope; the exit code and stdout (temp paths replaced by `<DIR>`).
fn run(args: &[&str], dir: &Path) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    (
        o.status.code().unwrap_or(-1),
        out.replace(&dir.display().to_string(), "<DIR>"),
    )
}

fn simulate(mode: &str, workload: &str, kernel: &str, out: &Path) {
    let o = Command::new(BIN)
        .args([
            "simulate",
            "--mode",
            mode,
            "--cpus",
            "2",
            "--workload",
            workload,
        ])
        .args(["--packets", "60", "--seed", "7", "--kernel", kernel, "-o"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// One line per event, every column, in file order.
fn events_text(path: &Path) -> String {
    let t = analysis::read_trace(path).unwrap();
    let mut s = String::new();
    for e in &t.events {
        writeln!(s, "{e:?}").unwrap();
    }
    s
}

/// The file's Parquet schema (name, type, nullable) and the napiscope metadata.
fn schema_and_meta(path: &Path) -> String {
    let t = analysis::read_trace(path).unwrap();
    let mut s = String::new();
    let file = std::fs::File::open(path).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    for f in b.schema().fields() {
        writeln!(
            s,
            "column {} {:?} nullable={}",
            f.name(),
            f.data_type(),
            f.is_nullable()
        )
        .unwrap();
    }
    for (k, v) in &t.meta.0 {
        writeln!(s, "meta {k} = {v}").unwrap();
    }
    s
}

fn outputs_of(trace: &Path, dir: &Path, stem: &str) {
    let t = trace.to_str().unwrap();
    let (rc, check) = run(&["check", "--json", t], dir);
    golden(
        &format!("{stem}.check.json"),
        &format!("exit {rc}\n{check}"),
    );
    #[cfg(feature = "report")]
    {
        let (rc, report) = run(&["report", "--json", t], dir);
        golden(
            &format!("{stem}.report.json"),
            &format!("exit {rc}\n{report}"),
        );
    }
    golden(&format!("{stem}.schema"), &schema_and_meta(trace));
}

#[test]
fn simulated_traces_and_their_check_and_report_are_unchanged() {
    let dir = tmp_dir("sim");
    for (mode, workload, kernel) in [
        ("A", "rps", "6.1.0"),
        ("A", "mixed", "6.1.0"),
        ("B", "mixed", "6.12.0"),
        ("B", "loopback", "6.12.0"),
        ("C", "rps", "6.12.0"),
        ("C", "mixed", "6.18.0"),
    ] {
        let stem = format!("sim-{mode}-{workload}");
        let trace = dir.join(format!("{stem}.parquet"));
        simulate(mode, workload, kernel, &trace);
        golden(&format!("{stem}.events"), &events_text(&trace));
        outputs_of(&trace, &dir, &stem);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recorded_traces_check_and_report_are_unchanged() {
    let dir = golden_dir();
    for stem in ["rec-complete", "rec-short"] {
        outputs_of(&dir.join(format!("{stem}.parquet")), &dir, stem);
    }
}

#[test]
fn every_help_text_is_unchanged() {
    let dir = tmp_dir("help");
    let mut all = String::new();
    let (_, top) = run(&["--help"], &dir);
    all.push_str(&top);
    for cmd in [
        "status", "top", "record", "report", "scenario", "simulate", "recover", "check", "verify",
        "serve", "whatif",
    ] {
        let (rc, help) = run(&[cmd, "--help"], &dir);
        write!(all, "\n===== napiscope {cmd} --help (exit {rc})\n{help}").unwrap();
    }
    golden("help.txt", &all);
    let _ = std::fs::remove_dir_all(&dir);
}
