//! The trace, indexed for the checker: sorted events, deliveries (netif_rx ↔
//! netif_receive_skb), backlog polls, batches (polls up to the one with work < budget), and
//! the windows where events were lost.

use std::collections::HashMap;

use crate::{
    event::{Ctx, Event, EventKind},
    paths::MATCH_WINDOW_NS,
    trace::TraceMeta,
};

#[derive(Clone, Debug)]
pub struct Delivery {
    pub skb: u64,
    pub enq: usize,
    pub rcv: usize,
    pub from: u32,
    pub to: u32,
    pub t_enq: u64,
    pub t_rcv: u64,
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
    pub ev: usize,
    pub cpu: u32,
    pub ts: u64,
    pub work: i32,
    pub budget: i32,
    pub class: Class,
    pub deliveries: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Batch {
    pub cpu: u32,
    pub polls: Vec<usize>,
    pub complete: bool,
    pub class: Class,
    /// The first delivery of the batch: FIFO makes its enqueue the batch's initiator.
    pub init: Option<usize>,
    /// The first backlog batch seen on this CPU (may have started before the trace).
    pub first_on_cpu: bool,
}

pub struct Index<'a> {
    pub ev: Vec<&'a Event>,
    pub deliveries: Vec<Delivery>,
    pub polls: Vec<Poll>,
    pub batches: Vec<Batch>,
    /// Per CPU: (from, to) time windows that lost events.
    pub lost: HashMap<u32, Vec<(u64, u64)>>,
    /// CPUs whose events are in the trace (all, unless recorded with -C).
    pub observed: Option<Vec<u32>>,
    /// Per CPU T: times of sched_waking events whose target is backlog_napi/T.
    pub thread_wakings: HashMap<u32, Vec<u64>>,
    /// Per CPU T: backlog_napi/T awake (true) / asleep (false) transitions, in time order.
    pub thread_awake: HashMap<u32, Vec<(u64, bool)>>,
    /// Per CPU: backlog polls (indices into `polls`), in time order.
    pub polls_by_cpu: HashMap<u32, Vec<usize>>,
    /// Events the kernel skipped (eBPF recursion guard) by event name; "ctx" = trackers.
    pub missed: HashMap<String, u64>,
    /// Per (cpu, kind): sorted event indices.
    by_kind: HashMap<(u32, EventKind), Vec<usize>>,
    pub t_end: u64,
}

pub fn poll_class(e: &Event) -> Class {
    if e.ctx == Ctx::Softirq {
        Class::Softirq
    } else if e.comm.starts_with("backlog_napi/") {
        Class::Thread
    } else {
        Class::Other
    }
}

impl<'a> Index<'a> {
    pub fn build(events: &'a [Event], meta: &TraceMeta) -> Index<'a> {
        let mut ev: Vec<&Event> = events.iter().collect();
        ev.sort_by_key(|e| (e.ts_ns, e.cpu, e.seq));
        let t_end = ev.last().map_or(0, |e| e.ts_ns);
        let mut by_kind: HashMap<(u32, EventKind), Vec<usize>> = HashMap::new();
        for (i, e) in ev.iter().enumerate() {
            by_kind.entry((e.cpu, e.event)).or_default().push(i);
        }
        let lost = lost_windows(&ev, meta);
        let observed = meta
            .get("cpu_filter")
            .filter(|f| *f != "all")
            .and_then(|f| serde_json::from_str::<Vec<u32>>(f).ok());

        let mut deliveries = Vec::new();
        let mut polls: Vec<Poll> = Vec::new();
        let mut last_rx: HashMap<u64, usize> = HashMap::new();
        let mut pending: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, e) in ev.iter().enumerate() {
            match e.event {
                EventKind::NetifRx => {
                    if let Some(skb) = e.skb {
                        last_rx.insert(skb, i);
                    }
                }
                EventKind::NetifReceiveSkb => {
                    let Some(skb) = e.skb else { continue };
                    let Some(j) = last_rx.remove(&skb) else {
                        continue;
                    };
                    let en = ev[j];
                    if e.ts_ns.saturating_sub(en.ts_ns) > MATCH_WINDOW_NS {
                        continue;
                    }
                    pending.entry(e.cpu).or_default().push(deliveries.len());
                    deliveries.push(Delivery {
                        skb,
                        enq: j,
                        rcv: i,
                        from: en.cpu,
                        to: e.cpu,
                        t_enq: en.ts_ns,
                        t_rcv: e.ts_ns,
                    });
                }
                EventKind::NapiPoll => {
                    let mine = pending.remove(&e.cpu).unwrap_or_default();
                    if e.is_backlog_poll() {
                        polls.push(Poll {
                            ev: i,
                            cpu: e.cpu,
                            ts: e.ts_ns,
                            work: e.work.unwrap_or(0),
                            budget: e.budget.unwrap_or(0),
                            class: poll_class(e),
                            deliveries: mine,
                        });
                    }
                }
                _ => {}
            }
        }

        let mut batches: Vec<Batch> = Vec::new();
        let mut open: HashMap<u32, usize> = HashMap::new();
        let mut seen_cpu: HashMap<u32, bool> = HashMap::new();
        for (pi, p) in polls.iter().enumerate() {
            let bi = match open.get(&p.cpu) {
                Some(b) => *b,
                None => {
                    let first = !seen_cpu.contains_key(&p.cpu);
                    seen_cpu.insert(p.cpu, true);
                    batches.push(Batch {
                        cpu: p.cpu,
                        polls: Vec::new(),
                        complete: false,
                        class: p.class,
                        init: None,
                        first_on_cpu: first,
                    });
                    open.insert(p.cpu, batches.len() - 1);
                    batches.len() - 1
                }
            };
            let b = &mut batches[bi];
            b.polls.push(pi);
            if b.class != p.class {
                b.class = Class::Mixed;
            }
            if b.init.is_none() {
                b.init = p.deliveries.first().copied();
            }
            if p.work < p.budget {
                b.complete = true;
                open.remove(&p.cpu);
            }
        }
        let thread_of = |s: &str| -> Option<u32> {
            s.strip_prefix("backlog_napi/").and_then(|n| n.parse().ok())
        };
        let mut thread_wakings: HashMap<u32, Vec<u64>> = HashMap::new();
        let mut thread_awake: HashMap<u32, Vec<(u64, bool)>> = HashMap::new();
        for e in &ev {
            match e.event {
                EventKind::SchedWaking => {
                    if let Some(t) = e.target_comm.as_deref().and_then(thread_of) {
                        thread_wakings.entry(t).or_default().push(e.ts_ns);
                        thread_awake.entry(t).or_default().push((e.ts_ns, true));
                    }
                }
                EventKind::SchedSwitch => {
                    if let Some(t) = thread_of(&e.comm) {
                        let awake = e.prev_state.as_deref() != Some("S");
                        thread_awake.entry(t).or_default().push((e.ts_ns, awake));
                    }
                    if let Some(t) = e.target_comm.as_deref().and_then(thread_of) {
                        thread_awake.entry(t).or_default().push((e.ts_ns, true));
                    }
                }
                _ => {}
            }
        }
        let mut polls_by_cpu: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, p) in polls.iter().enumerate() {
            polls_by_cpu.entry(p.cpu).or_default().push(i);
        }
        let missed = meta
            .get("missed_by_event")
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        Index {
            thread_wakings,
            thread_awake,
            polls_by_cpu,
            missed,
            ev,
            deliveries,
            polls,
            batches,
            lost,
            observed,
            by_kind,
            t_end,
        }
    }

    /// Events of `kind` on `cpu` with ts in [t0, t1].
    pub fn find(
        &self,
        cpu: u32,
        kind: EventKind,
        t0: u64,
        t1: u64,
    ) -> impl Iterator<Item = &'a Event> + '_ {
        let v = self
            .by_kind
            .get(&(cpu, kind))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let start = v.partition_point(|i| self.ev[*i].ts_ns < t0);
        v[start..]
            .iter()
            .map(|i| self.ev[*i])
            .take_while(move |e| e.ts_ns <= t1)
    }

    pub fn all(&self, kind: EventKind) -> impl Iterator<Item = &'a Event> + '_ {
        self.ev.iter().copied().filter(move |e| e.event == kind)
    }

    pub fn cpus(&self) -> Vec<u32> {
        let mut c: Vec<u32> = self.by_kind.keys().map(|(c, _)| *c).collect();
        c.sort();
        c.dedup();
        c
    }

    /// Did `cpu` lose events, or go unobserved, in [t0, t1]?
    pub fn blind(&self, cpu: u32, t0: u64, t1: u64) -> bool {
        if self.observed.as_ref().is_some_and(|o| !o.contains(&cpu)) {
            return true;
        }
        self.lost
            .get(&cpu)
            .is_some_and(|w| w.iter().any(|(a, b)| *a <= t1 && t0 <= *b))
    }

    /// Was backlog_napi/cpu woken in [t0, t1]?
    pub fn thread_woken(&self, cpu: u32, t0: u64, t1: u64) -> bool {
        let v = self
            .thread_wakings
            .get(&cpu)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let i = v.partition_point(|t| *t < t0);
        v.get(i).is_some_and(|t| *t <= t1)
    }

    /// Was backlog_napi/cpu awake just before t (None: no sched events for it before t)?
    pub fn thread_awake_at(&self, cpu: u32, t: u64) -> Option<bool> {
        let v = self.thread_awake.get(&cpu)?;
        let i = v.partition_point(|(ts, _)| *ts < t);
        i.checked_sub(1).map(|j| v[j].1)
    }

    /// Backlog polls on `cpu` with ts in [t0, t1].
    pub fn polls_in(&self, cpu: u32, t0: u64, t1: u64) -> impl Iterator<Item = &Poll> + '_ {
        let v = self
            .polls_by_cpu
            .get(&cpu)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let i = v.partition_point(|p| self.polls[*p].ts < t0);
        v[i..]
            .iter()
            .map(|p| &self.polls[*p])
            .take_while(move |p| p.ts <= t1)
    }

    /// Some events of this kind may be missing without a seq gap (recursion guard).
    pub fn missed(&self, kind: EventKind) -> bool {
        self.missed.get(kind.name()).is_some_and(|n| *n > 0)
    }

    /// Context labels may be wrong somewhere (a context tracker was skipped).
    pub fn ctx_unsure(&self) -> bool {
        self.missed.get("ctx").is_some_and(|n| *n > 0)
    }

    pub fn any_loss(&self) -> bool {
        self.lost.values().any(|v| !v.is_empty())
    }

    pub fn first_poll_ts(&self, b: &Batch) -> u64 {
        self.polls[b.polls[0]].ts
    }

    pub fn work(&self, b: &Batch) -> i64 {
        b.polls.iter().map(|p| self.polls[*p].work as i64).sum()
    }
}

fn lost_windows(ev: &[&Event], meta: &TraceMeta) -> HashMap<u32, Vec<(u64, u64)>> {
    let mut per_cpu: HashMap<u32, Vec<&Event>> = HashMap::new();
    for e in ev {
        per_cpu.entry(e.cpu).or_default().push(e);
    }
    let lost_meta = meta.lost_per_cpu();
    let mut out: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for (cpu, mut v) in per_cpu {
        v.sort_by_key(|e| e.seq);
        let mut gaps = 0u64;
        let w = out.entry(cpu).or_default();
        if let Some(first) = v.first().filter(|e| e.seq > 0) {
            gaps += first.seq;
            w.push((0, first.ts_ns));
        }
        for pair in v.windows(2) {
            if pair[1].seq > pair[0].seq + 1 {
                gaps += pair[1].seq - pair[0].seq - 1;
                w.push((pair[0].ts_ns, pair[1].ts_ns));
            }
        }
        // Losses after the last event this CPU delivered show in the counters, not in seq.
        if lost_meta.get(cpu as usize).copied().unwrap_or(0) > gaps {
            w.push((v.last().map_or(0, |e| e.ts_ns), u64::MAX));
        }
    }
    out
}
