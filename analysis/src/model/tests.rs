use super::*;

#[derive(Default)]
struct Log(Vec<(usize, Event)>);

impl Tracer for Log {
    fn emit(&mut self, x: &Exec, e: Event) {
        let mut e = e;
        e.ctx = x.ctx;
        e.comm = x.comm.clone();
        self.0.push((x.cpu, e));
    }
}

impl Log {
    /// Scheduling events (the enqueue_to_backlog probe fires for every enqueue).
    fn n(&self) -> usize {
        self.0
            .iter()
            .filter(|(_, e)| e.event != EventKind::EnqueueToBacklog)
            .count()
    }
    fn kinds_on(&self, cpu: usize) -> Vec<EventKind> {
        self.0
            .iter()
            .filter(|(c, _)| *c == cpu)
            .map(|(_, e)| e.event)
            .collect()
    }
    fn has(&self, cpu: usize, kind: EventKind) -> bool {
        self.kinds_on(cpu).contains(&kind)
    }
}

fn task(cpu: usize) -> Exec {
    Exec {
        cpu,
        ctx: Ctx::Task,
        comm: "sender".into(),
        pid: 1,
    }
}

fn softirq(cpu: usize) -> Exec {
    Exec {
        ctx: Ctx::Softirq,
        ..task(cpu)
    }
}

fn no_idle(_: usize) -> bool {
    false
}

#[test]
fn mode_b_remote_enqueue_queues_an_ipi_and_raises_on_the_sender() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    assert_eq!(k.enqueue_to_backlog(&mut log, &task(0), 1, 1), 0);
    assert!(k.sd[1].backlog.sched);
    assert_eq!(k.sd[0].rps_ipi_list, vec![1]);
    assert!(log.has(0, EventKind::SoftirqRaise), "NET_RX raised on S");
    assert!(log.kinds_on(1).is_empty(), "nothing on T yet (§5.1 A3)");
    // The sender's NET_RX sends the IPI ...
    k.net_rx_action(&mut log, &softirq(0), &mut no_idle);
    assert!(log.has(0, EventKind::CsdQueueCpu));
    assert_eq!(
        k.pending,
        vec![Pending::Ipi {
            cpu: 1,
            idle: false
        }]
    );
    // ... the target's handler schedules its own backlog and NET_RX delivers.
    let hard = Exec {
        ctx: Ctx::Hardirq,
        ..task(1)
    };
    k.rps_trigger_softirq(&mut log, &hard);
    assert_eq!(k.sd[1].received_rps, 1);
    k.net_rx_action(&mut log, &softirq(1), &mut no_idle);
    assert!(log.has(1, EventKind::NetifReceiveSkb));
    assert!(!k.sd[1].backlog.sched, "batch complete: SCHED cleared");
}

#[test]
fn only_the_enqueue_that_finds_the_backlog_idle_schedules() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(0), 1, 1);
    let before = log.n();
    k.enqueue_to_backlog(&mut log, &task(0), 2, 1);
    assert_eq!(log.n(), before, "second enqueue: no raise, no IPI");
    assert_eq!(k.sd[0].rps_ipi_list, vec![1]);
    assert_eq!(k.sd[1].input_pkt_queue.len(), 2);
}

#[test]
fn mode_c_remote_enqueue_wakes_the_target_thread_and_sends_no_ipi() {
    let mut k = Kernel::new(Params::new(Mode::C, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(0), 1, 1);
    assert!(k.sd[1].backlog.sched && k.sd[1].backlog.sched_threaded);
    assert!(k.sd[0].rps_ipi_list.is_empty());
    assert!(!log.has(0, EventKind::SoftirqRaise), "no NET_RX on S (C-7)");
    let waking = log
        .0
        .iter()
        .find(|(_, e)| e.event == EventKind::SchedWaking)
        .expect("sched_waking");
    assert_eq!(waking.0, 0, "emitted on the waker's CPU");
    assert_eq!(waking.1.target_comm.as_deref(), Some("backlog_napi/1"));
    assert_eq!(k.pending, vec![Pending::ThreadRunnable { cpu: 1 }]);
    assert!(k.backlog_napi_should_run(1));
    let thread = Exec {
        cpu: 1,
        ctx: Ctx::Task,
        comm: "backlog_napi/1".into(),
        pid: 31,
    };
    k.napi_threaded_poll_loop(&mut log, &thread, &mut no_idle);
    assert!(!k.backlog_napi_should_run(1));
    assert!(k.sd[1].backlog.threaded, "THREADED survives the batch");
    let poll = log
        .0
        .iter()
        .find(|(_, e)| e.event == EventKind::NapiPoll)
        .unwrap();
    assert_eq!((poll.0, poll.1.ctx, poll.1.work), (1, Ctx::Task, Some(1)));
}

#[test]
fn mode_c_local_enqueue_uses_the_local_softirq() {
    let mut k = Kernel::new(Params::new(Mode::C, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(1), 1, 1);
    assert!(!k.sd[1].backlog.sched_threaded, "use_local_napi");
    assert!(log.has(1, EventKind::SoftirqRaise));
    assert!(!log.has(1, EventKind::SchedWaking));
    assert_eq!(k.sd[1].poll_list, VecDeque::from(vec![1]));
}

#[test]
fn a_second_wake_of_a_runnable_thread_emits_nothing() {
    let mut k = Kernel::new(Params::new(Mode::C, 3));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(0), 1, 2);
    k.sd[2].backlog.sched = false; // as if the batch ended before the thread ran
    let n = log.n();
    k.enqueue_to_backlog(&mut log, &task(1), 2, 2);
    assert_eq!(log.n(), n, "thread already runnable: no sched_waking");
}

#[test]
fn full_backlog_drops() {
    let mut p = Params::new(Mode::B, 1);
    p.max_backlog = 2;
    let mut k = Kernel::new(p);
    let mut log = Log::default();
    let rets: Vec<i32> = (0..5)
        .map(|i| k.enqueue_to_backlog(&mut log, &task(0), i, 0))
        .collect();
    assert_eq!(rets, vec![0, 0, 0, 1, 1], "admit while qlen <= max_backlog");
    assert_eq!(k.sd[0].dropped, 2);
}

#[test]
fn process_backlog_returns_quota_until_drained() {
    let mut k = Kernel::new(Params::new(Mode::B, 1));
    let mut log = Log::default();
    for i in 0..100 {
        k.enqueue_to_backlog(&mut log, &task(0), i, 0);
    }
    let w1 = k.process_backlog(&mut log, &softirq(0), 0, 64, &mut no_idle);
    assert_eq!(w1, 64);
    assert!(k.sd[0].backlog.sched, "quota reached: still scheduled");
    let w2 = k.process_backlog(&mut log, &softirq(0), 0, 64, &mut no_idle);
    assert_eq!(w2, 36);
    assert!(!k.sd[0].backlog.sched);
}

#[test]
fn f2_suppresses_the_raise_inside_net_rx_action() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.sd[0].in_net_rx_action = true;
    k.enqueue_to_backlog(&mut log, &softirq(0), 1, 1);
    assert!(!log.has(0, EventKind::SoftirqRaise));
    let mut p = Params::new(Mode::A, 2);
    p.features = Features::for_release("6.1.0");
    let mut k = Kernel::new(p);
    k.sd[0].in_net_rx_action = true;
    k.enqueue_to_backlog(&mut log, &softirq(0), 1, 1);
    assert!(log.has(0, EventKind::SoftirqRaise), "6.1 always raises");
}

#[test]
fn dev_cpu_dead_reinjects_on_the_surviving_cpu() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(0), 7, 1);
    k.dev_cpu_dead(&mut log, &task(0), 1, 0, &mut no_idle);
    assert!(!k.sd[1].online);
    assert_eq!(k.sd[0].input_pkt_queue, VecDeque::from(vec![7]));
    let rx: Vec<_> = log
        .0
        .iter()
        .filter(|(_, e)| e.event == EventKind::NetifRx)
        .collect();
    assert_eq!(rx.len(), 1, "re-injected with netif_rx on the control CPU");
    assert_eq!(rx[0].0, 0);
}

/// dev_cpu_dead resets a backlog only when it finds it on the dead CPU's poll_list; one
/// scheduled remotely whose IPI never arrived keeps SCHED (net/core/dev.c dev_cpu_dead:
/// `if (napi->poll == process_backlog) napi->state &= NAPIF_STATE_THREADED` in the
/// poll_list walk, nothing else touches the state).
#[test]
fn dev_cpu_dead_resets_only_a_backlog_on_the_dead_cpus_poll_list() {
    // Scheduled from CPU 0 (RPS IPI queued on CPU 0, not yet sent): not on CPU 1's list.
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(0), 7, 1);
    assert!(k.sd[1].poll_list.is_empty() && k.sd[1].backlog.sched);
    k.dev_cpu_dead(&mut log, &task(0), 1, 0, &mut no_idle);
    assert!(
        k.sd[1].backlog.sched,
        "not on the poll_list: state left as it was"
    );

    // Scheduled locally on CPU 1: on its poll_list, so reset (THREADED kept).
    let mut k = Kernel::new(Params::new(Mode::C, 2));
    k.enqueue_to_backlog(&mut log, &task(1), 8, 1);
    assert_eq!(k.sd[1].poll_list, VecDeque::from(vec![1]));
    k.sd[1].backlog.sched_threaded = true;
    k.dev_cpu_dead(&mut log, &task(0), 1, 0, &mut no_idle);
    let b = k.sd[1].backlog;
    assert!(!b.sched && !b.sched_threaded && b.threaded, "{b:?}");
    assert!(k.sd[1].poll_list.is_empty());
}

/// A CPU on its way down (cpu_online cleared, dev_cpu_dead not yet run) still queues what
/// is enqueued to it: enqueue_to_backlog has no online check. dev_cpu_dead re-injects it.
#[test]
fn an_skb_enqueued_to_a_cpu_going_down_is_queued_then_reinjected() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.sd[1].online = false;
    assert_eq!(
        k.enqueue_to_backlog(&mut log, &task(1), 9, 1),
        0,
        "queued, not dropped"
    );
    assert_eq!(k.sd[1].dropped, 0);
    k.dev_cpu_dead(&mut log, &task(0), 1, 0, &mut no_idle);
    assert_eq!(k.sd[0].input_pkt_queue, VecDeque::from(vec![9]));
}

/// process_backlog drains the NAPI owner's queues, whichever CPU runs it.
#[test]
fn process_backlog_drains_the_owners_queue() {
    let mut k = Kernel::new(Params::new(Mode::B, 2));
    let mut log = Log::default();
    k.enqueue_to_backlog(&mut log, &task(1), 5, 1);
    k.enqueue_to_backlog(&mut log, &task(0), 6, 0);
    let w = k.process_backlog(&mut log, &softirq(0), 1, 64, &mut no_idle);
    assert_eq!(w, 1);
    assert!(k.sd[1].input_pkt_queue.is_empty() && k.sd[1].process_queue.is_empty());
    assert!(!k.sd[1].backlog.sched, "the owner's SCHED is cleared");
    assert_eq!(
        k.sd[0].input_pkt_queue,
        VecDeque::from(vec![6]),
        "CPU 0's queue untouched"
    );
    let got: Vec<u64> = log
        .0
        .iter()
        .filter(|(_, e)| e.event == EventKind::NetifReceiveSkb)
        .filter_map(|(_, e)| e.skb)
        .collect();
    assert_eq!(got, vec![5]);
}

#[test]
fn features_by_version() {
    let f = Features::for_release("6.1.0-56-amd64");
    assert!(!f.f1_in_net_rx_action && f.f4_ksoftirqd_deferral && !f.f5_csd_tracepoints);
    let f = Features::for_release("6.12.118+deb13-amd64");
    assert!(f.f1_in_net_rx_action && !f.f4_ksoftirqd_deferral && f.f6_defer_kick_backlog);
    assert!(!f.f7_raise_irqoff);
    assert!(Features::for_release("6.18.44").f7_raise_irqoff);
}
