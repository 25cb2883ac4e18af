//! The rules, by their model.md §11 IDs. Each counts instances as passed, failed, warned or
//! inconclusive, and explains every failure with what the model expected instead.

use super::{
    describe,
    index::{Batch, Class, Finder, Index},
    percpu::PerCpu,
    Divergence, RuleResult,
};
use crate::{
    event::{Ctx as ExecCtx, EventKind, RPS_IPI_FUNC},
    mode::Mode,
    model::{backlog_thread_comm, Features},
    trace::{
        cols::{Sym, E},
        fastmap::FastMap,
        TraceMeta,
    },
};
use probe_common::NET_RX_SOFTIRQ;

pub struct Ctx<'b> {
    pub ix: &'b Index,
    pub meta: &'b TraceMeta,
    pub mode: Option<Mode>,
    pub features: Features,
    /// csd:csd_queue_cpu was recorded (F5 and attached).
    pub csd_queue_traced: bool,
    /// The RPS IPI's arrival was recorded: csd:csd_function_entry, or a kprobe on
    /// rps_trigger_softirq where the csd tracepoints do not exist (6.1).
    pub csd_entry_traced: bool,
    /// The IPI's arrival comes from a kprobe on a kernel that does not count kprobe
    /// recursion misses (< 6.7): a missing arrival may be a silent miss.
    pub entry_misses_uncounted: bool,
    /// The interned `RPS_IPI_FUNC`, if the trace has it.
    rps_sym: Option<Sym>,
}

impl<'b> Ctx<'b> {
    pub fn new(ix: &'b Index, meta: &'b TraceMeta, mode: Option<Mode>) -> Ctx<'b> {
        let features = match meta.get("kernel_release") {
            Some(r) if r != "model" => Features::for_release(r),
            _ => meta
                .get("features")
                .map(|f| Features {
                    f5_csd_tracepoints: !f.contains("f5_csd_tracepoints: false"),
                    ..Features::for_release("6.18")
                })
                .unwrap_or_else(|| Features::for_release("6.18")),
        };
        let probes = meta
            .get("probes")
            .and_then(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).ok());
        let attached = |name: &str| -> Option<bool> {
            probes.as_ref().map(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name && p["attached"] == true)
            })
        };
        // Without probe metadata (simulated traces) the version features decide.
        let f5 = features.f5_csd_tracepoints;
        let csd_queue_traced = attached("csd:csd_queue_cpu").unwrap_or(f5);
        let csd_entry_traced = attached("csd:csd_function_entry").unwrap_or(f5)
            || attached("rps_trigger_softirq").unwrap_or(false);
        let via_kprobe = !attached("csd:csd_function_entry").unwrap_or(f5)
            && attached("rps_trigger_softirq").unwrap_or(false);
        let old = meta
            .get("kernel_release")
            .and_then(crate::mode::major_minor)
            .is_some_and(|v| v < (6, 7));
        Ctx {
            ix,
            meta,
            mode,
            features,
            csd_queue_traced,
            csd_entry_traced,
            entry_misses_uncounted: via_kprobe && old,
            rps_sym: ix.c.strs.lookup(RPS_IPI_FUNC),
        }
    }

    fn secs(ts: u64) -> String {
        format!("{:.6} s", ts as f64 / 1e9)
    }

    fn mode_name(&self) -> &'static str {
        self.mode.map_or("?", Mode::as_str)
    }

    /// The batch's initiating delivery, when the enqueue is in the trace.
    fn init<'c>(&'c self, b: &Batch) -> Option<&'c super::index::Delivery> {
        b.init.get().map(|i| &self.ix.deliveries[i as usize])
    }

    fn batch_events(&self, b: &Batch) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = self.init(b) {
            v.push(describe(self.ix.ev(d.enq)));
            v.push(describe(self.ix.ev(d.rcv)));
        }
        for p in self.ix.batch_polls(b).iter().take(3) {
            v.push(describe(self.ix.ev(self.ix.polls[*p as usize].ev)));
        }
        v
    }

    /// The kernel skipped (recursion guard) some receive or poll events, which carry no
    /// time or CPU: a batch's first delivery may be missing, and a later skb then stands as
    /// its initiator. What such an initiator seems to lack (its IPI, raise or wake-up came
    /// before its own enqueue) is then INCONCLUSIVE, not a divergence.
    fn initiator_unsure(&self) -> bool {
        self.ix.missed(EventKind::NetifReceiveSkb)
            || self.ix.missed(EventKind::NapiPoll)
            || self.ix.missed(EventKind::NetifRx)
    }

    /// Complete batches with a traced initiator, split by origin.
    fn initiated(&self) -> impl Iterator<Item = (&Batch, &super::index::Delivery)> {
        self.ix
            .batches
            .iter()
            .filter(|b| b.complete)
            .filter_map(|b| self.init(b).map(|d| (b, d)))
    }

    /// Is the event's function the RPS IPI's? Compared by interned id: the rules ask
    /// this of every csd event they walk.
    fn is_rps(&self, e: E) -> bool {
        self.rps_sym.is_some() && e.func_sym() == self.rps_sym
    }
}

pub fn common(c: &Ctx) -> Vec<RuleResult> {
    vec![g1(c), g2(c), g3(c), g4(c), g5(c), g6(c), g7(c)]
}

pub fn mode_ab(c: &Ctx) -> Vec<RuleResult> {
    vec![a1(c), a2(c), a3(c), a4(c), a5(c), a6(c), a7(c), a8(c)]
}

pub fn mode_c(c: &Ctx) -> Vec<RuleResult> {
    vec![
        c1(c),
        c2(c),
        c3(c),
        c4(c),
        c5(c),
        c6(c),
        c7(c),
        c8(c),
        c9(c),
        c10(c),
        c11(c),
    ]
}

fn g1(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("G1", "a backlog NAPI is polled only on its own CPU");
    let mut owner: FastMap<u64, u32> = FastMap::default();
    for p in &c.ix.polls {
        let e = c.ix.ev(p.ev);
        let Some(napi) = e.napi() else {
            r.unsure();
            continue;
        };
        match owner.get(&napi) {
            Some(cpu) if *cpu != p.cpu => r.fail(Divergence {
                rule: "G1",
                cpu: p.cpu,
                ts_ns: p.ts,
                message: format!(
                    "the backlog NAPI first polled on CPU {cpu} was polled on CPU {} at {}",
                    p.cpu,
                    Ctx::secs(p.ts)
                ),
                expected: format!("every poll of CPU {cpu}'s backlog runs on CPU {cpu}"),
                events: vec![describe(e)],
            }),
            Some(_) => r.pass(),
            None => {
                owner.insert(napi, p.cpu);
                r.pass();
            }
        }
    }
    // Direct evidence where the kprobe exists: process_backlog itself ran on that CPU.
    for e in c.ix.all(EventKind::ProcessBacklog) {
        let Some(napi) = e.napi() else { continue };
        match owner.get(&napi) {
            Some(cpu) if *cpu != e.cpu() => {
                if c.ix.in_hotplug(e.ts_ns()) {
                    r.unsure(); // model.md §8.2: a first onlining may poll cross-CPU
                    continue;
                }
                r.fail(Divergence {
                    rule: "G1",
                    cpu: e.cpu(),
                    ts_ns: e.ts_ns(),
                    message: format!(
                        "process_backlog ran for CPU {cpu}'s backlog on CPU {}",
                        e.cpu()
                    ),
                    expected: format!("CPU {cpu}'s backlog is processed on CPU {cpu}"),
                    events: vec![describe(e)],
                })
            }
            Some(_) => r.pass(),
            None => {}
        }
    }
    r.finish()
}

fn g2(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("G2", "backlog poll bounds: 0 ≤ work ≤ budget");
    for p in &c.ix.polls {
        if p.work < 0 || p.work > p.budget {
            r.fail(Divergence {
                rule: "G2",
                cpu: p.cpu,
                ts_ns: p.ts,
                message: format!("backlog poll did work {} with budget {}", p.work, p.budget),
                expected: "process_backlog returns at most its quota".into(),
                events: vec![describe(c.ix.ev(p.ev))],
            });
        } else {
            r.pass();
        }
    }
    r.finish()
}

fn g3(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "G3",
        "all polls of one batch run in one class (softirq or thread)",
    );
    for b in c.ix.batches.iter().filter(|b| b.complete) {
        if b.class != Class::Mixed {
            r.pass();
        } else if c.ix.blind(
            b.cpu,
            c.ix.first_poll_ts(b),
            c.ix.polls[*c.ix.batch_polls(b).last().unwrap() as usize].ts,
        ) {
            r.unsure();
        } else {
            r.fail(Divergence {
                rule: "G3",
                cpu: b.cpu,
                ts_ns: c.ix.first_poll_ts(b),
                message: format!(
                    "a backlog batch on CPU {} moved between softirq and thread context",
                    b.cpu
                ),
                expected:
                    "the owner of SCHED (softirq, or SCHED_THREADED thread) polls the whole batch"
                        .into(),
                events: c.batch_events(b),
            });
        }
    }
    r.finish()
}

fn g4(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "G4",
        "a backlog-delivered skb is received on its RPS target CPU",
    );
    // Direct evidence: the function probe on enqueue_to_backlog records the CPU RPS chose.
    // The index paired each delivery with its skb's latest enqueue in between (`chosen`).
    if c.ix.all(EventKind::EnqueueToBacklog).next().is_some() {
        for d in &c.ix.deliveries {
            match d.chosen {
                Some(t) if t == d.to as i32 => r.pass(),
                Some(t) => r.fail(Divergence {
                    rule: "G4",
                    cpu: d.to,
                    ts_ns: d.t_rcv,
                    message: format!(
                        "enqueue_to_backlog chose CPU {t} at {}, but the skb was received on CPU {}",
                        Ctx::secs(d.t_enq),
                        d.to
                    ),
                    expected: format!("delivery from CPU {t}'s backlog, on CPU {t}"),
                    events: vec![describe(c.ix.ev(d.enq)), describe(c.ix.ev(d.rcv))],
                }),
                None => r.unsure(),
            }
        }
        return r.note("direct: kprobe enqueue_to_backlog").finish();
    }
    let (Some(dev), Some(cpu)) = (
        c.meta.get("expect_rps_dev"),
        c.meta
            .get("expect_rps_cpu")
            .and_then(|v| v.parse::<u32>().ok()),
    ) else {
        return r
            .note("needs the enqueue_to_backlog function probe, or a known single-CPU rps_cpus map (verify scenarios record one)")
            .finish();
    };
    for d in &c.ix.deliveries {
        let e = c.ix.ev(d.rcv);
        if e.dev() != Some(dev) {
            continue;
        }
        if d.to == cpu {
            r.pass();
        } else {
            r.fail(Divergence {
                rule: "G4",
                cpu: d.to,
                ts_ns: d.t_rcv,
                message: format!("skb on {dev} received on CPU {} ", d.to),
                expected: format!("rps_cpus of {dev} is CPU {cpu} only: receive on CPU {cpu}"),
                events: vec![describe(c.ix.ev(d.enq)), describe(e)],
            });
        }
    }
    r.finish()
}

fn g5(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("G5", "FIFO per (enqueue CPU, target CPU)");
    let mut last: FastMap<(u32, u32), (u64, usize)> = FastMap::default();
    for (i, d) in c.ix.deliveries.iter().enumerate() {
        let key = (d.from, d.to);
        if let Some((t_enq, j)) = last.get(&key) {
            if d.t_enq < *t_enq {
                if c.ix.blind(d.from, d.t_enq, d.t_rcv) || c.ix.blind(d.to, d.t_enq, d.t_rcv) {
                    r.unsure();
                } else {
                    let o = &c.ix.deliveries[*j];
                    r.fail(Divergence {
                        rule: "G5",
                        cpu: d.to,
                        ts_ns: d.t_rcv,
                        message: format!(
                            "CPU {} received skbs from CPU {} out of enqueue order",
                            d.to, d.from
                        ),
                        expected: "the backlog queue is FIFO".into(),
                        events: vec![
                            describe(c.ix.ev(o.enq)),
                            describe(c.ix.ev(d.enq)),
                            describe(c.ix.ev(o.rcv)),
                            describe(c.ix.ev(d.rcv)),
                        ],
                    });
                }
                continue;
            }
        }
        last.insert(key, (d.t_enq, i));
        r.pass();
    }
    r.finish()
}

fn g6(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("G6", "a dropped skb is never received");
    // netif_rx_exit(ret=1) closes the latest netif_rx of the same task on that CPU. Per
    // CPU, the open netif_rx rows by pid: a task or two, so a short list.
    let mut open: PerCpu<Vec<(i32, u32)>> = PerCpu::default();
    let mut dropped: FastMap<u64, E> = FastMap::default();
    let walked = [
        EventKind::NetifRx,
        EventKind::NetifRxExit,
        EventKind::NetifReceiveSkb,
    ];
    for i in c.ix.rows_of(&walked) {
        match c.ix.c.kind[i] {
            EventKind::NetifRx => {
                let e = c.ix.ev(i as u32);
                let tasks = open.entry(e.cpu());
                match tasks.iter_mut().find(|(pid, _)| *pid == e.pid()) {
                    Some(task) => task.1 = i as u32,
                    None => tasks.push((e.pid(), i as u32)),
                }
            }
            EventKind::NetifRxExit => {
                let e = c.ix.ev(i as u32);
                let tasks = open.entry(e.cpu());
                let Some(k) = tasks.iter().position(|(pid, _)| *pid == e.pid()) else {
                    continue;
                };
                let rx = c.ix.ev(tasks.swap_remove(k).1);
                if e.ret() == Some(1) {
                    if let Some(skb) = rx.skb() {
                        dropped.insert(skb, rx);
                    }
                }
            }
            EventKind::NetifReceiveSkb if !dropped.is_empty() => {
                let e = c.ix.ev(i as u32);
                let Some(skb) = e.skb() else { continue };
                if let Some(rx) = dropped.remove(&skb) {
                    if e.ts_ns() - rx.ts_ns() <= crate::paths::MATCH_WINDOW_NS {
                        r.fail(Divergence {
                            rule: "G6",
                            cpu: e.cpu(),
                            ts_ns: e.ts_ns(),
                            message: "an skb whose netif_rx returned NET_RX_DROP was received"
                                .into(),
                            expected: "a dropped skb is freed, never delivered".into(),
                            events: vec![describe(rx), describe(e)],
                        });
                    }
                }
            }
            _ => {}
        }
    }
    r.passed = dropped.len() as u64;
    r = r.note(format!("{} drop(s) followed", dropped.len()));
    if r.failed == 0 && r.passed == 0 {
        r.verdict = super::Verdict::Inconclusive;
        return r;
    }
    r.finish()
}

fn g7(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("G7", "every backlog batch has a cause");
    let mut ipis = c.ix.finder(EventKind::CsdFunctionEntry);
    for b in c.ix.batches.iter().filter(|b| b.complete) {
        let t = c.ix.first_poll_ts(b);
        let explained = c.init(b).is_some()
            || ipis
                .find(b.cpu, t.saturating_sub(1_000_000_000), t)
                .any(|e| c.is_rps(e))
            || c.ix.thread_woken(b.cpu, t.saturating_sub(1_000_000_000), t);
        if explained {
            r.pass();
        } else {
            // Trace start, lost events, or enqueues this version does not trace
            // (netif_receive_skb_entry from NAPI drivers with RPS).
            r.unsure();
        }
    }
    r.note("batches without a traced cause are inconclusive, not failures")
        .finish()
}

// ---------------------------------------------------------------- modes A / B

fn a1(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("A-1", "no backlog_napi/* task ever appears");
    let mut seen = 0u64;
    // Most traces have none: the interned names say so in one pass over two columns, and
    // the rows are walked (a presence-bit rank per row) only to report them.
    let cols = &c.ix.c;
    let any = (cols.comm.iter())
        .chain(cols.target_comm.values())
        .any(|s| cols.strs.thread(*s).is_some());
    for e in c.ix.iter().take(if any { usize::MAX } else { 0 }) {
        let thread = e.comm_thread().is_some() || e.target_thread().is_some();
        if thread {
            seen += 1;
            r.fail(Divergence {
                rule: "A-1",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!("mode {}: a backlog_napi thread appears", c.mode_name()),
                expected: "no backlog_napi/N threads without thread_backlog_napi or PREEMPT_RT"
                    .into(),
                events: vec![describe(e)],
            });
        }
    }
    if let Some(t) = c.meta.get("backlog_threads").filter(|t| t.len() > 2) {
        r.fail(Divergence {
            rule: "A-1",
            cpu: 0,
            ts_ns: 0,
            message: format!("the recording host runs backlog threads: {t}"),
            expected: "none in mode A/B".into(),
            events: vec![],
        });
    }
    if seen == 0 && r.failed == 0 {
        r.passed = c.ix.len() as u64;
    }
    r.finish()
}

fn a2(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("A-2", "every backlog poll runs in softirq context");
    for p in &c.ix.polls {
        if p.class == Class::Softirq {
            r.pass();
        } else if c.ix.ctx_unsure() && p.class == Class::Other {
            r.unsure();
        } else {
            let e = c.ix.ev(p.ev);
            r.fail(Divergence {
                rule: "A-2",
                cpu: p.cpu,
                ts_ns: p.ts,
                message: format!(
                    "mode {}: backlog of CPU {} polled in {} context by {}",
                    c.mode_name(),
                    p.cpu,
                    e.ctx().name(),
                    e.comm()
                ),
                expected: "the NET_RX softirq polls the backlog (irq exit, bh-enable or ksoftirqd)"
                    .into(),
                events: vec![describe(e)],
            });
        }
    }
    r.finish()
}

fn a3(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("A-3", "a remote batch is started by an RPS IPI");
    if !c.csd_entry_traced {
        return r
            .note("the RPS IPI is not recorded: csd tracepoints absent (kernel < 6.4) and no kprobe on rps_trigger_softirq")
            .finish();
    }
    if !c.csd_queue_traced {
        r.note = Some(
            "csd_queue_cpu not traced (kernel < 6.4): only the IPI's arrival (kprobe rps_trigger_softirq) is checked"
                .into(),
        );
    }
    let mut queues = c.ix.finder(EventKind::CsdQueueCpu);
    let mut entries = c.ix.finder(EventKind::CsdFunctionEntry);
    for (b, d) in c.initiated().filter(|(b, d)| d.from != b.cpu) {
        let t1 = c.ix.first_poll_ts(b);
        // The sender queues the IPI: its CPU first, the others only when it did not.
        let mut queued_on = |cpu: u32| {
            queues
                .find(cpu, d.t_enq, t1)
                .any(|e| c.is_rps(e) && e.target_cpu() == Some(b.cpu as i32))
        };
        let queued = !c.csd_queue_traced
            || queued_on(d.from)
            || c.ix
                .cpus()
                .iter()
                .copied()
                .any(|cpu| cpu != d.from && queued_on(cpu));
        let entered = entries.find(b.cpu, d.t_enq, t1).any(|e| c.is_rps(e));
        if queued && entered {
            r.pass();
        } else if c.ix.blind(d.from, d.t_enq, t1)
            || c.ix.blind(b.cpu, d.t_enq, t1)
            || (!queued && c.ix.missed(EventKind::CsdQueueCpu))
            || (!entered && (c.ix.missed(EventKind::CsdFunctionEntry) || c.entry_misses_uncounted))
            || c.initiator_unsure()
        {
            r.unsure();
        } else {
            r.fail(Divergence {
                rule: "A-3",
                cpu: b.cpu,
                ts_ns: d.t_enq,
                message: format!(
                    "mode {}: enqueue on CPU {} to CPU {} at {} was processed by CPU {}'s {} without {}",
                    c.mode_name(),
                    d.from,
                    b.cpu,
                    Ctx::secs(d.t_enq),
                    b.cpu,
                    b.class.name(),
                    match (queued, entered) {
                        (false, false) => "an RPS IPI",
                        (false, true) => "a csd_queue_cpu(rps_trigger_softirq) to it",
                        _ => "rps_trigger_softirq running on it",
                    }
                ),
                expected: format!(
                    "napi_schedule_rps queues CPU {} on CPU {}'s rps_ipi_list; net_rps_action sends csd rps_trigger_softirq, which runs on CPU {} before the first poll",
                    b.cpu, d.from, b.cpu
                ),
                events: c.batch_events(b),
            });
        }
    }
    r.finish()
}

fn a4(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "A-4",
        "RPS IPIs and backlog batches alternate on the target",
    );
    if !c.csd_entry_traced {
        return r.note("csd tracepoints not recorded").finish();
    }
    for &cpu in c.ix.cpus() {
        let ipis: Vec<u64> =
            c.ix.find(cpu, EventKind::CsdFunctionEntry, 0, u64::MAX)
                .filter(|e| c.is_rps(*e))
                .map(|e| e.ts_ns())
                .collect();
        // The IPIs come in time order, so two cursors into the CPU's polls (first poll
        // after w[0], first after w[1]) only move forward.
        let polls: Vec<&super::index::Poll> = c.ix.polls_in(cpu, 0, u64::MAX).collect();
        let (mut after0, mut after1) = (0, 0);
        for w in ipis.windows(2) {
            while polls.get(after0).is_some_and(|p| p.ts < w[0] + 1) {
                after0 += 1;
            }
            while polls.get(after1).is_some_and(|p| p.ts < w[1] + 1) {
                after1 += 1;
            }
            // Tolerate the completion event landing just after the next IPI (§11 A-4).
            let next_poll = polls.get(after1).map_or(w[1], |p| p.ts);
            let completed = polls[after0..]
                .iter()
                .take_while(|p| p.ts <= next_poll)
                .any(|p| p.work < p.budget);
            if completed {
                r.pass();
            } else if c.ix.blind(cpu, w[0], next_poll) || c.ix.missed(EventKind::NapiPoll) {
                r.unsure();
            } else {
                r.fail(Divergence {
                    rule: "A-4",
                    cpu,
                    ts_ns: w[1],
                    message: format!(
                        "two RPS IPIs ran on CPU {cpu} ({} and {}) with no backlog batch completing between them",
                        Ctx::secs(w[0]),
                        Ctx::secs(w[1])
                    ),
                    expected: "SCHED stays set until the batch completes, so no second IPI before that"
                        .into(),
                    events: vec![],
                });
            }
        }
    }
    r.finish()
}

fn a5(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("A-5", "a local batch has no RPS IPI");
    let mut entries = c.ix.finder(EventKind::CsdFunctionEntry);
    for (b, d) in c.initiated().filter(|(b, d)| d.from == b.cpu) {
        let t1 = c.ix.first_poll_ts(b);
        let ipi = entries.find(b.cpu, d.t_enq, t1).find(|e| c.is_rps(*e));
        match ipi {
            None => r.pass(),
            Some(_) if c.ix.blind(b.cpu, d.t_enq, t1) || c.initiator_unsure() => r.unsure(),
            Some(e) => r.fail(Divergence {
                rule: "A-5",
                cpu: b.cpu,
                ts_ns: e.ts_ns(),
                message: format!(
                    "local enqueue on CPU {} at {} was followed by an RPS IPI on the same CPU",
                    b.cpu,
                    Ctx::secs(d.t_enq)
                ),
                expected: "a local enqueue schedules the backlog with ____napi_schedule and raises NET_RX; no IPI".into(),
                events: vec![describe(c.ix.ev(d.enq)), describe(e)],
            }),
        }
    }
    r.finish()
}

fn a6(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "A-6",
        "RPS IPIs are sent from NET_RX, a napi thread or hotplug",
    );
    for e in c.ix.all(EventKind::CsdQueueCpu) {
        if !c.is_rps(e) {
            continue;
        }
        if e.ctx() == ExecCtx::Softirq
            || e.comm().starts_with("napi/")
            || e.comm().starts_with("cpuhp/")
        {
            r.pass();
        } else {
            r.fail(Divergence {
                rule: "A-6",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!("RPS IPI queued in {} context by {}", e.ctx().name(), e.comm()),
                expected: "net_rps_action_and_irq_enable runs at the end of net_rx_action or process_backlog (softirq)".into(),
                events: vec![describe(e)],
            });
        }
    }
    r.finish()
}

/// What A-7 and C-7 look up around an enqueue: netif_rx_exit and softirq_raise events.
struct EnqueueCalls<'a> {
    exits: Finder<'a>,
    raises: Finder<'a>,
}

impl<'a> EnqueueCalls<'a> {
    fn new(c: &Ctx<'a>) -> EnqueueCalls<'a> {
        EnqueueCalls {
            exits: c.ix.finder(EventKind::NetifRxExit),
            raises: c.ix.finder(EventKind::SoftirqRaise),
        }
    }

    /// The netif_rx_exit that closes an enqueue (same CPU and task).
    fn end(&mut self, c: &Ctx, enq: u32) -> u64 {
        let e = c.ix.ev(enq);
        self.exits
            .find(e.cpu(), e.ts_ns(), e.ts_ns() + 1_000_000)
            .find(|x| x.pid() == e.pid())
            .map_or(e.ts_ns() + 100_000, |x| x.ts_ns())
    }

    fn raised(&mut self, cpu: u32, t0: u64, t1: u64) -> bool {
        self.raises
            .find(cpu, t0, t1)
            .any(|e| e.vec() == Some(NET_RX_SOFTIRQ))
    }
}

fn a7(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "A-7",
        "a remote-initiating enqueue raises NET_RX on the sender (soft)",
    );
    let mut calls = EnqueueCalls::new(c);
    for (b, d) in c.initiated().filter(|(b, d)| d.from != b.cpu) {
        let enq = c.ix.ev(d.enq);
        if c.features.f2_rps_raise_suppression && enq.ctx() == ExecCtx::Softirq {
            continue; // F2: no raise from inside NET_RX
        }
        let end = calls.end(c, d.enq);
        if calls.raised(d.from, d.t_enq, end) {
            r.pass();
        } else if c.ix.blind(d.from, d.t_enq, end)
            || c.ix.missed(EventKind::SoftirqRaise)
            || c.initiator_unsure()
        {
            r.unsure();
        } else {
            r.warn(Divergence {
                rule: "A-7",
                cpu: d.from,
                ts_ns: d.t_enq,
                message: format!("no NET_RX raise on CPU {} for its remote enqueue", d.from),
                expected: "napi_schedule_rps raises NET_RX on the enqueuing CPU to send the IPI"
                    .into(),
                events: c.batch_events(b),
            });
        }
    }
    r.finish()
}

fn a8(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "A-8",
        "no backlog-thread wake-ups; received_rps grows with RPS traffic",
    );
    for e in c.ix.all(EventKind::SchedWaking) {
        if e.target_thread().is_some() {
            r.fail(Divergence {
                rule: "A-8",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: "a backlog_napi thread was woken".into(),
                expected: "mode A/B has no backlog threads to wake".into(),
                events: vec![describe(e)],
            });
        } else {
            r.pass();
        }
    }
    let remote = c.initiated().filter(|(b, d)| d.from != b.cpu).count();
    if let Some(delta) = c
        .meta
        .get("softnet_received_rps_delta")
        .and_then(|v| v.parse::<u64>().ok())
    {
        if remote > 0 && delta == 0 {
            r.fail(Divergence {
                rule: "A-8",
                cpu: 0,
                ts_ns: 0,
                message: format!(
                    "{remote} remote batches, but /proc/net/softnet_stat received_rps did not grow"
                ),
                expected: "rps_trigger_softirq counts every RPS IPI in received_rps".into(),
                events: vec![],
            });
        } else {
            r.pass();
        }
    }
    r.finish()
}

// ---------------------------------------------------------------- mode C

fn c1(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "C-1",
        "one backlog_napi/N per online CPU, running only on CPU N",
    );
    if let Some(threads) = c
        .meta
        .get("backlog_threads")
        .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
    {
        let online: Vec<u32> = c
            .meta
            .get("cpus_online")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        for cpu in online {
            if threads.contains(&backlog_thread_comm(cpu as usize)) {
                r.pass();
            } else {
                r.fail(Divergence {
                    rule: "C-1",
                    cpu,
                    ts_ns: 0,
                    message: format!("mode C: no backlog_napi/{cpu} thread on the recording host"),
                    expected: "smpboot creates backlog_napi/N for every online CPU".into(),
                    events: vec![],
                });
            }
        }
    }
    // Direct evidence where the kprobe exists: run_backlog_napi(cpu) runs on that cpu.
    for e in c.ix.all(EventKind::RunBacklogNapi) {
        match e.target_cpu() {
            Some(n) if n as u32 != e.cpu() => r.fail(Divergence {
                rule: "C-1",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!("run_backlog_napi({n}) ran on CPU {}", e.cpu()),
                expected: format!("backlog_napi/{n} is bound to CPU {n}"),
                events: vec![describe(e)],
            }),
            Some(_) => r.pass(),
            None => r.unsure(),
        }
    }
    for e in c.ix.all(EventKind::SchedSwitch) {
        let prev = e.comm_thread();
        let next = e.target_thread();
        for n in [prev, next].into_iter().flatten() {
            if n < 100 && n != e.cpu() {
                r.fail(Divergence {
                    rule: "C-1",
                    cpu: e.cpu(),
                    ts_ns: e.ts_ns(),
                    message: format!("backlog_napi/{n} ran on CPU {}", e.cpu()),
                    expected: format!("backlog_napi/{n} is bound to CPU {n}"),
                    events: vec![describe(e)],
                });
            } else {
                r.pass();
            }
        }
    }
    r.finish()
}

fn c2(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-2", "no RPS IPI (csd rps_trigger_softirq) at all");
    if !c.csd_entry_traced && !c.csd_queue_traced {
        return r.note("csd tracepoints not recorded").finish();
    }
    let mut n = 0u64;
    let csd = [EventKind::CsdQueueCpu, EventKind::CsdFunctionEntry];
    for e in c.ix.rows_of(&csd).map(|i| c.ix.ev(i as u32)) {
        n += 1;
        let bad = c.is_rps(e)
            || (c.features.f6_defer_kick_backlog && e.func() == Some("trigger_rx_softirq"));
        if bad {
            r.fail(Divergence {
                rule: "C-2",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!(
                    "mode C: {} with func {} on CPU {}",
                    e.event().name(),
                    e.func().unwrap_or("?"),
                    e.cpu()
                ),
                expected: "with threads on, remote work wakes backlog_napi/<cpu>; rps_ipi_list is never used".into(),
                events: vec![describe(e)],
            });
        }
    }
    if r.failed == 0 {
        r.passed = n.max(1);
    }
    r.finish()
}

fn class_rule(c: &Ctx, id: &'static str, remote: bool) -> RuleResult {
    let (title, want) = if remote {
        (
            "a remote batch runs in the target's backlog thread",
            Class::Thread,
        )
    } else {
        ("a local batch runs in the local softirq", Class::Softirq)
    };
    let mut r = RuleResult::new(id, title);
    for (b, d) in c.initiated().filter(|(b, d)| (d.from != b.cpu) == remote) {
        // C-4: a local batch may run in softirq inside backlog_napi/T (its bh-enable): the
        // class is by softirq context, not comm; only "thread" is wrong.
        let ok = if remote {
            b.class == want
        } else {
            b.class != Class::Thread
        };
        if ok {
            r.pass();
        } else if b.first_on_cpu
            || b.class == Class::Mixed
            || c.ix.ctx_unsure()
            || c.initiator_unsure()
        {
            r.unsure();
        } else {
            r.fail(Divergence {
                rule: id,
                cpu: b.cpu,
                ts_ns: d.t_enq,
                message: if remote {
                    format!(
                        "mode C: enqueue on CPU {} to CPU {} at {} was processed by {}",
                        d.from,
                        b.cpu,
                        Ctx::secs(d.t_enq),
                        match b.class {
                            Class::Softirq => format!("CPU {}'s NET_RX softirq", b.cpu),
                            k => k.name().to_string(),
                        }
                    )
                } else {
                    format!(
                        "mode C: local enqueue on CPU {} at {} was processed by the backlog thread",
                        b.cpu,
                        Ctx::secs(d.t_enq)
                    )
                },
                expected: if remote {
                    format!(
                        "a wake-up of backlog_napi/{} and the batch polled in that thread (napi_schedule_rps → ____napi_schedule → wake_up_process)",
                        b.cpu
                    )
                } else {
                    "use_local_napi: the local NET_RX softirq polls it; no thread wake-up".into()
                },
                events: c.batch_events(b),
            });
        }
    }
    r.finish()
}

fn c3(c: &Ctx) -> RuleResult {
    class_rule(c, "C-3", true)
}

fn c4(c: &Ctx) -> RuleResult {
    class_rule(c, "C-4", false)
}

fn c5(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-5", "backlog-thread wake-ups come from other CPUs");
    for e in c.ix.all(EventKind::SchedWaking) {
        let Some(t) = e.target_thread() else {
            continue;
        };
        if e.cpu() != t || e.comm().starts_with("cpuhp/") {
            r.pass();
        } else if e.ctx() == ExecCtx::Task {
            r.unsure(); // kick_defer_list_purge preemption race (§11 C-5)
        } else {
            r.fail(Divergence {
                rule: "C-5",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!("backlog_napi/{t} was woken from its own CPU in {} context", e.ctx().name()),
                expected: "a local enqueue takes use_local_napi (softirq); only remote CPUs wake the thread".into(),
                events: vec![describe(e)],
            });
        }
    }
    r.finish()
}

fn c6(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new(
        "C-6",
        "a remote batch is announced by a wake-up (or the thread was awake)",
    );
    for (b, d) in c.initiated().filter(|(b, d)| d.from != b.cpu) {
        let t1 = c.ix.first_poll_ts(b);
        if c.ix.thread_woken(b.cpu, d.t_enq, t1) {
            r.pass();
            continue;
        }
        match c.ix.thread_awake_at(b.cpu, d.t_enq) {
            Some(true) => r.pass(),
            None => r.unsure(),
            Some(false)
                if c.ix.blind(b.cpu, d.t_enq, t1)
                    || c.ix.blind(d.from, d.t_enq, t1)
                    || c.ix.missed(EventKind::SchedWaking)
                    || c.initiator_unsure() =>
            {
                r.unsure()
            }
            Some(false) => {
                // Named only here: a format per batch was 5% of a mode C check.
                let name = backlog_thread_comm(b.cpu as usize);
                r.fail(Divergence {
                    rule: "C-6",
                    cpu: b.cpu,
                    ts_ns: d.t_enq,
                    message: format!(
                        "mode C: enqueue on CPU {} to CPU {} at {} found {name} asleep, and no sched_waking followed",
                        d.from,
                        b.cpu,
                        Ctx::secs(d.t_enq)
                    ),
                    expected: format!("sched_waking of {name} on CPU {} before the first poll", d.from),
                    events: c.batch_events(b),
                })
            }
        }
    }
    r.finish()
}

fn c7(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-7", "no NET_RX raise on the sender for a remote enqueue");
    let mut raised = 0u64;
    let mut total = 0u64;
    let mut example = None;
    let mut calls = EnqueueCalls::new(c);
    for (b, d) in c.initiated().filter(|(b, d)| d.from != b.cpu) {
        total += 1;
        let end = calls.end(c, d.enq);
        if calls.raised(d.from, d.t_enq, end) {
            raised += 1;
            example.get_or_insert_with(|| (b.clone(), d.clone()));
        }
    }
    if total == 0 {
        return r.finish();
    }
    if raised * 2 >= total && total >= 10 {
        let (b, d) = example.unwrap();
        r.fail(Divergence {
            rule: "C-7",
            cpu: d.from,
            ts_ns: d.t_enq,
            message: format!("{raised} of {total} remote enqueues raised NET_RX on the sender"),
            expected: "napi_schedule_rps with threads on wakes the target thread and raises nothing locally".into(),
            events: c.batch_events(&b),
        });
    } else {
        r.passed = total - raised;
        r.inconclusive = raised;
    }
    r.note(format!(
        "{raised} of {total} remote enqueues raised NET_RX on the sender"
    ))
    .finish()
}

fn c8(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-8", "a backlog-thread run polls its backlog");
    // Names compare by interned id (one per sched_switch otherwise).
    let sleeping = c.ix.c.strs.lookup("S");
    for &cpu in c.ix.cpus() {
        let name = backlog_thread_comm(cpu as usize);
        let name_sym = c.ix.c.strs.lookup(&name);
        let mut run_start: Option<u64> = None;
        let mut first = true;
        // Runs come in time order: a cursor to the first poll at or after the run's start.
        let polls: Vec<&super::index::Poll> = c.ix.polls_in(cpu, 0, u64::MAX).collect();
        let mut from = 0;
        for e in c.ix.find(cpu, EventKind::SchedSwitch, 0, u64::MAX) {
            if name_sym.is_some() && e.target_comm_sym() == name_sym {
                run_start.get_or_insert(e.ts_ns());
            } else if name_sym.is_some()
                && Some(e.comm_sym()) == name_sym
                && sleeping.is_some()
                && e.prev_state_sym() == sleeping
            {
                let Some(t0) = run_start.take() else {
                    first = false;
                    continue;
                };
                while polls.get(from).is_some_and(|p| p.ts < t0) {
                    from += 1;
                }
                let polled = polls[from..]
                    .iter()
                    .take_while(|p| p.ts <= e.ts_ns())
                    .any(|p| p.class == Class::Thread);
                if polled {
                    r.pass();
                } else if first
                    || c.ix.blind(cpu, t0, e.ts_ns())
                    || c.ix.missed(EventKind::NapiPoll)
                {
                    r.unsure();
                } else {
                    r.fail(Divergence {
                        rule: "C-8",
                        cpu,
                        ts_ns: t0,
                        message: format!(
                            "{name} ran from {} to {} without polling",
                            Ctx::secs(t0),
                            Ctx::secs(e.ts_ns())
                        ),
                        expected: "the thread runs only while SCHED_THREADED is set, and polls"
                            .into(),
                        events: vec![describe(e)],
                    });
                }
                first = false;
            }
        }
    }
    r.finish()
}

fn c9(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-9", "a backlog thread polls only its own backlog");
    let mut owner: FastMap<u64, u32> = FastMap::default();
    for p in &c.ix.polls {
        if let Some(n) = c.ix.ev(p.ev).napi() {
            owner.entry(n).or_insert(p.cpu);
        }
    }
    for e in c.ix.all(EventKind::NapiPoll) {
        let Some(t) = e.comm_thread() else {
            continue;
        };
        if e.ctx() == ExecCtx::Softirq {
            continue; // softirq at the thread's bh-enable
        }
        let own = e.is_backlog_poll() && e.napi().and_then(|n| owner.get(&n)) == Some(&t);
        if own {
            r.pass();
        } else {
            r.fail(Divergence {
                rule: "C-9",
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!("backlog_napi/{t} polled another NAPI"),
                expected: format!("run_backlog_napi polls only CPU {t}'s backlog"),
                events: vec![describe(e)],
            });
        }
    }
    r.finish()
}

fn c10(_c: &Ctx) -> RuleResult {
    RuleResult::new("C-10", "no RPS-attributable ksoftirqd wake-ups (soft)")
        .note("not evaluated: needs a controlled baseline run (verify compares scenarios)")
        .finish()
}

fn c11(c: &Ctx) -> RuleResult {
    let mut r = RuleResult::new("C-11", "received_rps never grows");
    match c
        .meta
        .get("softnet_received_rps_delta")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => r.pass(),
        Some(n) => r.fail(Divergence {
            rule: "C-11",
            cpu: 0,
            ts_ns: 0,
            message: format!(
                "/proc/net/softnet_stat received_rps grew by {n} during the recording"
            ),
            expected: "only rps_trigger_softirq counts received_rps, and mode C never sends it"
                .into(),
            events: vec![],
        }),
        None => {
            return r
                .note("needs /proc/net/softnet_stat before/after (recorded by verify)")
                .finish()
        }
    }
    r.finish()
}
