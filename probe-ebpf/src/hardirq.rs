//! Hard-interrupt context tracking: entry/exit of device irqs and of the x86 APIC vectors
//! (IPIs, timer, reschedule, irq_work) keep a per-CPU depth that fills events' `ctx`.
//! One program per direction is attached to all of them (probe-cli's SPECS).

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::{config::counters_on, maps::state, program::program};

program! {
    fn hardirq_enter() -> u32 {
        if let Some(st) = state() {
            if st.hardirq_depth < 8 {
                st.hardirq_depth += 1;
            }
        }
        0
    }

    tracepoint irq_handler_entry(_ctx) {}
    tracepoint vector_entry(_ctx) {}
    raw_tracepoint hardirq_entry_raw(_ctx) {}
}

program! {
    fn hardirq_exit() -> u32 {
        if let Some(st) = state() {
            st.hardirq_depth = st.hardirq_depth.saturating_sub(1);
            if counters_on() {
                st.last_hardirq_exit_ns = unsafe { bpf_ktime_get_ns() };
            }
        }
        0
    }

    tracepoint irq_handler_exit(_ctx) {}
    tracepoint vector_exit(_ctx) {}
    raw_tracepoint hardirq_exit_raw(_ctx) {}
}
