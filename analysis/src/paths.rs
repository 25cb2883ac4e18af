//! Follow packets through a trace: where each received skb was enqueued, where and in which
//! context it was processed, and the full RPS hop (netif_rx on S → csd rps_trigger_softirq to T
//! → csd_function_entry on T → NET_RX softirq on T → netif_receive_skb on T → backlog poll).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::event::{Ctx, Event, EventKind, RPS_IPI_FUNC};
use probe_common::NET_RX_SOFTIRQ;

/// skb addresses are reused by the slab allocator: only pair events this close in time.
pub const MATCH_WINDOW_NS: u64 = 1_000_000_000;

/// Where a packet's receive work ran (the classes `report` and `check` count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// Enqueued and processed on the same CPU by a NET_RX softirq.
    LocalSoftirq,
    /// Enqueued on S, processed by the NET_RX softirq of T ≠ S (RPS IPI in modes A/B).
    RemoteSoftirq,
    /// Processed by `ksoftirqd/N`.
    Ksoftirqd,
    /// Processed by the `backlog_napi/N` thread outside softirq (mode C).
    BacklogThread,
}

impl Path {
    pub const ALL: [Path; 4] = [
        Path::LocalSoftirq,
        Path::RemoteSoftirq,
        Path::Ksoftirqd,
        Path::BacklogThread,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::LocalSoftirq => "local_softirq",
            Path::RemoteSoftirq => "remote_softirq",
            Path::Ksoftirqd => "ksoftirqd",
            Path::BacklogThread => "backlog_thread",
        }
    }

    /// The name with what started the hop: `device_remote_softirq` is a device poll's skb
    /// steered by RPS to another CPU's NET_RX softirq; netif_rx's keep the plain name.
    pub fn label(self, via: Via) -> &'static str {
        match (via, self) {
            (Via::NetifRx, p) => p.name(),
            (Via::Device, Path::LocalSoftirq) => "device_local_softirq",
            (Via::Device, Path::RemoteSoftirq) => "device_remote_softirq",
            (Via::Device, Path::Ksoftirqd) => "device_ksoftirqd",
            (Via::Device, Path::BacklogThread) => "device_backlog_thread",
        }
    }
}

/// What handed a delivered skb to the receive path on the enqueuing CPU: netif_rx (the
/// enqueue itself), or a device's NAPI poll (netif_receive_skb_entry, napi_gro_receive_entry,
/// netif_receive_skb_list_entry), after which get_rps_cpu → enqueue_to_backlog runs unseen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    NetifRx,
    Device,
}

impl Via {
    /// The initiator kinds a delivery pairs with.
    pub fn of(kind: EventKind) -> Option<Via> {
        if kind == EventKind::NetifRx {
            Some(Via::NetifRx)
        } else if kind.is_device_rx() {
            Some(Via::Device)
        } else {
            None
        }
    }
}

/// Does a delivery on CPU `to` pair with its skb's latest initiator (`via`, CPU `from`, at
/// `t_init`)? A netif_rx always enqueues (enqueue_to_backlog). A device-side entry enqueues
/// only with RPS (netif_receive_skb_internal / netif_receive_skb_list_internal: get_rps_cpu
/// ≥ 0); else __netif_receive_skb runs in place, inside the device's poll, and that is no
/// backlog hop. On another CPU it was steered. On the same CPU it was steered to itself
/// only if a NAPI poll on that CPU ended in between (`last_poll`: the latest napi_poll on
/// `to` before the delivery): trace_napi_poll fires after the device's ->poll returns, and
/// the own backlog is polled only after it. Without that poll the two cannot be told apart
/// without enqueue_to_backlog, and the delivery is left unpaired.
pub fn pairs(via: Via, from: u32, to: u32, t_init: u64, last_poll: Option<u64>) -> bool {
    via == Via::NetifRx || from != to || last_poll.is_some_and(|t| t > t_init)
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub skb: u64,
    pub via: Via,
    pub enqueue_cpu: u32,
    pub enqueue_ts: u64,
    pub cpu: u32,
    pub ts: u64,
    #[serde(serialize_with = "ser_ctx")]
    pub ctx: Ctx,
    pub comm: String,
    pub path: Path,
}

fn ser_ctx<S: serde::Serializer>(c: &Ctx, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

pub fn classify(enqueue_cpu: u32, cpu: u32, ctx: Ctx, comm: &str) -> Path {
    let task = TaskKind::of(comm);
    classify_task(enqueue_cpu, cpu, ctx, task)
}

/// What `classify` asks of the receiving task's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    BacklogThread,
    Ksoftirqd,
    Other,
}

impl TaskKind {
    pub fn of(comm: &str) -> TaskKind {
        if comm.starts_with("backlog_napi/") {
            TaskKind::BacklogThread
        } else if comm.starts_with("ksoftirqd/") {
            TaskKind::Ksoftirqd
        } else {
            TaskKind::Other
        }
    }
}

/// `classify`, with the task's name already sorted (the checker does it once per
/// distinct name, not per delivery).
pub fn classify_task(enqueue_cpu: u32, cpu: u32, ctx: Ctx, task: TaskKind) -> Path {
    if task == TaskKind::BacklogThread && ctx != Ctx::Softirq {
        Path::BacklogThread
    } else if task == TaskKind::Ksoftirqd {
        Path::Ksoftirqd
    } else if enqueue_cpu != cpu {
        Path::RemoteSoftirq
    } else {
        Path::LocalSoftirq
    }
}

/// The fields following a packet reads, borrowed from an `Event` or from a row of
/// `StepRows` (the checker's columns): `record` reads its file back that way, without
/// building an `Event` (and its strings) per row.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    pub ts: u64,
    pub cpu: u32,
    pub seq: u64,
    pub kind: EventKind,
    pub ctx: Ctx,
    pub comm: &'a str,
    pub skb: Option<u64>,
    pub func: Option<&'a str>,
    pub vec: Option<u32>,
    pub target_cpu: Option<i32>,
    pub backlog_poll: bool,
}

impl<'a> From<&'a Event> for Step<'a> {
    fn from(e: &'a Event) -> Step<'a> {
        Step {
            ts: e.ts_ns,
            cpu: e.cpu,
            seq: e.seq,
            kind: e.event,
            ctx: e.ctx,
            comm: &e.comm,
            skb: e.skb,
            func: e.func.as_deref(),
            vec: e.vec,
            target_cpu: e.target_cpu,
            backlog_poll: e.is_backlog_poll(),
        }
    }
}

/// Rows that read as `Step`s without an `Event` each: the checker's columns implement it
/// (in `check`, which stands on this module).
pub trait StepRows {
    fn rows(&self) -> usize;
    fn step(&self, i: usize) -> Step<'_>;
}

/// Every row as a `Step`.
pub fn steps_of_cols<R: StepRows>(c: &R) -> Vec<Step<'_>> {
    (0..c.rows()).map(|i| c.step(i)).collect()
}

fn steps(events: &[Event]) -> Vec<Step<'_>> {
    events.iter().map(Step::from).collect()
}

/// In time order (ties: CPU, then the CPU's seq).
fn sort(steps: &mut [Step]) {
    steps.sort_unstable_by_key(|e| (e.ts, e.cpu, e.seq));
}

/// Pair each netif_receive_skb with the latest earlier initiator of the same skb: its
/// netif_rx, or its device-side entry when `pairs` says RPS steered it.
pub fn deliveries(events: &[Event]) -> Vec<Delivery> {
    let mut s = steps(events);
    sort(&mut s);
    deliveries_of(&s)
}

/// `deliveries` over steps already in time order.
pub fn deliveries_of(sorted: &[Step]) -> Vec<Delivery> {
    let mut last_init: HashMap<u64, (u64, u32, Via)> = HashMap::new();
    // Per CPU: its latest napi_poll (any device), for `pairs`.
    let mut last_poll: HashMap<u32, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in sorted {
        if e.kind == EventKind::NapiPoll {
            last_poll.insert(e.cpu, e.ts);
            continue;
        }
        let Some(skb) = e.skb else { continue };
        if let Some(via) = Via::of(e.kind) {
            last_init.insert(skb, (e.ts, e.cpu, via));
            continue;
        }
        if e.kind != EventKind::NetifReceiveSkb {
            continue;
        }
        let Some((ts, cpu, via)) = last_init.remove(&skb) else {
            continue;
        };
        if e.ts.saturating_sub(ts) > MATCH_WINDOW_NS
            || !pairs(via, cpu, e.cpu, ts, last_poll.get(&e.cpu).copied())
        {
            continue;
        }
        out.push(Delivery {
            skb,
            via,
            enqueue_cpu: cpu,
            enqueue_ts: ts,
            cpu: e.cpu,
            ts: e.ts,
            ctx: e.ctx,
            comm: e.comm.to_string(),
            path: classify(cpu, e.cpu, e.ctx, e.comm),
        });
    }
    out
}

/// What `record` prints at the end, from the file's columns: deliveries per path and the
/// number of complete RPS hops.
pub fn summary_of_cols<R: StepRows>(c: &R) -> (BTreeMap<&'static str, u64>, usize) {
    let mut s = steps_of_cols(c);
    sort(&mut s);
    let d = deliveries_of(&s);
    let hops = rps_hops_of(&s, &d).len();
    (path_counts(&d), hops)
}

pub fn path_counts(d: &[Delivery]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for x in d {
        *m.entry(x.path.label(x.via)).or_default() += 1;
    }
    m
}

/// One complete RPS hop, every leg observed.
#[derive(Clone, Debug, Serialize)]
pub struct RpsHop {
    pub skb: u64,
    pub from_cpu: u32,
    pub to_cpu: u32,
    pub netif_rx: u64,
    pub csd_queue: u64,
    pub csd_entry: u64,
    pub softirq_entry: u64,
    pub receive: u64,
    pub backlog_poll: u64,
}

/// Times of `pred` steps per CPU, sorted.
fn times_by_cpu(ev: &[Step], pred: impl Fn(&Step) -> bool) -> HashMap<u32, Vec<u64>> {
    let mut m: HashMap<u32, Vec<u64>> = HashMap::new();
    for e in ev.iter().filter(|e| pred(e)) {
        m.entry(e.cpu).or_default().push(e.ts);
    }
    m
}

/// Latest time in `v` within [lo, hi].
fn latest_in(v: Option<&Vec<u64>>, lo: u64, hi: u64) -> Option<u64> {
    let v = v?;
    let i = v.partition_point(|t| *t <= hi);
    v[..i].last().copied().filter(|t| *t >= lo)
}

/// First time in `v` within [lo, hi].
fn first_in(v: Option<&Vec<u64>>, lo: u64, hi: u64) -> Option<u64> {
    let v = v?;
    let i = v.partition_point(|t| *t < lo);
    v.get(i).copied().filter(|t| *t <= hi)
}

/// Remote deliveries whose whole RPS hop is in the trace. Only the skb that started a
/// backlog batch has its own IPI; later skbs of the batch ride along (model.md §11).
pub fn rps_hops(events: &[Event]) -> Vec<RpsHop> {
    let mut s = steps(events);
    sort(&mut s);
    let d = deliveries_of(&s);
    rps_hops_of(&s, &d)
}

/// `rps_hops` over steps in time order and their deliveries.
pub fn rps_hops_of(ev: &[Step], deliveries: &[Delivery]) -> Vec<RpsHop> {
    let rps = |e: &Step| e.func == Some(RPS_IPI_FUNC);
    // csd_queue_cpu(rps) per (sender cpu, target cpu).
    let mut queued: HashMap<(u32, i32), Vec<u64>> = HashMap::new();
    for e in ev {
        if e.kind == EventKind::CsdQueueCpu && rps(e) {
            if let Some(t) = e.target_cpu {
                queued.entry((e.cpu, t)).or_default().push(e.ts);
            }
        }
    }
    let entries = times_by_cpu(ev, |e| e.kind == EventKind::CsdFunctionEntry && rps(e));
    let netrx = times_by_cpu(ev, |e| {
        e.kind == EventKind::SoftirqEntry && e.vec == Some(NET_RX_SOFTIRQ)
    });
    let polls = times_by_cpu(ev, |e| e.backlog_poll);
    let mut hops = Vec::new();
    for d in deliveries {
        if d.enqueue_cpu == d.cpu {
            continue;
        }
        let Some(q) = first_in(
            queued.get(&(d.enqueue_cpu, d.cpu as i32)),
            d.enqueue_ts,
            d.ts,
        ) else {
            continue;
        };
        let Some(ce) = first_in(entries.get(&d.cpu), q, d.ts) else {
            continue;
        };
        let Some(se) = latest_in(netrx.get(&d.cpu), ce, d.ts) else {
            continue;
        };
        let Some(p) = first_in(polls.get(&d.cpu), d.ts, d.ts + MATCH_WINDOW_NS) else {
            continue;
        };
        hops.push(RpsHop {
            skb: d.skb,
            from_cpu: d.enqueue_cpu,
            to_cpu: d.cpu,
            netif_rx: d.enqueue_ts,
            csd_queue: q,
            csd_entry: ce,
            softirq_entry: se,
            receive: d.ts,
            backlog_poll: p,
        });
    }
    hops
}

#[cfg(test)]
#[path = "paths_tests.rs"]
mod tests;
