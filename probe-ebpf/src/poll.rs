//! One poll's counters: the CPU's (`CpuCounters`: polls, packets, where) and the NAPI
//! instance's (`NapiCounters`: the same per instance, its IRQ and polling task), for `top`.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use probe_common::{where_, CpuCounters, CpuState, NapiCounters, COMM_LEN, NET_RX_SOFTIRQ};

use crate::{
    atomic::{atomic_add, atomic_inc, bounded},
    maps::{state, NAPI},
    read::{current_comm, write_current_comm},
    rx::{is_backlog_dev, Dev},
    softirq::{take_raise, THREADED_IRQ_NS},
    threads::{thread_kind, BACKLOG_NAPI, NAPI_THREAD},
};

/// What one poll did, as both the CPU's and the instance's counters count it.
#[derive(Clone, Copy)]
pub(crate) struct Polled {
    packets: u64,
    /// It used its whole budget: more work was left.
    exhausted: bool,
}

impl Polled {
    #[inline(always)]
    pub(crate) fn of(work: i32, budget: i32) -> Polled {
        let packets = if work > 0 { work as u64 } else { 0 };
        Polled {
            packets,
            exhausted: budget > 0 && packets >= budget as u64,
        }
    }
}

/// The CPU's poll counters; returns where the poll ran (`where_::*`, bounded).
#[inline(always)]
pub(crate) fn count_poll(c: &mut CpuCounters, done: Polled, dev: &[u8; COMM_LEN]) -> usize {
    atomic_inc(&mut c.polls);
    atomic_add(&mut c.poll_packets, done.packets);
    if done.exhausted {
        atomic_inc(&mut c.poll_budget_exhausted);
    }
    if is_backlog_dev(dev) {
        atomic_inc(&mut c.backlog_polls);
    }
    let w = where_slot(poll_where());
    atomic_add(&mut c.poll_packets_where[w], done.packets);
    w
}

/// A softirq poll's interrupt: an instance's first poll of a scheduling takes the oldest
/// unmatched NET_RX raise (net_rx_action polls in scheduling order, one raise per
/// ____napi_schedule), and when that raise came in a device interrupt's handler and the
/// run started at that interrupt's exit — or in its handler thread, and the run at that
/// thread's BH enable (PREEMPT_RT) — the poll is the interrupt's. A poll after one that
/// used the whole budget continues the scheduling (the repoll list) and takes no raise.
#[inline(always)]
fn attribute_irq(n: &mut NapiCounters, st: &mut CpuState, w: usize, done: Polled) {
    let continues = n.carried != 0;
    n.carried = done.exhausted as u32;
    if continues {
        return;
    }
    let Some((irq, irq_ns)) = take_raise(st) else {
        return;
    };
    if irq < 0 {
        return;
    }
    n.last_irq = irq;
    if w == where_::IRQ_EXIT && irq_ns != THREADED_IRQ_NS {
        atomic_inc(&mut n.irq_polls);
        let now = unsafe { bpf_ktime_get_ns() };
        atomic_add(&mut n.irq_to_poll_ns, now.saturating_sub(irq_ns));
    } else if w == where_::BH_ENABLE && irq_ns == THREADED_IRQ_NS {
        // Its handler thread raised NET_RX and ran it when it enabled BH again: the
        // interrupt's poll, with no hard-IRQ time to measure from.
        atomic_inc(&mut n.irq_thread_polls);
    }
}

/// `w` as an index into the `where_` arrays that every kernel's verifier can bound: masked,
/// then clamped by a select. Not `% where_::COUNT`: on a value already known to be below
/// COUNT, 6.1's verifier still walks the `w - 6` branch (with bounds umin 6, umax 1) and
/// refuses the negative index ("R1 min value is negative"), so napi_poll did not load there.
#[inline(always)]
fn where_slot(w: usize) -> usize {
    let w = bounded(w, 7);
    if w < where_::COUNT {
        w
    } else {
        where_::COUNT - 1
    }
}

/// Where a poll runs: the NET_RX softirq's own context, else the task polling outside it —
/// a backlog_napi/N or napi/<dev>-<id> thread, or any other task (busy polling:
/// napi_busy_loop and busy_poll_stop call trace_napi_poll from the socket's task).
#[inline(always)]
fn poll_where() -> usize {
    let Some(st) = state() else {
        return where_::BUSY_POLL;
    };
    if st.softirq == NET_RX_SOFTIRQ + 1 {
        return st.net_rx_where as usize;
    }
    match thread_kind(&current_comm()) {
        BACKLOG_NAPI => where_::BACKLOG_THREAD,
        NAPI_THREAD => where_::NAPI_THREAD,
        _ => where_::BUSY_POLL,
    }
}

/// This NAPI instance's counters on this CPU (`top`'s per-NAPI rows).
#[inline(always)]
pub(crate) fn count_napi(napi: u64, done: Polled, w: usize, dev: &Dev, ident: (u32, i32)) {
    let n = match NAPI.get_ptr_mut(&napi) {
        Some(p) => p,
        None => {
            let _ = NAPI.insert(&napi, &NapiCounters::zeroed(), 0);
            match NAPI.get_ptr_mut(&napi) {
                Some(p) => p,
                None => return,
            }
        }
    };
    let n = unsafe { &mut *n };
    // Bounded again in this function: the verifier checks each index where it is used.
    let w = where_slot(w);
    atomic_inc(&mut n.polls);
    atomic_add(&mut n.packets, done.packets);
    if done.exhausted {
        atomic_inc(&mut n.budget_exhausted);
    }
    atomic_inc(&mut n.polls_where[w]);
    atomic_add(&mut n.packets_where[w], done.packets);
    n.napi_id = ident.0;
    n.irq = ident.1;
    n.dev = *dev;
    let Some(st) = state() else { return };
    if st.softirq == NET_RX_SOFTIRQ + 1 {
        attribute_irq(n, st, w, done);
    } else if w >= where_::BACKLOG_THREAD {
        n.task_pid = bpf_get_current_pid_tgid() as u32;
        write_current_comm(&mut n.task_comm);
    }
}
