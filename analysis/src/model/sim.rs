//! Drives the model with a workload and turns what it emits into a trace (same schema as
//! `napiscope record`). Legal kernel choices — IPI or idle poll, softirq inline or in
//! ksoftirqd, wake-up latencies — are drawn from a seeded generator: same seed, same trace.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
};

use super::{
    backlog_thread_comm, backlog_thread_pid, ksoftirqd_comm, Exec, Features, Kernel, Params,
    Pending, ThreadState, Tracer,
};
use crate::{
    event::{Ctx, Event, EventKind},
    mode::Mode,
    trace::TraceMeta,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// One sender on CPU 0, RPS to CPU 1: remote batches.
    Rps,
    /// One sender on CPU 0, RPS off: local batches.
    Loopback,
    /// Senders on every CPU, random RPS targets.
    Mixed,
}

impl Workload {
    pub fn parse(s: &str) -> Option<Workload> {
        match s {
            "rps" => Some(Workload::Rps),
            "loopback" => Some(Workload::Loopback),
            "mixed" => Some(Workload::Mixed),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Workload::Rps => "rps",
            Workload::Loopback => "loopback",
            Workload::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimOpts {
    pub mode: Mode,
    pub ncpu: usize,
    pub workload: Workload,
    pub packets: usize,
    pub seed: u64,
    pub features: Features,
}

impl SimOpts {
    pub fn new(mode: Mode, ncpu: usize, workload: Workload) -> SimOpts {
        SimOpts {
            mode,
            ncpu,
            workload,
            packets: 2000,
            seed: 1,
            features: Features::for_release("6.18"),
        }
    }
}

/// xorshift64*: small, deterministic, good enough to pick among legal choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Send { cpu: usize, target: usize, skb: u64 },
    Ipi { cpu: usize, idle: bool },
    ThreadRun { cpu: usize },
    Ksoftirqd { cpu: usize },
}

/// Collects emitted events, stamping them with per-CPU time (each event takes `STEP_NS`).
pub(super) struct Collector {
    pub(super) events: Vec<Event>,
    pub(super) clock: Vec<u64>,
}

const STEP_NS: u64 = 250;

impl Tracer for Collector {
    fn emit(&mut self, x: &Exec, mut e: Event) {
        self.clock[x.cpu] += STEP_NS;
        e.ts_ns = self.clock[x.cpu];
        e.cpu = x.cpu as u32;
        e.ctx = x.ctx;
        e.comm = x.comm.clone();
        e.pid = x.pid;
        self.events.push(e);
    }
}

pub(super) fn idle(cpu: usize) -> Exec {
    Exec {
        cpu,
        ctx: Ctx::Task,
        comm: format!("swapper/{cpu}"),
        pid: 0,
    }
}

pub(super) fn sched_switch(
    c: &mut Collector,
    from: &Exec,
    to_comm: String,
    to_pid: i32,
    prev_state: &str,
) {
    let mut e = Event::new(0, 0, 0, EventKind::SchedSwitch);
    e.target_comm = Some(to_comm);
    e.target_pid = Some(to_pid);
    e.prev_state = Some(prev_state.into());
    c.emit(from, e);
}

pub struct Simulation {
    pub events: Vec<Event>,
    pub meta: TraceMeta,
    pub kernel: Kernel,
}

pub fn simulate(o: &SimOpts) -> Simulation {
    let ncpu = o.ncpu.max(1);
    let mut p = Params::new(o.mode, ncpu);
    p.features = o.features;
    let mut sim = Driver {
        k: Kernel::new(p),
        c: Collector {
            events: Vec::new(),
            clock: vec![1_000_000; ncpu],
        },
        rng: Rng(o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        // The idle loop's choice (poll with the IPI pending, or take it) has its own stream,
        // so adding a draw elsewhere does not reshuffle it.
        idle_rng: Rng(o.seed ^ 0x1d1e),
        agenda: BinaryHeap::new(),
        order: 0,
    };
    sim.push_workload(o, ncpu);
    while let Some(Reverse((when, _, action))) = sim.agenda.pop() {
        let cpu = action.cpu();
        sim.c.clock[cpu] = sim.c.clock[cpu].max(when);
        match action {
            Action::Send { cpu, target, skb } => sim.send(cpu, target, skb),
            Action::Ipi { cpu, idle } => sim.ipi(cpu, idle),
            Action::ThreadRun { cpu } => sim.backlog_thread_runs(cpu),
            Action::Ksoftirqd { cpu } => sim.ksoftirqd_runs(cpu),
        }
        sim.schedule_pending(when);
    }
    let events = numbered(sim.c.events);
    Simulation {
        events,
        meta: sim_meta(o, ncpu),
        kernel: sim.k,
    }
}

impl Action {
    fn cpu(&self) -> usize {
        match *self {
            Action::Send { cpu, .. }
            | Action::Ipi { cpu, .. }
            | Action::ThreadRun { cpu }
            | Action::Ksoftirqd { cpu } => cpu,
        }
    }
}

/// The simulation's state: the model, what it emitted, the seeded choices, and the agenda of
/// what happens next (time, insertion order, action).
struct Driver {
    k: Kernel,
    c: Collector,
    rng: Rng,
    idle_rng: Rng,
    agenda: BinaryHeap<Reverse<(u64, u64, Action)>>,
    order: u64,
}

impl Driver {
    fn push(&mut self, t: u64, a: Action) {
        self.order += 1;
        self.agenda.push(Reverse((t, self.order, a)));
    }

    /// The workload: bursts (to build multi-poll batches) separated by pauses.
    fn push_workload(&mut self, o: &SimOpts, ncpu: usize) {
        let mut t = 1_000_000u64;
        for i in 0..o.packets {
            t += if self.rng.chance(25) {
                self.rng.below(300) // burst
            } else {
                2_000 + self.rng.below(40_000)
            };
            let (cpu, target) = match o.workload {
                Workload::Rps => (0, 1 % ncpu),
                Workload::Loopback => (0, 0),
                Workload::Mixed => (
                    self.rng.below(ncpu as u64) as usize,
                    self.rng.below(ncpu as u64) as usize,
                ),
            };
            let skb = 0x5ead_0000_0000 + i as u64 * 0x100;
            self.push(t, Action::Send { cpu, target, skb });
        }
    }

    /// net_rx_action as `x`, with the idle loop's choices drawn from their own stream.
    fn net_rx_action(&mut self, x: &Exec) {
        let idle_rng = &mut self.idle_rng;
        self.k
            .net_rx_action(&mut self.c, x, &mut |_cpu: usize| idle_rng.chance(20));
    }

    fn send(&mut self, cpu: usize, target: usize, skb: u64) {
        let sender = Exec {
            cpu,
            ctx: Ctx::Task,
            comm: "udp-sender".into(),
            pid: 1000 + cpu as i32,
        };
        // netif_rx runs with BH disabled; pending softirqs run at local_bh_enable.
        self.k
            .netif_rx(&mut self.c, &sender, skb, target, "veth-sim");
        if self.k.sd[cpu].netrx_pending {
            if self.rng.chance(5) {
                wake_ksoftirqd(&mut self.k, &mut self.c, &sender);
            } else {
                self.net_rx_action(&Exec {
                    ctx: Ctx::Softirq,
                    ..sender
                });
            }
        }
    }

    fn ipi(&mut self, cpu: usize, via_idle: bool) {
        let x = Exec {
            ctx: if via_idle { Ctx::Task } else { Ctx::Hardirq },
            ..idle(cpu)
        };
        self.k.rps_trigger_softirq(&mut self.c, &x);
        if self.k.sd[cpu].netrx_pending {
            // irq exit (or the idle loop's post-flush do_softirq) runs it here.
            self.net_rx_action(&Exec {
                ctx: Ctx::Softirq,
                ..idle(cpu)
            });
        }
    }

    fn backlog_thread_runs(&mut self, cpu: usize) {
        let comm = backlog_thread_comm(cpu);
        let pid = backlog_thread_pid(cpu);
        sched_switch(&mut self.c, &idle(cpu), comm.clone(), pid, "R");
        self.k.sd[cpu].thread = ThreadState::Running;
        let tx = Exec {
            cpu,
            ctx: Ctx::Task,
            comm,
            pid,
        };
        while self.k.backlog_napi_should_run(cpu) {
            let idle_rng = &mut self.idle_rng;
            self.k
                .napi_threaded_poll_loop(&mut self.c, &tx, &mut |_cpu: usize| idle_rng.chance(20));
            if self.k.sd[cpu].netrx_pending {
                // local_bh_enable in the thread runs the softirq as this task.
                self.net_rx_action(&Exec {
                    ctx: Ctx::Softirq,
                    ..tx.clone()
                });
            }
        }
        self.k.sd[cpu].thread = ThreadState::Sleeping;
        sched_switch(&mut self.c, &tx, format!("swapper/{cpu}"), 0, "S");
    }

    fn ksoftirqd_runs(&mut self, cpu: usize) {
        let comm = ksoftirqd_comm(cpu);
        let pid = 10 + cpu as i32;
        sched_switch(&mut self.c, &idle(cpu), comm.clone(), pid, "R");
        let kx = Exec {
            cpu,
            ctx: Ctx::Task,
            comm,
            pid,
        };
        if self.k.sd[cpu].netrx_pending {
            self.net_rx_action(&Exec {
                ctx: Ctx::Softirq,
                ..kx.clone()
            });
        }
        sched_switch(&mut self.c, &kx, format!("swapper/{cpu}"), 0, "S");
    }

    /// What the kernel left pending (an IPI in flight, a runnable thread) happens after a
    /// drawn delay.
    fn schedule_pending(&mut self, when: u64) {
        for pend in std::mem::take(&mut self.k.pending) {
            let (delay, a) = match pend {
                Pending::Ipi { cpu, idle } => {
                    (2_000 + self.rng.below(10_000), Action::Ipi { cpu, idle })
                }
                Pending::ThreadRunnable { cpu } => {
                    (3_000 + self.rng.below(30_000), Action::ThreadRun { cpu })
                }
                Pending::Ksoftirqd { cpu } => {
                    (3_000 + self.rng.below(20_000), Action::Ksoftirqd { cpu })
                }
            };
            let now = self.c.clock.iter().copied().max().unwrap_or(when).max(when);
            self.push(now + delay, a);
        }
    }
}

/// Events in time order, each CPU's numbered from 0 (as the recorder's per-CPU seq).
pub(super) fn numbered(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| (e.ts_ns, e.cpu));
    let mut seq: HashMap<u32, u64> = HashMap::new();
    for e in &mut events {
        let s = seq.entry(e.cpu).or_default();
        e.seq = *s;
        *s += 1;
    }
    events
}

fn sim_meta(o: &SimOpts, ncpu: usize) -> TraceMeta {
    let mut meta = TraceMeta::default();
    meta.set("source", "simulate");
    meta.set("mode", o.mode.as_str());
    meta.set("cpus", ncpu.to_string());
    meta.set(
        "cpus_online",
        format!("{:?}", (0..ncpu).collect::<Vec<_>>()),
    );
    meta.set("workload", o.workload.name());
    meta.set("seed", o.seed.to_string());
    meta.set("features", format!("{:?}", o.features));
    meta.set("clock", "simulated (ns)");
    meta.set("lost_per_cpu", format!("{:?}", vec![0; ncpu]));
    meta.set("kernel_release", "model");
    meta.set("napiscope_version", env!("CARGO_PKG_VERSION"));
    if o.mode == Mode::C {
        let threads: Vec<String> = (0..ncpu).map(backlog_thread_comm).collect();
        meta.set(
            "backlog_threads",
            serde_json::to_string(&threads).unwrap_or_default(),
        );
    }
    meta
}

fn wake_ksoftirqd(k: &mut Kernel, c: &mut Collector, x: &Exec) {
    let mut w = Event::new(0, 0, 0, EventKind::SchedWaking);
    w.target_comm = Some(ksoftirqd_comm(x.cpu));
    w.target_pid = Some(10 + x.cpu as i32);
    w.target_cpu = Some(x.cpu as i32);
    c.emit(x, w);
    k.pending.push(Pending::Ksoftirqd { cpu: x.cpu });
}
