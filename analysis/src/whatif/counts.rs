//! What a trace shows, per CPU, of the quantities a mode changes: NET_RX raises and runs,
//! RPS IPIs, backlog_napi wake-ups and runs, backlog polls and batches, packets by path, and
//! the delays the model needs (IPI flight, thread wake-up). The same counting reads the
//! recording and the model's replay, so observed and predicted are counted alike.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::{
    event::{Event, EventKind, RPS_IPI_FUNC},
    paths::{Delivery, Path},
};
use probe_common::NET_RX_SOFTIRQ;

/// One CPU's counts (or the machine's, summed).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    /// softirq_raise(NET_RX) on this CPU.
    pub net_rx_raises: u64,
    /// softirq_entry(NET_RX) on this CPU.
    pub net_rx_runs: u64,
    /// csd_queue_cpu(rps_trigger_softirq) sent from this CPU.
    pub rps_ipis_sent: u64,
    /// csd_function_entry(rps_trigger_softirq) on this CPU.
    pub rps_ipis_received: u64,
    /// sched_waking of backlog_napi/<this CPU>.
    pub thread_wakeups: u64,
    /// sched_switch into backlog_napi/<this CPU>.
    pub thread_runs: u64,
    /// napi_poll of a backlog on this CPU.
    pub backlog_polls: u64,
    /// Backlog polls that emptied the queue (work < budget): one per batch.
    pub batches: u64,
    /// Packets received on this CPU, by path (`paths::Path` names).
    pub packets: BTreeMap<&'static str, u64>,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.net_rx_raises += o.net_rx_raises;
        self.net_rx_runs += o.net_rx_runs;
        self.rps_ipis_sent += o.rps_ipis_sent;
        self.rps_ipis_received += o.rps_ipis_received;
        self.thread_wakeups += o.thread_wakeups;
        self.thread_runs += o.thread_runs;
        self.backlog_polls += o.backlog_polls;
        self.batches += o.batches;
        for (k, v) in &o.packets {
            *self.packets.entry(k).or_default() += v;
        }
    }

    pub fn packets(&self) -> u64 {
        self.packets.values().sum()
    }

    /// The quantities in table order, by name.
    pub fn quantities(&self) -> Vec<(&'static str, u64)> {
        let mut q = vec![
            ("net_rx_raises", self.net_rx_raises),
            ("net_rx_runs", self.net_rx_runs),
            ("rps_ipis_sent", self.rps_ipis_sent),
            ("rps_ipis_received", self.rps_ipis_received),
            ("thread_wakeups", self.thread_wakeups),
            ("thread_runs", self.thread_runs),
            ("backlog_polls", self.backlog_polls),
            ("batches", self.batches),
        ];
        for p in Path::ALL {
            q.push((p.name(), self.packets.get(p.name()).copied().unwrap_or(0)));
        }
        q
    }
}

/// `backlog_napi/N` → N.
pub fn backlog_thread_cpu(comm: &str) -> Option<usize> {
    comm.strip_prefix("backlog_napi/")?.parse().ok()
}

/// Per-CPU counts of `events` (any order); packets from `deliveries`.
pub fn per_cpu(events: &[Event], deliveries: &[Delivery], ncpu: usize) -> Vec<Counts> {
    let mut c = vec![Counts::default(); ncpu];
    let rps = |e: &Event| e.func.as_deref() == Some(RPS_IPI_FUNC);
    let netrx = |e: &Event| e.vec == Some(NET_RX_SOFTIRQ);
    let thread = |e: &Event| e.target_comm.as_deref().and_then(backlog_thread_cpu);
    for e in events {
        let cpu = e.cpu as usize;
        let Some(me) = c.get_mut(cpu) else { continue };
        match e.event {
            EventKind::SoftirqRaise if netrx(e) => me.net_rx_raises += 1,
            EventKind::SoftirqEntry if netrx(e) => me.net_rx_runs += 1,
            EventKind::CsdQueueCpu if rps(e) => me.rps_ipis_sent += 1,
            EventKind::CsdFunctionEntry if rps(e) => me.rps_ipis_received += 1,
            EventKind::SchedSwitch if thread(e) == Some(cpu) => me.thread_runs += 1,
            EventKind::NapiPoll if e.is_backlog_poll() => {
                me.backlog_polls += 1;
                if e.work.unwrap_or(0) < e.budget.unwrap_or(i32::MAX) {
                    me.batches += 1;
                }
            }
            // Counted on the thread's CPU, whoever woke it.
            EventKind::SchedWaking => {
                if let Some(t) = thread(e).and_then(|t| c.get_mut(t)) {
                    t.thread_wakeups += 1;
                }
            }
            _ => {}
        }
    }
    for d in deliveries {
        if let Some(me) = c.get_mut(d.cpu as usize) {
            *me.packets.entry(d.path.name()).or_default() += 1;
        }
    }
    c
}

/// The upper median of `v` (None when empty).
pub fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// Per (time-ordered) event stream: median time from csd_queue_cpu(rps, target T) to the
/// next csd_function_entry(rps) on T.
pub fn ipi_latency_ns(sorted: &[Event]) -> Option<u64> {
    let mut queued: HashMap<usize, u64> = HashMap::new();
    let mut lat = Vec::new();
    for e in sorted {
        if e.func.as_deref() != Some(RPS_IPI_FUNC) {
            continue;
        }
        match (e.event, e.target_cpu) {
            (EventKind::CsdQueueCpu, Some(t)) => {
                queued.entry(t as usize).or_insert(e.ts_ns);
            }
            (EventKind::CsdFunctionEntry, _) => {
                if let Some(q) = queued.remove(&(e.cpu as usize)) {
                    lat.push(e.ts_ns.saturating_sub(q));
                }
            }
            _ => {}
        }
    }
    median(lat)
}

/// Median time from sched_waking(backlog_napi/N) to the sched_switch into it on N.
pub fn wake_latency_ns(sorted: &[Event]) -> Option<u64> {
    let mut woken: HashMap<usize, u64> = HashMap::new();
    let mut lat = Vec::new();
    for e in sorted {
        let Some(t) = e.target_comm.as_deref().and_then(backlog_thread_cpu) else {
            continue;
        };
        match e.event {
            EventKind::SchedWaking => {
                woken.entry(t).or_insert(e.ts_ns);
            }
            EventKind::SchedSwitch if t == e.cpu as usize => {
                if let Some(w) = woken.remove(&t) {
                    lat.push(e.ts_ns.saturating_sub(w));
                }
            }
            _ => {}
        }
    }
    median(lat)
}

/// Median netif_rx → netif_receive_skb per path, in ns.
pub fn latency_by_path(d: &[Delivery]) -> BTreeMap<&'static str, u64> {
    let mut by: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for x in d {
        by.entry(x.path.name())
            .or_default()
            .push(x.ts.saturating_sub(x.enqueue_ts));
    }
    by.into_iter()
        .filter_map(|(k, v)| median(v).map(|m| (k, m)))
        .collect()
}

/// Each batch's window: the latency (netif_rx → netif_receive_skb) of its first packet,
/// batches told apart by the poll that emptied the backlog (napi_poll with work < budget on
/// the receiving CPU, at or after the delivery). It is the IPI's flight or the thread's
/// wake-up plus the target's service time of one packet: how long a batch stays open to
/// later arrivals, at least (those arriving while the rest is served join it too). Sorted.
pub fn batch_windows(sorted: &[Event], deliveries: &[Delivery]) -> Vec<u64> {
    let mut done: HashMap<u32, Vec<u64>> = HashMap::new();
    for e in sorted {
        if e.is_backlog_poll() && e.work.unwrap_or(0) < e.budget.unwrap_or(i32::MAX) {
            done.entry(e.cpu).or_default().push(e.ts_ns);
        }
    }
    // (cpu, poll time) → (enqueue, receive) of the first packet it delivered.
    let mut first: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for d in deliveries {
        let Some(polls) = done.get(&d.cpu) else {
            continue;
        };
        let i = polls.partition_point(|t| *t < d.ts);
        if let Some(&p) = polls.get(i) {
            let f = first.entry((d.cpu, p)).or_insert((d.enqueue_ts, d.ts));
            if d.enqueue_ts < f.0 {
                *f = (d.enqueue_ts, d.ts);
            }
        }
    }
    let mut w: Vec<u64> = first
        .into_values()
        .map(|(enq, rx)| rx.saturating_sub(enq))
        .collect();
    w.sort_unstable();
    w
}
