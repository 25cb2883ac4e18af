//! Reference model of backlog-NAPI scheduling, before and after "net: Allow to use SMP threads
//! for backlog NAPI" (dad6b9770263, v6.10; docs/seed/). Functions are named after the
//! kernel's (net/core/dev.c) and emit the tracepoints the kernel would emit, through `Tracer`.
//! "hunk @@ -N" cites the seed patch; "§N" cites docs/model.md.
//!
//! Where the kernel may choose (softirq at irq exit or in ksoftirqd, IPI or idle poll), the
//! caller — the simulator, or a property test — decides; the model only allows legal choices.

mod dev;
pub mod features;
pub mod replay;
pub mod sim;

use std::collections::VecDeque;

use crate::{
    event::{Ctx, Event, EventKind, BACKLOG_DEV, RPS_IPI_FUNC},
    mode::Mode,
};

/// Version features that change what is observable (§3, §2.2); `features.rs` decides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Features {
    /// F1: `sd->in_net_rx_action` — no NET_RX raise from inside net_rx_action (≥ v6.8 era).
    pub f1_in_net_rx_action: bool,
    /// F2: napi_schedule_rps raises NET_RX on S only outside NET_RX / threaded poll.
    pub f2_rps_raise_suppression: bool,
    /// F4: ksoftirqd_running deferral (≤ v6.4, e.g. 6.1).
    pub f4_ksoftirqd_deferral: bool,
    /// F5: csd:* and ipi:ipi_send_cpu tracepoints exist (absent in 6.1).
    pub f5_csd_tracepoints: bool,
    /// F6: mode C defer kicks wake the backlog thread (mainline v6.10+; not 6.6.y backports).
    pub f6_defer_kick_backlog: bool,
    /// F7: ____napi_schedule uses raise_softirq_irqoff (≥ v6.14, 77e45145e303).
    pub f7_raise_irqoff: bool,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub mode: Mode,
    pub features: Features,
    pub ncpu: usize,
    /// net.core.netdev_max_backlog
    pub max_backlog: usize,
    /// dev_rx_weight: the backlog's quota per poll (napi_poll `budget`).
    pub weight: i32,
    /// netdev_budget: packets per net_rx_action before it re-raises.
    pub netdev_budget: i32,
}

impl Params {
    pub fn new(mode: Mode, ncpu: usize) -> Params {
        Params {
            mode,
            features: Features::for_release("6.18"),
            ncpu,
            max_backlog: 1000,
            weight: 64,
            netdev_budget: 300,
        }
    }

    /// `use_backlog_threads()` (hunk @@ -216): true iff threads are on (mode C).
    pub fn use_backlog_threads(&self) -> bool {
        self.mode == Mode::C
    }
}

/// NAPI state bits the backlog uses (§1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NapiState {
    pub sched: bool,
    pub sched_threaded: bool,
    pub threaded: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    Absent,
    Sleeping,
    Runnable,
    Running,
    Parked,
}

/// `struct softnet_data`, the parts this model needs (§1.1, §4).
#[derive(Clone, Debug)]
pub struct Softnet {
    pub input_pkt_queue: VecDeque<u64>,
    pub process_queue: VecDeque<u64>,
    pub backlog: NapiState,
    /// NAPIs on this CPU's poll_list, by owning CPU (the backlog is the only NAPI modelled).
    pub poll_list: VecDeque<usize>,
    /// Targets whose RPS IPI this CPU must send (`rps_ipi_list`).
    pub rps_ipi_list: Vec<usize>,
    /// This CPU's csd is queued (csd lock held) and its IPI not yet handled.
    pub csd_pending: bool,
    pub netrx_pending: bool,
    pub in_net_rx_action: bool,
    pub in_napi_threaded_poll: bool,
    /// `backlog_napi/N` (mode C).
    pub thread: ThreadState,
    pub received_rps: u64,
    pub dropped: u64,
    pub online: bool,
}

impl Softnet {
    fn new(threads: bool) -> Softnet {
        Softnet {
            input_pkt_queue: VecDeque::new(),
            process_queue: VecDeque::new(),
            // backlog_napi_setup (hunk @@ -11659) sets THREADED on the thread's first run.
            backlog: NapiState {
                threaded: threads,
                ..NapiState::default()
            },
            poll_list: VecDeque::new(),
            rps_ipi_list: Vec::new(),
            csd_pending: false,
            netrx_pending: false,
            in_net_rx_action: false,
            in_napi_threaded_poll: false,
            thread: if threads {
                ThreadState::Sleeping
            } else {
                ThreadState::Absent
            },
            received_rps: 0,
            dropped: 0,
            online: true,
        }
    }
}

/// Where and as whom the model's code runs when it emits an event.
#[derive(Clone, Debug)]
pub struct Exec {
    pub cpu: usize,
    pub ctx: Ctx,
    pub comm: String,
    pub pid: i32,
}

/// Receives the tracepoints the model emits; the simulator stamps them with time.
pub trait Tracer {
    fn emit(&mut self, exec: &Exec, event: Event);
}

/// Something the model asks its driver to do later (it cannot happen synchronously).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// An IPI to `cpu` will run its call_single_queue (rps_trigger_softirq); `idle`: the
    /// target was polling in idle and runs it from the idle loop instead of a hard irq.
    Ipi { cpu: usize, idle: bool },
    /// `backlog_napi/cpu` became runnable.
    ThreadRunnable { cpu: usize },
    /// `ksoftirqd/cpu` was woken to run pending softirqs.
    Ksoftirqd { cpu: usize },
}

pub struct Kernel {
    pub p: Params,
    pub sd: Vec<Softnet>,
    pub pending: Vec<Pending>,
}

fn ev(kind: EventKind) -> Event {
    Event::new(0, 0, 0, kind)
}

pub fn backlog_thread_comm(cpu: usize) -> String {
    // TASK_COMM_LEN truncates to 15 characters (§7.1).
    let mut c = format!("backlog_napi/{cpu}");
    c.truncate(15);
    c
}

pub fn ksoftirqd_comm(cpu: usize) -> String {
    format!("ksoftirqd/{cpu}")
}

/// Stable per-CPU identity of `&per_cpu(softnet_data, cpu).backlog` in simulated traces.
pub fn backlog_ptr(cpu: usize) -> u64 {
    0xb0b0_0000 + cpu as u64 * 0x1000
}

impl Kernel {
    pub fn new(p: Params) -> Kernel {
        let threads = p.use_backlog_threads();
        let sd = (0..p.ncpu).map(|_| Softnet::new(threads)).collect();
        Kernel {
            p,
            sd,
            pending: Vec::new(),
        }
    }

    fn qlen(&self, cpu: usize) -> usize {
        self.sd[cpu].input_pkt_queue.len()
    }
}

pub fn backlog_thread_pid(cpu: usize) -> i32 {
    30 + cpu as i32
}

#[cfg(test)]
mod tests;
