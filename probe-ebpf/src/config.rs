//! What userspace writes into the object before loading it (read-only data the verifier sees
//! as known values), and the readers for it.

use probe_common::{KernelOffsets, Settings, TpOffsets, MAX_CPUS, NET_RX_SOFTIRQ};

/// Written by userspace before loading (from the kernel's tracefs format files).
#[unsafe(no_mangle)]
pub static OFFSETS: TpOffsets = TpOffsets {
    softirq_vec: 0,
    napi_napi: 0,
    napi_dev_name: 0,
    napi_work: 0,
    napi_budget: 0,
    switch_prev_comm: 0,
    switch_prev_pid: 0,
    switch_prev_state: 0,
    switch_next_comm: 0,
    switch_next_pid: 0,
    waking_comm: 0,
    waking_pid: 0,
    waking_target_cpu: 0,
    wakeup_comm: 0,
    wakeup_pid: 0,
    wakeup_target_cpu: 0,
    ipi_cpu: 0,
    ipi_callsite: 0,
    ipi_callback: 0,
    csdq_cpu: 0,
    csdq_func: 0,
    csdq_csd: 0,
    csdf_func: 0,
    csdf_csd: 0,
    idle_cpu: 0,
    rx_skb: 0,
    rx_len: 0,
    rx_name: 0,
    rxexit_ret: 0,
    rcv_skb: 0,
    rcv_len: 0,
    rcv_name: 0,
    devrx_skb: 0,
    devrx_len: 0,
    devrx_name: 0,
    cpuhp_enter_cpu: 0,
    cpuhp_enter_target: 0,
    cpuhp_enter_idx: 0,
    cpuhp_exit_cpu: 0,
    cpuhp_exit_state: 0,
    cpuhp_exit_idx: 0,
    cpuhp_exit_ret: 0,
    irq_entry_irq: 0,
    _pad: 0,
};

/// Written by userspace before loading (from the kernel's BTF). A program that follows
/// kernel pointers with them (tp_btf, the receive-path raw ones) is attached only when its
/// group of offsets was found and checked (`btf::Found` in probe-cli).
#[unsafe(no_mangle)]
pub static KOFFSETS: KernelOffsets = KernelOffsets {
    skb_len: 0,
    skb_dev: 0,
    netdev_name: 0,
    napi_dev: 0,
    task_pid: 0,
    task_comm: 0,
    task_found: 0,
    task_exit_state: 0,
    task_cpu: 0,
    napi_id: 0,
    napi_irq: 0,
    _pad: 0,
};

/// Address of rps_trigger_softirq (from /proc/kallsyms), for the kprobe that stands in for
/// csd:csd_function_entry on kernels without csd tracepoints (6.1).
#[unsafe(no_mangle)]
pub static RPS_FUNC: u64 = 0;

#[unsafe(no_mangle)]
pub static SETTINGS: Settings = Settings {
    cpu_mask: [u64::MAX; 16],
    softirq_mask: 1 << NET_RX_SOFTIRQ,
    wakeup_bytes: 1 << 20,
    events: 1,
    counters: 0,
    softirq_per_task: 0,
    _pad: 0,
};

/// An OFFSETS field (a classic tracepoint record's field offset).
macro_rules! off {
    ($field:ident) => {
        // Volatile: the value is patched into .rodata at load time; the compiler must not
        // constant-fold the zero it sees here.
        unsafe { core::ptr::read_volatile(&raw const $crate::config::OFFSETS.$field) as usize }
    };
}
pub(crate) use off;

/// A KOFFSETS field (a kernel struct field offset from BTF).
macro_rules! koff {
    ($field:ident) => {
        $crate::config::koff_read(&raw const $crate::config::KOFFSETS.$field)
    };
}
pub(crate) use koff;

/// A KOFFSETS field, read volatile as `off!` reads OFFSETS. A function rather than an
/// `unsafe` block in the macro: `koff!` is used inside other unsafe blocks, where a nested
/// one is a warning in every build.
#[inline(always)]
pub fn koff_read(field: *const u32) -> u64 {
    // SAFETY: `field` points into the KOFFSETS static.
    unsafe { core::ptr::read_volatile(field) as u64 }
}

#[inline(always)]
pub fn rps_func() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const RPS_FUNC) }
}

/// `record` is on: events go to the rings.
#[inline(always)]
pub fn events_on() -> bool {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.events) != 0 }
}

/// `top`'s counters are on. Net tracepoints then read the device name for them first;
/// `record` reads it straight into the event (`emit` zeroed it). `top` records no events and
/// `record` counts nothing, so the net programs return after counting: the verifier then
/// never walks the event path behind every counting path (6.1's gave up on
/// netif_receive_skb with E2BIG when it had to).
#[inline(always)]
pub fn counters_on() -> bool {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.counters) != 0 }
}

/// Softirq context is per task (PREEMPT_RT), see `softirq::switch_softirq`.
#[inline(always)]
pub fn softirq_per_task() -> bool {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.softirq_per_task) != 0 }
}

#[inline(always)]
pub fn softirq_mask() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.softirq_mask) }
}

/// How many bytes waiting in a ring are worth waking the reader for.
#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.wakeup_bytes) as u64 }
}

#[inline(always)]
pub fn cpu_selected(cpu: u32) -> bool {
    let cpu = cpu as usize;
    if cpu >= MAX_CPUS {
        return false;
    }
    // The mask bounds the index in the very register used for the access: older verifiers
    // (6.1) do not carry the `cpu < MAX_CPUS` bound over to a copy of the value.
    let mut word_idx = cpu / 64;
    // Opaque to LLVM, which would otherwise drop the mask below as redundant.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) word_idx) };
    let word_idx = word_idx & (MAX_CPUS / 64 - 1);
    let word = unsafe { core::ptr::read_volatile(&raw const SETTINGS.cpu_mask[word_idx]) };
    word & (1u64 << (cpu % 64)) != 0
}
