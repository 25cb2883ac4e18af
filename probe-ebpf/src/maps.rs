//! Every map the programs share with userspace (names, types and sizes are what probe-cli
//! looks up and resizes), and the accessors the programs use.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use probe_common::{
    CpuCounters, CpuState, Filter, Inflight, NapiCounters, INFLIGHT_SLOTS, MAX_CPUS, MAX_NAPIS,
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
pub fn ring(cpu: u32) -> &'static RingBuf {
    match cpu % 4 {
        0 => &EVENTS0,
        1 => &EVENTS1,
        2 => &EVENTS2,
        _ => &EVENTS3,
    }
}

/// Per-CPU context trackers, sequence numbers and blind-window log.
#[map]
static STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn state() -> Option<&'static mut CpuState> {
    let p = STATE.get_ptr_mut(0)?;
    Some(unsafe { &mut *p })
}

/// What `CpuState` tracks of a task's softirq run: saved at a switch away from a task that
/// is inside one, restored when it runs again (`softirq::switch_softirq`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TaskSoftirq {
    pub softirq: u32,
    pub net_rx_where: u32,
    pub net_rx_start_ns: u64,
}

/// pid → the softirq run it was switched away in (PREEMPT_RT only; an entry lives from the
/// switch out to the switch back in, so only tasks preempted inside a softirq run hold one).
#[map]
pub static TASK_SOFTIRQ: LruHashMap<u32, TaskSoftirq> = LruHashMap::with_max_entries(4096, 0);

// ---- `top`: counters aggregated in the kernel (SETTINGS.counters) ---------------------------

#[map]
pub static COUNTERS: PerCpuArray<CpuCounters> = PerCpuArray::with_max_entries(1, 0);

/// napi_struct address → that NAPI instance's counters on each CPU (`top`'s per-NAPI rows).
/// LRU: instances that went away (a device removed) age out.
#[map]
pub static NAPI: LruPerCpuHashMap<u64, NapiCounters> =
    LruPerCpuHashMap::with_max_entries(MAX_NAPIS, 0);

/// Wake-ups of each CPU's ksoftirqd / backlog_napi thread: `cpu * 2 + WOKEN_*`.
#[map]
pub static WOKEN: Array<u64> = Array::with_max_entries(MAX_CPUS as u32 * 2, 0);

/// skb → where and when netif_rx enqueued it, until netif_receive_skb delivers it
/// (`inflight.rs`). Userspace shrinks it to 1 entry for `record`.
#[map]
pub static INFLIGHT: Array<Inflight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// `top`'s `/` filter; userspace changes it while the programs run.
#[map]
pub static FILTER: Array<Filter> = Array::with_max_entries(1, 0);
