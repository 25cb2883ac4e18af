//! Loading napiscope's eBPF programs and attaching them, one tracepoint at a time: a probe
//! that cannot attach is reported with its reason and the others still run.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FEntry, KProbe, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use probe_common::{CpuState, Settings, TpOffsets, RINGS};
use serde::Serialize;

use crate::kernel::tracefs;

static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/napiscope-probes"));

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
    }
}

const fn ctx(program: &'static str, category: &'static str, event: &'static str) -> ProbeSpec {
    ProbeSpec {
        program,
        category,
        event,
        role: Role::Context,
        typed: None,
        raw: None,
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
    raw(
        ctx("irq_handler_entry", "irq", "irq_handler_entry"),
        "hardirq_entry_raw",
        &[],
    ),
    raw(
        ctx("irq_handler_exit", "irq", "irq_handler_exit"),
        "hardirq_exit_raw",
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

#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// "category:event" for tracepoints, the function name for function probes.
    pub name: String,
    /// "tp_btf" | "raw_tracepoint" | "tracepoint" | "kprobe"
    pub kind: &'static str,
    pub role: Role,
    /// The eBPF program attached.
    pub program: Option<&'static str>,
    pub attached: bool,
    /// Why it did not attach.
    pub reason: Option<String>,
    /// Why the preferred kinds (tp_btf, raw_tracepoint) were not used, each named.
    pub fallback: Option<String>,
}

impl ProbeResult {
    /// Not attached (yet); `reason` / `attached` are filled in by whoever tries.
    pub fn new(name: impl Into<String>, kind: &'static str, role: Role) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind,
            role,
            program: None,
            attached: false,
            reason: None,
            fallback: None,
        }
    }
}

/// Read every field offset the programs need. A tracepoint whose format is missing or
/// unexpected leaves its offsets at 0 and is reported as not attachable.
pub fn offsets(tracefs: &Path) -> (TpOffsets, Vec<(&'static str, String)>) {
    let mut o = TpOffsets::default();
    let mut bad: Vec<(&'static str, String)> = Vec::new();
    let ptr = &[8u32][..];
    let int = &[4u32][..];
    let comm = &[16u32][..];
    let state = &[4u32, 8][..];
    macro_rules! fill {
        ($prog:literal, $cat:literal, $ev:literal, { $($dst:ident = $field:literal : $sizes:expr),* $(,)? }) => {{
            let r: Result<()> = (|| {
                let f = tracefs::event_fields(tracefs, $cat, $ev)?;
                $( o.$dst = tracefs::offset(&f, $ev, $field, $sizes)?; )*
                Ok(())
            })();
            if let Err(e) = r {
                bad.push(($prog, format!("{e:#}")));
            }
        }};
    }
    fill!("softirq_raise", "irq", "softirq_raise", { softirq_vec = "vec": int });
    fill!("napi_poll", "napi", "napi_poll", {
        napi_napi = "napi": ptr, napi_dev_name = "dev_name": int,
        napi_work = "work": int, napi_budget = "budget": int,
    });
    fill!("sched_switch", "sched", "sched_switch", {
        switch_prev_comm = "prev_comm": comm, switch_prev_pid = "prev_pid": int,
        switch_prev_state = "prev_state": state, switch_next_comm = "next_comm": comm,
        switch_next_pid = "next_pid": int,
    });
    fill!("sched_waking", "sched", "sched_waking", {
        waking_comm = "comm": comm, waking_pid = "pid": int, waking_target_cpu = "target_cpu": int,
    });
    fill!("sched_wakeup", "sched", "sched_wakeup", {
        wakeup_comm = "comm": comm, wakeup_pid = "pid": int, wakeup_target_cpu = "target_cpu": int,
    });
    fill!("ipi_send_cpu", "ipi", "ipi_send_cpu", {
        ipi_cpu = "cpu": int, ipi_callsite = "callsite": ptr, ipi_callback = "callback": ptr,
    });
    fill!("csd_queue_cpu", "csd", "csd_queue_cpu", {
        csdq_cpu = "cpu": int, csdq_func = "func": ptr, csdq_csd = "csd": ptr,
    });
    fill!("csd_function_entry", "csd", "csd_function_entry", {
        csdf_func = "func": ptr, csdf_csd = "csd": ptr,
    });
    fill!("sched_wake_idle_without_ipi", "sched", "sched_wake_idle_without_ipi", { idle_cpu = "cpu": int });
    fill!("netif_rx", "net", "netif_rx", {
        rx_skb = "skbaddr": ptr, rx_len = "len": int, rx_name = "name": int,
    });
    fill!("netif_rx_exit", "net", "netif_rx_exit", { rxexit_ret = "ret": int });
    fill!("netif_receive_skb", "net", "netif_receive_skb", {
        rcv_skb = "skbaddr": ptr, rcv_len = "len": int, rcv_name = "name": int,
    });
    fill!("cpuhp_enter", "cpuhp", "cpuhp_enter", {
        cpuhp_enter_cpu = "cpu": int, cpuhp_enter_target = "target": int,
        cpuhp_enter_idx = "idx": int,
    });
    fill!("cpuhp_exit", "cpuhp", "cpuhp_exit", {
        cpuhp_exit_cpu = "cpu": int, cpuhp_exit_state = "state": int,
        cpuhp_exit_idx = "idx": int, cpuhp_exit_ret = "ret": int,
    });
    // softirq_entry/exit share softirq_raise's record layout (DECLARE_EVENT_CLASS softirq).
    if let Some((_, why)) = bad.iter().find(|(p, _)| *p == "softirq_raise").cloned() {
        bad.push(("softirq_entry", why.clone()));
        bad.push(("softirq_exit", why));
    }
    (o, bad)
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub results: Vec<ProbeResult>,
}

impl Loaded {
    /// Can fentry programs load here? Loads a no-op fentry on net_rx_action (not attached).
    pub fn fentry_available(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        let prog: &mut FEntry = self
            .ebpf
            .program_mut("fentry_availability")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load("net_rx_action", &btf).map_err(|e| {
            let mut s = format!("{e:#}");
            if let Some(src) = std::error::Error::source(&e) {
                s = format!("{s}: {src}");
            }
            s.lines().next().unwrap_or("").chars().take(200).collect()
        })
    }

    /// Per program: how often the kernel skipped it because an eBPF program was already
    /// running on that CPU (`recursion_misses`). Such events are lost without a seq gap.
    pub fn recursion_misses(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (name, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            if let Some(n) = recursion_misses(std::os::fd::AsRawFd::as_raw_fd(
                &std::os::fd::AsFd::as_fd(fd),
            )) {
                out.insert(name.to_string(), n);
            }
        }
        out
    }

    /// Summed over every loaded program: (run time ns, runs, recursion misses). Run time
    /// and runs stay 0 unless BPF statistics are enabled (`aya::sys::enable_stats`).
    pub fn prog_stats(&self) -> (u64, u64, u64) {
        let mut t = (0, 0, 0);
        for (_, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(fd));
            if let Some(i) = prog_info(fd) {
                t.0 += i.run_time_ns;
                t.1 += i.run_cnt;
                t.2 += i.recursion_misses;
            }
        }
        t
    }

    pub fn take_map<T>(&mut self, name: &str) -> Result<T>
    where
        T: TryFrom<aya::maps::Map>,
        <T as TryFrom<aya::maps::Map>>::Error: std::error::Error + Send + Sync + 'static,
    {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("{name} map missing from the eBPF object"))?;
        Ok(T::try_from(map)?)
    }

    pub fn attached_events(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.attached && r.role == Role::Event)
            .count()
    }

    /// The event rings some CPU writes to (see `ring_sizes`).
    pub fn take_rings(&mut self) -> Result<Vec<RingBuf<MapData>>> {
        (0..used_rings(crate::kernel::system::possible_cpus()))
            .map(|i| {
                let name = format!("EVENTS{i}");
                let map = self
                    .ebpf
                    .take_map(&name)
                    .with_context(|| format!("{name} map missing from the eBPF object"))?;
                Ok(RingBuf::try_from(map)?)
            })
            .collect()
    }

    pub fn take_state(&mut self) -> Result<PerCpuArray<MapData, CpuState>> {
        let map = self
            .ebpf
            .take_map("STATE")
            .context("STATE map missing from the eBPF object")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

/// Rings some CPU writes to: CPU c uses ring `c % RINGS`.
pub fn used_rings(possible_cpus: u32) -> usize {
    (possible_cpus as usize).clamp(1, RINGS)
}

/// Bytes of each event ring: `total` split evenly among the used rings (a power of two each,
/// as the kernel requires, at least a page), one page for the rest.
pub fn ring_sizes(total: u32, possible_cpus: u32) -> [u32; RINGS] {
    let used = used_rings(possible_cpus) as u32;
    let each = 1u32 << (total / used).max(PAGE).ilog2();
    std::array::from_fn(|i| if (i as u32) < used { each } else { PAGE })
}

const PAGE: u32 = 4096;

/// Load the programs with this kernel's offsets and attach every probe that can attach.
/// `prefer_raw`: attach tp_btf and raw tracepoints where they read the same values (false:
/// classic tracepoints everywhere, to compare cost or output).
pub fn load(
    tracefs: &Path,
    settings: &Settings,
    ring_bytes: u32,
    symbols: &crate::kernel::symbols::Symbols,
    prefer_raw: bool,
) -> Result<Loaded> {
    let (offsets, bad) = offsets(tracefs);
    let found = match crate::kernel::btf::Btf::from_sys_fs() {
        Ok(b) => crate::kernel::btf::kernel_offsets(&b),
        Err(e) => crate::kernel::btf::Found::none(&e),
    };
    let rps_func = symbols.addr_of("rps_trigger_softirq").unwrap_or(0);
    let sizes = ring_sizes(ring_bytes, crate::kernel::system::possible_cpus());
    let names: Vec<String> = (0..RINGS).map(|i| format!("EVENTS{i}")).collect();
    let mut loader = EbpfLoader::new();
    loader
        .override_global("OFFSETS", &offsets, true)
        .override_global("SETTINGS", settings, true)
        .override_global("RPS_FUNC", &rps_func, true)
        .override_global("KOFFSETS", &found.offsets, true);
    for (name, size) in names.iter().zip(sizes) {
        loader.map_max_entries(name, size);
    }
    let mut ebpf = loader
        // Only `top` (counters) pairs skbs in the kernel.
        .map_max_entries("INFLIGHT", if settings.counters != 0 { 65536 } else { 1 })
        .load(PROBES)
        .context("loading napiscope's eBPF programs into the kernel")?;
    let mut results = Vec::new();
    let mut loaded: Vec<&str> = Vec::new();
    // The kernel's BTF as aya reads it, for tp_btf programs; parsed on first use.
    let mut vmlinux: Option<Result<aya::Btf, String>> = None;
    for spec in SPECS {
        let name = format!("{}:{}", spec.category, spec.event);
        let mut result = ProbeResult::new(name, "tracepoint", spec.role);
        if !tracefs
            .join("events")
            .join(spec.category)
            .join(spec.event)
            .is_dir()
        {
            result.reason = Some("tracepoint not in this kernel".into());
            results.push(result);
            continue;
        }
        if let Some((typed, group)) = spec.typed.filter(|_| prefer_raw) {
            let needs = match group {
                BtfGroup::Net => &found.net,
                BtfGroup::Sched => &found.sched,
            };
            let r = match needs {
                Ok(()) => attach_typed(&mut ebpf, &mut vmlinux, spec, typed),
                Err(e) => Err(anyhow::anyhow!("kernel BTF: {e}")),
            };
            match r {
                Ok(()) => {
                    result.kind = "tp_btf";
                    result.program = Some(typed);
                    result.attached = true;
                    results.push(result);
                    continue;
                }
                Err(e) => result.fallback = Some(format!("tp_btf: {e:#}")),
            }
        }
        if let Some((raw_prog, needs)) = spec.raw.filter(|_| prefer_raw) {
            match attach_raw(
                &mut ebpf,
                &mut loaded,
                tracefs,
                spec,
                raw_prog,
                needs,
                &found.net,
            ) {
                Ok(()) => {
                    result.kind = "raw_tracepoint";
                    result.program = Some(raw_prog);
                    result.attached = true;
                    results.push(result);
                    continue;
                }
                Err(e) => {
                    let e = format!("raw_tracepoint: {e:#}");
                    result.fallback = Some(match result.fallback.take() {
                        Some(first) => format!("{first}; {e}"),
                        None => e,
                    })
                }
            }
        }
        if let Some((_, why)) = bad.iter().find(|(p, _)| *p == spec.program) {
            result.reason = Some(why.clone());
            results.push(result);
            continue;
        }
        let r: Result<()> = (|| {
            let prog: &mut TracePoint = ebpf
                .program_mut(spec.program)
                .with_context(|| format!("program {} missing", spec.program))?
                .try_into()?;
            if !loaded.contains(&spec.program) {
                prog.load()
                    .with_context(|| format!("verifier rejected {}", spec.program))?;
                loaded.push(spec.program);
            }
            prog.attach(spec.category, spec.event)?;
            Ok(())
        })();
        match r {
            Ok(()) => {
                result.attached = true;
                result.program = Some(spec.program);
            }
            Err(e) => result.reason = Some(format!("{e:#}")),
        }
        results.push(result);
    }
    let kprobes = tracefs.join("kprobe_events").exists();
    results.push(rps_kprobe(&mut ebpf, kprobes, &results, rps_func));
    for (function, program, covered_by) in FUNCTION_KPROBES {
        let mut r = ProbeResult::new(*function, "kprobe", Role::Event);
        if !kprobes {
            r.reason = Some(format!(
                "kernel has no kprobes (CONFIG_KPROBES off); {covered_by} cover this path"
            ));
        } else if symbols.addr_of(function).is_none() {
            r.reason = Some(format!(
                "{function} is not in /proc/kallsyms (inlined or absent)"
            ));
        } else {
            attach_kprobe(&mut ebpf, &mut r, program, function);
        }
        results.push(r);
    }
    Ok(Loaded { ebpf, results })
}

/// Load `program` and attach it to the kernel function `function`; record the outcome.
fn attach_kprobe(ebpf: &mut Ebpf, r: &mut ProbeResult, program: &'static str, function: &str) {
    let res: Result<()> = (|| {
        let prog: &mut KProbe = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} missing"))?
            .try_into()?;
        prog.load()?;
        prog.attach(function, 0)
            .with_context(|| format!("{function} is not probe-able here (inlined?)"))?;
        Ok(())
    })();
    match res {
        Ok(()) => {
            r.attached = true;
            r.program = Some(program);
        }
        Err(e) => r.reason = Some(format!("{e:#}")),
    }
}

/// Where csd:csd_function_entry is missing (F5: before ~6.4), see the RPS IPI arrive through a
/// kprobe on rps_trigger_softirq — when the kernel has kprobes.
fn rps_kprobe(ebpf: &mut Ebpf, kprobes: bool, results: &[ProbeResult], addr: u64) -> ProbeResult {
    let mut r = ProbeResult::new("rps_trigger_softirq", "kprobe", Role::Event);
    if results
        .iter()
        .any(|p| p.name == "csd:csd_function_entry" && p.attached)
    {
        r.reason = Some("not needed: csd:csd_function_entry records the RPS IPI".into());
        return r;
    }
    if !kprobes {
        r.reason = Some("kernel has no kprobes (CONFIG_KPROBES off)".into());
        return r;
    }
    if addr == 0 {
        r.reason = Some("rps_trigger_softirq not in /proc/kallsyms".into());
        return r;
    }
    attach_kprobe(
        ebpf,
        &mut r,
        "rps_trigger_softirq_kprobe",
        "rps_trigger_softirq",
    );
    r
}

/// Attach the raw-tracepoint variant, after checking that it will read what the classic
/// tracepoint records: the record's fields (which mirror TP_PROTO) are the arguments the
/// program reads, in order; or the kernel's BTF gave every offset it follows.
fn attach_raw(
    ebpf: &mut Ebpf,
    loaded: &mut Vec<&'static str>,
    tracefs: &Path,
    spec: &ProbeSpec,
    program: &'static str,
    needs: RawNeeds,
    net_offsets: &Result<(), String>,
) -> Result<()> {
    let fields = match needs {
        RawNeeds::Fields(fields) => fields,
        RawNeeds::Btf => match net_offsets {
            Ok(()) => &[],
            Err(e) => anyhow::bail!("kernel BTF: {e}"),
        },
    };
    if !fields.is_empty() {
        let f = tracefs::event_fields(tracefs, spec.category, spec.event)?;
        let mut order: Vec<(&u32, &str)> = f
            .iter()
            .filter(|(n, _)| !n.starts_with("common_"))
            .map(|(n, fl)| (&fl.offset, n.as_str()))
            .collect();
        order.sort();
        let names: Vec<&str> = order.into_iter().map(|(_, n)| n).collect();
        if names != fields {
            anyhow::bail!(
                "record fields {names:?} differ from the raw arguments napiscope reads {fields:?}"
            );
        }
    }
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing"))?
        .try_into()?;
    if !loaded.contains(&program) {
        prog.load()
            .with_context(|| format!("verifier rejected {program}"))?;
        loaded.push(program);
    }
    prog.attach(spec.event)?;
    Ok(())
}

/// Load and attach the tp_btf variant of a probe (`RawNeeds::Btf`).
fn attach_typed(
    ebpf: &mut Ebpf,
    vmlinux: &mut Option<Result<aya::Btf, String>>,
    spec: &ProbeSpec,
    program: &'static str,
) -> Result<()> {
    let btf = vmlinux
        .get_or_insert_with(|| aya::Btf::from_sys_fs().map_err(|e| format!("{e}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("kernel BTF: {e}"))?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing"))?
        .try_into()?;
    prog.load(spec.event, btf)
        .with_context(|| format!("verifier rejected {program}"))?;
    prog.attach()?;
    Ok(())
}

/// `bpf(BPF_OBJ_GET_INFO_BY_FD)` on a program fd → its recursion_misses counter.
fn recursion_misses(fd: i32) -> Option<u64> {
    prog_info(fd).map(|i| i.recursion_misses)
}

fn prog_info(fd: i32) -> Option<aya_obj::generated::bpf_prog_info> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain data; the kernel fills at most info_len bytes of it.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: a valid attr for BPF_OBJ_GET_INFO_BY_FD (15) of the given size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            15,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (rc == 0).then_some(info)
}
