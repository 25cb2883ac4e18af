//! `Index::build`: a trace's columns sorted by time, then each structure the rules query, in
//! the order they depend on each other.

use std::collections::HashMap;

use super::{
    layout::{time_order, CpuSlots, Groups},
    lost::lost_windows,
    AwakeStates, Batch, Class, Delivery, DeliveryRef, Index, Poll, IS_FOUND, IS_WALKED, PAIRED,
};
use crate::{
    check::{
        kinds::{self, KindRows, Wanted, KINDS},
        percpu::PerCpu,
    },
    event::{Ctx, EventKind, BACKLOG_DEV},
    paths::{pairs, Via, MATCH_WINDOW_NS},
    trace::{
        cols::{Cols, E},
        fastmap::FastMap,
        seqscan::{self, SeqFacts},
        TraceMeta,
    },
};

impl Index {
    pub fn build(cols: Cols, meta: &TraceMeta) -> Index {
        let (mut c, facts, slot_cpu) = in_time_order(cols);
        let slots = CpuSlots::of_cpus(&slot_cpu);
        let nslots = slot_cpu.len();
        let t_end = c.ts.last().copied().unwrap_or(0);
        let mut split = kinds::split(
            &c.kind,
            &c.cpu,
            &Wanted {
                listed: &IS_WALKED,
                per_cpu: &IS_FOUND,
                slot: &|cpu| slots.of(cpu),
                slots: nslots,
                marked: &PAIRED,
            },
        );
        let (kind_all, by_kind) = (
            std::mem::take(&mut split.rows),
            std::mem::take(&mut split.per_cpu),
        );
        let lost = lost_windows(&c, facts, meta);
        // Nothing reads seq after this: its memory goes back for the index to reuse.
        c.seq = Vec::new();
        let cpuhp: Vec<u32> = kind_all[EventKind::CpuhpEnter as usize]
            .iter()
            .chain(&kind_all[EventKind::CpuhpExit as usize])
            .copied()
            .collect();
        let hotplug = hotplug_windows(&c, &cpuhp);
        let mut cpus = slot_cpu;
        cpus.sort_unstable();
        let observed = meta
            .get("cpu_filter")
            .filter(|f| *f != "all")
            .and_then(|f| serde_json::from_str::<Vec<u32>>(f).ok());

        let deliveries = pair_deliveries(&c, &split);
        let polls = backlog_polls(
            &c,
            &kind_all[EventKind::NapiPoll as usize],
            &deliveries,
            &slots,
            nslots,
        );
        let (thread_wakings, thread_awake) = thread_states(
            &c,
            &kind_all[EventKind::SchedWaking as usize],
            &kind_all[EventKind::SchedSwitch as usize],
        );
        let (cpu_polls, batches) = batches_of(&polls, &slots, nslots);
        let (missed, missed_kind) = missed_of(meta);
        Index {
            c,
            missed_kind,
            thread_wakings,
            thread_awake,
            cpu_polls,
            missed,
            deliveries,
            polls,
            batches,
            lost,
            observed,
            hotplug,
            slots,
            by_kind,
            kind_all,
            cpus,
            t_end,
        }
    }
}

/// The rows in time order, their sequence facts (scanned by the reader, then complete:
/// sorted, or here), and the CPUs with rows in order of first appearance: their slots.
fn in_time_order(mut cols: Cols) -> (Cols, SeqFacts, Vec<u32>) {
    let facts = cols
        .seq_facts
        .take()
        .unwrap_or_else(|| seqscan::scan(&cols.ts, &cols.cpu, &cols.seq));
    let slot_cpu: Vec<u32> = facts.cpus.iter().map(|(cpu, _)| *cpu).collect();
    if facts.sorted {
        return (cols, facts, slot_cpu);
    }
    let slots = CpuSlots::of_cpus(&slot_cpu);
    let order = time_order(&cols, &slots, slot_cpu.len());
    let c = cols.permute(&order);
    let facts = seqscan::scan(&c.ts, &c.cpu, &c.seq);
    (c, facts, slot_cpu)
}

/// Per CPU, its polls grouped in time order, and its batches: runs of consecutive polls up
/// to the one with work < budget (the batch completed: SCHED cleared).
fn batches_of(polls: &[Poll], slots: &CpuSlots, nslots: usize) -> (Groups, Vec<Batch>) {
    let mut polls_per_slot = vec![0usize; nslots];
    for p in polls {
        polls_per_slot[slots.of(p.cpu)] += 1;
    }
    let cpu_polls = Groups::of_rows(&polls_per_slot, polls.iter().map(|p| slots.of(p.cpu)));
    let mut batches: Vec<Batch> = Vec::with_capacity(polls.len());
    let mut open: Vec<Option<usize>> = vec![None; nslots];
    // Per slot: where its next poll sits in `cpu_polls`.
    let mut at: Vec<u32> = cpu_polls.start[..nslots]
        .iter()
        .map(|p| *p as u32)
        .collect();
    for p in polls {
        let s = slots.of(p.cpu);
        let bi = match open[s] {
            Some(b) => b,
            None => {
                let first = at[s] as usize == cpu_polls.start[s];
                batches.push(Batch {
                    cpu: p.cpu,
                    polls: at[s]..at[s],
                    complete: false,
                    class: p.class,
                    init: DeliveryRef::default(),
                    first_on_cpu: first,
                });
                open[s] = Some(batches.len() - 1);
                batches.len() - 1
            }
        };
        let b = &mut batches[bi];
        at[s] += 1;
        b.polls.end = at[s];
        if b.class != p.class {
            b.class = Class::Mixed;
        }
        if b.init.get().is_none() {
            b.init = p.first_delivery;
        }
        if p.work < p.budget {
            b.complete = true;
            open[s] = None;
        }
    }
    (cpu_polls, batches)
}

/// Events the kernel skipped (recursion guard) by event name, and per kind code whether any
/// of that kind were.
fn missed_of(meta: &TraceMeta) -> (HashMap<String, u64>, [bool; KINDS]) {
    let missed: HashMap<String, u64> = meta
        .get("missed_by_event")
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default();
    let missed_kind: [bool; KINDS] = std::array::from_fn(|k| {
        EventKind::ALL
            .iter()
            .find(|e| **e as usize == k)
            .and_then(|e| missed.get(e.name()))
            .is_some_and(|n| *n > 0)
    });
    (missed, missed_kind)
}

/// After a hotplug callback sequence ends, the model keeps the window open this long: the
/// unparked backlog thread's first batch and, on a first onlining, the cross-CPU poll of
/// model.md §8.2 come right after.
pub const HOTPLUG_TAIL_NS: u64 = 100_000_000;
/// cpuhp events further apart than this belong to different hotplug operations.
const HOTPLUG_GAP_NS: u64 = 500_000_000;

/// Time windows around CPU hotplug operations, from cpuhp_enter/exit events: (cpu, from, to).
fn hotplug_windows(c: &Cols, idx: &[u32]) -> Vec<(u32, u64, u64)> {
    let mut by_cpu: HashMap<u32, Vec<u64>> = HashMap::new();
    for &i in idx {
        let e = c.row(i as usize);
        if let Some(cpu) = e.target_cpu() {
            by_cpu.entry(cpu as u32).or_default().push(e.ts_ns());
        }
    }
    let mut out = Vec::new();
    for (cpu, mut ts) in by_cpu {
        ts.sort_unstable();
        let mut start = ts[0];
        let mut last = ts[0];
        for &t in &ts[1..] {
            if t - last > HOTPLUG_GAP_NS {
                out.push((cpu, start, last + HOTPLUG_TAIL_NS));
                start = t;
            }
            last = t;
        }
        out.push((cpu, start, last + HOTPLUG_TAIL_NS));
    }
    out.sort_unstable_by_key(|w| (w.1, w.0));
    out
}

pub fn poll_class(e: E) -> Class {
    if e.ctx() == Ctx::Softirq {
        Class::Softirq
    } else if e.comm_is_backlog() {
        Class::Thread
    } else {
        Class::Other
    }
}

/// Every skb's initiator (its netif_rx, or its device-side entry when RPS steered it:
/// `paths::pairs`) paired with its netif_receive_skb (and the CPU enqueue_to_backlog chose
/// in between), in receive order: one pass over the rows of those kinds and napi_poll.
fn pair_deliveries(c: &Cols, paired: &KindRows) -> Vec<Delivery> {
    // Sized from the kind counts: no regrowth (each one a copy and fresh pages).
    let mut deliveries = Vec::with_capacity(paired.counts[EventKind::NetifReceiveSkb as usize]);
    // Per skb in flight: its initiator's row, and the CPU its latest enqueue_to_backlog
    // since then chose.
    let mut last_init: FastMap<u64, (u32, Option<i32>)> = FastMap::default();
    // Per CPU: its latest napi_poll, for `paths::pairs`.
    let mut last_poll: FastMap<u32, u64> = FastMap::default();
    for i in paired.marked_rows() {
        let e = c.row(i);
        match c.kind[i] {
            EventKind::NapiPoll => {
                last_poll.insert(e.cpu(), e.ts_ns());
            }
            EventKind::EnqueueToBacklog => {
                if let (Some(skb), Some(cpu)) = (e.skb(), e.target_cpu()) {
                    if let Some(rx) = last_init.get_mut(&skb) {
                        rx.1 = Some(cpu);
                    }
                }
            }
            EventKind::NetifReceiveSkb => {
                let Some(skb) = e.skb() else { continue };
                let Some((j, chosen)) = last_init.remove(&skb) else {
                    continue;
                };
                let en = c.row(j as usize);
                let via = Via::of(c.kind[j as usize]).unwrap_or(Via::NetifRx);
                let poll = last_poll.get(&e.cpu()).copied();
                if e.ts_ns().saturating_sub(en.ts_ns()) > MATCH_WINDOW_NS
                    || !pairs(via, en.cpu(), e.cpu(), en.ts_ns(), poll)
                {
                    continue;
                }
                deliveries.push(Delivery {
                    t_enq: en.ts_ns(),
                    t_rcv: e.ts_ns(),
                    enq: j,
                    rcv: i as u32,
                    from: en.cpu(),
                    to: e.cpu(),
                    chosen,
                });
            }
            // netif_rx and the device-side entries.
            _ => {
                if let Some(skb) = e.skb() {
                    last_init.insert(skb, (i as u32, None));
                }
            }
        }
    }
    deliveries
}

/// The polls of CPU backlogs (`napi_poll` rows `polls`), each with the first delivery on its
/// CPU, by its task, since that task's previous NAPI poll (of any device) on that CPU.
///
/// By task, not only by CPU: a poll's deliveries and its napi_poll event come from one
/// NAPI poll, which one task runs start to end on one CPU. On PREEMPT_RT that task can be
/// preempted inside the poll, and since v6.18 without the softirq BKL (3253cb49cbad,
/// `CONFIG_PREEMPT_RT_NEEDS_BH_LOCK` unset) the next task can run its own NET_RX softirq and
/// NAPI polls before the first one resumes: a CPU-wide "first delivery since the last poll"
/// would hand one task's deliveries to the other's poll. Elsewhere polls on a CPU never
/// interleave and this is the CPU-wide order.
fn backlog_polls(
    c: &Cols,
    polls: &[u32],
    deliveries: &[Delivery],
    slots: &CpuSlots,
    nslots: usize,
) -> Vec<Poll> {
    let backlog_dev = c.strs.lookup(BACKLOG_DEV);
    let mut out: Vec<Poll> = Vec::with_capacity(polls.len());
    // Per (slot, task): the first delivery since that task's last NAPI poll on the slot.
    let mut pending: FastMap<u64, u32> = FastMap::default();
    pending.reserve(nslots * 4);
    let key = |cpu: u32, pid: i32| ((slots.of(cpu) as u64) << 32) | pid as u32 as u64;
    let mut next = deliveries.iter().enumerate().peekable();
    for &i in polls {
        // Deliveries received before this poll (deliveries are in receive order).
        while let Some((k, d)) = next.next_if(|(_, d)| d.rcv < i) {
            let by = c.pid[d.rcv as usize];
            pending.entry(key(d.to, by)).or_insert(k as u32);
        }
        let e = c.row(i as usize);
        let first_delivery = pending.remove(&key(e.cpu(), e.pid()));
        if backlog_dev.is_some() && c.dev.get(i as usize) == backlog_dev {
            out.push(Poll {
                ev: i,
                cpu: e.cpu(),
                ts: e.ts_ns(),
                work: e.work().unwrap_or(0),
                budget: e.budget().unwrap_or(0),
                class: poll_class(e),
                first_delivery: DeliveryRef::new(first_delivery),
            });
        }
    }
    out
}

/// Per backlog thread N: the times of its wake-ups (`sched_waking` rows `wakings`), and
/// its awake (true) / asleep (false) transitions from those and the `sched_switch` rows
/// `switches`, in time order.
fn thread_states(c: &Cols, wakings: &[u32], switches: &[u32]) -> (PerCpu<Vec<u64>>, AwakeStates) {
    let mut woken: PerCpu<Vec<u64>> = PerCpu::default();
    let mut awake: AwakeStates = PerCpu::default();
    // Interned strings are unique: "S" compares by id.
    let sleeping = c.strs.lookup("S");
    // The two row lists merged in row (time) order.
    let (mut w, mut s) = (wakings.iter().peekable(), switches.iter().peekable());
    loop {
        let take_waking = match (w.peek(), s.peek()) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_waking {
            let e = c.row(*w.next().unwrap() as usize);
            if let Some(t) = e.target_thread() {
                woken.entry(t).push(e.ts_ns());
                awake.entry(t).push((e.ts_ns(), true));
            }
        } else {
            let i = *s.next().unwrap() as usize;
            let e = c.row(i);
            if let Some(t) = e.comm_thread() {
                let asleep = sleeping.is_some() && c.prev_state.get(i) == sleeping;
                awake.entry(t).push((e.ts_ns(), !asleep));
            }
            if let Some(t) = e.target_thread() {
                awake.entry(t).push((e.ts_ns(), true));
            }
        }
    }
    (woken, awake)
}
