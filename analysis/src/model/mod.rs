//! Reference model of backlog-NAPI scheduling, before and after "net: Allow to use SMP threads
//! for backlog NAPI" (dad6b9770263, v6.10; docs/seed/). Functions are named after the
//! kernel's (net/core/dev.c) and emit the tracepoints the kernel would emit, through `Tracer`.
//! "hunk @@ -N" cites the seed patch; "§N" cites docs/model.md.
//!
//! Where the kernel may choose (softirq at irq exit or in ksoftirqd, IPI or idle poll), the
//! caller — the simulator, or a property test — decides; the model only allows legal choices.

pub mod sim;

use std::collections::VecDeque;

use crate::{
    event::{Ctx, Event, EventKind, BACKLOG_DEV, RPS_IPI_FUNC},
    mode::Mode,
};

pub const NET_RX_SOFTIRQ: u32 = 3;

/// Version features that change what is observable (§3, §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl Features {
    /// Features of a mainline/stable kernel by release string (e.g. "6.12.118+deb13-amd64").
    pub fn for_release(release: &str) -> Features {
        let v = crate::mode::major_minor(release).unwrap_or((6, 18));
        Features {
            f1_in_net_rx_action: v >= (6, 8),
            f2_rps_raise_suppression: v >= (6, 8),
            f4_ksoftirqd_deferral: v < (6, 5),
            f5_csd_tracepoints: v >= (6, 4),
            f6_defer_kick_backlog: v >= (6, 10),
            f7_raise_irqoff: v >= (6, 14),
        }
    }
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
            // backlog_napi_setup (hunk @@ -6691 ff.) sets THREADED on the thread's first run.
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

    /// `netif_rx` (§2.1): enqueue on the current CPU's choice of backlog, emitting
    /// netif_rx / netif_rx_exit. `target` is what get_rps_cpu() chose (S when RPS is off).
    pub fn netif_rx(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        skb: u64,
        target: usize,
        dev: &str,
    ) -> i32 {
        let mut e = ev(EventKind::NetifRx);
        e.skb = Some(skb);
        e.len = Some(64);
        e.dev = Some(dev.into());
        tr.emit(x, e);
        let ret = self.enqueue_to_backlog(tr, x, skb, target);
        let mut e = ev(EventKind::NetifRxExit);
        e.ret = Some(ret);
        tr.emit(x, e);
        ret
    }

    /// `enqueue_to_backlog` (§2.1): admit while qlen ≤ max_backlog; only the enqueue that
    /// finds the queue empty and SCHED clear schedules the backlog (`napi_schedule_rps`).
    pub fn enqueue_to_backlog(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        skb: u64,
        cpu: usize,
    ) -> i32 {
        // What a kprobe on enqueue_to_backlog records (kernels with kprobes).
        let mut k = ev(EventKind::EnqueueToBacklog);
        k.skb = Some(skb);
        k.target_cpu = Some(cpu as i32);
        tr.emit(x, k);
        let qlen = self.qlen(cpu);
        if qlen > self.p.max_backlog || !self.sd[cpu].online {
            self.sd[cpu].dropped += 1;
            return 1; // NET_RX_DROP
        }
        if qlen == 0 && !std::mem::replace(&mut self.sd[cpu].backlog.sched, true) {
            self.napi_schedule_rps(tr, x, cpu);
        }
        self.sd[cpu].input_pkt_queue.push_back(skb);
        0 // NET_RX_SUCCESS
    }

    /// `napi_schedule_rps` (hunk @@ -4703): remote target with threads on → schedule the
    /// target's backlog from here (wakes its thread); remote without threads → queue an RPS
    /// IPI on this CPU's rps_ipi_list and raise NET_RX here (F2: not inside NET_RX / a
    /// threaded poll); local → `__napi_schedule_irqoff` of our own backlog.
    pub fn napi_schedule_rps(&mut self, tr: &mut dyn Tracer, x: &Exec, target: usize) {
        let me = x.cpu;
        if target != me {
            if self.p.use_backlog_threads() {
                self.____napi_schedule(tr, x, target, true);
                return;
            }
            self.sd[me].rps_ipi_list.push(target);
            let f2 = self.p.features.f2_rps_raise_suppression;
            if !f2 || (!self.sd[me].in_net_rx_action && !self.sd[me].in_napi_threaded_poll) {
                self.raise_softirq_irqoff(tr, x, false);
            }
            return;
        }
        self.____napi_schedule(tr, x, me, true);
    }

    /// `____napi_schedule(sd = this CPU's, napi = backlog of `owner`)` (hunk @@ -4452): a
    /// THREADED backlog whose thread is not this CPU's own is handed to that thread
    /// (SCHED_THREADED + wake_up_process); this CPU's own backlog takes `use_local_napi`:
    /// onto the local poll_list and NET_RX raised (F1: not from inside net_rx_action).
    /// `in_interrupt`: hardirq, softirq or BH disabled (enqueue_to_backlog always is).
    pub fn ____napi_schedule(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        owner: usize,
        in_interrupt: bool,
    ) {
        let me = x.cpu;
        let b = self.sd[owner].backlog;
        if b.threaded && self.sd[owner].thread != ThreadState::Absent {
            let own_thread = self.p.use_backlog_threads() && owner == me;
            if !own_thread {
                self.sd[owner].backlog.sched_threaded = true;
                self.wake_up_process(tr, x, owner);
                return;
            }
        }
        // use_local_napi:
        self.sd[me].poll_list.push_back(owner);
        if !self.p.features.f1_in_net_rx_action || !self.sd[me].in_net_rx_action {
            // F7: raise_softirq_irqoff also wakes ksoftirqd outside interrupt context.
            let may_wake = self.p.features.f7_raise_irqoff && !in_interrupt;
            self.raise_softirq_irqoff(tr, x, may_wake);
        }
    }

    /// `__raise_softirq_irqoff(NET_RX_SOFTIRQ)`; with `wake`, `raise_softirq_irqoff` from
    /// process context, which also wakes ksoftirqd.
    fn raise_softirq_irqoff(&mut self, tr: &mut dyn Tracer, x: &Exec, wake: bool) {
        let mut e = ev(EventKind::SoftirqRaise);
        e.vec = Some(NET_RX_SOFTIRQ);
        tr.emit(x, e);
        self.sd[x.cpu].netrx_pending = true;
        if wake {
            let k = x.cpu;
            let mut w = ev(EventKind::SchedWaking);
            w.target_comm = Some(ksoftirqd_comm(k));
            w.target_pid = Some(10 + k as i32);
            w.target_cpu = Some(k as i32);
            tr.emit(x, w);
            self.pending.push(Pending::Ksoftirqd { cpu: k });
        }
    }

    /// `wake_up_process(backlog_napi/owner)`: only a sleeping thread emits sched_waking.
    fn wake_up_process(&mut self, tr: &mut dyn Tracer, x: &Exec, owner: usize) {
        if self.sd[owner].thread != ThreadState::Sleeping {
            return; // running/runnable: no event; parked: a no-op (§8.2)
        }
        self.sd[owner].thread = ThreadState::Runnable;
        for kind in [EventKind::SchedWaking, EventKind::SchedWakeup] {
            let mut w = ev(kind);
            w.target_comm = Some(backlog_thread_comm(owner));
            w.target_pid = Some(backlog_thread_pid(owner));
            w.target_cpu = Some(owner as i32);
            tr.emit(x, w);
        }
        self.pending.push(Pending::ThreadRunnable { cpu: owner });
    }

    /// `sd_has_rps_ipi_waiting` (hunk @@ -5941): never with threads on.
    pub fn sd_has_rps_ipi_waiting(&self, cpu: usize) -> bool {
        !self.p.use_backlog_threads() && !self.sd[cpu].rps_ipi_list.is_empty()
    }

    /// `net_rps_action_and_irq_enable` (hunk @@ -5926): send the RPS IPIs queued on this CPU
    /// (`net_rps_send_ipi`: online targets only). Never with threads on.
    pub fn net_rps_action_and_irq_enable(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        if self.p.use_backlog_threads() {
            return;
        }
        let list = std::mem::take(&mut self.sd[x.cpu].rps_ipi_list);
        for t in list {
            if !self.sd[t].online {
                continue;
            }
            self.smp_call_function_single_async(tr, x, t, idle_poll(t));
        }
    }

    /// `smp_call_function_single_async(t, &sd[t].csd)`: busy csd → nothing; otherwise
    /// csd_queue_cpu, then an IPI or, when t polls in idle, sched_wake_idle_without_ipi.
    fn smp_call_function_single_async(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        t: usize,
        idle_polling: bool,
    ) {
        if std::mem::replace(&mut self.sd[t].csd_pending, true) {
            return;
        }
        if self.p.features.f5_csd_tracepoints {
            let mut q = ev(EventKind::CsdQueueCpu);
            q.target_cpu = Some(t as i32);
            q.func = Some(RPS_IPI_FUNC.into());
            q.csd = Some(backlog_ptr(t) + 0x100);
            tr.emit(x, q);
            let mut i = if idle_polling {
                ev(EventKind::SchedWakeIdleWithoutIpi)
            } else {
                let mut i = ev(EventKind::IpiSendCpu);
                i.func = Some("generic_smp_call_function_single_interrupt".into());
                i
            };
            i.target_cpu = Some(t as i32);
            tr.emit(x, i);
        }
        self.pending.push(Pending::Ipi {
            cpu: t,
            idle: idle_polling,
        });
    }

    /// `rps_trigger_softirq` on the target (IPI or idle flush): schedule our own backlog
    /// (`____napi_schedule` → use_local_napi) and count `received_rps`.
    pub fn rps_trigger_softirq(&mut self, tr: &mut dyn Tracer, x: &Exec) {
        let me = x.cpu;
        self.sd[me].csd_pending = false;
        if self.p.features.f5_csd_tracepoints {
            let mut e = ev(EventKind::CsdFunctionEntry);
            e.func = Some(RPS_IPI_FUNC.into());
            e.csd = Some(backlog_ptr(me) + 0x100);
            tr.emit(x, e);
        }
        // From a hard irq, or from the idle loop's queue flush (process context, F7).
        self.____napi_schedule(tr, x, me, x.ctx != Ctx::Task);
        self.sd[me].received_rps += 1;
    }

    /// `process_backlog(napi, quota)` (hunk @@ -5985): send pending RPS IPIs first (A/B),
    /// deliver up to `quota` skbs; when both queues are empty clear SCHED/SCHED_THREADED
    /// but keep THREADED. Returns work; `work < quota` ⇔ the batch is complete.
    pub fn process_backlog(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        quota: i32,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) -> i32 {
        let me = x.cpu;
        if self.sd_has_rps_ipi_waiting(me) {
            self.net_rps_action_and_irq_enable(tr, x, idle_poll);
        }
        let mut work = 0;
        loop {
            while let Some(skb) = self.sd[me].process_queue.pop_front() {
                let mut e = ev(EventKind::NetifReceiveSkb);
                e.skb = Some(skb);
                e.len = Some(64);
                e.dev = Some("veth-sim".into());
                tr.emit(x, e);
                work += 1;
                if work >= quota {
                    return work;
                }
            }
            let sd = &mut self.sd[me];
            if sd.input_pkt_queue.is_empty() {
                // napi->state &= NAPIF_STATE_THREADED
                sd.backlog.sched = false;
                sd.backlog.sched_threaded = false;
                return work;
            }
            let moved: Vec<u64> = sd.input_pkt_queue.drain(..).collect();
            sd.process_queue.extend(moved);
        }
    }

    fn napi_poll_event(&self, tr: &mut dyn Tracer, x: &Exec, owner: usize, work: i32) {
        let mut e = ev(EventKind::NapiPoll);
        e.napi = Some(backlog_ptr(owner));
        e.dev = Some(BACKLOG_DEV.into());
        e.work = Some(work);
        e.budget = Some(self.p.weight);
        tr.emit(x, e);
    }

    /// `net_rx_action` (NET_RX softirq handler) on `x.cpu` in softirq context: poll the
    /// poll_list within netdev_budget, re-raise if work remains, then send RPS IPIs.
    pub fn net_rx_action(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        let me = x.cpu;
        let mut e = ev(EventKind::SoftirqEntry);
        e.vec = Some(NET_RX_SOFTIRQ);
        tr.emit(x, e);
        self.sd[me].netrx_pending = false;
        self.sd[me].in_net_rx_action = true;
        let mut budget = self.p.netdev_budget;
        while budget > 0 {
            let Some(owner) = self.sd[me].poll_list.pop_front() else {
                break;
            };
            let work = self.process_backlog(tr, x, self.p.weight, idle_poll);
            self.napi_poll_event(tr, x, owner, work);
            budget -= work;
            if work == self.p.weight {
                self.sd[me].poll_list.push_back(owner); // repoll
            }
        }
        self.sd[me].in_net_rx_action = false;
        if !self.sd[me].poll_list.is_empty() {
            let mut r = ev(EventKind::SoftirqRaise);
            r.vec = Some(NET_RX_SOFTIRQ);
            tr.emit(x, r);
            self.sd[me].netrx_pending = true;
        }
        self.net_rps_action_and_irq_enable(tr, x, idle_poll);
        let mut e = ev(EventKind::SoftirqExit);
        e.vec = Some(NET_RX_SOFTIRQ);
        tr.emit(x, e);
    }

    /// `backlog_napi_should_run` (hunk @@ -6691 ff.): SCHED_THREADED is set.
    pub fn backlog_napi_should_run(&self, cpu: usize) -> bool {
        self.sd[cpu].backlog.sched_threaded
    }

    /// `run_backlog_napi` → `napi_threaded_poll_loop` in `backlog_napi/cpu` (task context,
    /// BH disabled around each poll). NET_RX raised meanwhile runs at the thread's
    /// local_bh_enable: the caller runs net_rx_action as that task.
    pub fn napi_threaded_poll_loop(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        let me = x.cpu;
        loop {
            if !self.sd[me].backlog.sched {
                break; // __napi_poll polls only a scheduled NAPI
            }
            self.sd[me].in_napi_threaded_poll = true;
            let work = self.process_backlog(tr, x, self.p.weight, idle_poll);
            self.napi_poll_event(tr, x, me, work);
            self.sd[me].in_napi_threaded_poll = false;
            if work < self.p.weight {
                break;
            }
        }
    }

    /// `dev_cpu_dead(oldcpu)` on a surviving CPU (§8.2): reset the dead CPU's backlog
    /// (keeping THREADED), forward its pending RPS IPIs (A/B), re-inject its queued skbs
    /// with netif_rx on this CPU (they are re-steered; here: to `retarget`).
    pub fn dev_cpu_dead(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        oldcpu: usize,
        retarget: usize,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        self.sd[oldcpu].online = false;
        self.sd[oldcpu].poll_list.clear();
        self.sd[oldcpu].backlog.sched = false;
        self.sd[oldcpu].backlog.sched_threaded = false;
        if self.sd[oldcpu].thread != ThreadState::Absent {
            self.sd[oldcpu].thread = ThreadState::Parked;
        }
        if !self.p.use_backlog_threads() {
            let list = std::mem::take(&mut self.sd[oldcpu].rps_ipi_list);
            for t in list {
                if self.sd[t].online {
                    self.smp_call_function_single_async(tr, x, t, idle_poll(t));
                }
            }
        }
        let mut skbs: Vec<u64> = self.sd[oldcpu].process_queue.drain(..).collect();
        skbs.extend(self.sd[oldcpu].input_pkt_queue.drain(..));
        for skb in skbs {
            self.netif_rx(tr, x, skb, retarget, "veth-sim");
        }
    }
}

pub fn backlog_thread_pid(cpu: usize) -> i32 {
    30 + cpu as i32
}

#[cfg(test)]
mod tests;
