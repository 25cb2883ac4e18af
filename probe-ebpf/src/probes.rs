use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel, generated,
    },
    macros::{btf_tracepoint, fentry, kprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, TracePointContext,
    },
    EbpfContext,
};
use probe_common::{
    where_, CpuCounters, CpuState, Ctx, EventKind, Filter, Inflight, KernelOffsets, RawEvent,
    Settings, TpOffsets, BLIND_LOG, COMM_LEN, FILTER_COMM, FILTER_DEV, LAT_BUCKETS, MAX_CPUS,
    NET_RX_SOFTIRQ, PATHS, WOKEN_BACKLOG, WOKEN_KSOFTIRQD,
};

/// Written by userspace before loading (from the kernel's tracefs format files).
#[unsafe(no_mangle)]
static OFFSETS: TpOffsets = TpOffsets {
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
    cpuhp_enter_cpu: 0,
    cpuhp_enter_target: 0,
    cpuhp_enter_idx: 0,
    cpuhp_exit_cpu: 0,
    cpuhp_exit_state: 0,
    cpuhp_exit_idx: 0,
    cpuhp_exit_ret: 0,
};

/// Written by userspace before loading (from the kernel's BTF). A program that follows
/// kernel pointers with them (tp_btf, the receive-path raw ones) is attached only when its
/// group of offsets was found and checked (`btf::Found` in probe-cli).
#[unsafe(no_mangle)]
static KOFFSETS: KernelOffsets = KernelOffsets {
    skb_len: 0,
    skb_dev: 0,
    netdev_name: 0,
    napi_dev: 0,
    task_pid: 0,
    task_comm: 0,
    task_found: 0,
    task_exit_state: 0,
    task_cpu: 0,
    _pad: [0; 3],
};

/// Address of rps_trigger_softirq (from /proc/kallsyms), for the kprobe that stands in for
/// csd:csd_function_entry on kernels without csd tracepoints (6.1).
#[unsafe(no_mangle)]
static RPS_FUNC: u64 = 0;

#[unsafe(no_mangle)]
static SETTINGS: Settings = Settings {
    cpu_mask: [u64::MAX; 16],
    softirq_mask: 1 << 3,
    wakeup_bytes: 1 << 20,
    events: 1,
    counters: 0,
};

/// One ring per CPU group (`RINGS`); sizes are set by userspace (`--ring-buffer-mb` split
/// among the rings some CPU uses, one page for the others).
#[map]
static EVENTS0: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS1: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS2: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS3: RingBuf = RingBuf::with_byte_size(4096, 0);
const _: () = assert!(probe_common::RINGS == 4);

/// This CPU's ring. A match on constants: each arm hands the helper a map the verifier knows.
#[inline(always)]
fn ring(cpu: u32) -> &'static RingBuf {
    match cpu % 4 {
        0 => &EVENTS0,
        1 => &EVENTS1,
        2 => &EVENTS2,
        _ => &EVENTS3,
    }
}

#[map]
static STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

// ---- `top`: counters aggregated in the kernel (SETTINGS.counters) ---------------------------

#[map]
static COUNTERS: PerCpuArray<CpuCounters> = PerCpuArray::with_max_entries(1, 0);

/// Wake-ups of each CPU's ksoftirqd / backlog_napi thread: `cpu * 2 + WOKEN_*`.
#[map]
static WOKEN: Array<u64> = Array::with_max_entries(MAX_CPUS as u32 * 2, 0);

/// skb → where and when netif_rx enqueued it, until netif_receive_skb delivers it. LRU: skbs
/// that are dropped or never delivered age out. Userspace shrinks it to 1 entry for `record`.
#[map]
static INFLIGHT: LruHashMap<u64, Inflight> = LruHashMap::with_max_entries(65536, 0);

/// `top`'s `/` filter; userspace changes it while the programs run.
#[map]
static FILTER: Array<Filter> = Array::with_max_entries(1, 0);

macro_rules! off {
    ($field:ident) => {
        // Volatile: the value is patched into .rodata at load time; the compiler must not
        // constant-fold the zero it sees here.
        unsafe { core::ptr::read_volatile(&raw const OFFSETS.$field) as usize }
    };
}

macro_rules! koff {
    ($field:ident) => {
        koff_read(&raw const KOFFSETS.$field)
    };
}

/// A KOFFSETS field, read volatile as `off!` reads OFFSETS. A function rather than an
/// `unsafe` block in the macro: `koff!` is used inside other unsafe blocks, where a nested
/// one is a warning in every build.
#[inline(always)]
fn koff_read(field: *const u32) -> u64 {
    // SAFETY: `field` points into the KOFFSETS static.
    unsafe { core::ptr::read_volatile(field) as u64 }
}

#[inline(always)]
fn state() -> Option<&'static mut CpuState> {
    let p = STATE.get_ptr_mut(0)?;
    Some(unsafe { &mut *p })
}

#[inline(always)]
fn cpu_selected(cpu: u32) -> bool {
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

#[inline(always)]
fn current_ctx(st: &CpuState) -> u8 {
    if st.hardirq_depth > 0 {
        Ctx::Hardirq as u8
    } else if st.softirq != 0 {
        Ctx::Softirq as u8
    } else {
        Ctx::Task as u8
    }
}

/// Reserve, fill and submit one event; count it as lost when the ring buffer is full.
#[inline(always)]
fn emit(kind: EventKind, fill: impl FnOnce(&mut RawEvent)) {
    if unsafe { core::ptr::read_volatile(&raw const SETTINGS.events) } == 0 {
        return;
    }
    let cpu = unsafe { bpf_get_smp_processor_id() };
    if !cpu_selected(cpu) {
        return;
    }
    let Some(st) = state() else { return };
    // Raw-tracepoint programs in hard irqs can nest inside a program already running on this
    // CPU: one atomic fetch-and-add gives each event its own `seq`, so a gap is exactly a loss
    // (a plain read then XADD let a nested event share the outer one's value and skip one).
    // A nested event may reach the ring before the outer one; readers sort by `seq`.
    let seq = fetch_inc(&mut st.seq);
    let ring = ring(cpu);
    let Some(mut entry) = ring.reserve::<RawEvent>(0) else {
        atomic_inc(&mut st.lost);
        return;
    };
    // Filled in place. Ring memory is not zeroed, so every word is cleared first — with word
    // stores: a zeroed struct or `[0u8; 16]` compiles to calls to the BPF backend's
    // byte-at-a-time `memset` (it has no inline memset), which cost more than all the rest.
    let ev = entry.as_mut_ptr();
    let words = ev as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<RawEvent>() / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
    let ev = unsafe { &mut *ev };
    let now = unsafe { bpf_ktime_get_ns() };
    ev.ts_ns = now;
    ev.seq = seq;
    ev.cpu = cpu;
    ev.kind = kind as u16;
    ev.ctx = current_ctx(st);
    if koff!(task_found) != 0 {
        // One helper and three loads the verifier checked against task_struct, where
        // pid_tgid + get_current_comm (a strscpy) are two helpers.
        let task = unsafe { generated::bpf_get_current_task_btf() } as u64;
        let w = ev.comm.as_mut_ptr() as *mut u64;
        unsafe {
            ev.pid = btf_load::<i32>(task, koff!(task_pid)) as u32;
            core::ptr::write_volatile(w, btf_load::<u64>(task, koff!(task_comm)));
            core::ptr::write_volatile(w.add(1), btf_load::<u64>(task, koff!(task_comm) + 8));
        }
    } else {
        ev.pid = bpf_get_current_pid_tgid() as u32;
        write_current_comm(&mut ev.comm);
    }
    observe_current(st, ev.pid, now);
    fill(ev);
    // Wake the reader only when a good part of the ring is waiting (it also polls every
    // 20 ms). Asking the ring reads the positions the reader writes: every 64th event will do.
    let wake = unsafe { core::ptr::read_volatile(&raw const SETTINGS.wakeup_bytes) } as u64;
    let flags = if seq % 64 == 0 && ring.query(BPF_RB_AVAIL_DATA as u64) >= wake {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
    atomic_inc(&mut st.emitted);
}

/// How long after sched_switch its `prev` may still be current (the rest of
/// context_switch runs in prev's context, with interrupts off).
const SWITCH_TAIL_NS: u64 = 20_000;

/// An event fired with `pid` current. The kernel calls sched_switch's program for every
/// context switch it lets us see, so a task other than the one switched to means it ran none
/// of our programs since that switch — not the switch away from that task either: a window
/// in which this CPU was blind. Recorded, never guessed at: the user-space side says where.
#[inline(always)]
fn observe_current(st: &mut CpuState, pid: u32, now: u64) {
    let cur = st.cur_pid;
    if cur == 0 || cur == pid.wrapping_add(1) {
        return;
    }
    if st.prev_pid == pid.wrapping_add(1) && now.wrapping_sub(st.switch_ns) < SWITCH_TAIL_NS {
        return;
    }
    let n = st.blind_windows;
    let slot = (n as usize) & (BLIND_LOG - 1);
    if let Some(w) = st.blind_log.get_mut(slot) {
        w.from_ns = st.switch_ns;
        w.to_ns = now;
        w.pid = cur - 1;
    }
    st.blind_windows = n + 1;
    st.blind_ns += now.wrapping_sub(st.switch_ns);
    // Back in step: this task is current now.
    st.cur_pid = pid.wrapping_add(1);
    st.prev_pid = 0;
    st.switch_ns = now;
}

/// sched_switch from `prev` to `next`, for `observe_current`.
#[inline(always)]
fn track_switch(st: &mut CpuState, prev: u32, next: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    observe_current(st, prev, now);
    st.prev_pid = prev.wrapping_add(1);
    st.cur_pid = next.wrapping_add(1);
    st.switch_ns = now;
}

/// `*v += 1`, atomically; returns the old value (BPF_ATOMIC | BPF_FETCH, kernel ≥ 5.12).
#[inline(always)]
fn fetch_inc(v: &mut u64) -> u64 {
    let mut n: u64 = 1;
    // SAFETY: v points into a map value that lives as long as the program.
    unsafe {
        core::arch::asm!(
            "{0} = atomic_fetch_add((u64 *)({1} + 0), {0})",
            inout(reg) n,
            in(reg) v as *mut u64,
        );
    }
    n
}

#[inline(always)]
fn atomic_inc(v: &mut u64) {
    atomic_add(v, 1)
}

#[inline(always)]
fn atomic_add(v: &mut u64, n: u64) {
    // BPF_ATOMIC add without fetch (BPF v1 XADD): core's AtomicU64 has no RMW on this target.
    // SAFETY: v points into a map value that lives as long as the program.
    unsafe {
        core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) v as *mut u64, in(reg) n);
    }
}

/// `x & mask` in a way the verifier sees on every kernel (see `cpu_selected`).
#[inline(always)]
fn bounded(mut x: usize, mask: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) x) };
    x & mask
}

#[inline(always)]
fn prefix_match(f: &Filter, name: &[u8; COMM_LEN]) -> bool {
    let mut i = 0;
    while i < COMM_LEN {
        if (i as u32) < f.len && name[i] != f.pattern[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// This CPU's counters when `top` runs and the event passes its filter. `dev`: the event's
/// device, for events that have one (the device filter leaves the others alone).
#[inline(always)]
fn counting(dev: Option<&[u8; COMM_LEN]>) -> Option<&'static mut CpuCounters> {
    if unsafe { core::ptr::read_volatile(&raw const SETTINGS.counters) } == 0 {
        return None;
    }
    if let Some(f) = FILTER.get(0) {
        if f.kind == FILTER_COMM {
            let comm = current_comm();
            if !prefix_match(f, &comm) {
                return None;
            }
        } else if f.kind == FILTER_DEV {
            if let Some(dev) = dev {
                if !prefix_match(f, dev) {
                    return None;
                }
            }
        }
    }
    let c = unsafe { &mut *COUNTERS.get_ptr_mut(0)? };
    atomic_inc(&mut c.events);
    Some(c)
}

/// Bucket b holds [2^b, 2^(b+1)) ns; the last one everything above.
#[inline(always)]
fn log2_bucket(mut v: u64) -> usize {
    let mut b = 0;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= LAT_BUCKETS {
        LAT_BUCKETS - 1
    } else {
        b
    }
}

#[inline(always)]
fn rps_func() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const RPS_FUNC) }
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, off: usize) -> T
where
    T: Default,
{
    unsafe { ctx.read_at::<T>(off) }.unwrap_or_default()
}

/// Read a `__data_loc char[]` field into `dst`, which must be zeroed: the helper copies up
/// to the NUL and leaves the rest as it was (all of it zeroed if the read faults).
#[inline(always)]
fn read_data_loc(ctx: &TracePointContext, off: usize, dst: &mut [u8; COMM_LEN]) {
    let loc: u32 = read(ctx, off);
    let data = (loc & 0xffff) as usize;
    let src = unsafe { (ctx.as_ptr() as *const u8).add(data) };
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), COMM_LEN as u32, src.cast())
    };
}

/// A fixed `char[16]` field (comm). The helper writes all 16 bytes, zeros if it faults, so
/// the buffer needs no zeroing first (`read::<[u8; 16]>` would memset it for the error path).
#[inline(always)]
fn read_comm(ctx: &TracePointContext, off: usize) -> [u8; COMM_LEN] {
    let mut comm = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    unsafe {
        let src = (ctx.as_ptr() as *const u8).add(off);
        generated::bpf_probe_read_kernel(comm.as_mut_ptr().cast(), COMM_LEN as u32, src.cast());
        comm.assume_init()
    }
}

/// A name buffer on the stack, 8-byte aligned so it can be cleared with two word stores
/// (see `emit`).
#[repr(C, align(8))]
struct Name([u8; COMM_LEN]);

/// `top`'s counters are on. Net tracepoints then read the device name for them first;
/// `record` reads it straight into the event (`emit` zeroed it). `top` records no events and
/// `record` counts nothing, so the net programs return after counting: the verifier then
/// never walks the event path behind every counting path (6.1's gave up on
/// netif_receive_skb with E2BIG when it had to).
#[inline(always)]
fn counters_on() -> bool {
    unsafe { core::ptr::read_volatile(&raw const SETTINGS.counters) != 0 }
}

/// A zeroed name buffer on the caller's stack, for `top`'s device filter and counters.
#[inline(always)]
fn zeroed_name(buf: &mut core::mem::MaybeUninit<Name>) -> &mut [u8; COMM_LEN] {
    let w = buf.as_mut_ptr() as *mut u64;
    unsafe {
        core::ptr::write_volatile(w, 0);
        core::ptr::write_volatile(w.add(1), 0);
        &mut (*buf.as_mut_ptr()).0
    }
}

/// `dev->name` into `dst`, which must be zeroed; for a NULL `dev` the name the napi_poll
/// tracepoint gives the per-CPU backlog NAPI, `(no_device)`.
#[inline(always)]
fn netdev_name(dev: u64, dst: &mut [u8; COMM_LEN]) {
    if dev == 0 {
        // "(no_devi" "ce)" as two little-endian words (dst is 8-byte aligned).
        let w = dst.as_mut_ptr() as *mut u64;
        unsafe {
            core::ptr::write_volatile(w, u64::from_le_bytes(*b"(no_devi"));
            core::ptr::write_volatile(w.add(1), u64::from_le_bytes(*b"ce)\0\0\0\0\0"));
        }
        return;
    }
    let src = (dev + koff!(netdev_name)) as *const u8;
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), COMM_LEN as u32, src.cast())
    };
}

/// `*(T *)(base + off)` where `base` is a BTF-typed kernel pointer (a tp_btf argument or a
/// pointer loaded through one) and `off` a constant from KOFFSETS (read-only data the
/// verifier sees as known values): checked at load time, a plain load at run time.
#[inline(always)]
unsafe fn btf_load<T: Copy>(base: u64, off: u64) -> T {
    unsafe { core::ptr::read_volatile((base + off) as *const T) }
}

/// `dev->name` (char[16]) into `dst` with two word loads, for a BTF-typed `dev`;
/// `(no_device)` for NULL, as netdev_name.
#[inline(always)]
fn btf_netdev_name(dev: u64, dst: &mut [u8; COMM_LEN]) {
    if dev == 0 {
        return netdev_name(0, dst);
    }
    let w = dst.as_mut_ptr() as *mut u64;
    let off = koff!(netdev_name);
    unsafe {
        core::ptr::write_volatile(w, btf_load::<u64>(dev, off));
        core::ptr::write_volatile(w.add(1), btf_load::<u64>(dev, off + 8));
    }
}

/// A kernel pointer's target, read with bpf_probe_read_kernel; 0 if the read faults.
#[inline(always)]
fn kread_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn kread_u32(addr: u64) -> u32 {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0)
}

const NOT_INTERESTING: u8 = 0;
const KSOFTIRQD: u8 = 1;
const BACKLOG_NAPI: u8 = 2;

/// The kernel threads whose scheduling the model needs: ksoftirqd/N and backlog_napi/N.
#[inline(always)]
fn thread_kind(comm: &[u8; COMM_LEN]) -> u8 {
    const K: &[u8; 10] = b"ksoftirqd/";
    const B: &[u8; 13] = b"backlog_napi/";
    let mut k = true;
    let mut i = 0;
    while i < K.len() {
        if comm[i] != K[i] {
            k = false;
        }
        i += 1;
    }
    if k {
        return KSOFTIRQD;
    }
    let mut i = 0;
    while i < B.len() {
        if comm[i] != B[i] {
            return NOT_INTERESTING;
        }
        i += 1;
    }
    BACKLOG_NAPI
}

#[inline(always)]
fn interesting_thread(comm: &[u8; COMM_LEN]) -> bool {
    thread_kind(comm) != NOT_INTERESTING
}

/// `(no_device)`: the name napi_poll gives the per-CPU backlog NAPI.
#[inline(always)]
fn is_backlog_dev(dev: &[u8; COMM_LEN]) -> bool {
    const N: &[u8; 11] = b"(no_device)";
    let mut i = 0;
    while i < N.len() {
        if dev[i] != N[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The current task's comm. The helper writes all 16 bytes (NUL-padded), so no zeroing.
#[inline(always)]
fn current_comm() -> [u8; COMM_LEN] {
    let mut comm = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    unsafe {
        generated::bpf_get_current_comm(comm.as_mut_ptr().cast(), COMM_LEN as u32);
        comm.assume_init()
    }
}

#[inline(always)]
fn write_current_comm(dst: &mut [u8; COMM_LEN]) {
    unsafe { generated::bpf_get_current_comm(dst.as_mut_ptr().cast(), COMM_LEN as u32) };
}

// ---- context trackers -------------------------------------------------------------------

#[inline(always)]
fn hardirq_enter() -> u32 {
    if let Some(st) = state() {
        if st.hardirq_depth < 8 {
            st.hardirq_depth += 1;
        }
    }
    0
}

#[inline(always)]
fn hardirq_exit() -> u32 {
    if let Some(st) = state() {
        st.hardirq_depth = st.hardirq_depth.saturating_sub(1);
        if unsafe { core::ptr::read_volatile(&raw const SETTINGS.counters) } != 0 {
            st.last_hardirq_exit_ns = unsafe { bpf_ktime_get_ns() };
        }
    }
    0
}

#[tracepoint]
pub fn irq_handler_entry(_ctx: TracePointContext) -> u32 {
    hardirq_enter()
}
#[tracepoint]
pub fn irq_handler_exit(_ctx: TracePointContext) -> u32 {
    hardirq_exit()
}
#[tracepoint]
pub fn vector_entry(_ctx: TracePointContext) -> u32 {
    hardirq_enter()
}
#[tracepoint]
pub fn vector_exit(_ctx: TracePointContext) -> u32 {
    hardirq_exit()
}

#[inline(always)]
fn softirq_event(ctx: &TracePointContext, kind: EventKind) -> u32 {
    let vec: u32 = read(ctx, off!(softirq_vec));
    softirq_vec_event(vec, kind)
}

#[inline(always)]
fn softirq_vec_event(vec: u32, kind: EventKind) -> u32 {
    let mask = unsafe { core::ptr::read_volatile(&raw const SETTINGS.softirq_mask) };
    if vec == NET_RX_SOFTIRQ {
        count_net_rx(kind);
    }
    if let Some(st) = state() {
        match kind {
            // Softirqs never run inside a hard interrupt: entry proves the depth is 0, which
            // heals the tracker after a missed irq exit.
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

#[tracepoint]
pub fn softirq_raise(ctx: TracePointContext) -> u32 {
    softirq_event(&ctx, EventKind::SoftirqRaise)
}
#[tracepoint]
pub fn softirq_entry(ctx: TracePointContext) -> u32 {
    softirq_event(&ctx, EventKind::SoftirqEntry)
}
#[tracepoint]
pub fn softirq_exit(ctx: TracePointContext) -> u32 {
    softirq_event(&ctx, EventKind::SoftirqExit)
}

// ---- receive path -----------------------------------------------------------------------

#[tracepoint]
pub fn napi_poll(ctx: TracePointContext) -> u32 {
    let napi: u64 = read(&ctx, off!(napi_napi));
    let work: i32 = read(&ctx, off!(napi_work));
    let budget: i32 = read(&ctx, off!(napi_budget));
    napi_poll_event(napi, work, budget, |name| {
        read_data_loc(&ctx, off!(napi_dev_name), name)
    })
}

/// TP_PROTO(struct napi_struct *napi, int work, int budget). Reads napi->dev->name itself
/// (offsets from BTF) instead of having the classic tracepoint copy a record first.
#[raw_tracepoint]
pub fn napi_poll_raw(ctx: RawTracePointContext) -> u32 {
    let napi = ctx.arg::<u64>(0);
    let work = ctx.arg::<u64>(1) as i32;
    let budget = ctx.arg::<u64>(2) as i32;
    napi_poll_event(napi, work, budget, |name| {
        netdev_name(kread_u64(napi + koff!(napi_dev)), name)
    })
}

/// As napi_poll_raw, with the arguments typed by the kernel's BTF (tp_btf): the verifier
/// checks each field load against the struct layout, so they are plain loads, not helper
/// calls.
#[btf_tracepoint(function = "napi_poll")]
pub fn napi_poll_btf(ctx: BtfTracePointContext) -> u32 {
    let napi: u64 = ctx.arg(0);
    let work: i32 = ctx.arg(1);
    let budget: i32 = ctx.arg(2);
    napi_poll_event(napi, work, budget, |name| {
        btf_netdev_name(unsafe { btf_load::<u64>(napi, koff!(napi_dev)) }, name)
    })
}

/// `dev_name` writes the device's name into a zeroed buffer.
#[inline(always)]
fn napi_poll_event(
    napi: u64,
    work: i32,
    budget: i32,
    dev_name: impl FnOnce(&mut [u8; COMM_LEN]),
) -> u32 {
    if counters_on() {
        let mut buf = core::mem::MaybeUninit::uninit();
        let dev = zeroed_name(&mut buf);
        dev_name(dev);
        if let Some(c) = counting(Some(dev)) {
            count_poll(c, work, budget, dev);
        }
        return 0;
    }
    emit(EventKind::NapiPoll, |ev| {
        ev.ptr = napi;
        ev.arg0 = work;
        ev.arg1 = budget;
        dev_name(&mut ev.name);
    });
    0
}

#[inline(always)]
fn count_poll(c: &mut CpuCounters, work: i32, budget: i32, dev: &[u8; COMM_LEN]) {
    let work = if work > 0 { work as u64 } else { 0 };
    atomic_inc(&mut c.polls);
    atomic_add(&mut c.poll_packets, work);
    if budget > 0 && work >= budget as u64 {
        atomic_inc(&mut c.poll_budget_exhausted);
    }
    if is_backlog_dev(dev) {
        atomic_inc(&mut c.backlog_polls);
    }
    let Some(st) = state() else { return };
    let w = if st.softirq == NET_RX_SOFTIRQ + 1 {
        st.net_rx_where as usize
    } else if thread_kind(&current_comm()) == BACKLOG_NAPI {
        where_::BACKLOG_THREAD
    } else {
        where_::OTHER_TASK
    };
    atomic_add(
        &mut c.poll_packets_where[bounded(w, 7) % where_::COUNT],
        work,
    );
}

#[tracepoint]
pub fn netif_rx(ctx: TracePointContext) -> u32 {
    let skb: u64 = read(&ctx, off!(rx_skb));
    let len: u32 = read(&ctx, off!(rx_len));
    netif_rx_event(skb, len, |name| read_data_loc(&ctx, off!(rx_name), name))
}

/// TP_PROTO(struct sk_buff *skb); skb->len and skb->dev->name read at BTF offsets.
#[raw_tracepoint]
pub fn netif_rx_raw(ctx: RawTracePointContext) -> u32 {
    let skb = ctx.arg::<u64>(0);
    netif_rx_event(skb, kread_u32(skb + koff!(skb_len)), |name| {
        netdev_name(kread_u64(skb + koff!(skb_dev)), name)
    })
}

#[btf_tracepoint(function = "netif_rx")]
pub fn netif_rx_btf(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    let len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) };
    netif_rx_event(skb, len, |name| {
        btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
    })
}

#[inline(always)]
fn netif_rx_event(skb: u64, len: u32, dev_name: impl FnOnce(&mut [u8; COMM_LEN])) -> u32 {
    if counters_on() {
        let mut buf = core::mem::MaybeUninit::uninit();
        let dev = zeroed_name(&mut buf);
        dev_name(dev);
        if let Some(c) = counting(Some(dev)) {
            atomic_inc(&mut c.enqueues);
            let entry = Inflight {
                ts_ns: unsafe { bpf_ktime_get_ns() },
                cpu: unsafe { bpf_get_smp_processor_id() },
                _pad: 0,
            };
            let _ = INFLIGHT.insert(&skb, &entry, 0);
        }
        return 0;
    }
    emit(EventKind::NetifRx, |ev| {
        ev.ptr = skb;
        ev.arg0 = len as i32;
        dev_name(&mut ev.name);
    });
    0
}

#[tracepoint]
pub fn netif_rx_exit(ctx: TracePointContext) -> u32 {
    let ret: i32 = read(&ctx, off!(rxexit_ret));
    netif_rx_exit_event(ret)
}

#[inline(always)]
fn netif_rx_exit_event(ret: i32) -> u32 {
    // NET_RX_DROP = 1: the backlog was full.
    if ret == 1 {
        if let Some(c) = counting(None) {
            atomic_inc(&mut c.enqueue_drops);
        }
    }
    emit(EventKind::NetifRxExit, |ev| ev.arg0 = ret);
    0
}

#[tracepoint]
pub fn netif_receive_skb(ctx: TracePointContext) -> u32 {
    let skb: u64 = read(&ctx, off!(rcv_skb));
    let len: u32 = read(&ctx, off!(rcv_len));
    netif_receive_skb_event(skb, len, |name| read_data_loc(&ctx, off!(rcv_name), name))
}

/// TP_PROTO(struct sk_buff *skb), as netif_rx_raw.
#[raw_tracepoint]
pub fn netif_receive_skb_raw(ctx: RawTracePointContext) -> u32 {
    let skb = ctx.arg::<u64>(0);
    netif_receive_skb_event(skb, kread_u32(skb + koff!(skb_len)), |name| {
        netdev_name(kread_u64(skb + koff!(skb_dev)), name)
    })
}

#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netif_receive_skb_btf(ctx: BtfTracePointContext) -> u32 {
    let skb: u64 = ctx.arg(0);
    let len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) };
    netif_receive_skb_event(skb, len, |name| {
        btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
    })
}

#[inline(always)]
fn netif_receive_skb_event(skb: u64, len: u32, dev_name: impl FnOnce(&mut [u8; COMM_LEN])) -> u32 {
    if counters_on() {
        let mut buf = core::mem::MaybeUninit::uninit();
        let dev = zeroed_name(&mut buf);
        dev_name(dev);
        if let Some(c) = counting(Some(dev)) {
            count_delivery(c, skb);
        }
        return 0;
    }
    emit(EventKind::NetifReceiveSkb, |ev| {
        ev.ptr = skb;
        ev.arg0 = len as i32;
        dev_name(&mut ev.name);
    });
    0
}

/// Pair the delivery with its enqueue; classify it as `analysis::paths::classify` does.
#[inline(always)]
fn count_delivery(c: &mut CpuCounters, skb: u64) {
    let Some(inflight) = (unsafe { INFLIGHT.get(&skb) }) else {
        atomic_inc(&mut c.unmatched);
        return;
    };
    let (enq_ts, enq_cpu) = (inflight.ts_ns, inflight.cpu);
    let _ = INFLIGHT.remove(&skb);
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let in_softirq = state().is_some_and(|st| st.softirq != 0);
    let kind = thread_kind(&current_comm());
    let path = if kind == BACKLOG_NAPI && !in_softirq {
        3
    } else if kind == KSOFTIRQD {
        2
    } else if enq_cpu != cpu {
        1
    } else {
        0
    };
    if path == 3 && enq_cpu == cpu {
        atomic_inc(&mut c.backlog_thread_local);
    }
    let path = bounded(path, PATHS - 1);
    atomic_inc(&mut c.deliveries[path]);
    let now = unsafe { bpf_ktime_get_ns() };
    let b = bounded(log2_bucket(now.saturating_sub(enq_ts)), LAT_BUCKETS - 1);
    atomic_inc(&mut c.latency[path][b]);
}

// ---- IPIs and cross-CPU function calls --------------------------------------------------

#[tracepoint]
pub fn ipi_send_cpu(ctx: TracePointContext) -> u32 {
    let cpu: u32 = read(&ctx, off!(ipi_cpu));
    let callsite: u64 = read(&ctx, off!(ipi_callsite));
    let callback: u64 = read(&ctx, off!(ipi_callback));
    count_ipi_sent();
    emit(EventKind::IpiSendCpu, |ev| {
        ev.arg0 = cpu as i32;
        ev.ptr = callsite;
        ev.func = callback;
    });
    0
}

#[tracepoint]
pub fn csd_queue_cpu(ctx: TracePointContext) -> u32 {
    let cpu: u32 = read(&ctx, off!(csdq_cpu));
    let func: u64 = read(&ctx, off!(csdq_func));
    let csd: u64 = read(&ctx, off!(csdq_csd));
    count_csd(func, false);
    emit(EventKind::CsdQueueCpu, |ev| {
        ev.arg0 = cpu as i32;
        ev.func = func;
        ev.ptr = csd;
    });
    0
}

#[tracepoint]
pub fn csd_function_entry(ctx: TracePointContext) -> u32 {
    let func: u64 = read(&ctx, off!(csdf_func));
    let csd: u64 = read(&ctx, off!(csdf_csd));
    count_csd(func, true);
    emit(EventKind::CsdFunctionEntry, |ev| {
        ev.func = func;
        ev.ptr = csd;
    });
    0
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

#[tracepoint]
pub fn sched_wake_idle_without_ipi(ctx: TracePointContext) -> u32 {
    let cpu: i32 = read(&ctx, off!(idle_cpu));
    emit(EventKind::SchedWakeIdleWithoutIpi, |ev| ev.arg0 = cpu);
    0
}

// ---- scheduler, filtered to ksoftirqd/N and backlog_napi/N in the kernel -----------------

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let prev = read_comm(&ctx, off!(switch_prev_comm));
    let next = read_comm(&ctx, off!(switch_next_comm));
    sched_switch_event(
        prev,
        next,
        (
            read(&ctx, off!(switch_prev_pid)),
            read(&ctx, off!(switch_next_pid)),
        ),
        || read(&ctx, off!(switch_prev_state)),
    )
}

/// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state): comms and pids loaded from the tasks (BTF offsets), prev_state
/// computed as the classic tracepoint does. Every context switch on the machine runs this
/// before the filter, so it matters that no record is filled first.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_btf(ctx: BtfTracePointContext) -> u32 {
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let next: u64 = ctx.arg(2);
    let prev_state: u64 = ctx.arg(3);
    sched_switch_event(
        task_comm(prev),
        task_comm(next),
        (task_pid(prev), task_pid(next)),
        || {
            let exit_state = unsafe { btf_load::<u32>(prev, koff!(task_exit_state)) };
            trace_switch_state(preempt & 1 != 0, prev_state as u32, exit_state)
        },
    )
}

/// `pids` are (prev, next), for every switch (blind-window tracking); `state` gives
/// prev_state, read only for the threads that are kept.
#[inline(always)]
fn sched_switch_event(
    prev: [u8; COMM_LEN],
    next: [u8; COMM_LEN],
    pids: (i32, i32),
    state_of_prev: impl FnOnce() -> i64,
) -> u32 {
    let (prev_pid, next_pid) = pids;
    // A context switch happens in task context: heal the trackers.
    if let Some(st) = state() {
        st.hardirq_depth = 0;
        if unsafe { core::ptr::read_volatile(&raw const SETTINGS.events) } != 0 {
            track_switch(st, prev_pid as u32, next_pid as u32);
        }
    }
    let next_kind = thread_kind(&next);
    if next_kind != NOT_INTERESTING {
        if let Some(c) = counting(None) {
            if next_kind == KSOFTIRQD {
                atomic_inc(&mut c.ksoftirqd_runs);
            } else {
                atomic_inc(&mut c.backlog_runs);
            }
        }
    }
    if !interesting_thread(&prev) && next_kind == NOT_INTERESTING {
        return 0;
    }
    let prev_state = state_of_prev();
    emit(EventKind::SchedSwitch, |ev| {
        ev.comm = prev;
        ev.pid = prev_pid as u32;
        ev.state = prev_state;
        ev.name = next;
        ev.arg1 = next_pid;
    });
    0
}

/// The kernel's __trace_sched_switch_state (include/trace/events/sched.h, 6.1–6.18): what
/// the classic sched_switch record holds as prev_state.
#[inline(always)]
fn trace_switch_state(preempt: bool, state: u32, exit_state: u32) -> i64 {
    const TASK_UNINTERRUPTIBLE: u32 = 0x2;
    const TASK_REPORT: u32 = 0x7f;
    const TASK_IDLE: u32 = 0x402;
    const TASK_REPORT_IDLE: u32 = 0x80;
    const TASK_REPORT_MAX: i64 = 0x100;
    const TASK_RTLOCK_WAIT: u32 = 0x1000;
    const TASK_FROZEN: u32 = 0x8000;
    if preempt {
        return TASK_REPORT_MAX;
    }
    // __task_state_index
    let mut s = (state | exit_state) & TASK_REPORT;
    if state & TASK_IDLE == TASK_IDLE {
        s = TASK_REPORT_IDLE;
    }
    if state & (TASK_RTLOCK_WAIT | TASK_FROZEN) != 0 {
        s = TASK_UNINTERRUPTIBLE;
    }
    // fls(s), then 1 << (index - 1)
    if s == 0 {
        0
    } else {
        1i64 << (31 - s.leading_zeros())
    }
}

/// A task's comm (char[16]) with two loads; `task` is BTF-typed.
#[inline(always)]
fn task_comm(task: u64) -> [u8; COMM_LEN] {
    let off = koff!(task_comm);
    let words: [u64; 2] = unsafe { [btf_load(task, off), btf_load(task, off + 8)] };
    unsafe { core::mem::transmute(words) }
}

#[inline(always)]
fn task_pid(task: u64) -> i32 {
    unsafe { btf_load(task, koff!(task_pid)) }
}

#[inline(always)]
fn wake_event(ctx: &TracePointContext, kind: EventKind, comm: usize, pid: usize, target: usize) {
    wake_event_with(kind, read_comm(ctx, comm), || {
        (read(ctx, pid), read(ctx, target))
    });
}

/// TP_PROTO(struct task_struct *p) of sched_waking / sched_wakeup, as sched_switch_btf:
/// comm, pid and task_cpu(p) loaded from the task.
#[inline(always)]
fn wake_event_btf(ctx: &BtfTracePointContext, kind: EventKind) {
    let p: u64 = ctx.arg(0);
    wake_event_with(kind, task_comm(p), || {
        (task_pid(p), unsafe { btf_load::<i32>(p, koff!(task_cpu)) })
    });
}

/// `rest` gives (pid, target cpu), read only for the threads that are kept.
#[inline(always)]
fn wake_event_with(kind: EventKind, woken: [u8; COMM_LEN], rest: impl FnOnce() -> (i32, i32)) {
    let woken_kind = thread_kind(&woken);
    if woken_kind == NOT_INTERESTING {
        return;
    }
    let (pid, target_cpu) = rest();
    if kind == EventKind::SchedWaking {
        count_wakeup(woken_kind, target_cpu);
    }
    emit(kind, |ev| {
        ev.name = woken;
        ev.arg1 = pid;
        ev.arg0 = target_cpu;
    });
}

#[inline(always)]
fn count_wakeup(woken_kind: u8, target_cpu: i32) {
    let Some(c) = counting(None) else { return };
    let slot = if woken_kind == KSOFTIRQD {
        atomic_inc(&mut c.ksoftirqd_wakeups_sent);
        WOKEN_KSOFTIRQD
    } else {
        atomic_inc(&mut c.backlog_wakeups_sent);
        WOKEN_BACKLOG
    };
    if target_cpu < 0 || target_cpu as usize >= MAX_CPUS {
        return;
    }
    let idx = bounded(target_cpu as usize, MAX_CPUS - 1) * 2 + slot;
    if let Some(p) = WOKEN.get_ptr_mut(idx as u32) {
        atomic_inc(unsafe { &mut *p });
    }
}

#[tracepoint]
pub fn sched_waking(ctx: TracePointContext) -> u32 {
    wake_event(
        &ctx,
        EventKind::SchedWaking,
        off!(waking_comm),
        off!(waking_pid),
        off!(waking_target_cpu),
    );
    0
}

#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking_btf(ctx: BtfTracePointContext) -> u32 {
    wake_event_btf(&ctx, EventKind::SchedWaking);
    0
}

#[btf_tracepoint(function = "sched_wakeup")]
pub fn sched_wakeup_btf(ctx: BtfTracePointContext) -> u32 {
    wake_event_btf(&ctx, EventKind::SchedWakeup);
    0
}

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    wake_event(
        &ctx,
        EventKind::SchedWakeup,
        off!(wakeup_comm),
        off!(wakeup_pid),
        off!(wakeup_target_cpu),
    );
    0
}

// ---- raw tracepoints ------------------------------------------------------------------------
//
// Preferred where the arguments are plain values: a raw tracepoint program is only skipped
// when *it* is already running on the CPU, whereas a classic tracepoint program is skipped
// whenever any classic program runs there (bpf_prog_active) — e.g. an IPI's
// csd_function_entry arriving during a sched_switch program. Arguments are the TP_PROTO's.

#[raw_tracepoint]
pub fn softirq_raise_raw(ctx: RawTracePointContext) -> u32 {
    softirq_vec_event(ctx.arg::<u64>(0) as u32, EventKind::SoftirqRaise)
}
#[raw_tracepoint]
pub fn softirq_entry_raw(ctx: RawTracePointContext) -> u32 {
    softirq_vec_event(ctx.arg::<u64>(0) as u32, EventKind::SoftirqEntry)
}
#[raw_tracepoint]
pub fn softirq_exit_raw(ctx: RawTracePointContext) -> u32 {
    softirq_vec_event(ctx.arg::<u64>(0) as u32, EventKind::SoftirqExit)
}
#[raw_tracepoint]
pub fn hardirq_entry_raw(_ctx: RawTracePointContext) -> u32 {
    hardirq_enter()
}
#[raw_tracepoint]
pub fn hardirq_exit_raw(_ctx: RawTracePointContext) -> u32 {
    hardirq_exit()
}

/// csd_function_entry(smp_call_func_t func, call_single_data_t *csd)
#[raw_tracepoint]
pub fn csd_function_entry_raw(ctx: RawTracePointContext) -> u32 {
    let func = ctx.arg::<u64>(0);
    let csd = ctx.arg::<u64>(1);
    count_csd(func, true);
    emit(EventKind::CsdFunctionEntry, |ev| {
        ev.func = func;
        ev.ptr = csd;
    });
    0
}

/// csd_queue_cpu(unsigned int cpu, unsigned long callsite, smp_call_func_t func, csd)
#[raw_tracepoint]
pub fn csd_queue_cpu_raw(ctx: RawTracePointContext) -> u32 {
    let cpu = ctx.arg::<u64>(0) as i32;
    let func = ctx.arg::<u64>(2);
    let csd = ctx.arg::<u64>(3);
    count_csd(func, false);
    emit(EventKind::CsdQueueCpu, |ev| {
        ev.arg0 = cpu;
        ev.func = func;
        ev.ptr = csd;
    });
    0
}

/// ipi_send_cpu(unsigned int cpu, unsigned long callsite, void *callback)
#[raw_tracepoint]
pub fn ipi_send_cpu_raw(ctx: RawTracePointContext) -> u32 {
    let cpu = ctx.arg::<u64>(0) as i32;
    let callsite = ctx.arg::<u64>(1);
    let callback = ctx.arg::<u64>(2);
    count_ipi_sent();
    emit(EventKind::IpiSendCpu, |ev| {
        ev.arg0 = cpu;
        ev.ptr = callsite;
        ev.func = callback;
    });
    0
}

/// sched_wake_idle_without_ipi(int cpu)
#[raw_tracepoint]
pub fn sched_wake_idle_without_ipi_raw(ctx: RawTracePointContext) -> u32 {
    let cpu = ctx.arg::<u64>(0) as i32;
    emit(EventKind::SchedWakeIdleWithoutIpi, |ev| ev.arg0 = cpu);
    0
}

/// netif_rx_exit(int ret)
#[raw_tracepoint]
pub fn netif_rx_exit_raw(ctx: RawTracePointContext) -> u32 {
    netif_rx_exit_event(ctx.arg::<u64>(0) as i32)
}

// ---- function probes ------------------------------------------------------------------------

/// rps_trigger_softirq(void *data): the RPS IPI arriving on its target. Recorded as the
/// csd_function_entry it is, for kernels whose csd tracepoints do not exist yet.
#[kprobe]
pub fn rps_trigger_softirq_kprobe(ctx: ProbeContext) -> u32 {
    let sd: u64 = ctx.arg(0).unwrap_or(0);
    let func = rps_func();
    count_csd(func, true);
    emit(EventKind::CsdFunctionEntry, |ev| {
        ev.func = func;
        ev.ptr = sd;
    });
    0
}

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

// ---- CPU hotplug: windows in which model.md §8.2 applies ----------------------------------

#[inline(always)]
fn cpuhp_event(kind: EventKind, cpu: u32, state: i32, idx: i32, ret: i32) {
    emit(kind, |ev| {
        ev.arg0 = cpu as i32;
        ev.arg1 = state;
        ev.state = idx as i64;
        ev.ptr = ret as i64 as u64;
    });
}

#[tracepoint]
pub fn cpuhp_enter(ctx: TracePointContext) -> u32 {
    let cpu: u32 = read(&ctx, off!(cpuhp_enter_cpu));
    let target: i32 = read(&ctx, off!(cpuhp_enter_target));
    let idx: i32 = read(&ctx, off!(cpuhp_enter_idx));
    cpuhp_event(EventKind::CpuhpEnter, cpu, target, idx, 0);
    0
}

#[tracepoint]
pub fn cpuhp_exit(ctx: TracePointContext) -> u32 {
    let cpu: u32 = read(&ctx, off!(cpuhp_exit_cpu));
    let st: i32 = read(&ctx, off!(cpuhp_exit_state));
    let idx: i32 = read(&ctx, off!(cpuhp_exit_idx));
    let ret: i32 = read(&ctx, off!(cpuhp_exit_ret));
    cpuhp_event(EventKind::CpuhpExit, cpu, st, idx, ret);
    0
}

/// cpuhp_enter(unsigned int cpu, int target, int idx, int (*fun)(unsigned int))
#[raw_tracepoint]
pub fn cpuhp_enter_raw(ctx: RawTracePointContext) -> u32 {
    let cpu = ctx.arg::<u64>(0) as u32;
    let target = ctx.arg::<u64>(1) as i32;
    let idx = ctx.arg::<u64>(2) as i32;
    cpuhp_event(EventKind::CpuhpEnter, cpu, target, idx, 0);
    0
}

/// cpuhp_exit(unsigned int cpu, int state, int idx, int ret)
#[raw_tracepoint]
pub fn cpuhp_exit_raw(ctx: RawTracePointContext) -> u32 {
    let cpu = ctx.arg::<u64>(0) as u32;
    let st = ctx.arg::<u64>(1) as i32;
    let idx = ctx.arg::<u64>(2) as i32;
    let ret = ctx.arg::<u64>(3) as i32;
    cpuhp_event(EventKind::CpuhpExit, cpu, st, idx, ret);
    0
}

// ---- function probes the model uses as direct evidence (model.md §10.2) --------------------
//
// Each is optional: attached when the kernel has kprobes and the symbol is not inlined.

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
