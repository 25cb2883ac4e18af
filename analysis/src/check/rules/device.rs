//! The device NAPI rules (docs/model.md §8.5 and §11, every mode): N-1–N-3. A device's NAPI instance
//! is polled in the NET_RX softirq (net_rx_action), by its own `napi/<dev>-<id>` thread when
//! the device is threaded (napi_threaded_poll, 29863d41bb6e), or by a task busy polling
//! (napi_busy_loop). Their ids, titles and the kernel code they stand on are in `mod.rs`.

use super::Ctx;
use crate::{
    check::{describe, Divergence, RuleResult},
    event::{EventKind, PollPlace as Place, BACKLOG_DEV, NAPI_THREAD_PREFIX},
    trace::{cols::E, fastmap::FastMap},
};

/// TASK_COMM_LEN - 1: a longer thread name is cut to this many bytes.
const COMM_MAX: usize = 15;

/// Where a poll row ran.
fn place(e: E) -> Place {
    Place::of(e.ctx(), e.comm())
}

/// A device NAPI poll (not a backlog's).
fn device_polls<'a>(c: &'a Ctx) -> impl Iterator<Item = E<'a>> + 'a {
    (c.ix.all(EventKind::NapiPoll)).filter(|e| e.dev().is_some_and(|d| d != BACKLOG_DEV))
}

/// N-1: the place of an instance's polls changes only between schedulings. A poll that used
/// its whole budget leaves the instance scheduled (NAPI_STATE_SCHED held: net_rx_action
/// re-lists it, napi_threaded_poll_loop polls again); only napi_complete_done, after a poll
/// with work < budget, lets the next napi_schedule pick the place anew (NAPI_STATE_THREADED
/// read in ____napi_schedule). Busy polling is exempt: busy_poll_stop hands a still-busy
/// instance back with __napi_schedule.
pub(super) fn n1(c: &Ctx, mut r: RuleResult) -> RuleResult {
    // napi → (place, whole budget used, ts, cpu, row) of its last poll.
    let mut last: FastMap<u64, (Place, bool, u64, u32, usize)> = FastMap::default();
    for e in device_polls(c) {
        let Some(napi) = e.napi() else {
            r.unsure();
            continue;
        };
        let (work, budget) = (e.work().unwrap_or(0), e.budget().unwrap_or(0));
        let (place, full) = (place(e), budget > 0 && work >= budget);
        let before = last.insert(napi, (place, full, e.ts_ns(), e.cpu(), e.i));
        let Some((was, was_full, t0, cpu0, row)) = before else {
            continue;
        };
        let moved = was != place && was != Place::Other && place != Place::Other;
        if !(moved || (was_full && place != Place::Other)) {
            continue; // a new scheduling, or one a busy poll took part in
        }
        if c.ix.blind(cpu0, t0, e.ts_ns()) || c.ix.blind(e.cpu(), t0, e.ts_ns()) {
            r.unsure();
        } else if moved && was_full {
            r.fail(Divergence {
                rule: r.id,
                cpu: e.cpu(),
                ts_ns: e.ts_ns(),
                message: format!(
                    "{} was polled in {} while its scheduling from {} was not complete \
                     (the poll before used its whole budget)",
                    e.dev().unwrap_or("?"),
                    place.name(),
                    was.name()
                ),
                expected: format!(
                    "the scheduling goes on in {} until a poll does less than its budget",
                    was.name()
                ),
                events: vec![describe(c.ix.c.row(row)), describe(e)],
            });
        } else {
            r.pass();
        }
    }
    untested(
        r,
        "no device NAPI poll used its whole budget or changed place",
    )
}

/// The result, with why it has no instances when it has none (INCONCLUSIVE).
fn untested(r: RuleResult, why: &str) -> RuleResult {
    let none = r.passed + r.failed + r.warned + r.inconclusive == 0;
    let r = r.finish();
    if none {
        r.note(why)
    } else {
        r
    }
}

/// "napi/<dev>-<id>" as the kernel names the thread (napi_kthread_create), cut as comm is.
fn thread_name(dev: &str, id: u32) -> String {
    let mut s = format!("{NAPI_THREAD_PREFIX}{dev}-{id}");
    s.truncate(COMM_MAX);
    s
}

/// N-2: a napi/ thread polls only the instance it was made for: napi_threaded_poll runs
/// with `data` = that napi_struct and polls nothing else (29863d41bb6e). Its name carries
/// the device and napi_id; where the trace has no napi_id (schema 1), one thread must still
/// poll one instance of its device.
pub(super) fn n2(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut owned: FastMap<u32, u64> = FastMap::default(); // comm id → napi
    for e in device_polls(c).filter(|e| place(*e) == Place::Thread) {
        let (dev, comm) = (e.dev().unwrap_or(""), e.comm());
        let named = match e.napi_id() {
            Some(id) => comm == thread_name(dev, id),
            None => thread_name(dev, 0)
                .strip_suffix('0')
                .is_some_and(|p| comm.starts_with(p)),
        };
        let napi = e.napi().unwrap_or(0);
        let first = *owned.entry(e.comm_sym()).or_insert(napi);
        if named && first == napi {
            r.pass();
            continue;
        }
        let what = match e.napi_id() {
            Some(id) => format!("{dev}'s instance {id}"),
            None => format!("an instance of {dev}"),
        };
        r.fail(Divergence {
            rule: r.id,
            cpu: e.cpu(),
            ts_ns: e.ts_ns(),
            message: format!("{comm} polled {what}, not the one it was made for"),
            expected: format!("{comm} polls only its own napi_struct (napi_threaded_poll's data)"),
            events: vec![describe(e)],
        });
    }
    untested(
        r,
        "no device NAPI was polled by a napi/ thread (no threaded device)",
    )
}

/// N-3: a napi/ thread that went to sleep polls again only after a wake-up. The thread
/// sleeps in napi_thread_wait until NAPI_STATE_SCHED_THREADED is set; ____napi_schedule sets
/// it and calls wake_up_process(napi->thread) instead of raising NET_RX. A thread that did
/// not sleep since its last poll needs no wake-up (it saw the bit while running). The
/// wake-up is looked for since the previous poll, not since the sleep: a waker racing the
/// thread into schedule() records sched_waking before the thread's sched_switch.
pub(super) fn n3(c: &Ctx, mut r: RuleResult) -> RuleResult {
    let mut threads: FastMap<u32, Seen> = FastMap::default(); // comm id → times
    let kinds = [
        EventKind::NapiPoll,
        EventKind::SchedSwitch,
        EventKind::SchedWaking,
    ];
    for i in c.ix.rows_of(&kinds) {
        let e = c.ix.c.row(i);
        match e.event() {
            // The thread switched out; "S" (or "I", "D"), not "R"/"R+": it sleeps.
            EventKind::SchedSwitch if sleeps(e) => {
                threads.entry(e.comm_sym()).or_default().sleep = Some((e.ts_ns(), e.cpu()));
            }
            EventKind::SchedWaking => {
                if let Some(t) = e.target_comm_sym() {
                    threads.entry(t).or_default().waking = e.ts_ns();
                }
            }
            EventKind::NapiPoll if is_thread_poll(e) => {
                let seen = threads.entry(e.comm_sym()).or_default();
                let (prev, sleep) = (seen.poll, seen.sleep.take());
                let woken = seen.waking > prev;
                seen.poll = e.ts_ns();
                let Some((t0, cpu0)) = sleep.filter(|(t, _)| *t > prev) else {
                    continue; // it did not sleep since its last poll
                };
                if woken {
                    r.pass();
                } else if c.ix.blind(cpu0, prev, e.ts_ns()) || c.ix.any_loss() {
                    r.unsure(); // a lost event may be the wake-up
                } else {
                    r.fail(unwoken(&r, e, t0));
                }
            }
            _ => {}
        }
    }
    untested(r, "no napi/ thread slept and polled again")
}

/// A napi/ thread's times since its last poll (N-3).
#[derive(Default)]
struct Seen {
    poll: u64,
    /// When and on which CPU it last went to sleep.
    sleep: Option<(u64, u32)>,
    waking: u64,
}

/// A napi/ thread switched out asleep.
fn sleeps(e: E) -> bool {
    e.comm().starts_with(NAPI_THREAD_PREFIX) && e.prev_state().is_some_and(|s| !s.starts_with('R'))
}

fn is_thread_poll(e: E) -> bool {
    place(e) == Place::Thread && e.dev() != Some(BACKLOG_DEV)
}

fn unwoken(r: &RuleResult, e: E, slept: u64) -> Divergence {
    Divergence {
        rule: r.id,
        cpu: e.cpu(),
        ts_ns: e.ts_ns(),
        message: format!(
            "{} slept at {} and polled at {} without a wake-up since its last poll",
            e.comm(),
            Ctx::secs(slept),
            Ctx::secs(e.ts_ns())
        ),
        expected: "____napi_schedule wakes the thread (wake_up_process) before it polls".into(),
        events: vec![describe(e)],
    }
}
