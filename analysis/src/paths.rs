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
}

#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub skb: u64,
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

/// Pair each netif_receive_skb with the latest earlier netif_rx of the same skb.
pub fn deliveries(events: &[Event]) -> Vec<Delivery> {
    let mut s = steps(events);
    sort(&mut s);
    deliveries_of(&s)
}

/// `deliveries` over steps already in time order.
pub fn deliveries_of(sorted: &[Step]) -> Vec<Delivery> {
    let mut last_rx: HashMap<u64, (u64, u32)> = HashMap::new();
    let mut out = Vec::new();
    for e in sorted {
        match (e.kind, e.skb) {
            (EventKind::NetifRx, Some(skb)) => {
                last_rx.insert(skb, (e.ts, e.cpu));
            }
            (EventKind::NetifReceiveSkb, Some(skb)) => {
                if let Some((ts, cpu)) = last_rx.remove(&skb) {
                    if e.ts.saturating_sub(ts) <= MATCH_WINDOW_NS {
                        out.push(Delivery {
                            skb,
                            enqueue_cpu: cpu,
                            enqueue_ts: ts,
                            cpu: e.cpu,
                            ts: e.ts,
                            ctx: e.ctx,
                            comm: e.comm.to_string(),
                            path: classify(cpu, e.cpu, e.ctx, e.comm),
                        });
                    }
                }
            }
            _ => {}
        }
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
        *m.entry(x.path.name()).or_default() += 1;
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
mod tests {
    use super::*;

    // The column path (`summary_of_cols`) is tested where the columns implement
    // `StepRows`: check/tally.rs.

    fn ev(ts: u64, cpu: u32, kind: EventKind, f: impl FnOnce(&mut Event)) -> Event {
        let mut e = Event::new(ts, cpu, ts, kind);
        f(&mut e);
        e
    }

    /// The canonical remote sequence of model.md §5.2.
    fn remote_hop() -> Vec<Event> {
        use EventKind::*;
        vec![
            ev(10, 0, NetifRx, |e| e.skb = Some(77)),
            ev(11, 0, SoftirqRaise, |e| e.vec = Some(3)),
            ev(12, 0, SoftirqEntry, |e| e.vec = Some(3)),
            ev(13, 0, CsdQueueCpu, |e| {
                e.target_cpu = Some(1);
                e.func = Some(RPS_IPI_FUNC.into());
            }),
            ev(20, 1, CsdFunctionEntry, |e| {
                e.func = Some(RPS_IPI_FUNC.into());
                e.ctx = Ctx::Hardirq;
            }),
            ev(21, 1, SoftirqEntry, |e| e.vec = Some(3)),
            ev(22, 1, NetifReceiveSkb, |e| {
                e.skb = Some(77);
                e.ctx = Ctx::Softirq;
                e.comm = "swapper/1".into();
            }),
            ev(23, 1, NapiPoll, |e| {
                e.dev = Some("(no_device)".into());
                e.work = Some(1);
                e.budget = Some(64);
                e.ctx = Ctx::Softirq;
            }),
        ]
    }

    #[test]
    fn finds_the_complete_hop() {
        let hops = rps_hops(&remote_hop());
        assert_eq!(hops.len(), 1);
        let h = &hops[0];
        assert_eq!(
            (h.from_cpu, h.to_cpu, h.csd_queue, h.csd_entry),
            (0, 1, 13, 20)
        );
        assert_eq!((h.softirq_entry, h.receive, h.backlog_poll), (21, 22, 23));
        let d = deliveries(&remote_hop());
        assert_eq!(d[0].path, Path::RemoteSoftirq);
    }

    #[test]
    fn a_missing_leg_breaks_the_hop() {
        for drop_kind in [
            EventKind::CsdQueueCpu,
            EventKind::CsdFunctionEntry,
            EventKind::SoftirqEntry,
            EventKind::NapiPoll,
        ] {
            let t: Vec<Event> = remote_hop()
                .into_iter()
                // CPU 0 has its own softirq_entry; the legs under test are the others.
                .filter(|e| {
                    e.event != drop_kind || (e.cpu == 0 && drop_kind != EventKind::CsdQueueCpu)
                })
                .collect();
            assert!(rps_hops(&t).is_empty(), "hop found without {drop_kind:?}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(1, 1, Ctx::Softirq, "python3"), Path::LocalSoftirq);
        assert_eq!(
            classify(0, 1, Ctx::Task, "backlog_napi/1"),
            Path::BacklogThread
        );
        // A softirq run at the backlog thread's BH enable is still a softirq (model.md C-4).
        assert_eq!(
            classify(1, 1, Ctx::Softirq, "backlog_napi/1"),
            Path::LocalSoftirq
        );
        assert_eq!(classify(0, 1, Ctx::Softirq, "ksoftirqd/1"), Path::Ksoftirqd);
    }

    #[test]
    fn skb_reuse_outside_the_window_is_not_paired() {
        let t = vec![
            ev(0, 0, EventKind::NetifRx, |e| e.skb = Some(5)),
            ev(MATCH_WINDOW_NS + 10, 0, EventKind::NetifReceiveSkb, |e| {
                e.skb = Some(5)
            }),
        ];
        assert!(deliveries(&t).is_empty());
    }
}
