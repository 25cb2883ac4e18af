//! What the CLI test binaries share: running napiscope and temporary paths; and for the
//! real-kernel ones, one kernel test at a time on the machine, the root / skip switch, and
//! starting `napiscope record` until its probes are attached.
// Each test binary uses its own part of this.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_napiscope");

/// Run napiscope with `args` to the end.
pub fn napiscope(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// `napiscope report --json ARGS`, which must exit 0, parsed.
pub fn report_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["report", "--json"];
    a.extend_from_slice(args);
    let o = napiscope(&a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("report --json parses")
}

/// A path in this test process's temporary directory.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("napiscope-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A directory in this test process's temporary directory, created.
pub fn tmp_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Recordings see the whole machine: one kernel test at a time, in this process (SERIAL) and
/// across processes (an flock on a file every napiscope test binary shares).
static SERIAL: Mutex<()> = Mutex::new(());
const MACHINE_LOCK: &str = "/tmp/napiscope-kernel-tests.lock";

/// Held for the whole test: the in-process mutex, then the machine-wide flock.
pub struct KernelLock {
    _g: std::sync::MutexGuard<'static, ()>,
    _f: std::fs::File,
}

pub fn kernel_lock() -> KernelLock {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .expect("open the kernel-test lock file");
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when the File closes.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {MACHINE_LOCK}");
    KernelLock { _g: g, _f: f }
}

pub fn kernel_tests_enabled() -> bool {
    if std::env::var_os("NAPISCOPE_SKIP_KERNEL_TESTS").is_some_and(|v| v == "1") {
        eprintln!("NAPISCOPE_SKIP_KERNEL_TESTS=1: skipping a kernel test");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "kernel tests need root (eBPF + network namespaces); run `cargo xtask test` as root \
         or set NAPISCOPE_SKIP_KERNEL_TESTS=1"
    );
    true
}

/// Start `napiscope record ARGS` and wait until its probes are attached.
pub fn start_record_args(args: &[String]) -> Child {
    start_record_keeping_stderr(args).0
}

/// Like `start_record_args`, keeping every stderr line (echoed as it comes) for the test.
pub fn start_record_keeping_stderr(args: &[String]) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(BIN)
        .arg("record")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn napiscope record");
    let stderr = child.stderr.take().unwrap();
    let err = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let e = err.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[record] {line}");
            if line.contains("event probes attached") {
                let _ = tx.send(());
            }
            e.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        // Do not leave a recorder tracing the machine behind a failed test.
        let _ = child.kill();
        let _ = child.wait();
        panic!("napiscope record did not report attached probes within 60 s");
    }
    (child, err)
}

/// `napiscope top --json -n intervals --interval 1s`, returned once its probes count ("counting
/// on" on stderr; attaching takes seconds): the child, its stderr, and what stderr said so far.
// The caller waits for the child it gets; a panic here ends the test process, and top with it
// once its stderr pipe closes.
#[allow(clippy::zombie_processes)]
pub fn start_top_json(intervals: u32) -> (Child, BufReader<std::process::ChildStderr>, String) {
    let mut top = Command::new(BIN)
        .args([
            "top",
            "--json",
            "-n",
            &intervals.to_string(),
            "--interval",
            "1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(top.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("top ended before counting: {said}");
        }
        said.push_str(&line);
        if line.contains("counting on") {
            return (top, err, said);
        }
    }
}
