//! `napiscope record`'s output file loses nothing: an existing file or a symbolic link is
//! refused without --force (and never written through), an aborted recording keeps the old
//! file, a SIGKILL leaves a partial file that `napiscope recover` makes a trace of, a full
//! disk stops the recording at once with a clear error, and a huge --encode-buffer-mb is
//! capped. Real kernel, real traffic: root. Set NAPISCOPE_SKIP_KERNEL_TESTS=1 to skip.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod common;
use common::{kernel_lock, kernel_tests_enabled, start_record_keeping_stderr, BIN};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("napiscope-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn napiscope(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    eprintln!(
        "[napiscope {args:?}] {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `napiscope record` and the stderr lines it printed so far.
struct Rec {
    child: Child,
    err: Arc<Mutex<Vec<String>>>,
}

impl Rec {
    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }
}

/// Start `napiscope record -o OUT EXTRA...` and wait until its probes are attached.
fn start_record(out: &Path, extra: &[&str]) -> Rec {
    let mut args = vec!["-o".to_string(), out.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (child, err) = start_record_keeping_stderr(&args);
    Rec { child, err }
}

fn stop(rec: Rec, sig: i32) -> (Output, String) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.child.id() as i32, sig) };
    let out = rec.child.wait_with_output().unwrap();
    eprintln!("[record stdout] {}", String::from_utf8_lossy(&out.stdout));
    // The stderr reader ends with the process.
    std::thread::sleep(Duration::from_millis(100));
    let err = rec.err.lock().unwrap().join("\n");
    (out, err)
}

/// `napiscope scenario ARGS` on a thread of its own.
fn scenario_bg(args: &'static [&'static str]) -> std::thread::JoinHandle<Output> {
    std::thread::spawn(move || {
        let out = Command::new(BIN)
            .arg("scenario")
            .args(args)
            .output()
            .unwrap();
        eprintln!("[scenario] {}", String::from_utf8_lossy(&out.stdout));
        out
    })
}

const VETH_1S: &[&str] = &["veth-rps", "--sender-cpu", "0", "--rx-cpu", "1", "-d", "1s"];

/// A small valid trace, written by the analysis library.
fn old_trace(path: &Path) -> Vec<u8> {
    let events: Vec<analysis::Event> = (0..5)
        .map(|i| analysis::Event::new(i, 0, i, analysis::EventKind::NetifRx))
        .collect();
    analysis::write_trace(path, &events, &Default::default()).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn an_existing_file_or_symlink_is_refused_before_any_probe_loads() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("refuse");
    let out = d.join("trace.parquet");
    let old = old_trace(&out);
    let t0 = Instant::now();
    let o = napiscope(&["record", "-o", out.to_str().unwrap(), "-d", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("trace.parquet exists; use --force to replace it"),
        "{err}"
    );
    assert!(
        !err.contains("probes attached"),
        "refused before loading: {err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "refused at once");
    assert_eq!(std::fs::read(&out).unwrap(), old);

    let victim = d.join("victim.txt");
    std::fs::write(&victim, b"not a trace").unwrap();
    let link = d.join("link.parquet");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let o = napiscope(&["record", "-o", link.to_str().unwrap(), "-d", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("symbolic link") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a trace");
    assert_eq!(names(&d), ["link.parquet", "trace.parquet", "victim.txt"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn force_replaces_the_file_and_the_link_itself_never_its_target() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("force");
    let out = d.join("trace.parquet");
    old_trace(&out);
    let victim = d.join("victim.txt");
    std::fs::write(&victim, b"not a trace").unwrap();
    let link = d.join("link.parquet");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for path in [&out, &link] {
        let rec = start_record(path, &["--force"]);
        let sc = scenario_bg(VETH_1S);
        assert!(sc.join().unwrap().status.success());
        let (o, err) = stop(rec, libc::SIGINT);
        assert!(matches!(o.status.code(), Some(0) | Some(3)), "{err}");
        let t = analysis::read_trace(path).unwrap();
        assert!(t.events.len() > 5, "a new recording: {}", t.events.len());
        assert_eq!(t.meta.get("source"), Some("record"));
    }
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"not a trace");
    assert_eq!(names(&d), ["link.parquet", "trace.parquet", "victim.txt"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_aborted_recording_keeps_the_existing_file() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("abort");
    let out = d.join("trace.parquet");
    let old = old_trace(&out);
    let rec = start_record(&out, &["--force"]);
    let sc = scenario_bg(VETH_1S);
    std::thread::sleep(Duration::from_millis(1500));
    let (o, _) = stop(rec, libc::SIGKILL);
    assert!(!o.status.success());
    sc.join().unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        old,
        "a killed recording leaves the old file as it was"
    );
    assert!(analysis::read_trace(&out).is_ok());
    // Its partial file waits for `recover`; the old file is not replaced by it unasked.
    let o = napiscope(&["recover", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "recover refuses to replace");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), old);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_killed_recording_is_recovered_with_every_event_to_the_last_checkpoint() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("kill");
    let out = d.join("trace.parquet");
    let rec = start_record(&out, &[]);
    let sc = scenario_bg(&["veth-rps", "--sender-cpu", "0", "--rx-cpu", "1", "-d", "5s"]);
    std::thread::sleep(Duration::from_secs(3));
    let (o, _) = stop(rec, libc::SIGKILL);
    assert!(!o.status.success());
    assert!(sc.join().unwrap().status.success());
    assert!(!out.exists(), "no file in place after a kill");

    // What a user sees next: check says what to run.
    let o = napiscope(&["check", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("napiscope recover"), "{err}");

    let o = napiscope(&["recover", out.to_str().unwrap()]);
    assert!(o.status.success());
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("recovered") && said.contains("napiscope check"),
        "{said}"
    );
    let t = analysis::read_trace(&out).expect("the recovered file is readable");
    assert_eq!(t.meta.get("partial"), Some("true"));
    assert_eq!(t.meta.get("stop_reason"), Some("killed"));
    assert_eq!(t.meta.get("source"), Some("record"));
    assert!(t.meta.get("kernel_release").is_some());
    assert!(t.meta.get("probes").is_some());
    assert!(
        t.events.len() > 1000,
        "~2 s of veth traffic checkpointed, got {} events",
        t.events.len()
    );
    let mut per_cpu: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for e in &t.events {
        per_cpu.entry(e.cpu).or_default().push(e.seq);
    }
    for (cpu, mut s) in per_cpu {
        s.sort_unstable();
        s.dedup();
        let span = s[s.len() - 1] - s[0] + 1;
        assert_eq!(
            span,
            s.len() as u64,
            "cpu {cpu}: seq {}..={} has {} gaps",
            s[0],
            s[s.len() - 1],
            span - s.len() as u64
        );
    }
    // check reads it.
    let o = napiscope(&["check", out.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(2), "check reads the recovered file");
    assert_eq!(names(&d), ["trace.parquet"], "nothing left beside it");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_full_disk_stops_the_recording_quickly_with_a_clear_error() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("full");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&d)
        .status()
        .unwrap()
        .success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _u = Unmount(&d);
    let out = d.join("trace.parquet");
    // Encoding at normal priority, so the file grows while the flood runs (with the idle
    // encoder a flood starves it: the disk fills, and the error comes, once it runs).
    let mut rec = start_record(&out, &["--encode-buffer-mb", "0"]);
    // Long enough that the disk fills well before it ends (~6 s here at ~1 MiB of file).
    let flood = scenario_bg(&["veth-rps", "--rate", "0", "-d", "15s"]);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = rec.child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = rec.child.kill();
            panic!("record did not stop on a full disk: {}", rec.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let err = rec.stderr();
    flood.join().unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        took < Duration::from_secs(13),
        "stopped while the flood still ran: {took:?}"
    );
    assert!(
        err.contains("no space left on device") && err.contains("tmpfs"),
        "{err}"
    );
    assert!(err.contains("probes detached"), "{err}");
    if out.exists() {
        let t = analysis::read_trace(&out).expect("what is kept is a valid trace");
        assert_eq!(t.meta.get("partial"), Some("true"));
        assert_eq!(t.meta.get("stop_reason"), Some("write_error"));
        assert!(!t.events.is_empty());
        assert!(err.contains("marked partial"), "{err}");
        assert_eq!(names(&d), ["trace.parquet"]);
    } else {
        assert!(err.contains("no file was left") || err.contains("napiscope recover"));
    }
}

#[test]
fn a_huge_encode_buffer_is_capped_and_records() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    let d = tmp_dir("huge");
    let out = d.join("trace.parquet");
    let rec = start_record(&out, &["--encode-buffer-mb", "99999999"]);
    let sc = scenario_bg(VETH_1S);
    assert!(sc.join().unwrap().status.success());
    let (o, err) = stop(rec, libc::SIGINT);
    assert!(matches!(o.status.code(), Some(0) | Some(3)), "{err}");
    assert!(
        err.contains("--encode-buffer-mb 99999999 is more than a quarter"),
        "{err}"
    );
    let t = analysis::read_trace(&out).unwrap();
    assert!(t.events.len() > 100, "{}", t.events.len());
    let _ = std::fs::remove_dir_all(&d);
}
