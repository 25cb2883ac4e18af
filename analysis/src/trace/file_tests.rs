//! The trace file loses nothing: temporary file + rename, no replacing without asking,
//! checkpoints a killed writer can be recovered from, write errors that keep what was
//! complete. The kill and file-size-limit tests run a child process (this test binary again,
//! one of the `child_*` tests with an environment variable set), so a real SIGKILL or
//! RLIMIT_FSIZE hits it and not the test harness.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::output::{self, Paths};
use super::*;
use crate::event::{Ctx, Event, EventKind};
use anyhow::Result;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("napiscope-file-{}-{name}", std::process::id()));
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

/// Push `n` rows (seq from `from`, skb values that do not compress) into `w`.
fn push(w: &mut TraceWriter, from: u64, n: u64) -> Result<()> {
    let comm = w.intern("test");
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ from;
    for seq in from..from + n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut r = Row::new(1000 + seq, 0, seq, EventKind::NetifRx, Ctx::Softirq, comm);
        r.skb = Some(x);
        w.push_row(&r)?;
    }
    Ok(())
}

fn opts(every: Option<Duration>, replace: bool) -> WriterThread {
    let mut meta = TraceMeta::default();
    meta.set("source", "file-test");
    WriterThread {
        replace,
        checkpoint_every: every,
        checkpoint_meta: meta,
        ..Default::default()
    }
}

fn seqs(path: &Path) -> Vec<u64> {
    read_trace(path)
        .unwrap()
        .events
        .iter()
        .map(|e| e.seq)
        .collect()
}

#[test]
fn an_unfinished_writer_leaves_the_old_file_and_finish_renames_into_place() {
    let d = dir("rename");
    let t = d.join("t.parquet");
    write_trace(&t, &sample_events(3), &TraceMeta::default()).unwrap();
    let before = std::fs::read(&t).unwrap();

    let mut w = TraceWriter::create_threaded(&t, opts(None, true)).unwrap();
    push(&mut w, 0, 50_000).unwrap();
    assert!(w.paths().partial.exists(), "rows go to the partial file");
    assert_eq!(
        std::fs::read(&t).unwrap(),
        before,
        "the old file untouched while recording"
    );
    drop(w); // an abort: nothing checkpointed
    assert_eq!(
        std::fs::read(&t).unwrap(),
        before,
        "an aborted recording keeps the old file"
    );
    assert_eq!(names(&d), ["t.parquet"], "and leaves nothing behind");

    let mut w = TraceWriter::create_threaded(&t, opts(Some(CHECKPOINT_EVERY), true)).unwrap();
    push(&mut w, 0, 50_000).unwrap();
    w.finish(&TraceMeta::default()).unwrap();
    assert_eq!(seqs(&t), (0..50_000).collect::<Vec<_>>());
    assert_eq!(
        names(&d),
        ["t.parquet"],
        "no partial or checkpoint file left"
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn sample_events(n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| Event::new(i, 0, i, EventKind::NetifRx))
        .collect()
}

#[test]
fn existing_files_and_symlinks_are_refused_unless_replace_and_links_are_not_followed() {
    let d = dir("refuse");
    let t = d.join("t.parquet");
    std::fs::write(&t, b"precious").unwrap();
    let e = TraceWriter::create_threaded(&t, opts(None, false))
        .err()
        .unwrap();
    assert!(e.downcast_ref::<output::Refused>().is_some(), "{e:#}");
    assert!(
        format!("{e:#}").contains("exists; use --force to replace it"),
        "{e:#}"
    );
    assert_eq!(std::fs::read(&t).unwrap(), b"precious");

    let link = d.join("link.parquet");
    std::os::unix::fs::symlink(&t, &link).unwrap();
    let e = TraceWriter::create_threaded(&link, opts(None, false))
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
    let dangling = d.join("dangling.parquet");
    std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
    assert!(TraceWriter::create_threaded(&dangling, opts(None, false)).is_err());
    assert!(
        !d.join("nowhere").exists(),
        "a dangling link is not followed either"
    );

    // Replacing: the link itself becomes the trace; the file it pointed to is untouched.
    let mut w = TraceWriter::create_threaded(&link, opts(None, true)).unwrap();
    push(&mut w, 0, 10).unwrap();
    w.finish(&TraceMeta::default()).unwrap();
    assert!(!std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(seqs(&link).len(), 10);
    assert_eq!(std::fs::read(&t).unwrap(), b"precious");
    // A file that appears while recording is not replaced either.
    let late = d.join("late.parquet");
    let mut w = TraceWriter::create_threaded(&late, opts(None, false)).unwrap();
    push(&mut w, 0, 10).unwrap();
    std::fs::write(&late, b"late").unwrap();
    let e = w.finish(&TraceMeta::default()).unwrap_err();
    assert!(format!("{e:#}").contains("was created while"), "{e:#}");
    assert_eq!(std::fs::read(&late).unwrap(), b"late");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn partial_names_round_trip() {
    let p = Paths::for_target(Path::new("/x/y/t.parquet")).unwrap();
    let name = p.partial.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        name,
        format!(".t.parquet.napiscope-{}.partial", std::process::id())
    );
    let q = Paths::of_partial(&p.partial).unwrap();
    assert_eq!(q.target, Path::new("/x/y/t.parquet"));
    assert_eq!(q.footer, p.footer);
    assert_eq!(q.pid(), Some(std::process::id()));
    assert!(Paths::of_partial(Path::new("/x/t.parquet")).is_none());
    assert!(Paths::of_partial(Path::new("/x/.t.parquet.napiscope-x.partial")).is_none());
}

#[test]
fn a_huge_queue_bound_allocates_nothing_up_front() {
    let d = dir("queue");
    let t = d.join("t.parquet");
    let o = WriterThread {
        queue_rows: usize::MAX / 2,
        ..opts(None, false)
    };
    let mut w = TraceWriter::create_threaded(&t, o).unwrap();
    push(&mut w, 0, 100_000).unwrap();
    w.finish(&TraceMeta::default()).unwrap();
    assert_eq!(seqs(&t).len(), 100_000);
    let _ = std::fs::remove_dir_all(&d);
}

/// Run one `child_*` test of this binary in a process of its own.
fn child(test: &str, env: &str, val: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, val)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child of `a_killed_writer_is_recovered_up_to_its_last_checkpoint`: writes 50,000
/// rows, checkpoints them, then waits to be killed.
#[test]
fn child_writes_then_waits_to_be_killed() {
    let Some(t) = std::env::var_os("NAPISCOPE_TEST_KILL") else {
        return;
    };
    let mut w =
        TraceWriter::create_threaded(Path::new(&t), opts(Some(Duration::from_millis(100)), false))
            .unwrap();
    push(&mut w, 0, 50_000).unwrap();
    loop {
        w.tick().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_writer_is_recovered_up_to_its_last_checkpoint() {
    let d = dir("kill");
    let t = d.join("t.parquet");
    let mut c = child(
        "trace::file_tests::child_writes_then_waits_to_be_killed",
        "NAPISCOPE_TEST_KILL",
        &t,
    );
    let paths = Paths::for_target(&t)
        .map(|p| {
            Paths::of_partial(
                &d.join(
                    p.partial
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .replace(&std::process::id().to_string(), &c.id().to_string()),
                ),
            )
            .unwrap()
        })
        .unwrap();
    let start = Instant::now();
    while output::read_checkpoint(&paths)
        .ok()
        .flatten()
        .is_none_or(|ck| ck.rows != 50_000)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint of all rows"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
    assert!(!t.exists(), "killed: no target yet");
    // What a kill in the middle of a row group leaves after the checkpoint.
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&paths.partial)
        .unwrap()
        .write_all(&[0xab; 5000])
        .unwrap();

    let found = output::leftovers(&t);
    assert_eq!(found.len(), 1);
    let e = read_trace(&t).unwrap_err();
    assert!(format!("{e:#}").contains("napiscope recover"), "{e:#}");
    let e = read_trace(&paths.partial).unwrap_err();
    assert!(format!("{e:#}").contains("unfinished recording"), "{e:#}");

    let r = output::recover_to(&found[0], &t, false, None)
        .unwrap()
        .unwrap();
    assert_eq!(r.rows, 50_000);
    let trace = read_trace(&t).unwrap();
    let s: Vec<u64> = trace.events.iter().map(|e| e.seq).collect();
    assert_eq!(
        s,
        (0..50_000).collect::<Vec<_>>(),
        "every row, in order, no gap"
    );
    assert_eq!(trace.meta.get("partial"), Some("true"));
    assert_eq!(trace.meta.get("stop_reason"), Some("killed"));
    assert_eq!(trace.meta.get("source"), Some("file-test"));
    assert_eq!(trace.meta.get("rows"), Some("50000"));
    // The direct column reader (check's) reads it too.
    assert_eq!(read_columns(&t).unwrap().0.len(), 50_000);
    assert_eq!(names(&d), ["t.parquet"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// The child of `a_write_error_stops_the_writer_and_keeps_the_checkpointed_rows`: under a
/// 1 MiB file size limit, writes until the writer fails, then reports what was kept.
#[test]
fn child_writes_past_the_file_size_limit() {
    let Some(t) = std::env::var_os("NAPISCOPE_TEST_FSIZE") else {
        return;
    };
    // SAFETY: plain libc calls on this process (ignore SIGXFSZ: the write fails with EFBIG).
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let failed = write_until_it_fails(Path::new(&t));
    assert_eq!(failed.errno, Some(libc::EFBIG), "{failed}");
    assert!(failed.to_string().contains("file too large"), "{failed}");
    println!("CHILD-KEPT {}", kept_rows(&failed, Path::new(&t)));
}

/// Rows in ever new batches until the writer reports an error; then `fail`.
fn write_until_it_fails(t: &Path) -> WriteFailed {
    let mut w =
        TraceWriter::create_threaded(t, opts(Some(Duration::from_millis(50)), false)).unwrap();
    let start = Instant::now();
    let mut n = 0;
    let err = loop {
        assert!(start.elapsed() < Duration::from_secs(60), "no write error");
        if let Err(e) = push(&mut w, n, 20_000).and_then(|_| w.tick()) {
            break e;
        }
        n += 20_000;
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut meta = TraceMeta::default();
    meta.set("source", "file-test");
    meta.set("stop_reason", "write_error");
    w.fail(&meta, &err)
}

/// Check what a failed writer kept; returns its rows.
fn kept_rows(failed: &WriteFailed, t: &Path) -> u64 {
    match &failed.kept {
        Kept::Recovered(r) => {
            assert_eq!(r.path, t);
            let trace = read_trace(t).unwrap();
            let s: Vec<u64> = trace.events.iter().map(|e| e.seq).collect();
            assert_eq!(s, (0..r.rows).collect::<Vec<_>>());
            assert!(r.rows > 0);
            assert_eq!(trace.meta.get("partial"), Some("true"));
            assert_eq!(trace.meta.get("stop_reason"), Some("write_error"));
            assert!(failed.to_string().contains("marked partial"), "{failed}");
            r.rows
        }
        k => panic!("expected the rows kept in the target: {k:?} ({failed})"),
    }
}

#[test]
fn a_write_error_stops_the_writer_and_keeps_the_checkpointed_rows() {
    let d = dir("fsize");
    let t = d.join("t.parquet");
    let out = child(
        "trace::file_tests::child_writes_past_the_file_size_limit",
        "NAPISCOPE_TEST_FSIZE",
        &t,
    )
    .wait_with_output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("CHILD-KEPT"), "the child ran: {stdout}");
    assert_eq!(names(&d), ["t.parquet"], "no partial file left");
    let _ = std::fs::remove_dir_all(&d);
}

/// Root only (mounting): a tmpfs of 1 MiB fills up; ENOSPC is reported as such.
#[test]
fn a_full_file_system_is_reported_and_the_checkpointed_rows_kept() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipping the tmpfs test");
        return;
    }
    let d = dir("enospc");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&d)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mount tmpfs");
    let t = d.join("t.parquet");
    let failed = write_until_it_fails(&t);
    let msg = failed.to_string();
    let rows = std::panic::catch_unwind(|| {
        assert_eq!(failed.errno, Some(libc::ENOSPC), "{msg}");
        assert!(
            msg.contains("no space left on device") && msg.contains("tmpfs"),
            "{msg}"
        );
        kept_rows(&failed, &t)
    });
    let left = names(&d);
    let _ = Command::new("umount").arg(&d).status();
    let _ = std::fs::remove_dir_all(&d);
    assert!(rows.is_ok(), "{msg}");
    assert_eq!(left, ["t.parquet"]);
}
