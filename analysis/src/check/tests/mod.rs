use proptest::prelude::*;

use super::*;
use crate::{
    event::{Event, EventKind},
    model::sim::{simulate, SimOpts, Workload},
    trace::Trace,
};

fn sim(mode: Mode, workload: Workload, seed: u64) -> Trace {
    let mut o = SimOpts::new(mode, 2, workload);
    o.seed = seed;
    o.packets = 600;
    let s = simulate(&o);
    Trace {
        events: s.events,
        meta: s.meta,
    }
}

fn failed(r: &CheckReport) -> Vec<&'static str> {
    r.rules
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .map(|x| x.id)
        .collect()
}

fn verdict(r: &CheckReport, id: &str) -> Verdict {
    r.rules
        .iter()
        .find(|x| x.id == id)
        .map(|x| x.verdict)
        .unwrap()
}

#[test]
fn simulated_modes_pass_their_own_mode_and_exercise_the_rules() {
    for mode in [Mode::A, Mode::B, Mode::C] {
        let t = sim(mode, Workload::Mixed, 7);
        let r = check(&t, Some(mode));
        assert!(failed(&r).is_empty(), "mode {mode:?}: {:#?}", r.rules);
        let id = if mode == Mode::C { "C-3" } else { "A-3" };
        assert_eq!(verdict(&r, id), Verdict::Pass, "{id} must have instances");
        assert_eq!(verdict(&r, "G1"), Verdict::Pass);
    }
}

#[test]
fn path_counts_match_the_packet_level_pairing() {
    for mode in [Mode::B, Mode::C] {
        let t = sim(mode, Workload::Mixed, 21);
        let mut want = BTreeMap::new();
        for (k, v) in crate::paths::path_counts(&crate::paths::deliveries(&t.events)) {
            want.insert(k.to_string(), v);
        }
        assert_eq!(check(&t, Some(mode)).paths, want);
    }
}

#[test]
fn auto_mode_is_read_from_the_trace() {
    let r = check(&sim(Mode::C, Workload::Rps, 3), None);
    assert_eq!(r.mode, Some(Mode::C));
    let r = check(&sim(Mode::B, Workload::Rps, 3), None);
    assert_eq!(r.mode, Some(Mode::B));
    assert!(r.trace_mode.rps_ipi_seen);
}

#[test]
fn negative_control_b_trace_checked_as_c_diverges() {
    let r = check(&sim(Mode::B, Workload::Rps, 5), Some(Mode::C));
    let f = failed(&r);
    assert!(f.contains(&"C-2") && f.contains(&"C-3"), "{f:?}");
    let d = &r.rules.iter().find(|x| x.id == "C-3").unwrap().divergences[0];
    assert!(
        d.message.contains("mode C: enqueue on CPU 0 to CPU 1"),
        "{}",
        d.message
    );
    assert!(
        d.expected.contains("wake-up of backlog_napi/1"),
        "{}",
        d.expected
    );
}

#[test]
fn negative_control_c_trace_checked_as_b_diverges() {
    let r = check(&sim(Mode::C, Workload::Rps, 5), Some(Mode::B));
    let f = failed(&r);
    for id in ["A-1", "A-2", "A-3", "A-8"] {
        assert!(f.contains(&id), "{id} missing from {f:?}");
    }
}

/// A mutation the recorder would not notice: per-CPU sequence numbers stay gap-free.
fn mutate(t: &mut Trace, keep: impl Fn(&Event) -> bool) {
    t.events.retain(keep);
    renumber(t);
}

fn renumber(t: &mut Trace) {
    t.events.sort_by_key(|e| (e.ts_ns, e.cpu));
    let mut next = std::collections::HashMap::new();
    for e in &mut t.events {
        let n = next.entry(e.cpu).or_insert(0u64);
        e.seq = *n;
        *n += 1;
    }
}

#[test]
fn dropping_thread_wakeups_is_caught_by_c6() {
    let mut t = sim(Mode::C, Workload::Rps, 11);
    mutate(&mut t, |e| {
        !(matches!(e.event, EventKind::SchedWaking | EventKind::SchedWakeup)
            && e.target_comm.as_deref() == Some("backlog_napi/1"))
    });
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).contains(&"C-6"), "{:?}", failed(&r));
}

#[test]
fn an_rps_ipi_in_mode_c_is_caught_by_c2() {
    let mut t = sim(Mode::C, Workload::Rps, 12);
    let mut e = Event::new(t.events[10].ts_ns, 0, 0, EventKind::CsdQueueCpu);
    e.func = Some("rps_trigger_softirq".into());
    e.target_cpu = Some(1);
    t.events.push(e);
    let r = check(&t, Some(Mode::C));
    // Threads and an RPS IPI in one trace also make the trace's own mode inconsistent.
    assert_eq!(failed(&r), vec!["C-2", "MODE"]);
}

#[test]
fn processing_on_the_wrong_cpu_is_caught_by_g1() {
    let mut t = sim(Mode::B, Workload::Rps, 13);
    let victim = t
        .events
        .iter()
        .position(|e| e.is_backlog_poll() && e.cpu == 1)
        .unwrap();
    t.events[victim].cpu = 0;
    renumber(&mut t);
    let r = check(&t, Some(Mode::B));
    assert!(failed(&r).contains(&"G1"), "{:?}", failed(&r));
}

#[test]
fn removing_the_ipi_is_caught_by_a3_and_a_raise_by_a7() {
    let mut t = sim(Mode::B, Workload::Rps, 14);
    mutate(&mut t, |e| e.event != EventKind::CsdFunctionEntry);
    let r = check(&t, Some(Mode::B));
    assert!(failed(&r).contains(&"A-3"), "{:?}", failed(&r));

    let mut t = sim(Mode::B, Workload::Rps, 14);
    mutate(&mut t, |e| {
        !(e.event == EventKind::SoftirqRaise && e.cpu == 0)
    });
    let r = check(&t, Some(Mode::B));
    assert_eq!(verdict(&r, "A-7"), Verdict::Warn);
}

#[test]
fn lost_events_make_windows_inconclusive_not_failures() {
    let mut t = sim(Mode::B, Workload::Rps, 15);
    // Lose every csd_function_entry on CPU 1; the sequence numbers show the gaps.
    t.events
        .retain(|e| !(e.event == EventKind::CsdFunctionEntry && e.cpu == 1));
    let r = check(&t, Some(Mode::B));
    assert_eq!(verdict(&r, "A-3"), Verdict::Inconclusive);
    assert!(failed(&r).is_empty(), "{:?}", failed(&r));
}

#[test]
fn a_wrong_rps_target_is_caught_by_g4() {
    let mut t = sim(Mode::B, Workload::Rps, 17);
    let victim = t
        .events
        .iter()
        .position(|e| e.event == EventKind::EnqueueToBacklog)
        .unwrap();
    t.events[victim].target_cpu = Some(0);
    let r = check(&t, Some(Mode::B));
    assert_eq!(failed(&r), vec!["G4"]);
    assert_eq!(
        verdict(
            &check(&sim(Mode::C, Workload::Mixed, 17), Some(Mode::C)),
            "G4"
        ),
        Verdict::Pass
    );
}

#[test]
fn recursion_misses_make_a_missing_leg_inconclusive() {
    let mut t = sim(Mode::B, Workload::Rps, 16);
    mutate(&mut t, |e| e.event != EventKind::CsdFunctionEntry);
    t.meta
        .set("missed_by_event", r#"{"csd_function_entry": 3}"#);
    let r = check(&t, Some(Mode::B));
    assert_eq!(verdict(&r, "A-3"), Verdict::Inconclusive);
}

#[test]
fn a_skipped_first_delivery_makes_the_initiator_rules_inconclusive() {
    // Drop the first delivery after each RPS IPI on its CPU, as the kernel's recursion guard
    // may: a later skb, enqueued after the IPI was queued, then stands as the initiator.
    let mut t = sim(Mode::B, Workload::Rps, 16);
    let mut after_ipi = std::collections::HashSet::new();
    t.events.retain(|e| match e.event {
        EventKind::CsdFunctionEntry => {
            after_ipi.insert(e.cpu);
            true
        }
        EventKind::NetifReceiveSkb => !after_ipi.remove(&e.cpu),
        _ => true,
    });
    renumber(&mut t);
    assert!(
        failed(&check(&t, Some(Mode::B))).contains(&"A-3"),
        "without the miss counters this is a divergence"
    );
    t.meta.set("missed_by_event", r#"{"netif_receive_skb": 2}"#);
    let r = check(&t, Some(Mode::B));
    assert!(failed(&r).is_empty(), "{:?}", failed(&r));
    assert_ne!(verdict(&r, "A-3"), Verdict::Fail);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn any_simulated_trace_passes_its_own_mode(
        mode in prop_oneof![Just(Mode::A), Just(Mode::B), Just(Mode::C)],
        workload in prop_oneof![Just(Workload::Rps), Just(Workload::Loopback), Just(Workload::Mixed)],
        ncpu in 1usize..5,
        packets in 1usize..400,
        seed in any::<u64>(),
    ) {
        let mut o = SimOpts::new(mode, ncpu, workload);
        o.packets = packets;
        o.seed = seed;
        let s = simulate(&o);
        let t = Trace { events: s.events, meta: s.meta };
        let r = check(&t, Some(mode));
        prop_assert!(failed(&r).is_empty(), "{:?}: {:#?}", failed(&r), r.rules);
        // Every packet is delivered (the model loses nothing below max_backlog).
        let rx = t.events.iter().filter(|e| e.event == EventKind::NetifRx).count();
        let rcv = t.events.iter().filter(|e| e.event == EventKind::NetifReceiveSkb).count();
        prop_assert_eq!(rx, rcv);
    }

    #[test]
    fn simulated_c_never_passes_as_b_when_work_is_remote(seed in any::<u64>()) {
        let mut o = SimOpts::new(Mode::C, 2, Workload::Rps);
        o.seed = seed;
        o.packets = 200;
        let s = simulate(&o);
        let r = check(&Trace { events: s.events, meta: s.meta }, Some(Mode::B));
        prop_assert!(failed(&r).contains(&"A-2"));
    }
}

/// cpuhp events for CPU 1 spanning the whole trace: a hotplug window (model.md §8.2).
fn add_hotplug(t: &mut Trace) {
    let (t0, t1) = (t.events[0].ts_ns, t.events.last().unwrap().ts_ns);
    for (ts, kind) in [(t0, EventKind::CpuhpEnter), (t1, EventKind::CpuhpExit)] {
        let mut e = Event::new(ts, 0, 0, kind);
        e.target_cpu = Some(1);
        e.work = Some(0);
        t.events.push(e);
    }
    renumber(t);
}

#[test]
fn a_hotplug_window_makes_a_divergence_inconclusive() {
    // The same mutation A-3 catches above, inside a CPU hotplug window, is not a FAIL:
    // the model leaves hotplug windows unspecified.
    let mut t = sim(Mode::B, Workload::Rps, 14);
    mutate(&mut t, |e| e.event != EventKind::CsdFunctionEntry);
    add_hotplug(&mut t);
    let r = check(&t, Some(Mode::B));
    assert_eq!(r.hotplug_windows.len(), 1);
    assert_eq!(r.hotplug_windows[0].cpu, 1);
    assert_eq!(verdict(&r, "A-3"), Verdict::Inconclusive);
    assert!(!failed(&r).contains(&"A-3"), "{:?}", failed(&r));
}

#[test]
fn function_probe_events_pass_through_the_checker() {
    // Kinds after the tracepoints' (hotplug, kprobes) must index cleanly, not spill into
    // another CPU's buckets.
    let mut t = sim(Mode::C, Workload::Rps, 16);
    let ts: Vec<(u64, u32)> = t
        .events
        .iter()
        .step_by(50)
        .map(|e| (e.ts_ns, e.cpu))
        .collect();
    for (i, (ts, cpu)) in ts.into_iter().enumerate() {
        let kind = EventKind::ALL[EventKind::ALL.len() - 1 - i % 6];
        let mut e = Event::new(ts, cpu, 0, kind);
        e.target_cpu = Some(cpu as i32);
        t.events.push(e);
    }
    renumber(&mut t);
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).is_empty(), "{:?}", failed(&r));
    assert_eq!(verdict(&r, "C-3"), Verdict::Pass);
}

#[test]
fn function_probes_are_direct_evidence_for_g1_and_c1() {
    // process_backlog of CPU 1's backlog on CPU 0: G1 from the kprobe alone.
    let mut t = sim(Mode::C, Workload::Rps, 17);
    let poll = t
        .events
        .iter()
        .find(|e| e.is_backlog_poll() && e.cpu == 1)
        .cloned()
        .unwrap();
    let mut pb = Event::new(poll.ts_ns + 1, 0, 0, EventKind::ProcessBacklog);
    pb.napi = poll.napi;
    pb.budget = Some(64);
    t.events.push(pb);
    // run_backlog_napi(1) on CPU 0: the thread is not bound.
    let mut rb = Event::new(poll.ts_ns + 2, 0, 0, EventKind::RunBacklogNapi);
    rb.target_cpu = Some(1);
    t.events.push(rb);
    renumber(&mut t);
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).contains(&"G1"), "{:?}", failed(&r));
    assert!(failed(&r).contains(&"C-1"), "{:?}", failed(&r));
    // The same probes on the right CPUs pass.
    let mut t = sim(Mode::C, Workload::Rps, 17);
    let mut pb = Event::new(poll.ts_ns + 1, 1, 0, EventKind::ProcessBacklog);
    pb.napi = poll.napi;
    t.events.push(pb);
    let mut rb = Event::new(poll.ts_ns + 2, 1, 0, EventKind::RunBacklogNapi);
    rb.target_cpu = Some(1);
    t.events.push(rb);
    renumber(&mut t);
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).is_empty(), "{:?}", failed(&r));
}

#[test]
fn finder_finds_what_find_finds_in_any_query_order() {
    let t = sim(Mode::B, Workload::Mixed, 5);
    let ix = Index::build(Cols::from_events(&t.events), &t.meta);
    for kind in [EventKind::CsdFunctionEntry, EventKind::SoftirqRaise] {
        let mut f = ix.finder(kind);
        let mut x = 12345u64;
        for k in 0..3000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let cpu = (x >> 33) as u32 % 3; // CPU 2 has no events
                                            // Growing times (as the rules ask), and random jumps back and forth.
            let t0 = if k % 3 == 0 {
                (x >> 20) % (ix.t_end + 10)
            } else {
                k * ix.t_end / 3000
            };
            let t1 = t0 + (x >> 40) % 2_000_000;
            let want: Vec<usize> = ix.find(cpu, kind, t0, t1).map(|e| e.i).collect();
            let got: Vec<usize> = f.find(cpu, t0, t1).map(|e| e.i).collect();
            assert_eq!(got, want, "cpu {cpu} [{t0}, {t1}]");
        }
    }
}

#[test]
fn a4_fails_when_no_batch_completes_between_two_ipis() {
    // CPU 1's polls between its first two RPS IPIs: gone; the first poll after the second
    // uses its whole budget. Nothing completes from one IPI to the poll after the next.
    let mut t = sim(Mode::B, Workload::Rps, 24);
    let ipi_ts: Vec<u64> = t
        .events
        .iter()
        .filter(|e| {
            e.cpu == 1
                && e.event == EventKind::CsdFunctionEntry
                && e.func.as_deref() == Some(crate::event::RPS_IPI_FUNC)
        })
        .map(|e| e.ts_ns)
        .take(2)
        .collect();
    mutate(&mut t, |e| {
        !(e.cpu == 1 && e.is_backlog_poll() && e.ts_ns > ipi_ts[0] && e.ts_ns <= ipi_ts[1])
    });
    let next = t
        .events
        .iter_mut()
        .find(|e| e.cpu == 1 && e.is_backlog_poll() && e.ts_ns > ipi_ts[1])
        .unwrap();
    next.work = next.budget;
    let r = check(&t, Some(Mode::B));
    assert!(failed(&r).contains(&"A-4"), "{:?}", failed(&r));
}

#[test]
fn c8_fails_when_a_thread_run_polls_nothing() {
    // Every backlog poll in backlog_napi/1's third run: gone.
    let mut t = sim(Mode::C, Workload::Rps, 25);
    let switch = |e: &Event| e.cpu == 1 && e.event == EventKind::SchedSwitch;
    let t0 = t
        .events
        .iter()
        .filter(|e| switch(e) && e.target_comm.as_deref() == Some("backlog_napi/1"))
        .nth(2)
        .map(|e| e.ts_ns)
        .unwrap();
    let t1 = t
        .events
        .iter()
        .find(|e| {
            switch(e)
                && e.ts_ns > t0
                && e.comm == "backlog_napi/1"
                && e.prev_state.as_deref() == Some("S")
        })
        .map(|e| e.ts_ns)
        .unwrap();
    mutate(&mut t, |e| {
        !(e.cpu == 1 && e.is_backlog_poll() && e.ts_ns >= t0 && e.ts_ns <= t1)
    });
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).contains(&"C-8"), "{:?}", failed(&r));
}

#[test]
fn a_dropped_skb_that_is_received_is_caught_by_g6() {
    let mut t = sim(Mode::B, Workload::Rps, 18);
    // The third netif_rx returns NET_RX_DROP, but its skb is still received.
    let rx = t
        .events
        .iter()
        .filter(|e| e.event == EventKind::NetifRx)
        .nth(2)
        .unwrap()
        .clone();
    let exit = t
        .events
        .iter()
        .position(|e| {
            e.event == EventKind::NetifRxExit
                && e.cpu == rx.cpu
                && e.pid == rx.pid
                && e.ts_ns >= rx.ts_ns
        })
        .unwrap();
    t.events[exit].ret = Some(1);
    let r = check(&t, Some(Mode::B));
    assert_eq!(failed(&r), vec!["G6"]);
    let d = &r.rules.iter().find(|x| x.id == "G6").unwrap().divergences[0];
    assert_eq!(d.ts_ns, {
        let rcv = t.events.iter().find(|e| {
            e.event == EventKind::NetifReceiveSkb && e.skb == rx.skb && e.ts_ns >= rx.ts_ns
        });
        rcv.unwrap().ts_ns
    });
    // Once the receive is gone, the drop is followed and passes.
    t.events
        .retain(|e| !(e.event == EventKind::NetifReceiveSkb && e.skb == rx.skb));
    assert_eq!(verdict(&check(&t, Some(Mode::B)), "G6"), Verdict::Pass);
}

/// The checker on trace files: the same reports as on events, the readers' errors, and
/// the phase benchmark.
mod device;
mod files;
mod rt;
