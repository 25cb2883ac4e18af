//! Replays a recording's arrivals (each packet's netif_rx: when, on which CPU, to which
//! backlog) through the model in a mode of one's choosing (`napiscope whatif`). What the
//! kernel leaves to timing is given by `ReplayOpts`: a batch opened by an enqueue is polled
//! (its IPI handled, or its backlog_napi/N run) after a delay drawn from `windows` — the
//! recording's own batch windows, so their spread is kept, not just their median. The
//! poll itself is instantaneous, which is why a window counts the target's service time
//! too. Pending softirqs run at the sender's local_bh_enable (never deferred to ksoftirqd),
//! and no target polls in idle.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::{
    backlog_thread_comm, backlog_thread_pid, ksoftirqd_comm,
    sim::{idle, numbered, sched_switch, Collector},
    Exec, Features, Kernel, Params, Pending, ThreadState,
};
use crate::{
    event::{Ctx, Event},
    mode::Mode,
};

/// One packet as the recording saw it arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// netif_rx's timestamp (ns).
    pub ts: u64,
    /// The CPU netif_rx ran on (S).
    pub cpu: usize,
    /// The backlog it went to (T: get_rps_cpu's choice, the CPU that received it).
    pub target: usize,
    pub skb: u64,
}

#[derive(Clone, Debug)]
pub struct ReplayOpts {
    pub mode: Mode,
    pub ncpu: usize,
    pub features: Features,
    /// From the enqueue that schedules a backlog to its poll, ns: one is drawn per IPI or
    /// thread wake-up (empty: no delay).
    pub windows: Vec<u64>,
    /// Seed of the draws (same seed, same replay).
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Send { cpu: usize, target: usize, skb: u64 },
    Ipi { cpu: usize },
    ThreadRun { cpu: usize },
    Ksoftirqd { cpu: usize },
}

struct Replay {
    k: Kernel,
    c: Collector,
    agenda: BinaryHeap<Reverse<(u64, u64, Action)>>,
    order: u64,
    o: ReplayOpts,
    rng: u64,
}

/// The events the model emits for `arrivals` in `o.mode`, in time order, each CPU's
/// numbered from 0 (the schema `record` writes). Arrivals on or to CPUs beyond `o.ncpu`
/// are left out.
pub fn replay(o: &ReplayOpts, arrivals: &[Arrival]) -> Vec<Event> {
    let ncpu = o.ncpu.max(1);
    let mut p = Params::new(o.mode, ncpu);
    p.features = o.features;
    let start = arrivals.iter().map(|a| a.ts).min().unwrap_or(0);
    let mut r = Replay {
        k: Kernel::new(p),
        c: Collector {
            events: Vec::new(),
            clock: vec![start; ncpu],
        },
        agenda: BinaryHeap::new(),
        order: 0,
        o: o.clone(),
        rng: o.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
    };
    for a in arrivals.iter().filter(|a| a.cpu < ncpu && a.target < ncpu) {
        let (cpu, target, skb) = (a.cpu, a.target, a.skb);
        r.push(a.ts, Action::Send { cpu, target, skb });
    }
    while let Some(Reverse((when, _, action))) = r.agenda.pop() {
        let cpu = match action {
            Action::Send { cpu, .. }
            | Action::Ipi { cpu }
            | Action::ThreadRun { cpu }
            | Action::Ksoftirqd { cpu } => cpu,
        };
        r.c.clock[cpu] = r.c.clock[cpu].max(when);
        match action {
            Action::Send { cpu, target, skb } => r.send(cpu, target, skb),
            Action::Ipi { cpu } => r.ipi(cpu),
            Action::ThreadRun { cpu } => r.backlog_thread_runs(cpu),
            Action::Ksoftirqd { cpu } => r.ksoftirqd_runs(cpu),
        }
        r.schedule_pending(cpu);
    }
    numbered(r.c.events)
}

/// No target polls in idle: every RPS IPI is a real one (`ipi_send_cpu`).
fn never_idle(_cpu: usize) -> bool {
    false
}

impl Replay {
    fn push(&mut self, t: u64, a: Action) {
        self.order += 1;
        self.agenda.push(Reverse((t, self.order, a)));
    }

    fn net_rx_action(&mut self, x: &Exec) {
        self.k.net_rx_action(&mut self.c, x, &mut never_idle);
    }

    /// netif_rx with BH disabled, as loopback_xmit and veth_xmit call it: NET_RX raised
    /// meanwhile runs at local_bh_enable, as the sender.
    fn send(&mut self, cpu: usize, target: usize, skb: u64) {
        let sender = Exec {
            cpu,
            ctx: Ctx::Task,
            comm: "sender".into(),
            pid: 1000 + cpu as i32,
        };
        self.k
            .netif_rx(&mut self.c, &sender, skb, target, "replayed");
        if self.k.sd[cpu].netrx_pending {
            self.net_rx_action(&Exec {
                ctx: Ctx::Softirq,
                ..sender
            });
        }
    }

    /// The RPS IPI's hard irq on `cpu` (interrupting idle), NET_RX at irq exit.
    fn ipi(&mut self, cpu: usize) {
        let x = Exec {
            ctx: Ctx::Hardirq,
            ..idle(cpu)
        };
        self.k.rps_trigger_softirq(&mut self.c, &x);
        if self.k.sd[cpu].netrx_pending {
            self.net_rx_action(&Exec {
                ctx: Ctx::Softirq,
                ..idle(cpu)
            });
        }
    }

    /// `backlog_napi/cpu` switched in: poll while SCHED_THREADED, then sleep.
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
            self.k
                .napi_threaded_poll_loop(&mut self.c, &tx, &mut never_idle);
            if self.k.sd[cpu].netrx_pending {
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

    /// A window from `o.windows` (xorshift64*: deterministic).
    fn window(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let w = &self.o.windows;
        match w.len() {
            0 => 0,
            n => w[(x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n],
        }
    }

    /// What the step on `cpu` left pending happens a drawn window later, counted from that
    /// CPU's clock (when it asked for it).
    fn schedule_pending(&mut self, cpu: usize) {
        let now = self.c.clock[cpu];
        for pend in std::mem::take(&mut self.k.pending) {
            let a = match pend {
                Pending::Ipi { cpu, .. } => Action::Ipi { cpu },
                Pending::ThreadRunnable { cpu } => Action::ThreadRun { cpu },
                Pending::Ksoftirqd { cpu } => Action::Ksoftirqd { cpu },
            };
            let delay = self.window();
            self.push(now + delay, a);
        }
    }
}
