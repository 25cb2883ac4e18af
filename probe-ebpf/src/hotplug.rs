//! CPU hotplug: cpuhp_enter / cpuhp_exit, the windows in which model.md §8.2 applies (the
//! checker treats them as unspecified).

use probe_common::EventKind;

use crate::{config::off, emit::emit, program::program, read::read};

#[inline(always)]
fn cpuhp_event(kind: EventKind, cpu: u32, state: i32, idx: i32, ret: i32) {
    emit(kind, |ev| {
        ev.arg0 = cpu as i32;
        ev.arg1 = state;
        ev.state = idx as i64;
        ev.ptr = ret as i64 as u64;
    });
}

program! {
    /// cpuhp_enter(unsigned int cpu, int target, int idx, int (*fun)(unsigned int))
    fn cpuhp_enter_event(cpu: u32, target: i32, idx: i32) -> u32 {
        cpuhp_event(EventKind::CpuhpEnter, cpu, target, idx, 0);
        0
    }

    tracepoint cpuhp_enter(ctx) {
        cpu = read(&ctx, off!(cpuhp_enter_cpu)),
        target = read(&ctx, off!(cpuhp_enter_target)),
        idx = read(&ctx, off!(cpuhp_enter_idx)),
    }
    raw_tracepoint cpuhp_enter_raw(ctx) {
        cpu = ctx.arg::<u64>(0) as u32,
        target = ctx.arg::<u64>(1) as i32,
        idx = ctx.arg::<u64>(2) as i32,
    }
}

program! {
    /// cpuhp_exit(unsigned int cpu, int state, int idx, int ret)
    fn cpuhp_exit_event(cpu: u32, st: i32, idx: i32, ret: i32) -> u32 {
        cpuhp_event(EventKind::CpuhpExit, cpu, st, idx, ret);
        0
    }

    tracepoint cpuhp_exit(ctx) {
        cpu = read(&ctx, off!(cpuhp_exit_cpu)),
        st = read(&ctx, off!(cpuhp_exit_state)),
        idx = read(&ctx, off!(cpuhp_exit_idx)),
        ret = read(&ctx, off!(cpuhp_exit_ret)),
    }
    raw_tracepoint cpuhp_exit_raw(ctx) {
        cpu = ctx.arg::<u64>(0) as u32,
        st = ctx.arg::<u64>(1) as i32,
        idx = ctx.arg::<u64>(2) as i32,
        ret = ctx.arg::<u64>(3) as i32,
    }
}
