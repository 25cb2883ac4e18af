use super::{failed, mutate, sim, *};

fn report_json(r: &CheckReport) -> String {
    serde_json::to_string(r).unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("napiscope-cols-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn the_file_path_and_the_event_path_give_the_same_report() {
    // Clean traces, and mutated ones whose reports carry divergences (describe() lines).
    let mut cases = vec![];
    for mode in [Mode::A, Mode::B, Mode::C] {
        cases.push((sim(mode, Workload::Mixed, 31), mode));
    }
    let mut t = sim(Mode::B, Workload::Rps, 14);
    mutate(&mut t, |e| e.event != EventKind::CsdFunctionEntry);
    cases.push((t, Mode::B));
    cases.push((sim(Mode::B, Workload::Rps, 5), Mode::C));
    cases.push((sim(Mode::C, Workload::Rps, 5), Mode::B));
    for (i, (t, mode)) in cases.iter().enumerate() {
        let path = tmp(&format!("same-{i}.parquet"));
        crate::trace::write_trace(&path, &t.events, &t.meta).unwrap();
        let from_file = check_file(&path, Some(*mode)).unwrap();
        let from_events = check(t, Some(*mode));
        assert_eq!(
            report_json(&from_file),
            report_json(&from_events),
            "case {i}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn row_order_in_the_file_does_not_matter() {
    // A recording is in time order per CPU only; the index sorts. Reverse the rows, and
    // interleave the CPUs as a reader draining per-CPU buffers would.
    let t = sim(Mode::C, Workload::Mixed, 41);
    let want = report_json(&check(&t, Some(Mode::C)));
    let mut rev = Trace {
        events: t.events.clone(),
        meta: t.meta.clone(),
    };
    rev.events.reverse();
    assert_eq!(report_json(&check(&rev, Some(Mode::C))), want);
    let mut by_cpu = t.events.clone();
    by_cpu.sort_by_key(|e| e.cpu); // stable: each CPU's run stays in time order
    let per_cpu = Trace {
        events: by_cpu,
        meta: t.meta.clone(),
    };
    assert_eq!(report_json(&check(&per_cpu, Some(Mode::C))), want);
}

#[test]
fn a_mutation_read_from_a_file_is_still_caught() {
    let mut t = sim(Mode::C, Workload::Rps, 11);
    mutate(&mut t, |e| {
        !(matches!(e.event, EventKind::SchedWaking | EventKind::SchedWakeup)
            && e.target_comm.as_deref() == Some("backlog_napi/1"))
    });
    let path = tmp("mutated.parquet");
    crate::trace::write_trace(&path, &t.events, &t.meta).unwrap();
    let r = check_file(&path, Some(Mode::C)).unwrap();
    assert!(failed(&r).contains(&"C-6"), "{:?}", failed(&r));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn bad_files_give_the_readers_errors() {
    let path = tmp("empty.parquet");
    std::fs::write(&path, b"").unwrap();
    let e = format!("{:#}", check_file(&path, None).unwrap_err());
    assert!(e.contains("empty"), "{e}");
    std::fs::write(&path, b"PAR1 not really").unwrap();
    let e = format!("{:#}", check_file(&path, None).unwrap_err());
    assert!(e.contains("not a readable Parquet file"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// Where the checker's time goes, phase by phase, on a big trace:
/// `NAPISCOPE_CHECK_FILE=t.parquet cargo test --release -p analysis check_phases -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: needs NAPISCOPE_CHECK_FILE=<a trace>"]
fn check_phases() {
    let Ok(path) = std::env::var("NAPISCOPE_CHECK_FILE") else {
        return;
    };
    let t = std::time::Instant::now();
    let (cols, meta) = crate::trace::read_columns(std::path::Path::new(&path)).unwrap();
    let n = cols.len();
    let read = t.elapsed().as_secs_f64();
    let ix = Index::build(cols, &meta);
    let build = t.elapsed().as_secs_f64() - read;
    let tm = trace_mode(&ix);
    let (mode, _) = resolve_mode(None, &tm, &meta);
    let ctx = rules::Ctx::new(&ix, &meta, mode);
    let t1 = std::time::Instant::now();
    // The table's rules for the mode, the common ones or the others.
    let run = |common: bool| {
        let rules = rules::RULES.iter().filter(|r| r.modes.covers(ctx.mode));
        for r in rules.filter(|r| (r.modes == rules::Modes::All) == common) {
            drop((r.check)(&ctx, RuleResult::new(r.id, r.title)));
        }
    };
    run(true);
    let common = t1.elapsed().as_secs_f64();
    let t2 = std::time::Instant::now();
    run(false);
    let modal = t2.elapsed().as_secs_f64();
    let total = t.elapsed().as_secs_f64();
    eprintln!(
        "{n} events: read {read:.3} s, index {build:.3} s, common rules {common:.3} s, mode rules {modal:.3} s, total {total:.3} s = {:.2} M events/s",
        n as f64 / total / 1e6
    );
}
