//! IPIs and cross-CPU function calls: ipi_send_cpu, csd_queue_cpu, csd_function_entry (and
//! its kprobe stand-in on rps_trigger_softirq for kernels without csd tracepoints), and
//! sched_wake_idle_without_ipi (a wake-up that needed no IPI). `top` counts IPIs sent and the
//! RPS ones (csd function rps_trigger_softirq) sent and received.

use probe_common::EventKind;

use crate::{
    atomic::atomic_inc,
    config::{off, rps_func},
    counters::counting,
    emit::emit,
    program::program,
    read::read,
};

program! {
    /// ipi_send_cpu(unsigned int cpu, unsigned long callsite, void *callback)
    fn ipi_send_cpu_event(cpu: i32, callsite: u64, callback: u64) -> u32 {
        count_ipi_sent();
        emit(EventKind::IpiSendCpu, |ev| {
            ev.arg0 = cpu;
            ev.ptr = callsite;
            ev.func = callback;
        });
        0
    }

    tracepoint ipi_send_cpu(ctx) {
        cpu = read::<u32>(&ctx, off!(ipi_cpu)) as i32,
        callsite = read(&ctx, off!(ipi_callsite)),
        callback = read(&ctx, off!(ipi_callback)),
    }
    raw_tracepoint ipi_send_cpu_raw(ctx) {
        cpu = ctx.arg::<u64>(0) as i32,
        callsite = ctx.arg::<u64>(1),
        callback = ctx.arg::<u64>(2),
    }
}

program! {
    /// csd_queue_cpu(unsigned int cpu, unsigned long callsite, smp_call_func_t func, csd)
    fn csd_queue_cpu_event(cpu: i32, func: u64, csd: u64) -> u32 {
        count_csd(func, false);
        emit(EventKind::CsdQueueCpu, |ev| {
            ev.arg0 = cpu;
            ev.func = func;
            ev.ptr = csd;
        });
        0
    }

    tracepoint csd_queue_cpu(ctx) {
        cpu = read::<u32>(&ctx, off!(csdq_cpu)) as i32,
        func = read(&ctx, off!(csdq_func)),
        csd = read(&ctx, off!(csdq_csd)),
    }
    raw_tracepoint csd_queue_cpu_raw(ctx) {
        cpu = ctx.arg::<u64>(0) as i32,
        func = ctx.arg::<u64>(2),
        csd = ctx.arg::<u64>(3),
    }
}

program! {
    /// csd_function_entry(smp_call_func_t func, call_single_data_t *csd)
    fn csd_function_entry_event(func: u64, csd: u64) -> u32 {
        count_csd(func, true);
        emit(EventKind::CsdFunctionEntry, |ev| {
            ev.func = func;
            ev.ptr = csd;
        });
        0
    }

    tracepoint csd_function_entry(ctx) {
        func = read(&ctx, off!(csdf_func)),
        csd = read(&ctx, off!(csdf_csd)),
    }
    raw_tracepoint csd_function_entry_raw(ctx) {
        func = ctx.arg::<u64>(0),
        csd = ctx.arg::<u64>(1),
    }
    /// rps_trigger_softirq(void *data): the RPS IPI arriving on its target. Recorded as the
    /// csd_function_entry it is, for kernels whose csd tracepoints do not exist yet.
    kprobe rps_trigger_softirq_kprobe(ctx) {
        csd: u64 = ctx.arg(0).unwrap_or(0),
        func = rps_func(),
    }
}

#[inline(always)]
fn count_ipi_sent() {
    if let Some(c) = counting(None) {
        atomic_inc(&mut c.ipi_sent);
    }
}

/// RPS IPIs: a csd whose function is rps_trigger_softirq, queued (sender) or run (target).
#[inline(always)]
fn count_csd(func: u64, arrived: bool) {
    let rps = rps_func();
    if rps == 0 || func != rps {
        return;
    }
    if let Some(c) = counting(None) {
        if arrived {
            atomic_inc(&mut c.rps_ipi_received);
        } else {
            atomic_inc(&mut c.rps_ipi_sent);
        }
    }
}

program! {
    /// sched_wake_idle_without_ipi(int cpu)
    fn sched_wake_idle_without_ipi_event(cpu: i32) -> u32 {
        emit(EventKind::SchedWakeIdleWithoutIpi, |ev| ev.arg0 = cpu);
        0
    }

    tracepoint sched_wake_idle_without_ipi(ctx) { cpu = read(&ctx, off!(idle_cpu)) }
    raw_tracepoint sched_wake_idle_without_ipi_raw(ctx) { cpu = ctx.arg::<u64>(0) as i32 }
}
