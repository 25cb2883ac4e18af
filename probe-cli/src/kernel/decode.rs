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

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

use analysis::{
    trace::{Row, Sym},
    Ctx, Event, EventKind, TraceWriter,
};
use anyhow::{bail, Result};
use probe_common::RawEvent;

use crate::kernel::symbols::Symbols;

pub struct Decoder {
    symbols: Symbols,
    /// Per-recording random key: equal pointers hash equal inside one file, and the file does
    /// not reveal kernel addresses. None with --raw-pointers.
    key: Option<RandomState>,
    /// `row`'s caches of the writer's string ids: function address → name, prev_state → text.
    funcs: HashMap<u64, Sym>,
    states: HashMap<i64, Sym>,
}

#[cfg_attr(not(test), allow(dead_code))]
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

/// `EventKind::from_code` by table.
#[inline]
fn kind_of(code: u16) -> Option<EventKind> {
    // Codes run 1..=ALL.len().
    const N: usize = EventKind::ALL.len() + 1;
    const TABLE: [Option<EventKind>; N] = {
        let mut t = [None; N];
        let mut i = 0;
        while i < EventKind::ALL.len() {
            t[EventKind::ALL[i] as usize] = Some(EventKind::ALL[i]);
            i += 1;
        }
        t
    };
    TABLE.get(code as usize).copied().flatten()
}

impl Decoder {
    pub fn new(symbols: Symbols, raw_pointers: bool) -> Decoder {
        Decoder {
            symbols,
            key: (!raw_pointers).then(RandomState::new),
            funcs: HashMap::new(),
            states: HashMap::new(),
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

    /// One record as an `Event` with owned strings: the reference `row` is tested against,
    /// and the form for consumers that want single events rather than a file.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Event> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            bail!("short record: {} bytes", bytes.len());
        }
        // SAFETY: length checked; RawEvent is plain data; read_unaligned tolerates alignment.
        let raw: RawEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        self.decode(&raw)
    }

    /// The record at the start of `bytes` (a ring-buffer item), if it is long enough.
    #[inline]
    pub fn raw(bytes: &[u8]) -> Result<RawEvent> {
        if bytes.len() < std::mem::size_of::<RawEvent>() {
            bail!("short record: {} bytes", bytes.len());
        }
        // SAFETY: length checked; RawEvent is plain data; read_unaligned tolerates alignment.
        Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }

    /// `decode` without the `Event`: the same fields as a `Row` whose strings are `w`'s ids
    /// (comm and device names interned by their raw bytes, functions and states once per
    /// value). A decoder's rows go to one writer only: it caches that writer's ids.
    #[inline]
    pub fn row(&mut self, r: &RawEvent, w: &mut TraceWriter) -> Result<Row> {
        let Some(kind) = kind_of(r.kind) else {
            bail!("unknown event kind {}", r.kind);
        };
        let ctx = Ctx::from_code(r.ctx).unwrap_or(Ctx::Task);
        let mut e = Row::new(r.ts_ns, r.cpu, r.seq, kind, ctx, w.intern_bytes(&r.comm));
        e.pid = r.pid as i32;
        use EventKind::*;
        match kind {
            SoftirqRaise | SoftirqEntry | SoftirqExit => e.vec = Some(r.arg0 as u32),
            NapiPoll => {
                e.napi = self.ptr(r.ptr);
                e.work = Some(r.arg0);
                e.budget = Some(r.arg1);
                e.dev = Some(w.intern_bytes(&r.name));
            }
            NetifRx | NetifReceiveSkb => {
                e.skb = self.ptr(r.ptr);
                e.len = Some(r.arg0 as u32);
                e.dev = Some(w.intern_bytes(&r.name));
            }
            NetifRxExit => e.ret = Some(r.arg0),
            SchedSwitch => {
                e.target_comm = Some(w.intern_bytes(&r.name));
                e.target_pid = Some(r.arg1);
                e.prev_state = Some(self.state_sym(r.state, w));
            }
            SchedWaking | SchedWakeup => {
                e.target_comm = Some(w.intern_bytes(&r.name));
                e.target_pid = Some(r.arg1);
                e.target_cpu = Some(r.arg0);
            }
            IpiSendCpu => {
                e.target_cpu = Some(r.arg0);
                e.func = Some(self.func_sym(r.func, w));
            }
            CsdQueueCpu => {
                e.target_cpu = Some(r.arg0);
                e.func = Some(self.func_sym(r.func, w));
                e.csd = self.ptr(r.ptr);
            }
            CsdFunctionEntry => {
                e.func = Some(self.func_sym(r.func, w));
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
                e.func = Some(w.intern(if r.arg0 == 1 {
                    "__napi_schedule_irqoff"
                } else {
                    "__napi_schedule"
                }));
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

    fn func_sym(&mut self, addr: u64, w: &mut TraceWriter) -> Sym {
        if let Some(s) = self.funcs.get(&addr) {
            return *s;
        }
        let s = w.intern(&self.symbols.name(addr));
        self.funcs.insert(addr, s);
        s
    }

    fn state_sym(&mut self, state: i64, w: &mut TraceWriter) -> Sym {
        if let Some(s) = self.states.get(&state) {
            return *s;
        }
        let s = w.intern(&prev_state(state));
        self.states.insert(state, s);
        s
    }

    #[cfg_attr(not(test), allow(dead_code))]
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

    /// `row` (the recorder's path) and `decode` (the reference) agree on every kind, through
    /// the writer and back, raw pointers and hashed.
    #[test]
    fn rows_written_read_back_as_decode_gives() {
        for raw_pointers in [true, false] {
            let mut d = Decoder::new(
                Symbols::parse("ffffffff81e5dbc0 t rps_trigger_softirq\n"),
                raw_pointers,
            );
            let mut raws = vec![];
            for (i, k) in EventKind::ALL.iter().enumerate() {
                let mut r = RawEvent::zeroed();
                r.kind = *k as u16;
                r.ts_ns = 1000 + i as u64;
                r.seq = i as u64;
                r.cpu = (i % 3) as u32;
                r.pid = 100 + i as u32;
                r.ctx = (i % 3) as u8;
                r.comm = comm(if i % 2 == 0 {
                    "backlog_napi/1"
                } else {
                    "iperf"
                });
                r.name = comm(if i % 2 == 0 { "(no_device)" } else { "veth1" });
                r.ptr = if i == 5 {
                    0
                } else {
                    0xffff_8880_0000_0000 + i as u64 * 64
                };
                r.func = if i % 2 == 0 {
                    0xffffffff81e5dbc0
                } else {
                    0x1234
                };
                r.arg0 = i as i32 - 2;
                r.arg1 = 64;
                r.state = [0, 1, 0x100, 0x40][i % 4];
                raws.push(r);
            }
            let dir = std::env::temp_dir().join(format!("napiscope-row-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("rows-{raw_pointers}.parquet"));
            let mut w = TraceWriter::create_threaded(
                &path,
                analysis::trace::WriterThread {
                    replace: true,
                    ..Default::default()
                },
            )
            .unwrap();
            for r in &raws {
                let row = d.row(r, &mut w).unwrap();
                w.push_row(&row).unwrap();
            }
            w.finish(&Default::default()).unwrap();
            let back = analysis::read_trace(&path).unwrap().events;
            let want: Vec<Event> = raws.iter().map(|r| d.decode(r).unwrap()).collect();
            assert_eq!(back, want);
            let mut bad = RawEvent::zeroed();
            bad.kind = 99;
            let mut w2 = TraceWriter::create(&dir.join("unused.parquet")).unwrap();
            assert!(d.row(&bad, &mut w2).is_err());
            std::fs::remove_dir_all(&dir).unwrap();
        }
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
