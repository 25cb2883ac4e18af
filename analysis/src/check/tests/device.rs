//! The device NAPI rules N-1–N-3 on hand-made traces: eth0's instance 8193 polled in NET_RX,
//! then switched to its thread napi/eth0-8193, and each rule's violation caught.

use super::{failed, verdict, *};
use crate::event::Ctx as ExecCtx;

const THREAD: &str = "napi/eth0-8193";
const TPID: i32 = 900;

/// A poll of eth0's instance on CPU 0, in softirq (`thread` false) or by its thread.
fn poll(ts: u64, thread: bool, work: i32) -> Event {
    let (ctx, comm, pid) = if thread {
        (ExecCtx::Task, THREAD, TPID)
    } else {
        (ExecCtx::Softirq, "swapper/0", 0)
    };
    let mut e = Event::with_required(ts, 0, 0, EventKind::NapiPoll, ctx, comm.into(), pid);
    (e.napi, e.dev, e.napi_id, e.irq) = (Some(0xe7), Some("eth0".into()), Some(8193), Some(27));
    (e.work, e.budget) = (Some(work), Some(64));
    e
}

/// The thread goes to sleep (`sleep`: sched_switch, prev_state S) or is woken.
fn sched(ts: u64, sleep: bool) -> Event {
    let mut e = if sleep {
        let mut e = Event::with_required(
            ts,
            0,
            0,
            EventKind::SchedSwitch,
            ExecCtx::Task,
            THREAD.into(),
            TPID,
        );
        (e.target_comm, e.target_pid, e.prev_state) =
            (Some("swapper/0".into()), Some(0), Some("S".into()));
        e
    } else {
        let mut e = Event::with_required(
            ts,
            1,
            0,
            EventKind::SchedWaking,
            ExecCtx::Task,
            "sender".into(),
            77,
        );
        (e.target_comm, e.target_pid, e.target_cpu) = (Some(THREAD.into()), Some(TPID), Some(0));
        e
    };
    e.ts_ns = ts;
    e
}

/// Softirq polls, then (threaded switched on) the thread's: sleep, wake-up, poll, twice.
fn switched() -> Trace {
    let mut events = vec![poll(1_000, false, 3), poll(2_000, false, 1)];
    for k in 0..2u64 {
        let t = 10_000 + k * 10_000;
        events.extend([
            sched(t, true),
            sched(t + 1_000, false),
            poll(t + 2_000, true, 2),
        ]);
    }
    let mut seq = [0u64; 2];
    for e in &mut events {
        e.seq = seq[e.cpu as usize];
        seq[e.cpu as usize] += 1;
    }
    Trace {
        events,
        meta: crate::trace::TraceMeta::default(),
    }
}

fn device_verdicts(t: &Trace) -> Vec<(&'static str, Verdict)> {
    let r = check(t, Some(Mode::B));
    ["N-1", "N-2", "N-3"]
        .iter()
        .map(|id| (*id, verdict(&r, id)))
        .collect()
}

#[test]
fn a_switch_to_the_thread_between_schedulings_passes() {
    let t = switched();
    let v = device_verdicts(&t);
    assert!(v.iter().all(|(_, v)| *v == Verdict::Pass), "{v:?}");
}

#[test]
fn a_switch_inside_a_scheduling_is_caught_by_n1() {
    let mut t = switched();
    // The last softirq poll used its whole budget: the scheduling was not complete.
    t.events[1].work = Some(64);
    let r = check(&t, Some(Mode::B));
    assert_eq!(failed(&r), ["N-1"], "{:#?}", r.rules);
    // Back to softirq after a whole-budget thread poll: caught too.
    let mut t = switched();
    t.events[7].work = Some(64);
    t.events.push(poll(40_000, false, 1));
    t.events[8].seq = 6; // CPU 0's next: no gap, no loss
    assert!(failed(&check(&t, Some(Mode::B))).contains(&"N-1"));
}

#[test]
fn a_thread_polling_another_instance_is_caught_by_n2() {
    let mut t = switched();
    t.events[7].napi_id = Some(8194);
    assert_eq!(failed(&check(&t, Some(Mode::B))), ["N-2"]);
    // Without napi_id (a schema-1 trace), another napi_struct gives it away.
    let mut t = switched();
    for e in &mut t.events {
        e.napi_id = None;
    }
    assert_eq!(verdict(&check(&t, Some(Mode::B)), "N-2"), Verdict::Pass);
    t.events[7].napi = Some(0xe8);
    assert_eq!(failed(&check(&t, Some(Mode::B))), ["N-2"]);
}

#[test]
fn a_poll_after_a_sleep_without_a_wake_up_is_caught_by_n3() {
    let mut t = switched();
    t.events.remove(6); // the second wake-up
    let r = check(&t, Some(Mode::B));
    assert_eq!(failed(&r), ["N-3"], "{:#?}", r.rules);
    // A wake-up racing the thread into schedule() (recorded before its sleep) is a wake-up.
    let mut t = switched();
    t.events.swap(5, 6);
    (t.events[5].ts_ns, t.events[6].ts_ns) = (19_500, 20_000);
    assert_eq!(verdict(&check(&t, Some(Mode::B)), "N-3"), Verdict::Pass);
}
