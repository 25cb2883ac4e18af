//! The scheduler, filtered in the kernel to ksoftirqd/N, backlog_napi/N and threaded NAPIs'
//! napi/<dev>-<id>: sched_switch
//! (which also keeps the current-task tracking every event checks, see `emit`),
//! sched_waking and sched_wakeup. The tp_btf variants load comm and pid from the task
//! structs (BTF offsets) instead of having the kernel fill a record first.

use probe_common::{EventKind, COMM_LEN, MAX_CPUS, WOKEN_BACKLOG, WOKEN_KSOFTIRQD};

use crate::{
    atomic::{atomic_inc, bounded},
    config::{events_on, koff, off},
    counters::counting,
    emit::{emit, track_switch},
    maps::{state, WOKEN},
    program::program,
    read::{btf_load, read, read_comm, task_comm, task_pid},
    softirq::switch_softirq,
    threads::{interesting_thread, thread_kind, KSOFTIRQD, NAPI_THREAD, NOT_INTERESTING},
};

program! {
    /// `pids` are (prev, next), for every switch (blind-window tracking); `state_of_prev`
    /// gives prev_state, read only for the threads that are kept.
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
            if events_on() {
                track_switch(st, prev_pid as u32, next_pid as u32);
            }
        }
        let next_kind = thread_kind(&next);
        if next_kind != NOT_INTERESTING {
            if let Some(c) = counting(None) {
                match next_kind {
                    KSOFTIRQD => atomic_inc(&mut c.ksoftirqd_runs),
                    NAPI_THREAD => atomic_inc(&mut c.napi_thread_runs),
                    _ => atomic_inc(&mut c.backlog_runs),
                }
            }
        }
        if interesting_thread(&prev) || next_kind != NOT_INTERESTING {
            let prev_state = state_of_prev();
            emit(EventKind::SchedSwitch, |ev| {
                ev.comm = prev;
                ev.pid = prev_pid as u32;
                ev.state = prev_state;
                ev.name = next;
                ev.arg1 = next_pid;
            });
        }
        // After the event, which prev's context emits.
        if let Some(st) = state() {
            switch_softirq(st, prev_pid as u32, next_pid as u32);
        }
        0
    }

    tracepoint sched_switch(ctx) {
        prev = read_comm(&ctx, off!(switch_prev_comm)),
        next = read_comm(&ctx, off!(switch_next_comm)),
        pids = (
            read(&ctx, off!(switch_prev_pid)),
            read(&ctx, off!(switch_next_pid)),
        ),
        state_of_prev = || read::<i64>(&ctx, off!(switch_prev_state)),
    }
    /// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    /// unsigned int prev_state): prev_state computed as the classic tracepoint does. Every
    /// context switch on the machine runs this before the filter, so it matters that no
    /// record is filled first.
    btf_tracepoint("sched_switch") sched_switch_btf(ctx) {
        preempt: u64 = ctx.arg(0),
        prev_task: u64 = ctx.arg(1),
        next_task: u64 = ctx.arg(2),
        prev_state: u64 = ctx.arg(3),
        prev = task_comm(prev_task),
        next = task_comm(next_task),
        pids = (task_pid(prev_task), task_pid(next_task)),
        state_of_prev = || {
            let exit_state = unsafe { btf_load::<u32>(prev_task, koff!(task_exit_state)) };
            trace_switch_state(preempt & 1 != 0, prev_state as u32, exit_state)
        },
    }
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

program! {
    /// sched_waking / sched_wakeup(struct task_struct *p). `rest` gives (pid, target cpu),
    /// read only for the threads that are kept. The classic variants read the three field
    /// offsets before anything else.
    fn wake_event(kind: EventKind, woken: [u8; COMM_LEN], rest: impl FnOnce() -> (i32, i32)) -> u32 {
        let woken_kind = thread_kind(&woken);
        if woken_kind == NOT_INTERESTING {
            return 0;
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
        0
    }

    tracepoint sched_waking(ctx) {
        comm_off = off!(waking_comm),
        pid_off = off!(waking_pid),
        cpu_off = off!(waking_target_cpu),
        kind = EventKind::SchedWaking,
        woken = read_comm(&ctx, comm_off),
        rest = || (read(&ctx, pid_off), read(&ctx, cpu_off)),
    }
    tracepoint sched_wakeup(ctx) {
        comm_off = off!(wakeup_comm),
        pid_off = off!(wakeup_pid),
        cpu_off = off!(wakeup_target_cpu),
        kind = EventKind::SchedWakeup,
        woken = read_comm(&ctx, comm_off),
        rest = || (read(&ctx, pid_off), read(&ctx, cpu_off)),
    }
    /// As sched_switch_btf: comm, pid and task_cpu(p) loaded from the task.
    btf_tracepoint("sched_waking") sched_waking_btf(ctx) {
        kind = EventKind::SchedWaking,
        p: u64 = ctx.arg(0),
        woken = task_comm(p),
        rest = || (task_pid(p), unsafe { btf_load::<i32>(p, koff!(task_cpu)) }),
    }
    btf_tracepoint("sched_wakeup") sched_wakeup_btf(ctx) {
        kind = EventKind::SchedWakeup,
        p: u64 = ctx.arg(0),
        woken = task_comm(p),
        rest = || (task_pid(p), unsafe { btf_load::<i32>(p, koff!(task_cpu)) }),
    }
}

#[inline(always)]
fn count_wakeup(woken_kind: u8, target_cpu: i32) {
    let Some(c) = counting(None) else { return };
    let slot = match woken_kind {
        KSOFTIRQD => {
            atomic_inc(&mut c.ksoftirqd_wakeups_sent);
            WOKEN_KSOFTIRQD
        }
        NAPI_THREAD => {
            // Counted where it is sent from only: a NAPI's thread is not per CPU.
            atomic_inc(&mut c.napi_thread_wakeups_sent);
            return;
        }
        _ => {
            atomic_inc(&mut c.backlog_wakeups_sent);
            WOKEN_BACKLOG
        }
    };
    if target_cpu < 0 || target_cpu as usize >= MAX_CPUS {
        return;
    }
    let idx = bounded(target_cpu as usize, MAX_CPUS - 1) * 2 + slot;
    if let Some(p) = WOKEN.get_ptr_mut(idx as u32) {
        atomic_inc(unsafe { &mut *p });
    }
}
