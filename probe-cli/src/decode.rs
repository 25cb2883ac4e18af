//! `RawEvent` (ring buffer) → `Event` (trace row). Which raw field carries what:
//!
//! | event | ptr | func | arg0 | arg1 | state | name |
//! |---|---|---|---|---|---|---|
//! | softirq_raise/entry/exit | | | vec | | | |
//! | napi_poll | napi | | work | budget | | dev |
//! | netif_rx, netif_receive_skb | skb | | len | | | dev |
//! | netif_rx_exit | | | ret | | | |
//! | sched_switch (comm/pid = prev) | | | | next pid | prev_state | next comm |
//! | sched_waking / sched_wakeup | | | target cpu | woken pid | | woken comm |
//! | ipi_send_cpu | callsite | callback | target cpu | | | |
//! | csd_queue_cpu | csd | func | target cpu | | | |
//! | csd_function_entry | csd | func | | | | |
//! | sched_wake_idle_without_ipi | | | target cpu | | | |
//! | enqueue_to_backlog (kprobe) | skb | | target cpu | | | |

use std::hash::{BuildHasher, RandomState};

use analysis::{Ctx, Event, EventKind};
use anyhow::{bail, Result};
use probe_common::RawEvent;

use crate::symbols::Symbols;

pub struct Decoder {
    symbols: Symbols,
    /// Per-recording random key: equal pointers hash equal inside one file, and the file does
    /// not reveal kernel addresses. None with --raw-pointers.
    key: Option<RandomState>,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// sched_switch prev_state as the kernel prints it (include/trace/events/sched.h, ≥ 4.14:
/// TASK_REPORT_MAX = 0x100 marks a preempted task, shown as "R+").
pub fn prev_state(state: i64) -> String {
    const REPORT_MAX: i64 = 0x100;
    const FLAGS: [(i64, &str); 8] = [
        (0x01, "S"),
        (0x02, "D"),
        (0x04, "T"),
        (0x08, "t"),
        (0x10, "X"),
        (0x20, "Z"),
        (0x40, "P"),
        (0x80, "I"),
    ];
    let bits = state & (REPORT_MAX - 1);
    let mut s = if bits == 0 {
        "R".to_string()
    } else {
        FLAGS
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join("|")
    };
    if state & REPORT_MAX != 0 {
        s.push('+');
    }
    s
}

impl Decoder {
    pub fn new(symbols: Symbols, raw_pointers: bool) -> Decoder {
        Decoder {
            symbols,
            key: (!raw_pointers).then(RandomState::new),
        }
    }

    fn ptr(&self, p: u64) -> Option<u64> {
        // NULL stays 0: it means something (e.g. a csd run inline has csd == NULL).
        Some(match (&self.key, p) {
            (_, 0) => 0,
            (Some(k), p) => k.hash_one(p),
            (None, p) => p,
        })
    }

    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Event> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            bail!("short record: {} bytes", bytes.len());
        }
        // SAFETY: length checked; RawEvent is plain data; read_unaligned tolerates alignment.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        self.decode(&raw)
    }

    pub fn decode(&self, r: &RawEvent) -> Result<Event> {
        let Some(kind) = EventKind::from_code(r.kind) else {
            bail!("unknown event kind {}", r.kind);
        };
        let mut e = Event::new(r.ts_ns, r.cpu, r.seq, kind);
        e.ctx = Ctx::from_code(r.ctx).unwrap_or(Ctx::Task);
        e.comm = cstr(&r.comm);
        e.pid = r.pid as i32;
        use EventKind::*;
        match kind {
            SoftirqRaise | SoftirqEntry | SoftirqExit => e.vec = Some(r.arg0 as u32),
            NapiPoll => {
                e.napi = self.ptr(r.ptr);
                e.work = Some(r.arg0);
                e.budget = Some(r.arg1);
                e.dev = Some(cstr(&r.name));
            }
            NetifRx | NetifReceiveSkb => {
                e.skb = self.ptr(r.ptr);
                e.len = Some(r.arg0 as u32);
                e.dev = Some(cstr(&r.name));
            }
            NetifRxExit => e.ret = Some(r.arg0),
            SchedSwitch => {
                e.target_comm = Some(cstr(&r.name));
                e.target_pid = Some(r.arg1);
                e.prev_state = Some(prev_state(r.state));
            }
            SchedWaking | SchedWakeup => {
                e.target_comm = Some(cstr(&r.name));
                e.target_pid = Some(r.arg1);
                e.target_cpu = Some(r.arg0);
            }
            IpiSendCpu => {
                e.target_cpu = Some(r.arg0);
                e.func = Some(self.symbols.name(r.func));
            }
            CsdQueueCpu => {
                e.target_cpu = Some(r.arg0);
                e.func = Some(self.symbols.name(r.func));
                e.csd = self.ptr(r.ptr);
            }
            CsdFunctionEntry => {
                e.func = Some(self.symbols.name(r.func));
                e.csd = self.ptr(r.ptr);
            }
            SchedWakeIdleWithoutIpi => e.target_cpu = Some(r.arg0),
            EnqueueToBacklog => {
                e.skb = self.ptr(r.ptr);
                e.target_cpu = Some(r.arg0);
            }
            CpuhpEnter | CpuhpExit => {
                e.target_cpu = Some(r.arg0);
                e.work = Some(r.arg1);
                if kind == CpuhpExit {
                    e.ret = Some(r.ptr as i64 as i32);
                }
            }
            NapiSchedule => {
                e.napi = self.ptr(r.ptr);
                e.func = Some(
                    if r.arg0 == 1 {
                        "__napi_schedule_irqoff"
                    } else {
                        "__napi_schedule"
                    }
                    .into(),
                );
            }
            ProcessBacklog => {
                e.napi = self.ptr(r.ptr);
                e.budget = Some(r.arg1);
            }
            NapiThreadedPollLoop => e.napi = self.ptr(r.ptr),
            RunBacklogNapi | RunKsoftirqd => e.target_cpu = Some(r.arg0),
            NetRxAction => {}
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(s: &str) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    #[test]
    fn prev_states() {
        assert_eq!(prev_state(0), "R");
        assert_eq!(prev_state(0x100), "R+");
        assert_eq!(prev_state(0x1), "S");
        assert_eq!(prev_state(0x40), "P");
        assert_eq!(prev_state(0x2 | 0x80), "D|I");
    }

    #[test]
    fn napi_poll_and_hashing() {
        let d = Decoder::new(Symbols::default(), false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::NapiPoll as u16;
        r.ptr = 0xffff_8880_1234_5678;
        r.arg0 = 3;
        r.arg1 = 64;
        r.ctx = 1;
        r.name = comm("(no_device)");
        let e = d.decode(&r).unwrap();
        assert!(e.is_backlog_poll());
        assert_eq!(e.ctx, Ctx::Softirq);
        assert_eq!((e.work, e.budget), (Some(3), Some(64)));
        let h = e.napi.unwrap();
        assert_ne!(h, r.ptr, "pointer must be hashed by default");
        assert_eq!(
            d.decode(&r).unwrap().napi,
            Some(h),
            "hash is stable in a recording"
        );
        let raw = Decoder::new(Symbols::default(), true);
        assert_eq!(raw.decode(&r).unwrap().napi, Some(r.ptr));
    }

    #[test]
    fn csd_queue_resolves_func() {
        let syms = Symbols::parse("ffffffff81e5dbc0 t rps_trigger_softirq\n");
        let d = Decoder::new(syms, false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::CsdQueueCpu as u16;
        r.arg0 = 1;
        r.func = 0xffffffff81e5dbc0;
        let e = d.decode(&r).unwrap();
        assert_eq!(e.func.as_deref(), Some("rps_trigger_softirq"));
        assert_eq!(e.target_cpu, Some(1));
        assert_eq!(e.csd, Some(0), "NULL csd stays 0");
    }

    #[test]
    fn sched_switch_fields() {
        let d = Decoder::new(Symbols::default(), false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::SchedSwitch as u16;
        r.comm = comm("backlog_napi/1");
        r.pid = 30;
        r.name = comm("swapper/1");
        r.arg1 = 0;
        r.state = 1;
        let e = d.decode(&r).unwrap();
        assert_eq!(e.comm, "backlog_napi/1");
        assert_eq!(e.target_comm.as_deref(), Some("swapper/1"));
        assert_eq!(e.prev_state.as_deref(), Some("S"));
    }

    #[test]
    fn rejects_garbage() {
        let d = Decoder::new(Symbols::default(), false);
        assert!(d.decode_bytes(&[0u8; 10]).is_err());
        let mut r = RawEvent::zeroed();
        r.kind = 999;
        assert!(d.decode(&r).is_err());
    }
}
