//! The rules of every mode (docs/model.md §11 "Common"): G1–G7. Their ids, titles and the
//! kernel code they stand on are in the table in `mod.rs`.

use super::Ctx;
use crate::{
    check::{describe, index::Class, percpu::PerCpu, Divergence, RuleResult, Verdict},
    event::EventKind,
    trace::{cols::E, fastmap::FastMap},
};

pub(super) fn g1(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut owner: FastMap<u64, u32> = FastMap::default();
    for p in &c.ix.polls {
        let e = c.ix.ev(p.ev);
        let Some(napi) = e.napi() else {
            r.unsure();
            continue;
        };
        match owner.get(&napi) {
            Some(cpu) if *cpu != p.cpu => r.fail(Divergence {
                rule: r.id,
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
                    rule: r.id,
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

pub(super) fn g2(c: &Ctx, mut r: RuleResult) -> RuleResult {
    for p in &c.ix.polls {
        if p.work < 0 || p.work > p.budget {
            r.fail(Divergence {
                rule: r.id,
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

pub(super) fn g3(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                rule: r.id,
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

pub(super) fn g4(c: &Ctx, mut r: RuleResult) -> RuleResult {
    // Direct evidence: the function probe on enqueue_to_backlog records the CPU RPS chose.
    // The index paired each delivery with its skb's latest enqueue in between (`chosen`).
    if c.ix.all(EventKind::EnqueueToBacklog).next().is_some() {
        for d in &c.ix.deliveries {
            match d.chosen {
                Some(t) if t == d.to as i32 => r.pass(),
                Some(t) => r.fail(Divergence {
                    rule: r.id,
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
                rule: r.id,
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

pub(super) fn g5(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut last: FastMap<(u32, u32), (u64, usize)> = FastMap::default();
    for (i, d) in c.ix.deliveries.iter().enumerate() {
        // A GRO entry is not the enqueue: napi_gro_complete flushes held skbs by flow
        // (gro_hash bucket), not in arrival order, so the enqueue order is not seen.
        if c.ix.c.kind[d.enq as usize] == EventKind::NapiGroReceiveEntry {
            continue;
        }
        let key = (d.from, d.to);
        if let Some((t_enq, j)) = last.get(&key) {
            if d.t_enq < *t_enq {
                if c.ix.blind(d.from, d.t_enq, d.t_rcv) || c.ix.blind(d.to, d.t_enq, d.t_rcv) {
                    r.unsure();
                } else {
                    let o = &c.ix.deliveries[*j];
                    r.fail(Divergence {
                        rule: r.id,
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

pub(super) fn g6(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
                            rule: r.id,
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
        r.verdict = Verdict::Inconclusive;
        return r;
    }
    r.finish()
}

pub(super) fn g7(c: &Ctx, mut r: RuleResult) -> RuleResult {
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
