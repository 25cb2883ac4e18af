//! Function probes the model uses as direct evidence (model.md §10.2), and the fentry
//! availability check. Each kprobe is optional: attached when the kernel has kprobes and the
//! symbol is not inlined. (rps_trigger_softirq's kprobe is a variant of csd_function_entry,
//! in `ipi`.) One way to catch each, so no `program!`.

use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use probe_common::EventKind;

use crate::emit::emit;

/// Loaded (never attached) by `napiscope status` to learn whether fentry works on this
/// kernel: it needs BTF, BPF trampolines and the right to load BPF_PROG_TYPE_TRACING.
#[fentry(function = "net_rx_action")]
pub fn fentry_availability(_ctx: FEntryContext) -> u32 {
    0
}

/// enqueue_to_backlog(struct sk_buff *skb, int cpu, unsigned int *qtail): which CPU's backlog
/// a packet goes to — the RPS decision itself (model.md §10.2).
#[kprobe]
pub fn enqueue_to_backlog_kprobe(ctx: ProbeContext) -> u32 {
    let skb: u64 = ctx.arg(0).unwrap_or(0);
    let cpu: u64 = ctx.arg(1).unwrap_or(0);
    emit(EventKind::EnqueueToBacklog, |ev| {
        ev.ptr = skb;
        ev.arg0 = cpu as i32;
    });
    0
}

/// __napi_schedule(struct napi_struct *n) / __napi_schedule_irqoff(n)
#[kprobe]
pub fn napi_schedule_kprobe(ctx: ProbeContext) -> u32 {
    let napi: u64 = ctx.arg(0).unwrap_or(0);
    emit(EventKind::NapiSchedule, |ev| ev.ptr = napi);
    0
}

#[kprobe]
pub fn napi_schedule_irqoff_kprobe(ctx: ProbeContext) -> u32 {
    let napi: u64 = ctx.arg(0).unwrap_or(0);
    emit(EventKind::NapiSchedule, |ev| {
        ev.ptr = napi;
        ev.arg0 = 1;
    });
    0
}

/// process_backlog(struct napi_struct *napi, int quota)
#[kprobe]
pub fn process_backlog_kprobe(ctx: ProbeContext) -> u32 {
    let napi: u64 = ctx.arg(0).unwrap_or(0);
    let quota: u64 = ctx.arg(1).unwrap_or(0);
    emit(EventKind::ProcessBacklog, |ev| {
        ev.ptr = napi;
        ev.arg1 = quota as i32;
    });
    0
}

/// net_rx_action(struct softirq_action *h) (6.12+: void)
#[kprobe]
pub fn net_rx_action_kprobe(_ctx: ProbeContext) -> u32 {
    emit(EventKind::NetRxAction, |_| {});
    0
}

/// run_backlog_napi(unsigned int cpu)
#[kprobe]
pub fn run_backlog_napi_kprobe(ctx: ProbeContext) -> u32 {
    let cpu: u64 = ctx.arg(0).unwrap_or(0);
    emit(EventKind::RunBacklogNapi, |ev| ev.arg0 = cpu as i32);
    0
}

/// napi_threaded_poll_loop(struct napi_struct *napi, ...)
#[kprobe]
pub fn napi_threaded_poll_loop_kprobe(ctx: ProbeContext) -> u32 {
    let napi: u64 = ctx.arg(0).unwrap_or(0);
    emit(EventKind::NapiThreadedPollLoop, |ev| ev.ptr = napi);
    0
}

/// run_ksoftirqd(unsigned int cpu)
#[kprobe]
pub fn run_ksoftirqd_kprobe(ctx: ProbeContext) -> u32 {
    let cpu: u64 = ctx.arg(0).unwrap_or(0);
    emit(EventKind::RunKsoftirqd, |ev| ev.arg0 = cpu as i32);
    0
}
