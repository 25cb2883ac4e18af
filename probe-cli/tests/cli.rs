//! The command line's answers that need no kernel, no root and no traffic: bad input exits 2
//! with a clear message, `simulate` → `check` round trips, `check` piped into a reader that
//! quits. These run also under NAPISCOPE_SKIP_KERNEL_TESTS=1.

use std::process::{Command, Output};

mod common;
use common::{napiscope, tmp_dir, BIN};

fn as_nobody(args: &[&str]) -> Output {
    // Drop to an unprivileged user with no capabilities, as a user without rights would be.
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            BIN,
        ])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn bad_input_gives_clear_errors_and_exit_2() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let out = if root {
        as_nobody(&["record", "-o", "/tmp/napiscope-nobody.parquet", "-d", "1"])
    } else {
        napiscope(&["record", "-o", "/tmp/napiscope-nobody.parquet", "-d", "1"])
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
    // The advice that works on Debian (tracefs is root's), not cap_bpf,cap_perfmon alone.
    assert!(
        err.contains("cap_bpf,cap_perfmon,cap_dac_read_search+ep"),
        "{err}"
    );

    if root {
        let out = napiscope(&["record", "-o", "/nonexistent-dir/x.parquet", "-d", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot create output file"), "{err}");
    }
    let out = napiscope(&["record", "-o", "/tmp/x.parquet", "-C", "999"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown CPU 999"), "{err}");

    let out = napiscope(&["record", "-o", "/tmp/x.parquet", "-d", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));

    let out = napiscope(&["record", "-o", "/tmp/x.parquet", "--ring-buffer-mb", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));

    let out = napiscope(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `napiscope simulate --mode M --cpus 2 --workload mixed --packets N ARGS...`, which must
/// succeed.
fn simulate_mixed_2cpus(mode: &str, packets: &str, args: &[&str]) {
    let mut all = vec![
        "simulate",
        "--mode",
        mode,
        "--cpus",
        "2",
        "--workload",
        "mixed",
    ];
    all.extend(["--packets", packets]);
    all.extend(args);
    let out = napiscope(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn simulate_then_check_round_trips_through_the_cli() {
    let dir = tmp_dir("sim");
    for mode in ["A", "B", "C"] {
        let f = dir.join(format!("sim-{mode}.parquet"));
        simulate_mixed_2cpus(mode, "500", &["-o", f.to_str().unwrap()]);
        let c = napiscope(&["check", f.to_str().unwrap(), "--json"]);
        assert_eq!(
            c.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&c.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
        let expect = if mode == "C" { "C" } else { "B" };
        // A and B look the same in a trace; the metadata says which it was.
        assert!(v["mode"] == mode || v["mode"] == expect, "{}", v["mode"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check FILE | head`, with the reader gone before check prints: check ends quietly
/// (killed by SIGPIPE, as Unix tools are), not with a panic about a failed print.
#[test]
fn check_piped_into_a_reader_that_quits_ends_quietly() {
    use std::{os::unix::process::ExitStatusExt, process::Stdio};
    let dir = tmp_dir("pipe");
    let f = dir.join("t.parquet");
    simulate_mixed_2cpus("B", "5000", &["-o", f.to_str().unwrap()]);
    let mut child = Command::new(BIN)
        .args(["check", "--mode", "B", f.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closed while check still reads the trace: its first print meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {err}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `simulate --copies N` writes one long recording: N times the events, each CPU's seq
/// continuing (no gaps read as losses), and it checks as the single run does.
#[test]
fn simulate_copies_writes_one_long_conformant_trace() {
    let dir = tmp_dir("copies");
    let mut counts = Vec::new();
    for copies in ["1", "3"] {
        let f = dir.join(format!("c{copies}.parquet"));
        simulate_mixed_2cpus("B", "300", &["--copies", copies, "-o", f.to_str().unwrap()]);
        let c = napiscope(&["check", f.to_str().unwrap(), "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
        assert_eq!(v["verdict"], "PASS", "{copies} copies: {v}");
        let t = analysis::read_trace(&f).unwrap();
        for cpu in 0..2 {
            let mut seqs: Vec<u64> = t
                .events
                .iter()
                .filter(|e| e.cpu == cpu)
                .map(|e| e.seq)
                .collect();
            seqs.sort_unstable();
            let gaps = seqs.windows(2).filter(|w| w[1] != w[0] + 1).count();
            assert_eq!(gaps, 0, "{copies} copies: seq gaps on CPU {cpu}");
        }
        counts.push((t.events.len(), v["paths"].clone()));
    }
    assert_eq!(counts[1].0, 3 * counts[0].0);
    for (path, n) in counts[0].1.as_object().unwrap() {
        assert_eq!(
            counts[1].1[path].as_u64(),
            Some(3 * n.as_u64().unwrap()),
            "{path}"
        );
    }
    let bad = napiscope(&[
        "simulate",
        "--mode",
        "B",
        "--copies",
        "0",
        "-o",
        "/tmp/x.parquet",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_rejects_unusable_input_with_exit_2() {
    let dir = tmp_dir("bad");
    let empty = dir.join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.join("junk.parquet");
    std::fs::write(&junk, b"PAR1 this is not parquet").unwrap();
    for (f, needle) in [
        (empty.to_str().unwrap().to_string(), "empty"),
        (
            junk.to_str().unwrap().to_string(),
            "not a readable Parquet file",
        ),
        ("/nonexistent/x.parquet".to_string(), "cannot open"),
    ] {
        let out = napiscope(&["check", &f]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{f}: {err}");
        assert!(err.contains(needle), "{f}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = napiscope(&["check", empty.to_str().unwrap(), "--mode", "D"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn top_rejects_bad_input_with_exit_2() {
    let out = napiscope(&["top"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdout is not a terminal"));
    let out = napiscope(&["top", "--no-tui", "--interval", "10ms"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 100ms and 60s"));
    let out = napiscope(&["top", "--json", "--filter", "pid=1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dev=NAME or comm=NAME"));
    // Refused as record refuses it, not an empty table.
    let out = napiscope(&["top", "--no-tui", "-C", "99"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown CPU 99"), "{err}");
    // Once a panic: "cannot convert float seconds to Duration".
    for args in [
        &["top", "--no-tui", "-i", "99999999999999999999"][..],
        &[
            "record",
            "-o",
            "/tmp/x.parquet",
            "-d",
            "99999999999999999999",
        ],
        &["verify", "--duration", "99999999999999999999s"],
    ] {
        let out = napiscope(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("longer than a year"), "{args:?}: {err}");
    }
}

/// Output to a full disk is an I/O error said in one line with exit 1, never a panic.
#[test]
fn output_to_a_full_disk_is_an_error_not_a_panic() {
    let dir = tmp_dir("full");
    let f = dir.join("t.parquet");
    simulate_mixed_2cpus("B", "2000", &["-o", f.to_str().unwrap()]);
    let trace = f.to_str().unwrap();
    for args in [
        &["check", "--mode", "B", trace][..],
        &["check", "--mode", "B", "--json", trace],
        &["status"],
        &["status", "--json"],
    ] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = Command::new(BIN).args(args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output: No space left on device"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
