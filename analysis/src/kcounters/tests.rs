use super::*;

const SOFTNET: &str = "\
00000013 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
0000226b 00000002 00000001 00000000 00000000 00000000 00000000 00000000 00000000 000000ff 00000003 00000000 00000001 00000000 00000000
";
const SOFTIRQS: &str = "                    CPU0       CPU1
      HI:          0          0
  NET_TX:          1          2
  NET_RX:        100     200000
";

#[test]
fn parses_softnet_stat_and_softirqs() {
    let s = Snapshot::parse(1, 2, SOFTNET, SOFTIRQS).unwrap();
    assert_eq!(s.cpus.len(), 2);
    let c1 = s.cpu(1).unwrap();
    assert_eq!(c1.processed, 0x226b);
    assert_eq!(c1.dropped, 2);
    assert_eq!(c1.time_squeeze, 1);
    assert_eq!(c1.received_rps, 0xff);
    assert_eq!(c1.flow_limit, 3);
    assert_eq!(c1.net_rx, Some(200000));
    assert_eq!(s.cpu(0).unwrap().net_rx, Some(100));
}

#[test]
fn softnet_rows_name_their_cpu_when_one_is_offline() {
    // CPU 0 offline: one row, whose 13th column says CPU 1.
    let one = SOFTNET.lines().nth(1).unwrap();
    let s = Snapshot::parse(0, 0, one, SOFTIRQS).unwrap();
    assert_eq!(s.cpus.len(), 1);
    assert_eq!(s.cpus[0].cpu, 1);
    assert_eq!(s.cpus[0].net_rx, Some(200000));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(Snapshot::parse(0, 0, "zz 00", SOFTIRQS).is_err());
    assert!(Snapshot::parse(0, 0, "00 01", SOFTIRQS).is_err());
    assert!(Snapshot::parse(0, 0, SOFTNET, "CPU0\nHI: 0\n").is_err());
    assert!(Snapshot::parse(0, 0, SOFTNET, "").is_err());
}

fn snap(ts: (u64, u64), processed: [u32; 2]) -> Snapshot {
    Snapshot {
        ts_lo: ts.0,
        ts_hi: ts.1,
        cpus: (0..2)
            .map(|cpu| CpuCounters {
                cpu,
                processed: processed[cpu as usize],
                net_rx: Some(0),
                ..Default::default()
            })
            .collect(),
    }
}

fn all() -> Coverage {
    Coverage {
        cpus: None,
        recorded: Counter::ALL.to_vec(),
        known_lost: vec![],
        recursion_misses: 0,
        hotplug: false,
    }
}

fn processed(k: &KernelCheck, cpu: u32) -> &Comparison {
    &k.checks
        .iter()
        .find(|c| c.cpu == cpu && c.counter == Counter::Processed)
        .unwrap()
        .comparison
}

#[test]
fn window_edges_bound_the_count_on_both_sides() {
    // Start read in [100, 110), end in [1000, 1010). Events at 105 and 1005 may or may
    // not be in the kernel's window; 500 surely is.
    let (s, e) = (snap((100, 110), [0, 0]), snap((1000, 1010), [0, 0]));
    let mut c = Counts::new(100, 110, 1000, 1010);
    for ts in [50, 105, 500, 1005, 2000] {
        c.see(1, Counter::Processed, ts);
    }
    let w = c.finish();
    assert_eq!(w[1][0], Bounds { inner: 1, outer: 3 });
    for (kernel, want) in [
        (1, "match"),
        (2, "match"),
        (3, "match"),
        (0, "over"),
        (5, "short 2-4"),
    ] {
        let e = snap((1000, 1010), [0, kernel]);
        let k = compare(&s, &e, &w, &all());
        let got = match processed(&k, 1) {
            Comparison::Match { .. } => "match".to_string(),
            Comparison::Over { .. } => "over".to_string(),
            Comparison::Short { min, max, .. } => format!("short {min}-{max}"),
            Comparison::NotCompared { reason } => reason.clone(),
        };
        assert_eq!(got, want, "kernel delta {kernel}");
    }
    let _ = e;
}

#[test]
fn counters_that_wrap_give_the_true_delta() {
    let s = snap((0, 0), [0, u32::MAX - 1]);
    let e = snap((10, 10), [0, 3]); // +5 across the wrap
    let mut c = Counts::new(0, 0, 10, 10);
    for ts in 1..=5 {
        c.see(1, Counter::Processed, ts);
    }
    let k = compare(&s, &e, &c.finish(), &all());
    assert_eq!(
        processed(&k, 1),
        &Comparison::Match {
            kernel: 5,
            events: 5,
            edge: 0
        }
    );
    assert_eq!(k.verdict, Completeness::Complete);
}

#[test]
fn a_deficit_is_incomplete_and_names_cpu_and_counter() {
    let s = snap((0, 0), [0, 0]);
    let e = snap((10, 10), [0, 7]);
    let mut c = Counts::new(0, 0, 10, 10);
    for ts in 1..=4 {
        c.see(1, Counter::Processed, ts);
    }
    let k = compare(&s, &e, &c.finish(), &all());
    assert_eq!(k.verdict, Completeness::Incomplete);
    assert_eq!(k.short_total(), (3, 3));
    assert_eq!(k.short_by_counter().get(&Counter::Processed), Some(&3));
    assert!(k
        .lines()
        .iter()
        .any(|l| l.contains("cpu1 processed") && l.contains("SHORT by 3")));
}

#[test]
fn offline_and_unrecorded_cpus_are_not_compared() {
    let s = snap((0, 0), [0, 0]);
    let mut e = snap((10, 10), [0, 0]);
    e.cpus.retain(|c| c.cpu == 0); // CPU 1 went offline
    let cov = Coverage {
        cpus: Some(vec![1]),
        ..all()
    };
    let k = compare(&s, &e, &Vec::new(), &cov);
    assert!(
        matches!(processed(&k, 0), Comparison::NotCompared { reason } if reason.contains("-C"))
    );
    assert!(
        matches!(processed(&k, 1), Comparison::NotCompared { reason } if reason.contains("offline"))
    );
    assert_eq!(k.verdict, Completeness::Unknown);
}

#[test]
fn known_losses_make_it_incomplete_even_when_counters_match() {
    let s = snap((0, 0), [0, 0]);
    let e = snap((10, 10), [0, 0]);
    let cov = Coverage {
        known_lost: vec![0, 2],
        ..all()
    };
    assert_eq!(
        compare(&s, &e, &Vec::new(), &cov).verdict,
        Completeness::Incomplete
    );
}

#[test]
fn the_streaming_counter_agrees_with_the_file_counter() {
    // Events stream in; the end snapshot is taken at 1000..1010 while events up to 1200
    // still arrive (some from before it, drained late).
    let start = snap((100, 110), [0, 0]);
    let end = snap((1000, 1010), [0, 0]);
    let before: Vec<u64> = vec![90, 100, 105, 110, 400, 999];
    let late: Vec<u64> = vec![999, 1000, 1005, 1010, 1200];
    let mut edge = EdgeCounter::new(&start);
    for ts in &before {
        edge.see(1, Counter::Processed, *ts);
    }
    edge.end_taken();
    for ts in &late {
        edge.see(1, Counter::Processed, *ts);
    }
    let mut file = Counts::new(100, 110, 1000, 1010);
    for ts in before.iter().chain(&late) {
        file.see(1, Counter::Processed, *ts);
    }
    assert_eq!(edge.finish(&end), file.finish());
}

#[test]
fn only_the_counted_events_count() {
    assert_eq!(
        counter_of(EventKind::NetifReceiveSkb, None, None),
        Some(Counter::Processed)
    );
    assert_eq!(
        counter_of(EventKind::CsdFunctionEntry, None, Some(RPS_IPI_FUNC)),
        Some(Counter::ReceivedRps)
    );
    assert_eq!(
        counter_of(EventKind::CsdFunctionEntry, None, Some("other")),
        None
    );
    assert_eq!(
        counter_of(EventKind::SoftirqEntry, Some(3), None),
        Some(Counter::NetRx)
    );
    assert_eq!(counter_of(EventKind::SoftirqEntry, Some(1), None), None);
    assert_eq!(counter_of(EventKind::NetifRx, None, None), None);
}
