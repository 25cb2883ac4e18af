//! PREEMPT_RT from v6.18 without the softirq BKL (3253cb49cbad, `CONFIG_PREEMPT_RT_NEEDS_BH_LOCK`
//! unset, as in Debian's -rt builds): BH-disabled sections and softirq runs are preemptible
//! and per task, so two tasks on one CPU can each be inside a NAPI poll, interleaved.

use super::{failed, renumber, sim, verdict, *};
use crate::event::Ctx as ExecCtx;

/// An event of task (`comm`, `pid`) on `cpu`.
fn by(ts: u64, cpu: u32, kind: EventKind, ctx: ExecCtx, comm: &str, pid: i32) -> Event {
    Event::with_required(ts, cpu, 0, kind, ctx, comm.into(), pid)
}

/// Into the thread poll `poll` (backlog_napi/1, one remote skb), right after its delivery:
/// the thread is preempted; `irq/30-eth0` runs its NET_RX softirq (a NAPI poll of eth0),
/// then netif_rx's one skb locally, which joins the batch the thread holds SCHED for
/// (enqueue_to_backlog: queue not empty or SCHED set, so no ____napi_schedule); the thread
/// resumes and delivers that skb in the same poll.
// long: the interleaving is one event sequence, read top to bottom like the kernel ran it.
fn preempt_thread_poll(t: &mut Trace, poll: usize) {
    let p = t.events[poll].clone();
    let (cpu, thread, tpid) = (p.cpu, p.comm.clone(), p.pid);
    let (irq, ipid) = ("irq/30-eth0", 500);
    let mut at = t.events[..poll]
        .iter()
        .rev()
        .find(|e| e.cpu == cpu && e.event == EventKind::NetifReceiveSkb)
        .unwrap()
        .ts_ns;
    assert!(p.ts_ns - at > 10 * 20, "room for the inserted events");
    let mut next = || {
        at += 20;
        at
    };
    let mut add = Vec::new();
    let mut sw = by(
        next(),
        cpu,
        EventKind::SchedSwitch,
        ExecCtx::Task,
        &thread,
        tpid,
    );
    sw.target_comm = Some(irq.into());
    sw.target_pid = Some(ipid);
    sw.prev_state = Some("R+".into());
    add.push(sw);
    let sirq = |ts, kind| {
        let mut e = by(ts, cpu, kind, ExecCtx::Softirq, irq, ipid);
        e.vec = Some(3);
        e
    };
    add.push(sirq(next(), EventKind::SoftirqEntry));
    let mut rcv = by(
        next(),
        cpu,
        EventKind::NetifReceiveSkb,
        ExecCtx::Softirq,
        irq,
        ipid,
    );
    rcv.skb = Some(0xe7e0);
    rcv.len = Some(64);
    rcv.dev = Some("eth0".into());
    add.push(rcv);
    let mut np = by(
        next(),
        cpu,
        EventKind::NapiPoll,
        ExecCtx::Softirq,
        irq,
        ipid,
    );
    np.napi = Some(0xe7e0_0000);
    np.dev = Some("eth0".into());
    np.work = Some(1);
    np.budget = Some(64);
    add.push(np);
    add.push(sirq(next(), EventKind::SoftirqExit));
    let local = 0x10ca1;
    let mut rx = by(next(), cpu, EventKind::NetifRx, ExecCtx::Task, irq, ipid);
    rx.skb = Some(local);
    rx.len = Some(64);
    rx.dev = Some("veth-sim".into());
    add.push(rx);
    let mut enq = by(
        next(),
        cpu,
        EventKind::EnqueueToBacklog,
        ExecCtx::Task,
        irq,
        ipid,
    );
    enq.skb = Some(local);
    enq.target_cpu = Some(cpu as i32);
    add.push(enq);
    let mut exit = by(
        next(),
        cpu,
        EventKind::NetifRxExit,
        ExecCtx::Task,
        irq,
        ipid,
    );
    exit.ret = Some(0);
    add.push(exit);
    let mut back = by(
        next(),
        cpu,
        EventKind::SchedSwitch,
        ExecCtx::Task,
        irq,
        ipid,
    );
    back.target_comm = Some(thread.clone());
    back.target_pid = Some(tpid);
    back.prev_state = Some("S".into());
    add.push(back);
    let mut joined = by(
        next(),
        cpu,
        EventKind::NetifReceiveSkb,
        p.ctx,
        &thread,
        tpid,
    );
    joined.skb = Some(local);
    joined.len = Some(64);
    joined.dev = Some("veth-sim".into());
    add.push(joined);
    t.events[poll].work = p.work.map(|w| w + 1);
    t.events.extend(add);
    renumber(t);
}

#[test]
fn a_poll_preempted_by_another_tasks_poll_keeps_its_own_deliveries() {
    let mut t = sim(Mode::C, Workload::Rps, 5);
    let poll = t
        .events
        .iter()
        .rposition(|e| {
            e.is_backlog_poll() && e.cpu == 1 && e.work == Some(1) && e.comm == "backlog_napi/1"
        })
        .expect("a one-skb thread poll on CPU 1 (the last: not the CPU's first batch)");
    let before = check(&t, Some(Mode::C));
    assert!(failed(&before).is_empty(), "{:?}", failed(&before));
    preempt_thread_poll(&mut t, poll);
    // The batch's first delivery is the remote skb the thread was woken for: by CPU, the
    // eth0 poll in between took it, and the joined local skb looked like the batch's start
    // (C-4: "local enqueue ... processed by the backlog thread").
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).is_empty(), "{:#?}", r.rules);
    assert_eq!(verdict(&r, "C-3"), Verdict::Pass);
}

/// A time after `after` from which no CPU has an event for `ns`.
fn quiet(t: &Trace, after: u64, ns: u64) -> u64 {
    let w = t
        .events
        .windows(2)
        .find(|w| w[0].ts_ns > after && w[1].ts_ns - w[0].ts_ns > ns + 2_000);
    w.expect("a quiet gap")[0].ts_ns + 1_000
}

/// The pid of the task whose skb free kicks CPU 1's backlog.
const KICKER: i32 = 4242;

/// A defer kick from CPU 0 wakes backlog_napi/1 (SCHED and SCHED_THREADED set, no skb);
/// before the thread's poll ends, `irq/30-eth0` on CPU 1 preempts it and netif_rx's one skb
/// locally: enqueue_to_backlog finds SCHED set and only appends, and the thread polls the
/// skb. The skb is the batch's first delivery, but the wake-up started the batch.
fn kick_then_local_join(t: &mut Trace) {
    // Not CPU 1's first batch (that one may have begun before the trace).
    let first = t
        .events
        .iter()
        .find(|e| e.is_backlog_poll() && e.cpu == 1)
        .unwrap();
    let mut at = quiet(t, first.ts_ns, 400);
    let mut next = || {
        at += 20;
        at
    };
    let (thread, tpid) = ("backlog_napi/1", crate::model::backlog_thread_pid(1));
    let (irq, ipid) = ("irq/30-eth0", 500);
    let mut add = Vec::new();
    let mut wake = by(
        next(),
        0,
        EventKind::SchedWaking,
        ExecCtx::Task,
        "udp-sender",
        KICKER,
    );
    wake.target_comm = Some(thread.into());
    wake.target_pid = Some(tpid);
    wake.target_cpu = Some(1);
    add.push(wake);
    let switch = |ts, from: (&str, i32), to: (&str, i32), state: &str| {
        let mut e = by(ts, 1, EventKind::SchedSwitch, ExecCtx::Task, from.0, from.1);
        e.target_comm = Some(to.0.into());
        e.target_pid = Some(to.1);
        e.prev_state = Some(state.into());
        e
    };
    add.push(switch(next(), ("swapper/1", 0), (thread, tpid), "R"));
    add.push(switch(next(), (thread, tpid), (irq, ipid), "R+"));
    let local = 0x10ca2;
    let mut rx = by(next(), 1, EventKind::NetifRx, ExecCtx::Task, irq, ipid);
    rx.skb = Some(local);
    rx.len = Some(64);
    rx.dev = Some("veth-sim".into());
    add.push(rx);
    let mut enq = by(
        next(),
        1,
        EventKind::EnqueueToBacklog,
        ExecCtx::Task,
        irq,
        ipid,
    );
    enq.skb = Some(local);
    enq.target_cpu = Some(1);
    add.push(enq);
    let mut exit = by(next(), 1, EventKind::NetifRxExit, ExecCtx::Task, irq, ipid);
    exit.ret = Some(0);
    add.push(exit);
    add.push(switch(next(), (irq, ipid), (thread, tpid), "S"));
    let mut rcv = by(
        next(),
        1,
        EventKind::NetifReceiveSkb,
        ExecCtx::Task,
        thread,
        tpid,
    );
    rcv.skb = Some(local);
    rcv.len = Some(64);
    rcv.dev = Some("veth-sim".into());
    add.push(rcv);
    let mut np = by(next(), 1, EventKind::NapiPoll, ExecCtx::Task, thread, tpid);
    np.napi = first.napi;
    np.dev = first.dev.clone();
    np.work = Some(1);
    np.budget = Some(64);
    add.push(np);
    add.push(switch(next(), (thread, tpid), ("swapper/1", 0), "S"));
    t.events.extend(add);
    renumber(t);
}

#[test]
fn a_local_skb_that_joins_a_batch_the_thread_owns_is_not_a_local_batch() {
    let mut t = sim(Mode::C, Workload::Rps, 5);
    kick_then_local_join(&mut t);
    let r = check(&t, Some(Mode::C));
    assert!(failed(&r).is_empty(), "{:#?}", r.rules);
    // The same batch without the wake-up is a local batch the thread polled: C-4 fails.
    t.events.retain(|e| e.pid != KICKER);
    renumber(&mut t);
    assert_eq!(verdict(&check(&t, Some(Mode::C)), "C-4"), Verdict::Fail);
}
