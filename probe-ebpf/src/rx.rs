//! The receive path: napi_poll, netif_rx (enqueue to a backlog), netif_rx_exit,
//! netif_receive_skb (delivery) — as events for `record`, or as `top`'s counters (polls,
//! packets by where they were polled, enqueue→delivery paths and latencies).
//!
//! The device name is an argument the body reads lazily (`dev_name` writes it into a zeroed
//! buffer, and only on the path that uses it): from the record's `__data_loc` field
//! (tracepoint), through the skb/napi pointer with helpers (raw), or with BTF-checked loads
//! (tp_btf). Its parameter is typed (`&mut Dev`) so the closure takes any borrow.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use probe_common::{CpuCounters, EventKind, COMM_LEN, LAT_BUCKETS, PATHS};

use crate::{
    atomic::{atomic_add, atomic_inc, bounded},
    config::{counters_on, koff, off},
    counters::{counting, device_filter_on, log2_bucket},
    emit::emit,
    inflight,
    maps::state,
    poll::{count_napi, count_poll, Polled},
    program::program,
    read::{
        btf_load, btf_netdev_name, current_comm, kread_u32, kread_u64, netdev_name, read,
        read_data_loc,
    },
    threads::{thread_kind, BACKLOG_NAPI, KSOFTIRQD},
};

/// A device name (`dev->name`, char[16]).
pub(crate) type Dev = [u8; COMM_LEN];

/// A name buffer on the stack, 8-byte aligned so it can be cleared with two word stores
/// (see `emit`).
#[repr(C, align(8))]
struct Name([u8; COMM_LEN]);

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

/// `top`'s counters for a per-packet event with a device: its name is read only when the
/// `/` filter is on a device (a copy of dev->name per packet otherwise, for nothing).
#[inline(always)]
fn counting_with_dev(dev_name: impl FnOnce(&mut Dev)) -> Option<&'static mut CpuCounters> {
    if !device_filter_on() {
        return counting(None);
    }
    let mut buf = core::mem::MaybeUninit::uninit();
    let dev = zeroed_name(&mut buf);
    dev_name(dev);
    counting(Some(dev))
}

/// `(no_device)`: the name napi_poll gives the per-CPU backlog NAPI.
#[inline(always)]
pub(crate) fn is_backlog_dev(dev: &[u8; COMM_LEN]) -> bool {
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

program! {
    /// napi_poll(struct napi_struct *napi, int work, int budget). `ident` gives the
    /// instance's napi->napi_id and napi->irq (-1 if unknown), read only where used.
    fn napi_poll_event(
        napi: u64,
        work: i32,
        budget: i32,
        dev_name: impl FnOnce(&mut Dev),
        ident: impl FnOnce() -> (u32, i32),
    ) -> u32 {
        if counters_on() {
            let mut buf = core::mem::MaybeUninit::uninit();
            let dev = zeroed_name(&mut buf);
            dev_name(dev);
            if let Some(c) = counting(Some(dev)) {
                let done = Polled::of(work, budget);
                let w = count_poll(c, done, dev);
                count_napi(napi, done, w, dev, ident());
            }
            return 0;
        }
        emit(EventKind::NapiPoll, |ev| {
            ev.ptr = napi;
            ev.arg0 = work;
            ev.arg1 = budget;
            dev_name(&mut ev.name);
            let (id, irq) = ident();
            ev.func = id as u64;
            ev.state = irq as i64;
        });
        0
    }

    tracepoint napi_poll(ctx) {
        napi = read(&ctx, off!(napi_napi)),
        work = read(&ctx, off!(napi_work)),
        budget = read(&ctx, off!(napi_budget)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(napi_dev_name), name),
        ident = || napi_ident_kread(napi),
    }
    /// Reads napi->dev->name itself (offsets from BTF) instead of having the classic
    /// tracepoint copy a record first.
    raw_tracepoint napi_poll_raw(ctx) {
        napi = ctx.arg::<u64>(0),
        work = ctx.arg::<u64>(1) as i32,
        budget = ctx.arg::<u64>(2) as i32,
        dev_name = |name: &mut Dev| netdev_name(kread_u64(napi + koff!(napi_dev)), name),
        ident = || napi_ident_kread(napi),
    }
    /// As napi_poll_raw, with the arguments typed by the kernel's BTF (tp_btf): the verifier
    /// checks each field load against the struct layout, so they are plain loads, not
    /// helper calls.
    btf_tracepoint("napi_poll") napi_poll_btf(ctx) {
        napi: u64 = ctx.arg(0),
        work: i32 = ctx.arg(1),
        budget: i32 = ctx.arg(2),
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(napi, koff!(napi_dev)) }, name)
        },
        ident = || {
            let (id_off, irq_off) = (koff!(napi_id), koff!(napi_irq));
            let id = if id_off != 0 { unsafe { btf_load::<u32>(napi, id_off) } } else { 0 };
            let irq = if irq_off != 0 { unsafe { btf_load::<i32>(napi, irq_off) } } else { -1 };
            (id, irq)
        },
    }
}

/// napi->napi_id and napi->irq through bpf_probe_read_kernel, where BTF gave their offsets.
#[inline(always)]
fn napi_ident_kread(napi: u64) -> (u32, i32) {
    let (id_off, irq_off) = (koff!(napi_id), koff!(napi_irq));
    let id = if id_off != 0 && napi != 0 {
        kread_u32(napi + id_off)
    } else {
        0
    };
    let irq = if irq_off != 0 && napi != 0 {
        kread_u32(napi + irq_off) as i32
    } else {
        -1
    };
    (id, irq)
}

program! {
    /// netif_rx(struct sk_buff *skb): the enqueue to a CPU's backlog; `top` remembers it in
    /// INFLIGHT for the delivery to pair with.
    fn netif_rx_event(skb: u64, len: u32, dev_name: impl FnOnce(&mut Dev)) -> u32 {
        if counters_on() {
            if let Some(c) = counting_with_dev(dev_name) {
                atomic_inc(&mut c.enqueues);
                let (now, cpu) = unsafe { (bpf_ktime_get_ns(), bpf_get_smp_processor_id()) };
                inflight::enqueued(skb, now, cpu);
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

    tracepoint netif_rx(ctx) {
        skb = read(&ctx, off!(rx_skb)),
        len = read(&ctx, off!(rx_len)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(rx_name), name),
    }
    /// skb->len and skb->dev->name read at BTF offsets.
    raw_tracepoint netif_rx_raw(ctx) {
        skb = ctx.arg::<u64>(0),
        len = kread_u32(skb + koff!(skb_len)),
        dev_name = |name: &mut Dev| netdev_name(kread_u64(skb + koff!(skb_dev)), name),
    }
    btf_tracepoint("netif_rx") netif_rx_btf(ctx) {
        skb: u64 = ctx.arg(0),
        len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) },
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
        },
    }
}

program! {
    /// netif_rx_exit(int ret)
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

    tracepoint netif_rx_exit(ctx) { ret = read(&ctx, off!(rxexit_ret)) }
    raw_tracepoint netif_rx_exit_raw(ctx) { ret = ctx.arg::<u64>(0) as i32 }
}

program! {
    /// netif_receive_skb(struct sk_buff *skb): the delivery, as netif_rx.
    fn netif_receive_skb_event(
        skb: u64,
        len: u32,
        dev_name: impl FnOnce(&mut Dev),
    ) -> u32 {
        if counters_on() {
            if let Some(c) = counting_with_dev(dev_name) {
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

    tracepoint netif_receive_skb(ctx) {
        skb = read(&ctx, off!(rcv_skb)),
        len = read(&ctx, off!(rcv_len)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(rcv_name), name),
    }
    /// As netif_rx_raw.
    raw_tracepoint netif_receive_skb_raw(ctx) {
        skb = ctx.arg::<u64>(0),
        len = kread_u32(skb + koff!(skb_len)),
        dev_name = |name: &mut Dev| netdev_name(kread_u64(skb + koff!(skb_dev)), name),
    }
    btf_tracepoint("netif_receive_skb") netif_receive_skb_btf(ctx) {
        skb: u64 = ctx.arg(0),
        len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) },
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
        },
    }
}

/// Pair the delivery with its enqueue; classify it as `analysis::paths::classify` does.
#[inline(always)]
fn count_delivery(c: &mut CpuCounters, skb: u64) {
    let Some((enq_ts, enq_cpu)) = inflight::delivered(skb) else {
        atomic_inc(&mut c.unmatched);
        return;
    };
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
    let lat = unsafe { bpf_ktime_get_ns() }.saturating_sub(enq_ts);
    let b = bounded(log2_bucket(lat), LAT_BUCKETS - 1);
    atomic_inc(&mut c.latency[path][b]);
    atomic_add(&mut c.latency_ns_sum[path], lat);
}

program! {
    /// The device-side receive entries (net_dev_rx_verbose_template, TP_PROTO(const struct
    /// sk_buff *skb)): a device NAPI poll hands `skb` to the stack on this CPU, before
    /// get_rps_cpu → enqueue_to_backlog (dev.c netif_receive_skb_internal /
    /// netif_receive_skb_list_internal). With RPS this is the initiator of a backlog hop that
    /// has no netif_rx; the delivery pairs with it by the skb pointer. `top` keeps no
    /// counters for it (no INFLIGHT entry: most such skbs are delivered in place).
    fn dev_rx_entry_event(
        kind: EventKind,
        skb: u64,
        len: u32,
        dev_name: impl FnOnce(&mut Dev),
    ) -> u32 {
        if counters_on() {
            return 0;
        }
        emit(kind, |ev| {
            ev.ptr = skb;
            ev.arg0 = len as i32;
            dev_name(&mut ev.name);
        });
        0
    }

    tracepoint netif_receive_skb_entry(ctx) {
        kind = EventKind::NetifReceiveSkbEntry,
        skb = read(&ctx, off!(devrx_skb)),
        len = read(&ctx, off!(devrx_len)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(devrx_name), name),
    }
    raw_tracepoint netif_receive_skb_entry_raw(ctx) {
        kind = EventKind::NetifReceiveSkbEntry,
        skb = ctx.arg::<u64>(0),
        len = kread_u32(skb + koff!(skb_len)),
        dev_name = |name: &mut Dev| netdev_name(kread_u64(skb + koff!(skb_dev)), name),
    }
    btf_tracepoint("netif_receive_skb_entry") netif_receive_skb_entry_btf(ctx) {
        kind = EventKind::NetifReceiveSkbEntry,
        skb: u64 = ctx.arg(0),
        len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) },
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
        },
    }
    tracepoint napi_gro_receive_entry(ctx) {
        kind = EventKind::NapiGroReceiveEntry,
        skb = read(&ctx, off!(devrx_skb)),
        len = read(&ctx, off!(devrx_len)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(devrx_name), name),
    }
    raw_tracepoint napi_gro_receive_entry_raw(ctx) {
        kind = EventKind::NapiGroReceiveEntry,
        skb = ctx.arg::<u64>(0),
        len = kread_u32(skb + koff!(skb_len)),
        dev_name = |name: &mut Dev| netdev_name(kread_u64(skb + koff!(skb_dev)), name),
    }
    btf_tracepoint("napi_gro_receive_entry") napi_gro_receive_entry_btf(ctx) {
        kind = EventKind::NapiGroReceiveEntry,
        skb: u64 = ctx.arg(0),
        len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) },
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
        },
    }
    tracepoint netif_receive_skb_list_entry(ctx) {
        kind = EventKind::NetifReceiveSkbListEntry,
        skb = read(&ctx, off!(devrx_skb)),
        len = read(&ctx, off!(devrx_len)),
        dev_name = |name: &mut Dev| read_data_loc(&ctx, off!(devrx_name), name),
    }
    raw_tracepoint netif_receive_skb_list_entry_raw(ctx) {
        kind = EventKind::NetifReceiveSkbListEntry,
        skb = ctx.arg::<u64>(0),
        len = kread_u32(skb + koff!(skb_len)),
        dev_name = |name: &mut Dev| netdev_name(kread_u64(skb + koff!(skb_dev)), name),
    }
    btf_tracepoint("netif_receive_skb_list_entry") netif_receive_skb_list_entry_btf(ctx) {
        kind = EventKind::NetifReceiveSkbListEntry,
        skb: u64 = ctx.arg(0),
        len = unsafe { btf_load::<u32>(skb, koff!(skb_len)) },
        dev_name = |name: &mut Dev| {
            btf_netdev_name(unsafe { btf_load::<u64>(skb, koff!(skb_dev)) }, name)
        },
    }
}
