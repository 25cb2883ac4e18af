//! Which tracepoints napiscope attaches, with which program, and the raw / BTF-typed variant
//! it prefers where one reads the same values; and the optional function probes.

use serde::Serialize;

/// What a probe is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Produces rows in the trace.
    Event,
    /// Keeps the per-CPU hardirq/softirq context that fills the `ctx` column.
    Context,
}

pub struct ProbeSpec {
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    pub role: Role,
    /// BTF-typed tracepoint program (tp_btf) preferred over all others, and the group of
    /// kernel offsets it needs (`btf::Found`): its field loads are verified at load time and
    /// run as plain loads, and the kernel fills no record for it.
    pub typed: Option<(&'static str, BtfGroup)>,
    /// Raw-tracepoint program preferred over `program`, and what it needs of this kernel.
    pub raw: Option<(&'static str, RawNeeds)>,
    /// Only `record` uses it: `top` keeps no counter for it, so `load` leaves it out there
    /// (a program run per packet for nothing).
    pub events_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtfGroup {
    Net,
    Sched,
}

/// What a raw-tracepoint program needs to read the same values as the classic tracepoint.
#[derive(Clone, Copy)]
pub enum RawNeeds {
    /// Plain-value arguments: the record's fields (in order) must be its TP_PROTO arguments.
    Fields(&'static [&'static str]),
    /// Pointer arguments it follows (with bpf_probe_read_kernel) at the receive-path struct
    /// offsets from the kernel's BTF (`btf::Found::net`).
    Btf,
}

const fn tp(program: &'static str, category: &'static str, event: &'static str) -> ProbeSpec {
    ProbeSpec {
        program,
        category,
        event,
        role: Role::Event,
        typed: None,
        raw: None,
        events_only: false,
    }
}

const fn ctx(program: &'static str, category: &'static str, event: &'static str) -> ProbeSpec {
    ProbeSpec {
        role: Role::Context,
        ..tp(program, category, event)
    }
}

const fn raw(
    mut spec: ProbeSpec,
    program: &'static str,
    fields: &'static [&'static str],
) -> ProbeSpec {
    spec.raw = Some((program, RawNeeds::Fields(fields)));
    spec
}

/// A receive-path probe: tp_btf `typed`, else raw `program` (both read skb/napi fields).
const fn raw_btf(mut spec: ProbeSpec, program: &'static str, typed: &'static str) -> ProbeSpec {
    spec.typed = Some((typed, BtfGroup::Net));
    spec.raw = Some((program, RawNeeds::Btf));
    spec
}

/// Not attached for `top` (`ProbeSpec::events_only`).
const fn events_only(mut spec: ProbeSpec) -> ProbeSpec {
    spec.events_only = true;
    spec
}

/// A scheduler probe: tp_btf `typed` (reads task fields), else classic.
const fn sched_btf(mut spec: ProbeSpec, typed: &'static str) -> ProbeSpec {
    spec.typed = Some((typed, BtfGroup::Sched));
    spec
}

pub const SPECS: &[ProbeSpec] = &[
    raw(
        tp("softirq_raise", "irq", "softirq_raise"),
        "softirq_raise_raw",
        &["vec"],
    ),
    raw(
        tp("softirq_entry", "irq", "softirq_entry"),
        "softirq_entry_raw",
        &["vec"],
    ),
    raw(
        tp("softirq_exit", "irq", "softirq_exit"),
        "softirq_exit_raw",
        &["vec"],
    ),
    raw_btf(
        tp("napi_poll", "napi", "napi_poll"),
        "napi_poll_raw",
        "napi_poll_btf",
    ),
    raw_btf(
        tp("netif_rx", "net", "netif_rx"),
        "netif_rx_raw",
        "netif_rx_btf",
    ),
    raw(
        tp("netif_rx_exit", "net", "netif_rx_exit"),
        "netif_rx_exit_raw",
        &["ret"],
    ),
    raw_btf(
        tp("netif_receive_skb", "net", "netif_receive_skb"),
        "netif_receive_skb_raw",
        "netif_receive_skb_btf",
    ),
    // The device-side entries (one per path a driver takes into the stack): with RPS, the
    // initiator of a backlog hop that has no netif_rx (dev.c netif_receive_skb_internal,
    // napi_gro_receive → gro_normal_list, netif_receive_skb_list_internal).
    events_only(raw_btf(
        tp("netif_receive_skb_entry", "net", "netif_receive_skb_entry"),
        "netif_receive_skb_entry_raw",
        "netif_receive_skb_entry_btf",
    )),
    events_only(raw_btf(
        tp("napi_gro_receive_entry", "net", "napi_gro_receive_entry"),
        "napi_gro_receive_entry_raw",
        "napi_gro_receive_entry_btf",
    )),
    events_only(raw_btf(
        tp(
            "netif_receive_skb_list_entry",
            "net",
            "netif_receive_skb_list_entry",
        ),
        "netif_receive_skb_list_entry_raw",
        "netif_receive_skb_list_entry_btf",
    )),
    sched_btf(
        tp("sched_switch", "sched", "sched_switch"),
        "sched_switch_btf",
    ),
    sched_btf(
        tp("sched_waking", "sched", "sched_waking"),
        "sched_waking_btf",
    ),
    sched_btf(
        tp("sched_wakeup", "sched", "sched_wakeup"),
        "sched_wakeup_btf",
    ),
    raw(
        tp(
            "sched_wake_idle_without_ipi",
            "sched",
            "sched_wake_idle_without_ipi",
        ),
        "sched_wake_idle_without_ipi_raw",
        &["cpu"],
    ),
    // Absent before ~6.4 (model.md F5): there the RPS IPI leg needs a function probe.
    raw(
        tp("ipi_send_cpu", "ipi", "ipi_send_cpu"),
        "ipi_send_cpu_raw",
        &["cpu", "callsite", "callback"],
    ),
    raw(
        tp("csd_queue_cpu", "csd", "csd_queue_cpu"),
        "csd_queue_cpu_raw",
        &["cpu", "callsite", "func", "csd"],
    ),
    raw(
        tp("csd_function_entry", "csd", "csd_function_entry"),
        "csd_function_entry_raw",
        &["func", "csd"],
    ),
    // Hotplug windows (model.md §8.2): the checker treats them as unspecified.
    raw(
        tp("cpuhp_enter", "cpuhp", "cpuhp_enter"),
        "cpuhp_enter_raw",
        &["cpu", "target", "idx", "fun"],
    ),
    raw(
        tp("cpuhp_exit", "cpuhp", "cpuhp_exit"),
        "cpuhp_exit_raw",
        &["cpu", "state", "idx", "ret"],
    ),
    // The record is (irq, name); the raw arguments (irq, action): the program reads only
    // the first, the same value.
    raw(
        ctx("irq_handler_entry", "irq", "irq_handler_entry"),
        "irq_handler_entry_raw",
        &["irq", "name"],
    ),
    raw(
        ctx("irq_handler_exit", "irq", "irq_handler_exit"),
        "irq_handler_exit_raw",
        &[],
    ),
    // x86 APIC vectors: IPIs (call_function*), timer, reschedule, irq_work.
    raw(
        ctx("vector_entry", "irq_vectors", "call_function_single_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("vector_exit", "irq_vectors", "call_function_single_exit"),
        "hardirq_exit_raw",
        &[],
    ),
    raw(
        ctx("vector_entry", "irq_vectors", "call_function_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("vector_exit", "irq_vectors", "call_function_exit"),
        "hardirq_exit_raw",
        &[],
    ),
    raw(
        ctx("vector_entry", "irq_vectors", "reschedule_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("vector_exit", "irq_vectors", "reschedule_exit"),
        "hardirq_exit_raw",
        &[],
    ),
    raw(
        ctx("vector_entry", "irq_vectors", "local_timer_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("vector_exit", "irq_vectors", "local_timer_exit"),
        "hardirq_exit_raw",
        &[],
    ),
    raw(
        ctx("vector_entry", "irq_vectors", "irq_work_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("vector_exit", "irq_vectors", "irq_work_exit"),
        "hardirq_exit_raw",
        &[],
    ),
];

/// Function probes the model uses as direct evidence (model.md §10.2), beyond the
/// rps_trigger_softirq one: (kernel function, kprobe program, what covers the path without
/// it). Each is optional — attached when the kernel has kprobes and the symbol exists (not
/// inlined). enqueue_to_backlog gives the RPS target CPU of every packet.
pub const FUNCTION_KPROBES: &[(&str, &str, &str)] = &[
    (
        "enqueue_to_backlog",
        "enqueue_to_backlog_kprobe",
        "netif_rx/netif_receive_skb",
    ),
    ("__napi_schedule", "napi_schedule_kprobe", "tracepoints"),
    (
        "__napi_schedule_irqoff",
        "napi_schedule_irqoff_kprobe",
        "tracepoints",
    ),
    ("process_backlog", "process_backlog_kprobe", "tracepoints"),
    ("net_rx_action", "net_rx_action_kprobe", "tracepoints"),
    ("run_backlog_napi", "run_backlog_napi_kprobe", "tracepoints"),
    (
        "napi_threaded_poll_loop",
        "napi_threaded_poll_loop_kprobe",
        "tracepoints",
    ),
    ("run_ksoftirqd", "run_ksoftirqd_kprobe", "tracepoints"),
];
