//! Softirq raise / entry / exit: the events for the vectors in SETTINGS.softirq_mask, the
//! per-CPU "in softirq" tracker, and `top`'s NET_RX counters.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use probe_common::{where_, EventKind, NET_RX_SOFTIRQ};

use crate::{
    atomic::{atomic_add, atomic_inc},
    config::{off, softirq_mask},
    counters::counting,
    emit::emit,
    maps::state,
    program::program,
    read::{current_comm, read},
    threads::{thread_kind, KSOFTIRQD},
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

/// NET_RX raises, runs by where, and time in the softirq.
#[inline(always)]
fn count_net_rx(kind: EventKind) {
    let Some(c) = counting(None) else { return };
    let Some(st) = state() else { return };
    match kind {
        EventKind::SoftirqRaise => atomic_inc(&mut c.net_rx_raise),
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
        }
    }
}
