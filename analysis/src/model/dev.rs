//! The net/core/dev.c functions of the model, one method each, in the kernel's call order:
//! enqueue (netif_rx, enqueue_to_backlog, napi_schedule_rps, ____napi_schedule), the RPS IPI
//! (net_rps_action_and_irq_enable, rps_trigger_softirq), polling (net_rx_action,
//! process_backlog, napi_threaded_poll_loop) and CPU hot-unplug (dev_cpu_dead).

use super::*;
use probe_common::NET_RX_SOFTIRQ;

impl Kernel {
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
        // No online check: get_rps_cpu steers only to online CPUs, and what reaches a CPU
        // going down before dev_cpu_dead ran is queued and re-injected by it (net/core/dev.c).
        if qlen > self.p.max_backlog {
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
    pub(super) fn raise_softirq_irqoff(&mut self, tr: &mut dyn Tracer, x: &Exec, wake: bool) {
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
    pub(super) fn wake_up_process(&mut self, tr: &mut dyn Tracer, x: &Exec, owner: usize) {
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
        sd: usize,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        if self.p.use_backlog_threads() {
            return;
        }
        let list = std::mem::take(&mut self.sd[sd].rps_ipi_list);
        for t in list {
            if !self.sd[t].online {
                continue;
            }
            self.smp_call_function_single_async(tr, x, t, idle_poll(t));
        }
    }

    /// `smp_call_function_single_async(t, &sd[t].csd)`: busy csd → nothing; otherwise
    /// csd_queue_cpu, then an IPI or, when t polls in idle, sched_wake_idle_without_ipi.
    pub(super) fn smp_call_function_single_async(
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
    ///
    /// Every queue and flag here is the NAPI owner's: the kernel takes `sd` as
    /// `container_of(napi, struct softnet_data, backlog)`, not this CPU's softnet_data.
    pub fn process_backlog(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        owner: usize,
        quota: i32,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) -> i32 {
        if self.sd_has_rps_ipi_waiting(owner) {
            self.net_rps_action_and_irq_enable(tr, x, owner, idle_poll);
        }
        let mut work = 0;
        loop {
            while let Some(skb) = self.sd[owner].process_queue.pop_front() {
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
            let sd = &mut self.sd[owner];
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

    pub(super) fn napi_poll_event(&self, tr: &mut dyn Tracer, x: &Exec, owner: usize, work: i32) {
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
            let work = self.process_backlog(tr, x, owner, self.p.weight, idle_poll);
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
        self.net_rps_action_and_irq_enable(tr, x, me, idle_poll);
        let mut e = ev(EventKind::SoftirqExit);
        e.vec = Some(NET_RX_SOFTIRQ);
        tr.emit(x, e);
    }

    /// `backlog_napi_should_run` (hunk @@ -11659): SCHED_THREADED is set.
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
            // backlog_napi/N polls per_cpu(softnet_data, N).backlog (run_backlog_napi).
            let work = self.process_backlog(tr, x, me, self.p.weight, idle_poll);
            self.napi_poll_event(tr, x, me, work);
            self.sd[me].in_napi_threaded_poll = false;
            if work < self.p.weight {
                break;
            }
        }
    }

    /// `dev_cpu_dead(oldcpu)` on a surviving CPU (§8.2): of the NAPIs on the dead CPU's
    /// poll_list, its backlog is reset keeping THREADED ("process_backlog() must be called by
    /// cpu owning percpu backlog"); a backlog *not* on that list keeps its state. Then its
    /// pending RPS IPIs go out (A/B), and its queued skbs are re-injected with netif_rx on
    /// this CPU (re-steered; here: to `retarget`).
    pub fn dev_cpu_dead(
        &mut self,
        tr: &mut dyn Tracer,
        x: &Exec,
        oldcpu: usize,
        retarget: usize,
        idle_poll: &mut dyn FnMut(usize) -> bool,
    ) {
        self.sd[oldcpu].online = false;
        for owner in std::mem::take(&mut self.sd[oldcpu].poll_list) {
            // napi->state &= NAPIF_STATE_THREADED (device NAPIs, not modelled, would move
            // to this CPU's poll_list).
            self.sd[owner].backlog.sched = false;
            self.sd[owner].backlog.sched_threaded = false;
        }
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
