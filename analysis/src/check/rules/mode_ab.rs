//! The rules of modes A and B (docs/model.md §11 "Mode A / B"): A-1…A-8. Their ids, titles
//! and the kernel code they stand on are in the table in `mod.rs`.

use super::{Ctx, EnqueueCalls};
use crate::{
    check::{
        describe,
        index::{Class, Poll},
        Divergence, RuleResult,
    },
    event::{Ctx as ExecCtx, EventKind, NAPI_THREAD_PREFIX},
    paths::Via,
};

pub(super) fn a1(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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
            rule: r.id,
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

pub(super) fn a2(c: &Ctx, mut r: RuleResult) -> RuleResult {
    for p in &c.ix.polls {
        if p.class == Class::Softirq {
            r.pass();
        } else if c.ix.ctx_unsure() && p.class == Class::Other {
            r.unsure();
        } else {
            let e = c.ix.ev(p.ev);
            r.fail(Divergence {
                rule: r.id,
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

pub(super) fn a3(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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

pub(super) fn a4(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
        let polls: Vec<&Poll> = c.ix.polls_in(cpu, 0, u64::MAX).collect();
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
                    rule: r.id,
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

pub(super) fn a5(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut entries = c.ix.finder(EventKind::CsdFunctionEntry);
    for (b, d) in c.initiated().filter(|(b, d)| d.from == b.cpu) {
        let t1 = c.ix.first_poll_ts(b);
        let ipi = entries.find(b.cpu, d.t_enq, t1).find(|e| c.is_rps(*e));
        // A device-side entry is not the enqueue: enqueue_to_backlog runs later in that
        // poll (after GRO, whose merges also make the skb pairing lossy, model.md §8.4), so
        // an IPI in between may belong to a remote enqueue that came first.
        let device = c.ix.via(d) == Via::Device;
        match ipi {
            None => r.pass(),
            Some(_) if c.ix.blind(b.cpu, d.t_enq, t1) || c.initiator_unsure() || device => {
                r.unsure()
            }
            Some(e) => r.fail(Divergence {
                rule: r.id,
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

pub(super) fn a6(c: &Ctx, mut r: RuleResult) -> RuleResult {
    for e in c.ix.all(EventKind::CsdQueueCpu) {
        if !c.is_rps(e) {
            continue;
        }
        if e.ctx() == ExecCtx::Softirq
            || e.comm().starts_with(NAPI_THREAD_PREFIX)
            || e.comm().starts_with("cpuhp/")
        {
            r.pass();
        } else {
            r.fail(Divergence {
                rule: r.id,
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

pub(super) fn a7(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut calls = EnqueueCalls::new(c);
    // Only netif_rx's own call is spanned (to its netif_rx_exit): a device poll's enqueue
    // is somewhere inside the poll, where other work may raise NET_RX.
    for (b, d) in c
        .initiated()
        .filter(|(b, d)| d.from != b.cpu && c.ix.via(d) == Via::NetifRx)
    {
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
                rule: r.id,
                cpu: d.from,
                ts_ns: d.t_enq,
                message: format!("no NET_RX raise on CPU {} for its remote enqueue", d.from),
                expected: "napi_schedule_rps raises NET_RX on the enqueuing CPU to send the IPI"
                    .into(),
                events: c.batch_events(b),
            });
        }
    }
    let device = c
        .initiated()
        .filter(|(b, d)| d.from != b.cpu && c.ix.via(d) == Via::Device)
        .count();
    if device > 0 {
        r = r.note(format!(
            "{device} batch(es) steered from a device poll not checked (its enqueue is not seen)"
        ));
    }
    r.finish()
}

pub(super) fn a8(c: &Ctx, mut r: RuleResult) -> RuleResult {
    for e in c.ix.all(EventKind::SchedWaking) {
        if e.target_thread().is_some() {
            r.fail(Divergence {
                rule: r.id,
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
                rule: r.id,
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
