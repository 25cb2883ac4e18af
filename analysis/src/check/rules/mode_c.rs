//! The rules of mode C (docs/model.md §11 "Mode C"): C-1…C-11. Their ids, titles and the
//! kernel code they stand on are in the table in `mod.rs`.

use super::{Ctx, EnqueueCalls};
use crate::{
    check::{
        describe,
        index::{Batch, Class, Delivery, Poll},
        Divergence, RuleResult,
    },
    event::{Ctx as ExecCtx, EventKind},
    model::backlog_thread_comm,
    paths::Via,
    trace::{cols::E, fastmap::FastMap},
};

pub(super) fn c1(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                    rule: r.id,
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
                rule: r.id,
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
        // The thread switched from, then the one switched to. Two ifs, not a loop over
        // [prev, next]: LLVM vectorized that loop into 10× the instructions.
        if let Some(n) = e.comm_thread() {
            bound(&mut r, e, n);
        }
        if let Some(n) = e.target_thread() {
            bound(&mut r, e, n);
        }
    }
    r.finish()
}

/// C-1 for one sched_switch: backlog_napi/n (n < 100: longer names are truncated) runs on
/// CPU n.
fn bound(r: &mut RuleResult, e: E, n: u32) {
    if n < 100 && n != e.cpu() {
        r.fail(Divergence {
            rule: r.id,
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

pub(super) fn c2(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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

/// C-3 and C-4: a batch's class by its initiator's origin (remote: the target's thread;
/// local: the softirq).
fn class_rule(c: &Ctx, mut r: RuleResult, remote: bool) -> RuleResult {
    let want = if remote {
        Class::Thread
    } else {
        Class::Softirq
    };
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
            // C-4: a joined skb is not the batch's initiator.
            || (!remote && joined_thread_batch(c, b, d))
            || b.class == Class::Mixed
            || c.ix.ctx_unsure()
            || c.initiator_unsure()
        {
            r.unsure();
        } else {
            r.fail(Divergence {
                rule: r.id,
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

/// Did the local enqueue `d` join a batch backlog_napi/T already owned? A wake-up of the
/// thread after T's previous poll and before the enqueue means SCHED (and SCHED_THREADED)
/// was set by then, by a defer kick (C7) or a remote enqueue (C3): enqueue_to_backlog only
/// appends, and ____napi_schedule's use_local_napi never runs. The thread then polls it, in
/// the same batch. The batch's first delivery is this skb when the owner brought none (a
/// kick), or when, on PREEMPT_RT ≥ v6.18 (3253cb49cbad: BH sections preemptible, no BKL),
/// a task preempts the thread inside its poll and enqueues. Its initiator is the wake-up.
fn joined_thread_batch(c: &Ctx, b: &Batch, d: &Delivery) -> bool {
    b.class == Class::Thread
        && c.ix
            .prev_poll_ts(b)
            .is_some_and(|t0| c.ix.thread_woken(b.cpu, t0 + 1, d.t_enq))
}

pub(super) fn c3(c: &Ctx, r: RuleResult) -> RuleResult {
    class_rule(c, r, true)
}

pub(super) fn c4(c: &Ctx, r: RuleResult) -> RuleResult {
    class_rule(c, r, false)
}

pub(super) fn c5(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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

pub(super) fn c6(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                    rule: r.id,
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

pub(super) fn c7(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut raised = 0u64;
    let mut total = 0u64;
    let mut example = None;
    let mut calls = EnqueueCalls::new(c);
    // As A-7: only netif_rx's own call is spanned.
    for (b, d) in c
        .initiated()
        .filter(|(b, d)| d.from != b.cpu && c.ix.via(d) == Via::NetifRx)
    {
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
            rule: r.id,
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

pub(super) fn c8(c: &Ctx, mut r: RuleResult) -> RuleResult {
    // Names compare by interned id (one per sched_switch otherwise).
    let sleeping = c.ix.c.strs.lookup("S");
    for &cpu in c.ix.cpus() {
        let name = backlog_thread_comm(cpu as usize);
        let name_sym = c.ix.c.strs.lookup(&name);
        let mut run_start: Option<u64> = None;
        let mut first = true;
        // Runs come in time order: a cursor to the first poll at or after the run's start.
        let polls: Vec<&Poll> = c.ix.polls_in(cpu, 0, u64::MAX).collect();
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
                        rule: r.id,
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

pub(super) fn c9(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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

pub(super) fn c10(_c: &Ctx, r: RuleResult) -> RuleResult {
    r.note("not evaluated: needs a controlled baseline run (verify compares scenarios)")
        .finish()
}

pub(super) fn c11(c: &Ctx, mut r: RuleResult) -> RuleResult {
    match c
        .meta
        .get("softnet_received_rps_delta")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(0) => r.pass(),
        Some(n) => r.fail(Divergence {
            rule: r.id,
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
