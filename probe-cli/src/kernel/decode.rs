//! `RawEvent` (ring buffer) → `Row` (trace row). Which raw field carries which column, per
//! event kind, is `analysis::ring_fields!` (analysis/src/trace/schema.rs), which `row`
//! expands into its match.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
};

#[cfg(test)]
use analysis::Event;
use analysis::{
    trace::{Row, Sym},
    Ctx, EventKind, TraceWriter,
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
        // `ring_fields!`'s lines as match arms: each `column: source` sets the row's column.
        macro_rules! fill {
            ($($($k:ident)|+ => { $($col:ident: $src:ident $(($($a:tt)*))?),* };)*) => {
                match kind {
                    $($(EventKind::$k)|+ => { $(e.$col = fill!(@ $src $(($($a)*))?);)* })*
                }
            };
            (@ arg0) => { Some(r.arg0 as _) };
            (@ arg1) => { Some(r.arg1 as _) };
            (@ ptr) => { self.ptr(r.ptr) };
            (@ ptr_value) => { Some(r.ptr as i64 as _) };
            (@ name) => { Some(w.intern_bytes(&r.name)) };
            (@ func) => { Some(self.func_sym(r.func, w)) };
            (@ func_id) => { (r.func != 0).then_some(r.func as _) };
            (@ state_irq) => { (r.state > 0).then_some(r.state as _) };
            (@ state) => { Some(self.state_sym(r.state, w)) };
            (@ arg0_names($a:literal, $b:literal)) => {
                Some(w.intern(if r.arg0 == 1 { $b } else { $a }))
            };
        }
        analysis::ring_fields!(fill);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use analysis::trace::schema::ring_columns;
    use arrow::array::Array;

    fn comm(s: &str) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[..s.len()].copy_from_slice(s.as_bytes());
        c
    }

    /// The records the way `record` takes them: `row`, the writer thread, the file; read
    /// back as `Event`s and as Arrow batches.
    fn through_file(
        d: &mut Decoder,
        raws: &[RawEvent],
        name: &str,
    ) -> (Vec<Event>, Vec<arrow::array::RecordBatch>) {
        let dir = std::env::temp_dir().join(format!("napiscope-row-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.parquet"));
        let mut w = TraceWriter::create_threaded(
            &path,
            analysis::trace::WriterThread {
                replace: true,
                ..Default::default()
            },
        )
        .unwrap();
        for r in raws {
            let row = d.row(r, &mut w).unwrap();
            w.push_row(&row).unwrap();
        }
        w.finish(&Default::default()).unwrap();
        let events = analysis::read_trace(&path).unwrap().events;
        let file = std::fs::File::open(&path).unwrap();
        let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        std::fs::remove_file(&path).unwrap();
        (events, batches)
    }

    fn one(d: &mut Decoder, r: &RawEvent, name: &str) -> Event {
        through_file(d, std::slice::from_ref(r), name).0.remove(0)
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
        let mut d = Decoder::new(Symbols::default(), false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::NapiPoll as u16;
        r.ptr = 0xffff_8880_1234_5678;
        r.arg0 = 3;
        r.arg1 = 64;
        r.ctx = 1;
        r.name = comm("(no_device)");
        let (two, _) = through_file(&mut d, &[r, r], "napi");
        let e = &two[0];
        assert!(e.is_backlog_poll());
        assert_eq!(e.ctx, Ctx::Softirq);
        assert_eq!((e.work, e.budget), (Some(3), Some(64)));
        let h = e.napi.unwrap();
        assert_ne!(h, r.ptr, "pointer must be hashed by default");
        assert_eq!(two[1].napi, Some(h), "hash is stable in a recording");
        let mut raw = Decoder::new(Symbols::default(), true);
        assert_eq!(one(&mut raw, &r, "napi-raw").napi, Some(r.ptr));
        // The backlog has no napi_id and no IRQ (func 0; state 0, a backlog's zeroed
        // napi->irq, or -1, netif_napi_add's "none"): nulls.
        for none in [0, -1] {
            r.state = none;
            let backlog = one(&mut raw, &r, "napi-noirq");
            assert_eq!((backlog.napi_id, backlog.irq), (None, None));
        }
        // A device's instance: napi_id in func, napi->irq in state.
        (r.func, r.state, r.name) = (8193, 27, comm("eth0"));
        let dev = one(&mut raw, &r, "napi-dev");
        assert_eq!((dev.napi_id, dev.irq), (Some(8193), Some(27)));
    }

    #[test]
    fn csd_queue_resolves_func() {
        let syms = Symbols::parse("ffffffff81e5dbc0 t rps_trigger_softirq\n");
        let mut d = Decoder::new(syms, false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::CsdQueueCpu as u16;
        r.arg0 = 1;
        r.func = 0xffffffff81e5dbc0;
        let e = one(&mut d, &r, "csd");
        assert_eq!(e.func.as_deref(), Some("rps_trigger_softirq"));
        assert_eq!(e.target_cpu, Some(1));
        assert_eq!(e.csd, Some(0), "NULL csd stays 0");
    }

    #[test]
    fn sched_switch_fields() {
        let mut d = Decoder::new(Symbols::default(), false);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::SchedSwitch as u16;
        r.comm = comm("backlog_napi/1");
        r.pid = 30;
        r.name = comm("swapper/1");
        r.arg1 = 0;
        r.state = 1;
        let e = one(&mut d, &r, "switch");
        assert_eq!(e.comm, "backlog_napi/1");
        assert_eq!(e.target_comm.as_deref(), Some("swapper/1"));
        assert_eq!(e.target_pid, Some(0));
        assert_eq!(e.prev_state.as_deref(), Some("S"));
    }

    #[test]
    fn the_other_sources() {
        let mut d = Decoder::new(Symbols::default(), true);
        let mut r = RawEvent::zeroed();
        r.kind = EventKind::CpuhpExit as u16;
        (r.arg0, r.arg1, r.ptr) = (2, 7, -22i64 as u64);
        let e = one(&mut d, &r, "cpuhp");
        assert_eq!((e.target_cpu, e.work, e.ret), (Some(2), Some(7), Some(-22)));
        r.kind = EventKind::NapiSchedule as u16;
        (r.arg0, r.ptr) = (1, 0x40);
        let e = one(&mut d, &r, "sched1");
        assert_eq!(
            (e.napi, e.func.as_deref()),
            (Some(0x40), Some("__napi_schedule_irqoff"))
        );
        r.arg0 = 0;
        let e = one(&mut d, &r, "sched0");
        assert_eq!(e.func.as_deref(), Some("__napi_schedule"));
        r.kind = EventKind::SoftirqEntry as u16;
        r.arg0 = 3;
        assert_eq!(one(&mut d, &r, "softirq").vec, Some(3));
    }

    /// Every kind, through the file: its row has the columns every row has from the record,
    /// and exactly the nullable columns `ring_fields!` gives it, raw pointers and hashed.
    #[test]
    fn every_kind_fills_the_columns_of_its_table_line() {
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
                r.ptr = 0xffff_8880_0000_0000 + i as u64 * 64;
                r.func = 0xffffffff81e5dbc0;
                r.arg0 = i as i32 - 2;
                r.arg1 = 64;
                r.state = [0, 1, 0x100, 0x40][i % 4];
                raws.push(r);
            }
            let name = format!("kinds-{raw_pointers}");
            let (events, batches) = through_file(&mut d, &raws, &name);
            assert_eq!(events.len(), raws.len());
            let b = &batches[0];
            let schema = analysis::trace::schema();
            for (i, (e, r)) in events.iter().zip(&raws).enumerate() {
                assert_eq!(
                    (e.ts_ns, e.cpu, e.seq, e.pid),
                    (r.ts_ns, r.cpu, r.seq, r.pid as i32)
                );
                assert_eq!((e.event as u16, e.ctx as u8), (r.kind, r.ctx));
                assert_eq!(
                    e.comm,
                    if i % 2 == 0 {
                        "backlog_napi/1"
                    } else {
                        "iperf"
                    }
                );
                let want = ring_columns(e.event);
                for f in schema.fields().iter().filter(|f| f.is_nullable()) {
                    let set = b.column_by_name(f.name()).unwrap().is_valid(i);
                    assert_eq!(
                        set,
                        want.contains(&f.name().as_str()),
                        "{:?} {}",
                        e.event,
                        f.name()
                    );
                }
                if want.contains(&"func") && e.event != EventKind::NapiSchedule {
                    assert_eq!(e.func.as_deref(), Some("rps_trigger_softirq"));
                }
            }
            let mut bad = RawEvent::zeroed();
            bad.kind = 99;
            let dir = std::env::temp_dir().join(format!("napiscope-row-{}", std::process::id()));
            let mut w2 = TraceWriter::create(&dir.join("unused.parquet")).unwrap();
            assert!(d.row(&bad, &mut w2).is_err());
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Decoder::raw(&[0u8; 10]).is_err());
        let mut d = Decoder::new(Symbols::default(), false);
        let mut r = RawEvent::zeroed();
        r.kind = 999;
        let dir = std::env::temp_dir().join(format!("napiscope-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = TraceWriter::create(&dir.join("unused.parquet")).unwrap();
        assert!(d.row(&r, &mut w).is_err());
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
