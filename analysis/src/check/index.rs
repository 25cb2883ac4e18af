//! The trace, indexed for the checker: sorted events, deliveries (netif_rx ↔
//! netif_receive_skb), backlog polls, batches (polls up to the one with work < budget), and
//! the windows where events were lost.

use std::{collections::HashMap, num::NonZeroU32};

use super::{
    kinds::{self, kind_table, KindRows, Wanted, KINDS},
    percpu::PerCpu,
};
use crate::{
    event::{Ctx, EventKind, BACKLOG_DEV},
    paths::MATCH_WINDOW_NS,
    trace::{
        cols::{Cols, E},
        fastmap::FastMap,
        seqscan::{self, SeqFacts},
        TraceMeta,
    },
};

/// One skb's netif_rx paired with its netif_receive_skb. Rows are u32, as everywhere in
/// the index: 40 bytes a delivery, ~3 bytes per event of a trace.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub t_enq: u64,
    pub t_rcv: u64,
    /// Row of the netif_rx.
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

/// Row indices grouped by a key, each group in row (time) order, all in one vector: no
/// vector per group to grow, and a row's placement is one store.
struct Groups {
    rows: Vec<u32>,
    /// Group g is `rows[start[g]..start[g + 1]]`.
    start: Vec<usize>,
}

impl Groups {
    /// Rows grouped by `key` (each row's group, below `counts.len()`), given each group's
    /// size.
    fn of_rows(counts: &[usize], key: impl Iterator<Item = usize>) -> Groups {
        let mut start = Vec::with_capacity(counts.len() + 1);
        start.push(0);
        for n in counts {
            start.push(start[start.len() - 1] + n);
        }
        let mut next = start.clone();
        let mut rows = vec![0u32; start[counts.len()]];
        for (i, g) in key.enumerate() {
            rows[next[g]] = i as u32;
            next[g] += 1;
        }
        Groups { rows, start }
    }

    fn get(&self, g: usize) -> &[u32] {
        &self.rows[self.start[g]..self.start[g + 1]]
    }
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
/// Kinds the delivery pairing walks, in time order across kinds.
const PAIRED: [bool; KINDS] = kind_table(&[
    EventKind::NetifRx,
    EventKind::EnqueueToBacklog,
    EventKind::NetifReceiveSkb,
]);

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

/// CPU → dense slot (in order of first appearance): a table for the usual small CPU
/// numbers, a map for the rest. Looked up per row instead of keeping a slot per row
/// (4 bytes a row of fresh memory).
#[derive(Default)]
struct CpuSlots {
    table: Vec<u32>,
    map: FastMap<u32, usize>,
}

impl CpuSlots {
    /// CPUs below this are looked up in the table.
    const TABLE: usize = 4096;

    #[inline]
    fn get(&self, cpu: u32) -> Option<usize> {
        match self.table.get(cpu as usize) {
            Some(&s) => (s != u32::MAX).then_some(s as usize),
            None => self.map.get(&cpu).copied(),
        }
    }

    /// The slot of a CPU that has rows (all of them got one in `scan`).
    #[inline]
    fn of(&self, cpu: u32) -> usize {
        self.get(cpu).unwrap_or(0)
    }

    /// Slots for `cpus`, in that order.
    fn of_cpus(cpus: &[u32]) -> CpuSlots {
        let mut slots = CpuSlots::default();
        for (s, cpu) in cpus.iter().enumerate() {
            slots.insert(*cpu, s);
        }
        slots
    }

    fn insert(&mut self, cpu: u32, slot: usize) {
        if self.table.is_empty() {
            self.table = vec![u32::MAX; Self::TABLE];
        }
        match self.table.get_mut(cpu as usize) {
            Some(t) => *t = slot as u32,
            None => {
                self.map.insert(cpu, slot);
            }
        }
    }
}

/// The permutation that sorts rows (not yet in order) by (ts, cpu, seq, row).
/// A recording is in time order per CPU, so that case is a merge of the CPUs' runs.
fn time_order(c: &Cols, slots: &CpuSlots, nslots: usize) -> Vec<u32> {
    let key = |i: usize| (c.ts[i], c.cpu[i], c.seq[i]);
    let n = c.len();
    let mut runs: Vec<Vec<u32>> = vec![Vec::new(); nslots];
    for (i, cpu) in c.cpu.iter().enumerate() {
        runs[slots.of(*cpu as u32)].push(i as u32);
    }
    let sorted_runs = runs.iter().all(|r| {
        r.windows(2)
            .all(|w| key(w[0] as usize) <= key(w[1] as usize))
    });
    if !sorted_runs {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|i| (key(*i as usize), *i));
        return order;
    }
    // k-way merge; a run's rows all have the same cpu, so ties in (ts, cpu, seq) only occur
    // inside a run, where row order decides.
    use std::{cmp::Reverse, collections::BinaryHeap};
    type Key = (u64, u16, u64);
    let mut heads: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    let mut pos = vec![0usize; nslots];
    for (s, r) in runs.iter().enumerate() {
        if let Some(i) = r.first() {
            heads.push(Reverse((key(*i as usize), s)));
        }
    }
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, s))) = heads.pop() {
        let r = &runs[s];
        // Take this run's rows while they stay below the next run's head.
        let limit = heads.peek().map(|Reverse((k, _))| *k);
        let mut p = pos[s];
        loop {
            order.push(r[p]);
            p += 1;
            if p == r.len() {
                break;
            }
            let k = key(r[p] as usize);
            if limit.is_some_and(|l| k > l) {
                heads.push(Reverse((k, s)));
                break;
            }
        }
        pos[s] = p;
    }
    order
}

/// Every skb's netif_rx paired with its netif_receive_skb (and the CPU enqueue_to_backlog
/// chose in between), in receive order: one pass over the rows of those three kinds.
fn pair_deliveries(c: &Cols, paired: &KindRows) -> Vec<Delivery> {
    // Sized from the kind counts: no regrowth (each one a copy and fresh pages).
    let mut deliveries = Vec::with_capacity(paired.counts[EventKind::NetifReceiveSkb as usize]);
    // Per skb in flight: its netif_rx row, and the CPU its latest enqueue_to_backlog
    // since then chose.
    let mut last_rx: FastMap<u64, (u32, Option<i32>)> = FastMap::default();
    for i in paired.marked_rows() {
        let e = c.row(i);
        match c.kind[i] {
            EventKind::NetifRx => {
                if let Some(skb) = e.skb() {
                    last_rx.insert(skb, (i as u32, None));
                }
            }
            EventKind::EnqueueToBacklog => {
                if let (Some(skb), Some(cpu)) = (e.skb(), e.target_cpu()) {
                    if let Some(rx) = last_rx.get_mut(&skb) {
                        rx.1 = Some(cpu);
                    }
                }
            }
            _ => {
                let Some(skb) = e.skb() else { continue };
                let Some((j, chosen)) = last_rx.remove(&skb) else {
                    continue;
                };
                let en = c.row(j as usize);
                if e.ts_ns().saturating_sub(en.ts_ns()) > MATCH_WINDOW_NS {
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
        }
    }
    deliveries
}

/// The polls of CPU backlogs (`napi_poll` rows `polls`), each with the first delivery on its
/// CPU since that CPU's previous NAPI poll (of any device).
fn backlog_polls(
    c: &Cols,
    polls: &[u32],
    deliveries: &[Delivery],
    slots: &CpuSlots,
    nslots: usize,
) -> Vec<Poll> {
    let backlog_dev = c.strs.lookup(BACKLOG_DEV);
    let mut out: Vec<Poll> = Vec::with_capacity(polls.len());
    // Per slot: the first delivery since the slot's last NAPI poll.
    let mut pending: Vec<Option<u32>> = vec![None; nslots];
    let mut next = deliveries.iter().enumerate().peekable();
    for &i in polls {
        // Deliveries received before this poll (deliveries are in receive order).
        while let Some((k, d)) = next.next_if(|(_, d)| d.rcv < i) {
            pending[slots.of(d.to)].get_or_insert(k as u32);
        }
        let e = c.row(i as usize);
        let first_delivery = pending[slots.of(e.cpu())].take();
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

/// Per backlog thread: (ts, awake) transitions in time order.
type AwakeStates = PerCpu<Vec<(u64, bool)>>;

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

impl Index {
    pub fn build(mut cols: Cols, meta: &TraceMeta) -> Index {
        // Scanned by the reader (then complete: sorted), or here.
        let facts = cols
            .seq_facts
            .take()
            .unwrap_or_else(|| seqscan::scan(&cols.ts, &cols.cpu, &cols.seq));
        // CPUs with rows, in order of first appearance: their slots.
        let slot_cpu: Vec<u32> = facts.cpus.iter().map(|(cpu, _)| *cpu).collect();
        let slots = CpuSlots::of_cpus(&slot_cpu);
        let nslots = slot_cpu.len();
        let (mut c, facts) = if facts.sorted {
            (cols, facts)
        } else {
            let order = time_order(&cols, &slots, nslots);
            let c = cols.permute(&order);
            let facts = seqscan::scan(&c.ts, &c.cpu, &c.seq);
            (c, facts)
        };
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
        let mut cpus = slot_cpu.clone();
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

        let mut polls_per_slot = vec![0usize; nslots];
        for p in &polls {
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
        for p in &polls {
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

    /// Number of events.
    pub fn len(&self) -> usize {
        self.c.len()
    }

    pub fn is_empty(&self) -> bool {
        self.c.is_empty()
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

/// Per CPU: windows with lost events, from gaps in that CPU's sequence numbers (`facts`,
/// over the rows in time order) and from the recorder's loss counters. A CPU whose sequence
/// numbers go backwards somewhere is redone over its rows sorted by seq.
fn lost_windows(c: &Cols, facts: SeqFacts, meta: &TraceMeta) -> FastMap<u32, Vec<(u64, u64)>> {
    let lost_meta = meta.lost_per_cpu();
    let mut out: FastMap<u32, Vec<(u64, u64)>> = FastMap::default();
    for (cpu, s) in facts.cpus {
        let (mut w, g, last_ts) = if s.ordered {
            let last = s.last_ts();
            (s.windows, s.gaps, last)
        } else {
            // Facts a reader hands over are complete, so this CPU's seqs are in `c.seq`.
            let rows: Vec<u32> = (0..c.len() as u32)
                .filter(|i| c.cpu[*i as usize] as u32 == cpu)
                .collect();
            seq_gaps(c, rows)
        };
        // Losses after the last event this CPU delivered show in the counters, not in seq.
        if lost_meta.get(cpu as usize).copied().unwrap_or(0) > g {
            w.push((last_ts, u64::MAX));
        }
        out.insert(cpu, w);
    }
    // Windows in which the kernel ran none of the recorder's programs on a CPU (no seq was
    // taken, so no gap shows): as lost as any.
    for b in crate::kcounters::blind_of(meta) {
        let w = out.entry(b.cpu).or_default();
        w.extend(b.last.iter().map(|s| (s.from_ns, s.to_ns)));
        if b.windows as usize > b.last.len() {
            // Older windows than the log keeps: somewhere before the first one kept.
            let first = b.last.iter().map(|s| s.from_ns).min().unwrap_or(u64::MAX);
            w.push((0, first));
        }
    }
    out
}

/// Loss windows of one CPU's rows (in time order) whose seqs are not in time order:
/// (windows, lost count, ts of the last row by seq).
fn seq_gaps(c: &Cols, mut v: Vec<u32>) -> (Vec<(u64, u64)>, u64, u64) {
    v.sort_by_key(|i| c.seq[*i as usize]); // stable: time order among equal seqs
    let (seq, ts) = (|i: u32| c.seq[i as usize], |i: u32| c.ts[i as usize]);
    let mut gaps = 0u64;
    let mut w = Vec::new();
    if let Some(first) = v.first().filter(|i| seq(**i) > 0) {
        gaps += seq(*first);
        w.push((0, ts(*first)));
    }
    for pair in v.windows(2) {
        if seq(pair[1]) > seq(pair[0]) + 1 {
            gaps += seq(pair[1]) - seq(pair[0]) - 1;
            w.push((ts(pair[0]), ts(pair[1])));
        }
    }
    (w, gaps, v.last().map_or(0, |i| ts(*i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn loss_windows_from_seq_gaps_in_and_out_of_time_order() {
        // (ts, cpu, seq): CPU 0 in order with a gap of 2; CPU 1 starts at seq 3, then its
        // seq goes back to 2 (the single pass hands it to the sort by seq).
        let rows = [
            (10, 0, 0),
            (15, 1, 3),
            (20, 0, 1),
            (25, 1, 2),
            (30, 0, 4),
            (40, 0, 5),
        ];
        let events: Vec<Event> = rows
            .iter()
            .map(|&(ts, cpu, seq)| Event::new(ts, cpu, seq, EventKind::NetifRx))
            .collect();
        let c = Cols::from_events(&events);
        let mut meta = TraceMeta::default();
        meta.set("lost_per_cpu", "[0,5]");
        let facts = seqscan::scan(&c.ts, &c.cpu, &c.seq);
        let w = lost_windows(&c, facts, &meta);
        assert_eq!(w[&0], vec![(20, 30)]);
        // Sorted by seq: 2 (ts 25), 3 (ts 15): 2 lost before; the counters say 5, so the
        // rest were lost after the last event by seq.
        assert_eq!(w[&1], vec![(0, 25), (15, u64::MAX)]);
    }

    #[test]
    fn index_records_stay_compact() {
        // A 50M-event trace holds ~4M of each: every 8 bytes is ~30 MB to fault in.
        assert_eq!(std::mem::size_of::<Delivery>(), 40);
        assert_eq!(std::mem::size_of::<Poll>(), 32);
        assert_eq!(std::mem::size_of::<Batch>(), 20);
        assert_eq!(DeliveryRef::new(Some(0)).get(), Some(0));
        assert_eq!(DeliveryRef::new(Some(7)).get(), Some(7));
        assert_eq!(DeliveryRef::new(None).get(), None);
    }

    #[test]
    fn cpus_get_slots_in_order() {
        let slots = CpuSlots::of_cpus(&[7, 9, 5000]); // 5000: past the table, the map
        assert_eq!(slots.get(5000), Some(2));
        assert_eq!(
            (slots.get(7), slots.get(9), slots.get(8)),
            (Some(0), Some(1), None)
        );
    }

    #[test]
    fn groups_keep_row_order() {
        let g = Groups::of_rows(&[2, 0, 3], [2, 0, 2, 0, 2].into_iter());
        assert_eq!(g.get(0), [1, 3]);
        assert!(g.get(1).is_empty());
        assert_eq!(g.get(2), [0, 2, 4]);
    }
}
