//! Hard-interrupt context tracking: entry/exit of device irqs and of the x86 APIC vectors
//! (IPIs, timer, reschedule, irq_work) keep a per-CPU depth that fills events' `ctx`.
//! Device irqs also leave their number and times (`CpuState::last_irq`), to which `top`
//! attributes the NAPI polls of the softirq at their exit. The APIC-vector programs are
//! attached to every vector (probe-cli's SPECS).

use aya_ebpf::helpers::bpf_ktime_get_ns;

use crate::{
    config::{counters_on, off},
    maps::state,
    program::program,
    read::read,
};

program! {
    /// `irq`: the device interrupt's number, or -1 for an APIC vector.
    fn hardirq_enter(irq: i32) -> u32 {
        if let Some(st) = state() {
            if st.hardirq_depth < 8 {
                st.hardirq_depth += 1;
            }
            if counters_on() {
                st.cur_irq = irq + 1; // 0 for a vector
                if irq >= 0 {
                    st.last_irq = irq;
                    st.last_irq_ns = unsafe { bpf_ktime_get_ns() };
                }
            }
        }
        0
    }

    tracepoint irq_handler_entry(ctx) { irq = read(&ctx, off!(irq_entry_irq)) }
    tracepoint vector_entry(_ctx) { irq = -1 }
    raw_tracepoint irq_handler_entry_raw(ctx) { irq = ctx.arg::<u64>(0) as i32 }
    raw_tracepoint hardirq_entry_raw(_ctx) { irq = -1 }
}

program! {
    /// `device`: a device interrupt's handler returned (not an APIC vector).
    fn hardirq_exit(device: bool) -> u32 {
        if let Some(st) = state() {
            st.hardirq_depth = st.hardirq_depth.saturating_sub(1);
            if counters_on() {
                let now = unsafe { bpf_ktime_get_ns() };
                st.cur_irq = 0;
                st.last_hardirq_exit_ns = now;
                if device {
                    st.last_irq_exit_ns = now;
                }
            }
        }
        0
    }

    tracepoint irq_handler_exit(_ctx) { device = true }
    tracepoint vector_exit(_ctx) { device = false }
    raw_tracepoint irq_handler_exit_raw(_ctx) { device = true }
    raw_tracepoint hardirq_exit_raw(_ctx) { device = false }
}
