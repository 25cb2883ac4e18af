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
struct Collector {
    events: Vec<Event>,
    clock: Vec<u64>,
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

fn idle(cpu: usize) -> Exec {
    Exec {
        cpu,
        ctx: Ctx::Task,
        comm: format!("swapper/{cpu}"),
        pid: 0,
    }
}

fn sched_switch(c: &mut Collector, from: &Exec, to_comm: String, to_pid: i32, prev_state: &str) {
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
    let mut k = Kernel::new(p);
    let mut rng = Rng(o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut c = Collector {
        events: Vec::new(),
        clock: vec![1_000_000; ncpu],
    };
    let mut agenda: BinaryHeap<Reverse<(u64, u64, Action)>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut push = |agenda: &mut BinaryHeap<_>, t: u64, a: Action| {
        order += 1;
        agenda.push(Reverse((t, order, a)));
    };

    // The workload: bursts (to build multi-poll batches) separated by pauses.
    let mut t = 1_000_000u64;
    for i in 0..o.packets {
        t += if rng.chance(25) {
            rng.below(300) // burst
        } else {
            2_000 + rng.below(40_000)
        };
        let (cpu, target) = match o.workload {
            Workload::Rps => (0, 1 % ncpu),
            Workload::Loopback => (0, 0),
            Workload::Mixed => (
                rng.below(ncpu as u64) as usize,
                rng.below(ncpu as u64) as usize,
            ),
        };
        let skb = 0x5ead_0000_0000 + i as u64 * 0x100;
        push(&mut agenda, t, Action::Send { cpu, target, skb });
    }

    let mut idle_choice = {
        let mut r = Rng(o.seed ^ 0x1d1e);
        move |_cpu: usize| r.chance(20)
    };
    while let Some(Reverse((when, _, action))) = agenda.pop() {
        match action {
            Action::Send { cpu, target, skb } => {
                c.clock[cpu] = c.clock[cpu].max(when);
                let sender = Exec {
                    cpu,
                    ctx: Ctx::Task,
                    comm: "udp-sender".into(),
                    pid: 1000 + cpu as i32,
                };
                // netif_rx runs with BH disabled; pending softirqs run at local_bh_enable.
                k.netif_rx(&mut c, &sender, skb, target, "veth-sim");
                if k.sd[cpu].netrx_pending {
                    if rng.chance(5) {
                        wake_ksoftirqd(&mut k, &mut c, &sender);
                    } else {
                        let sx = Exec {
                            ctx: Ctx::Softirq,
                            ..sender
                        };
                        k.net_rx_action(&mut c, &sx, &mut idle_choice);
                    }
                }
            }
            Action::Ipi {
                cpu,
                idle: via_idle,
            } => {
                c.clock[cpu] = c.clock[cpu].max(when);
                let x = Exec {
                    ctx: if via_idle { Ctx::Task } else { Ctx::Hardirq },
                    ..idle(cpu)
                };
                k.rps_trigger_softirq(&mut c, &x);
                if k.sd[cpu].netrx_pending {
                    // irq exit (or the idle loop's post-flush do_softirq) runs it here.
                    let sx = Exec {
                        ctx: Ctx::Softirq,
                        ..idle(cpu)
                    };
                    k.net_rx_action(&mut c, &sx, &mut idle_choice);
                }
            }
            Action::ThreadRun { cpu } => {
                c.clock[cpu] = c.clock[cpu].max(when);
                let comm = backlog_thread_comm(cpu);
                let pid = backlog_thread_pid(cpu);
                sched_switch(&mut c, &idle(cpu), comm.clone(), pid, "R");
                k.sd[cpu].thread = ThreadState::Running;
                let tx = Exec {
                    cpu,
                    ctx: Ctx::Task,
                    comm: comm.clone(),
                    pid,
                };
                while k.backlog_napi_should_run(cpu) {
                    k.napi_threaded_poll_loop(&mut c, &tx, &mut idle_choice);
                    if k.sd[cpu].netrx_pending {
                        // local_bh_enable in the thread runs the softirq as this task.
                        let sx = Exec {
                            ctx: Ctx::Softirq,
                            ..tx.clone()
                        };
                        k.net_rx_action(&mut c, &sx, &mut idle_choice);
                    }
                }
                k.sd[cpu].thread = ThreadState::Sleeping;
                sched_switch(&mut c, &tx, format!("swapper/{cpu}"), 0, "S");
            }
            Action::Ksoftirqd { cpu } => {
                c.clock[cpu] = c.clock[cpu].max(when);
                let comm = ksoftirqd_comm(cpu);
                let pid = 10 + cpu as i32;
                sched_switch(&mut c, &idle(cpu), comm.clone(), pid, "R");
                let kx = Exec {
                    cpu,
                    ctx: Ctx::Task,
                    comm,
                    pid,
                };
                if k.sd[cpu].netrx_pending {
                    let sx = Exec {
                        ctx: Ctx::Softirq,
                        ..kx.clone()
                    };
                    k.net_rx_action(&mut c, &sx, &mut idle_choice);
                }
                sched_switch(&mut c, &kx, format!("swapper/{cpu}"), 0, "S");
            }
        }
        for pend in std::mem::take(&mut k.pending) {
            let (delay, a) = match pend {
                Pending::Ipi { cpu, idle } => {
                    (2_000 + rng.below(10_000), Action::Ipi { cpu, idle })
                }
                Pending::ThreadRunnable { cpu } => {
                    (3_000 + rng.below(30_000), Action::ThreadRun { cpu })
                }
                Pending::Ksoftirqd { cpu } => {
                    (3_000 + rng.below(20_000), Action::Ksoftirqd { cpu })
                }
            };
            let now = c.clock.iter().copied().max().unwrap_or(when).max(when);
            push(&mut agenda, now + delay, a);
        }
    }

    let mut events = c.events;
    events.sort_by_key(|e| (e.ts_ns, e.cpu));
    let mut seq: HashMap<u32, u64> = HashMap::new();
    for e in &mut events {
        let s = seq.entry(e.cpu).or_default();
        e.seq = *s;
        *s += 1;
    }
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
    Simulation {
        events,
        meta,
        kernel: k,
    }
}

fn wake_ksoftirqd(k: &mut Kernel, c: &mut Collector, x: &Exec) {
    let mut w = Event::new(0, 0, 0, EventKind::SchedWaking);
    w.target_comm = Some(ksoftirqd_comm(x.cpu));
    w.target_pid = Some(10 + x.cpu as i32);
    w.target_cpu = Some(x.cpu as i32);
    c.emit(x, w);
    k.pending.push(Pending::Ksoftirqd { cpu: x.cpu });
}
