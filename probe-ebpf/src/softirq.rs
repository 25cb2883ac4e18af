//! Softirq raise / entry / exit: the events for the vectors in SETTINGS.softirq_mask, the
//! "in softirq" tracker (per CPU, and per task across switches on PREEMPT_RT), and `top`'s
//! NET_RX counters.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use probe_common::{where_, CpuState, EventKind, NET_RX_SOFTIRQ, RAISE_FIFO};

use crate::{
    atomic::{atomic_add, atomic_inc, bounded},
    config::{off, softirq_mask, softirq_per_task},
    counters::counting,
    emit::emit,
    maps::{state, TaskSoftirq, TASK_SOFTIRQ},
    program::program,
    read::{current_comm, read},
    threads::{irq_thread_number, thread_kind, KSOFTIRQD},
};

program! {
    /// softirq_raise / softirq_entry / softirq_exit(unsigned int vec_nr): one record layout
    /// (DECLARE_EVENT_CLASS softirq), so one offset for all three.
    fn softirq_vec_event(vec: u32, kind: EventKind) -> u32 {
        let mask = softirq_mask();
        if vec == NET_RX_SOFTIRQ {
            count_net_rx(kind);
        }
        if let Some(st) = state() {
            match kind {
                // Softirqs never run inside a hard interrupt: entry proves the depth is 0,
                // which heals the tracker after a missed irq exit.
                EventKind::SoftirqEntry => {
                    st.hardirq_depth = 0;
                    st.softirq = vec + 1;
                }
                EventKind::SoftirqExit => {}
                _ => {}
            }
        }
        if vec < 32 && mask & (1 << vec) != 0 {
            emit(kind, |ev| ev.arg0 = vec as i32);
        }
        if kind == EventKind::SoftirqExit {
            if let Some(st) = state() {
                st.softirq = 0;
            }
        }
        0
    }

    tracepoint softirq_raise(ctx) { vec = read(&ctx, off!(softirq_vec)), kind = EventKind::SoftirqRaise }
    tracepoint softirq_entry(ctx) { vec = read(&ctx, off!(softirq_vec)), kind = EventKind::SoftirqEntry }
    tracepoint softirq_exit(ctx) { vec = read(&ctx, off!(softirq_vec)), kind = EventKind::SoftirqExit }
    raw_tracepoint softirq_raise_raw(ctx) { vec = ctx.arg::<u64>(0) as u32, kind = EventKind::SoftirqRaise }
    raw_tracepoint softirq_entry_raw(ctx) { vec = ctx.arg::<u64>(0) as u32, kind = EventKind::SoftirqEntry }
    raw_tracepoint softirq_exit_raw(ctx) { vec = ctx.arg::<u64>(0) as u32, kind = EventKind::SoftirqExit }
}

/// sched_switch from `prev` to `next` (pids): from here on the CPU's tracker holds next's
/// softirq state.
///
/// PREEMPT_RT: softirqs run in the task that re-enables BH (handle_softirqs from
/// __local_bh_enable_ip), in a preemptible section, and in_serving_softirq() reads the
/// task's own `softirq_disable_cnt`. A task can be switched out inside a run; since v6.18
/// without CONFIG_PREEMPT_RT_NEEDS_BH_LOCK (3253cb49cbad, "softirq: Allow to drop the
/// softirq-BKL lock on PREEMPT_RT"; Debian's -rt) the next task may start and end its own
/// run before the first one resumes. So prev's state is kept by pid and next's put back.
/// Otherwise a softirq never spans a switch (it runs with preemption off): one still open
/// here lost its exit, and is closed.
#[inline(always)]
pub fn switch_softirq(st: &mut CpuState, prev: u32, next: u32) {
    if !softirq_per_task() {
        st.softirq = 0;
        return;
    }
    // pid 0 is every CPU's idle task; idle never schedules inside a softirq run.
    if st.softirq != 0 && prev != 0 {
        let saved = TaskSoftirq {
            softirq: st.softirq,
            net_rx_where: st.net_rx_where,
            net_rx_start_ns: st.net_rx_start_ns,
        };
        let _ = TASK_SOFTIRQ.insert(&prev, &saved, 0);
    }
    let restored = unsafe { TASK_SOFTIRQ.get(&next) }.copied();
    match restored {
        Some(s) => {
            st.softirq = s.softirq;
            st.net_rx_where = s.net_rx_where;
            st.net_rx_start_ns = s.net_rx_start_ns;
            let _ = TASK_SOFTIRQ.remove(&next);
        }
        None => {
            st.softirq = 0;
            st.net_rx_start_ns = 0;
        }
    }
}

/// NET_RX raises, runs by where, and time in the softirq.
#[inline(always)]
fn count_net_rx(kind: EventKind) {
    let Some(c) = counting(None) else { return };
    let Some(st) = state() else { return };
    match kind {
        EventKind::SoftirqRaise => {
            atomic_inc(&mut c.net_rx_raise);
            remember_raise(st);
        }
        EventKind::SoftirqEntry => {
            let now = unsafe { bpf_ktime_get_ns() };
            let pid = bpf_get_current_pid_tgid() as u32;
            let w = if thread_kind(&current_comm()) == KSOFTIRQD {
                where_::KSOFTIRQD
            } else if pid == 0
                || now.saturating_sub(st.last_hardirq_exit_ns) < where_::IRQ_EXIT_WINDOW_NS
            {
                where_::IRQ_EXIT
            } else {
                where_::BH_ENABLE
            };
            st.net_rx_start_ns = now;
            st.net_rx_where = w as u32;
            // get_mut, not indexing: a bounds-check panic would end the program in a
            // non-exit instruction, which the verifier rejects.
            if let Some(n) = c.net_rx_runs.get_mut(w) {
                atomic_inc(n);
            }
        }
        _ => {
            if st.net_rx_start_ns != 0 {
                let now = unsafe { bpf_ktime_get_ns() };
                atomic_add(&mut c.net_rx_ns, now.saturating_sub(st.net_rx_start_ns));
                st.net_rx_start_ns = 0;
            }
            // What the run did not take stays unmatched: forget it rather than let a
            // raise that scheduled no NAPI (a defer kick's) shift every later match.
            st.raise_head = st.raise_tail;
        }
    }
}

/// A NET_RX raise, queued for the poll of the instance it scheduled (`CpuState::raise_irq`):
/// in a device interrupt's handler, that interrupt, with when its handler started; in an
/// interrupt's handler thread (`irq/<N>-…`: every device interrupt on PREEMPT_RT), N, with
/// time 0 (`THREADED_IRQ_NS`: its NET_RX runs at that thread's BH enable); elsewhere -1. Not
/// the raise net_rx_action makes for its own leftovers (inside NET_RX, no hard interrupt):
/// those polls continue a scheduling (`NapiCounters::carried`).
#[inline(always)]
fn remember_raise(st: &mut CpuState) {
    if st.hardirq_depth == 0 && st.softirq == NET_RX_SOFTIRQ + 1 {
        return;
    }
    if st.raise_tail.wrapping_sub(st.raise_head) as usize >= RAISE_FIFO {
        return; // full: the oldest stay, the newest go unattributed
    }
    let (irq, ns) = if st.hardirq_depth > 0 && st.cur_irq > 0 {
        (st.cur_irq - 1, st.last_irq_ns)
    } else if let Some(irq) = irq_thread_number(&current_comm()) {
        (irq, THREADED_IRQ_NS)
    } else {
        (-1, 0)
    };
    let i = bounded(st.raise_tail as usize, RAISE_FIFO - 1);
    if let (Some(q), Some(t)) = (st.raise_irq.get_mut(i), st.raise_ns.get_mut(i)) {
        *q = irq;
        *t = ns;
    }
    st.raise_tail = st.raise_tail.wrapping_add(1);
}

/// A raise's interrupt time when it came from the interrupt's handler thread.
pub const THREADED_IRQ_NS: u64 = 0;

/// The oldest unmatched raise (`remember_raise`): its interrupt (-1: none) and when that
/// interrupt's handler started (`THREADED_IRQ_NS`: raised in its handler thread).
#[inline(always)]
pub fn take_raise(st: &mut CpuState) -> Option<(i32, u64)> {
    if st.raise_head == st.raise_tail {
        return None;
    }
    let i = bounded(st.raise_head as usize, RAISE_FIFO - 1);
    st.raise_head = st.raise_head.wrapping_add(1);
    Some((*st.raise_irq.get(i)?, *st.raise_ns.get(i)?))
}
