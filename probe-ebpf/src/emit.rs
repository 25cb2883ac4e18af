//! Recording one event: reserve a ring slot, fill the common fields and the program's own,
//! submit. Also the per-CPU tracking of which task is current, whose gaps are the windows in
//! which this CPU was blind.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, generated},
};
use probe_common::{CpuState, Ctx, EventKind, RawEvent, BLIND_LOG};

use crate::{
    atomic::{atomic_inc, fetch_inc},
    config::{cpu_selected, events_on, koff, wakeup_bytes},
    maps::{ring, state},
    read::{btf_load, write_current_comm},
};

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
/// Over 60 lines: one straight path the verifier walks in every program, kept in one piece
/// so its order (seq before reserve, zeroing before the fields) stays visible.
#[inline(always)]
pub fn emit(kind: EventKind, fill: impl FnOnce(&mut RawEvent)) {
    if !events_on() {
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
    let wake = wakeup_bytes();
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
pub fn track_switch(st: &mut CpuState, prev: u32, next: u32) {
    let now = unsafe { bpf_ktime_get_ns() };
    observe_current(st, prev, now);
    st.prev_pid = prev.wrapping_add(1);
    st.cur_pid = next.wrapping_add(1);
    st.switch_ns = now;
}
