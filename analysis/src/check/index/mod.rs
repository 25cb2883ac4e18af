//! The trace, indexed for the checker: sorted events, deliveries (netif_rx ↔
//! netif_receive_skb), backlog polls, batches (polls up to the one with work < budget), and
//! the windows where events were lost.

//!
//! `build.rs` builds it (the order of rows in `layout.rs`, loss windows in `lost.rs`); this
//! file holds its records and the queries the rules ask of it.

mod build;
mod layout;
mod lost;

use std::{collections::HashMap, num::NonZeroU32};

use super::{
    kinds::{self, kind_table, KINDS},
    percpu::PerCpu,
};
use crate::{
    event::EventKind,
    paths::Via,
    trace::{
        cols::{Cols, E},
        fastmap::FastMap,
    },
};
pub use build::{poll_class, HOTPLUG_TAIL_NS};
use layout::{CpuSlots, Groups};

/// One skb's initiator (netif_rx, or a device-side entry RPS steered from: `Index::via`)
/// paired with its netif_receive_skb. Rows are u32, as everywhere in the index: 40 bytes a
/// delivery, ~3 bytes per event of a trace.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub t_enq: u64,
    pub t_rcv: u64,
    /// Row of the initiator: the netif_rx, or the device-side entry (before the unseen
    /// enqueue_to_backlog: `t_enq` is then a little early).
    pub enq: u32,
    /// Row of the netif_receive_skb.
    pub rcv: u32,
    pub from: u32,
    pub to: u32,
    /// The CPU the skb's latest enqueue_to_backlog between the two chose (a function
    /// probe, absent on most kernels): G4's direct evidence, paired here with the same
    /// lookup that pairs the delivery.
    pub chosen: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Softirq,
    Thread,
    Other,
    Mixed,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Softirq => "softirq",
            Class::Thread => "backlog thread",
            Class::Other => "neither softirq nor backlog thread",
            Class::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Poll {
    pub ts: u64,
    /// Its napi_poll row.
    pub ev: u32,
    pub cpu: u32,
    pub work: i32,
    pub budget: i32,
    /// The first delivery on this CPU since its previous NAPI poll.
    pub first_delivery: DeliveryRef,
    pub class: Class,
}

/// An index into `Index::deliveries`, or none, in 4 bytes (stored plus one): with it a
/// poll takes 32 bytes, not 40, and a batch 20, not 24.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRef(Option<NonZeroU32>);

impl DeliveryRef {
    pub fn new(i: Option<u32>) -> DeliveryRef {
        // A delivery takes two rows, and rows are u32: i + 1 never wraps.
        DeliveryRef(i.and_then(|i| NonZeroU32::new(i + 1)))
    }

    pub fn get(self) -> Option<u32> {
        self.0.map(|i| i.get() - 1)
    }
}

#[derive(Clone, Debug)]
pub struct Batch {
    pub cpu: u32,
    /// Its polls: a CPU's batches are consecutive polls of that CPU, so this is a range of
    /// `Index::cpu_polls` (see `Index::batch_polls`), not a vector per batch.
    pub polls: std::ops::Range<u32>,
    pub complete: bool,
    pub class: Class,
    /// The first delivery of the batch: FIFO makes its enqueue the batch's initiator.
    pub init: DeliveryRef,
    /// The first backlog batch seen on this CPU (may have started before the trace).
    pub first_on_cpu: bool,
}

/// Per backlog thread: (ts, awake) transitions in time order.
type AwakeStates = PerCpu<Vec<(u64, bool)>>;

pub struct Index {
    /// The trace's rows in time order (ts, cpu, seq).
    pub c: Cols,
    pub deliveries: Vec<Delivery>,
    pub polls: Vec<Poll>,
    pub batches: Vec<Batch>,
    /// Per CPU: (from, to) time windows that lost events.
    pub lost: FastMap<u32, Vec<(u64, u64)>>,
    /// CPUs whose events are in the trace (all, unless recorded with -C).
    pub observed: Option<Vec<u32>>,
    /// CPU hotplug operations: (cpu, from, to). model.md §8.2 leaves much unspecified
    /// there (re-injected skbs, parked threads, stale SCHED bits), so every CPU is treated
    /// as blind inside them: INCONCLUSIVE, never FAIL.
    pub hotplug: Vec<(u32, u64, u64)>,
    /// Per CPU T: times of sched_waking events whose target is backlog_napi/T.
    thread_wakings: PerCpu<Vec<u64>>,
    /// Per CPU T: backlog_napi/T awake (true) / asleep (false) transitions, in time order.
    thread_awake: AwakeStates,
    /// Per CPU slot: backlog polls (indices into `polls`), in time order.
    cpu_polls: Groups,
    /// Events the kernel skipped (eBPF recursion guard) by event name; "ctx" = trackers.
    pub missed: HashMap<String, u64>,
    /// `missed` per kind code, looked up per batch by the rules.
    missed_kind: [bool; KINDS],
    /// CPU → dense slot.
    slots: CpuSlots,
    /// Per (slot, kind code), for the kinds in `FOUND_PER_CPU`: rows in time order.
    by_kind: Vec<Vec<u32>>,
    /// Per kind code, for the kinds in `WALKED`: rows in time order.
    kind_all: Vec<Vec<u32>>,
    /// CPUs with events, ascending.
    cpus: Vec<u32>,
    pub t_end: u64,
}

/// Kinds the rules look up per CPU by time (`find`, `finder`). Only these are grouped by
/// CPU: the rows of the other kinds (most of a trace) are placed in no per-CPU list.
const FOUND_PER_CPU: [EventKind; 5] = [
    EventKind::CsdFunctionEntry,
    EventKind::CsdQueueCpu,
    EventKind::NetifRxExit,
    EventKind::SoftirqRaise,
    EventKind::SchedSwitch,
];

/// Kinds the rules walk on every CPU in time order (`all`), and the index itself reads
/// (cpuhp).
const WALKED: [EventKind; 9] = [
    EventKind::ProcessBacklog,
    EventKind::EnqueueToBacklog,
    EventKind::CsdQueueCpu,
    EventKind::SchedWaking,
    EventKind::RunBacklogNapi,
    EventKind::SchedSwitch,
    EventKind::NapiPoll,
    EventKind::CpuhpEnter,
    EventKind::CpuhpExit,
];

const IS_FOUND: [bool; KINDS] = kind_table(&FOUND_PER_CPU);
const IS_WALKED: [bool; KINDS] = kind_table(&WALKED);
/// Kinds the delivery pairing walks, in time order across kinds: the initiators, the
/// deliveries, and napi_poll (a device-side entry pairs on its own CPU only across a poll).
const PAIRED: [bool; KINDS] = kind_table(&[
    EventKind::NetifRx,
    EventKind::NetifReceiveSkbEntry,
    EventKind::NapiGroReceiveEntry,
    EventKind::NetifReceiveSkbListEntry,
    EventKind::EnqueueToBacklog,
    EventKind::NetifReceiveSkb,
    EventKind::NapiPoll,
]);

impl Index {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.c.len()
    }

    pub fn is_empty(&self) -> bool {
        self.c.is_empty()
    }

    /// What started delivery `d`'s hop: its netif_rx, or a device's poll.
    pub fn via(&self, d: &Delivery) -> Via {
        Via::of(self.c.kind[d.enq as usize]).unwrap_or(Via::NetifRx)
    }

    /// Event `i` in time order.
    #[inline]
    pub fn ev(&self, i: u32) -> E<'_> {
        self.c.row(i as usize)
    }

    /// Every event in time order.
    pub fn iter(&self) -> impl Iterator<Item = E<'_>> + '_ {
        (0..self.c.len()).map(|i| self.c.row(i))
    }

    /// Events of `kind` on `cpu` with ts in [t0, t1].
    pub fn find(
        &self,
        cpu: u32,
        kind: EventKind,
        t0: u64,
        t1: u64,
    ) -> impl Iterator<Item = E<'_>> + '_ {
        assert!(IS_FOUND[kind as usize], "{kind:?} is not indexed per CPU");
        let v = self
            .slots
            .get(cpu)
            .map(|s| &self.by_kind[s * KINDS + kind as usize][..])
            .unwrap_or(&[]);
        let start = v.partition_point(|i| self.c.ts[*i as usize] < t0);
        v[start..]
            .iter()
            .map(|i| self.c.row(*i as usize))
            .take_while(move |e| e.ts_ns() <= t1)
    }

    /// `find` for queries of one kind whose times mostly grow, as a rule's walk over
    /// batches makes them.
    pub fn finder(&self, kind: EventKind) -> Finder<'_> {
        assert!(IS_FOUND[kind as usize], "{kind:?} is not indexed per CPU");
        Finder {
            ix: self,
            kind,
            pos: vec![0; self.cpus.len()],
        }
    }

    /// Rows of any of `kinds`, in time order: a walk of the kind column 64 rows at a time,
    /// for a rule that needs several kinds interleaved.
    pub fn rows_of<'k>(&'k self, kinds: &'k [EventKind]) -> impl Iterator<Item = usize> + 'k {
        self.c
            .kind
            .chunks(64)
            .enumerate()
            .flat_map(move |(b, block)| {
                kinds::bits(kinds::any_of(block, kinds)).map(move |j| b * 64 + j)
            })
    }

    /// Events of `kind` on every CPU, in time order.
    pub fn all(&self, kind: EventKind) -> impl Iterator<Item = E<'_>> + '_ {
        assert!(
            IS_WALKED[kind as usize],
            "{kind:?} is not indexed across CPUs"
        );
        self.kind_all[kind as usize]
            .iter()
            .map(|i| self.c.row(*i as usize))
    }

    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// Did `cpu` lose events, or go unobserved, in [t0, t1]?
    pub fn blind(&self, cpu: u32, t0: u64, t1: u64) -> bool {
        if self.observed.as_ref().is_some_and(|o| !o.contains(&cpu)) {
            return true;
        }
        if self.in_hotplug_window(t0, t1) {
            return true;
        }
        self.lost
            .get(&cpu)
            .is_some_and(|w| w.iter().any(|(a, b)| *a <= t1 && t0 <= *b))
    }

    /// Is `t` inside a CPU hotplug window?
    pub fn in_hotplug(&self, t: u64) -> bool {
        self.in_hotplug_window(t, t)
    }

    /// Does [t0, t1] overlap a CPU hotplug window?
    fn in_hotplug_window(&self, t0: u64, t1: u64) -> bool {
        self.hotplug.iter().any(|(_, a, b)| *a <= t1 && t0 <= *b)
    }

    /// Was backlog_napi/cpu woken in [t0, t1]?
    pub fn thread_woken(&self, cpu: u32, t0: u64, t1: u64) -> bool {
        let v = self
            .thread_wakings
            .get(cpu)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let i = v.partition_point(|t| *t < t0);
        v.get(i).is_some_and(|t| *t <= t1)
    }

    /// Was backlog_napi/cpu awake just before t (None: no sched events for it before t)?
    pub fn thread_awake_at(&self, cpu: u32, t: u64) -> Option<bool> {
        let v = self.thread_awake.get(cpu)?;
        let i = v.partition_point(|(ts, _)| *ts < t);
        i.checked_sub(1).map(|j| v[j].1)
    }

    /// Backlog polls on `cpu` with ts in [t0, t1].
    pub fn polls_in(&self, cpu: u32, t0: u64, t1: u64) -> impl Iterator<Item = &Poll> + '_ {
        let v = self
            .slots
            .get(cpu)
            .map_or(&[][..], |s| self.cpu_polls.get(s));
        let i = v.partition_point(|p| self.polls[*p as usize].ts < t0);
        v[i..]
            .iter()
            .map(|p| &self.polls[*p as usize])
            .take_while(move |p| p.ts <= t1)
    }

    /// A batch's polls (indices into `polls`), in time order.
    /// When the poll before the batch's first, on its CPU, ran (None: the CPU's first).
    pub fn prev_poll_ts(&self, b: &Batch) -> Option<u64> {
        let slot = self.slots.get(b.cpu)?;
        let i = b.polls.start as usize;
        (i > self.cpu_polls.start[slot]).then(|| self.polls[self.cpu_polls.rows[i - 1] as usize].ts)
    }

    pub fn batch_polls(&self, b: &Batch) -> &[u32] {
        &self.cpu_polls.rows[b.polls.start as usize..b.polls.end as usize]
    }

    /// Some events of this kind may be missing without a seq gap (recursion guard).
    pub fn missed(&self, kind: EventKind) -> bool {
        self.missed_kind[kind as usize]
    }

    /// Context labels may be wrong somewhere (a context tracker was skipped).
    pub fn ctx_unsure(&self) -> bool {
        self.missed.get("ctx").is_some_and(|n| *n > 0)
    }

    pub fn any_loss(&self) -> bool {
        self.lost.values().any(|v| !v.is_empty())
    }

    pub fn first_poll_ts(&self, b: &Batch) -> u64 {
        self.polls[self.batch_polls(b)[0] as usize].ts
    }

    pub fn work(&self, b: &Batch) -> i64 {
        self.batch_polls(b)
            .iter()
            .map(|p| self.polls[*p as usize].work as i64)
            .sum()
    }
}

/// `Index::find` with a memory: per CPU, where the last query's events started. The next
/// query gallops from there (a few steps when times grow) instead of a binary search over
/// the whole list, which touches a cache line per step.
pub struct Finder<'a> {
    ix: &'a Index,
    kind: EventKind,
    pos: Vec<usize>,
}

impl<'a> Finder<'a> {
    /// Events of the kind on `cpu` with ts in [t0, t1]: the same as `Index::find`.
    pub fn find(&mut self, cpu: u32, t0: u64, t1: u64) -> impl Iterator<Item = E<'a>> + 'a {
        let ix = self.ix;
        let (v, start) = match ix.slots.get(cpu) {
            Some(s) => {
                let v = &ix.by_kind[s * KINDS + self.kind as usize][..];
                let start = gallop(v, &ix.c.ts, t0, self.pos[s]);
                self.pos[s] = start;
                (v, start)
            }
            None => (&[][..], 0),
        };
        v[start..]
            .iter()
            .map(|i| ix.c.row(*i as usize))
            .take_while(move |e| e.ts_ns() <= t1)
    }
}

/// The first position in `v` (row indices in time order) whose ts is at least `t0`,
/// searched outwards from `hint` in doubling steps, then by bisection.
fn gallop(v: &[u32], ts: &[u64], t0: u64, hint: usize) -> usize {
    let below = |j: usize| ts[v[j] as usize] < t0;
    let n = v.len();
    let h = hint.min(n);
    let (lo, hi) = if h < n && below(h) {
        // Forward: everything before `lo` is below t0.
        let (mut lo, mut step) = (h + 1, 1);
        while lo + step <= n && below(lo + step - 1) {
            lo += step;
            step *= 2;
        }
        (lo, (lo + step - 1).min(n))
    } else {
        // Backward: nothing from `hi` on is below t0.
        let (mut hi, mut step) = (h, 1);
        while hi >= step && !below(hi - step) {
            hi -= step;
            step *= 2;
        }
        (if hi >= step { hi - step + 1 } else { 0 }, hi)
    };
    lo + v[lo..hi].partition_point(|i| ts[*i as usize] < t0)
}

#[cfg(test)]
mod tests;
