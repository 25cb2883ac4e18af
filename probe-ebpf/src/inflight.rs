//! `top`'s in-flight table: which skbs netif_rx enqueued, where and when, until
//! netif_receive_skb delivers them. A plain array of slot pairs, indexed by a hash of the
//! skb's address, not a BPF hash map: an LRU hash map's insert and its lookup + delete cost
//! ~220 and ~170 ns per packet on a 6.18 flood (bpf_stats), two thirds of the two per-packet
//! programs; a per-CPU LRU list was slower still (the delivering CPU takes the enqueuing
//! CPU's list lock). Here an insert is two loads and three stores.
//!
//! An skb takes the free slot of its pair — or a stale one (`INFLIGHT_STALE_NS`: never
//! delivered), or else the older one, whose skb then goes unmatched (`unmatched`). With far
//! fewer skbs in flight than slots (a backlog holds netdev_max_backlog), both slots of a pair
//! are rarely live. Writers on different CPUs can race for a slot; the skb is stored last,
//! so a reader that finds its skb finds that enqueue's time and CPU (x86's store order; on
//! weaker orders a mismatch shows as a latency outlier, not a wrong pairing).

use aya_ebpf::helpers::bpf_probe_read_kernel;
use probe_common::{Inflight, INFLIGHT_SLOTS, INFLIGHT_STALE_NS};

use crate::maps::INFLIGHT;

/// `p` as a plain number. A tp_btf program's skb is a trusted pointer, and the verifier
/// refuses shifts and multiplies on pointers ("pointer arithmetic with >>= operator
/// prohibited") and partial reads of a spilled one ("invalid size of register fill"); read
/// back from the stack by bpf_probe_read_kernel it is a scalar. (A raw tracepoint's is one
/// already; one helper call is cheaper than two variants of the table.)
#[inline(always)]
fn addr(p: u64) -> u64 {
    let slot = [p];
    unsafe { bpf_probe_read_kernel(slot.as_ptr()) }.unwrap_or(0)
}

/// The pair of slots of `skb` (an even index; `^ 1` is the other). skb heads come from one
/// slab cache, 256 bytes apart: the address's low byte carries nothing, the rest is mixed
/// (Fibonacci hashing) so that neighbouring skbs spread over the table.
#[inline(always)]
fn pair(skb: u64) -> u32 {
    let h = (skb >> 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 40) as u32 & (INFLIGHT_SLOTS - 1)) & !1
}

#[inline(always)]
fn slot(i: u32) -> Option<&'static mut Inflight> {
    INFLIGHT.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// Remember that `skb` was enqueued on `cpu` at `now`.
#[inline(always)]
pub fn enqueued(skb: u64, now: u64, cpu: u32) {
    let skb = addr(skb);
    if skb == 0 {
        return; // 0 marks a free slot
    }
    let i = pair(skb);
    let (Some(a), Some(b)) = (slot(i), slot(i | 1)) else {
        return;
    };
    let free = |e: &Inflight| {
        e.skb == 0 || e.skb == skb || now.saturating_sub(e.ts_ns) > INFLIGHT_STALE_NS
    };
    let e = if free(a) {
        a
    } else if free(b) || b.ts_ns < a.ts_ns {
        b
    } else {
        a
    };
    e.ts_ns = now;
    e.cpu = cpu;
    unsafe { core::ptr::write_volatile(&mut e.skb, skb) };
}

/// Where and when `skb` was enqueued, if it is in the table; its slot is freed.
#[inline(always)]
pub fn delivered(skb: u64) -> Option<(u64, u32)> {
    let skb = addr(skb);
    if skb == 0 {
        return None;
    }
    let i = pair(skb);
    for j in [i, i | 1] {
        let Some(e) = slot(j) else { continue };
        if e.skb == skb {
            let found = (e.ts_ns, e.cpu);
            unsafe { core::ptr::write_volatile(&mut e.skb, 0) };
            return Some(found);
        }
    }
    None
}
