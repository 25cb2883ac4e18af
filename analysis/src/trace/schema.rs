//! The trace's schema, declared once (docs/schema.md is its prose): the columns in file order
//! (`columns!`), and per event kind which field of a ring record fills which column
//! (`ring_fields!`). Everything that lists columns is made from the first: the Arrow schema
//! (`schema()`), the typed row `Event`, the writer's `Row` and column builders, both
//! readers (Arrow arrays and pages), the checker's `Cols` and its row accessors `E`. The
//! second is the ring decoder in probe-cli (`Decoder::row`).
//!
//! Adding a column: a line in `columns!` (and docs/schema.md; a new `SCHEMA_VERSION`).
//! Adding an event kind: `EventKind` in probe-common, the probe that emits it, and its line
//! in `ring_fields!`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::event::{Ctx, EventKind};

pub const SCHEMA_VERSION: &str = "2";
/// Nullable columns that files of an older schema lack, with the version that added them:
/// a reader takes such a file and reads the column as all null (`check_schema`).
pub const ADDED_COLUMNS: &[(&str, &str)] = &[("napi_id", "2"), ("irq", "2")];

/// The column is one an older file may lack (`ADDED_COLUMNS`).
pub fn may_be_absent(name: &str) -> bool {
    ADDED_COLUMNS.iter().any(|(c, _)| *c == name)
}
/// Metadata keys are prefixed so they do not clash with other writers' keys.
pub const META_PREFIX: &str = "napiscope.";

/// The columns, in file order, required ones first: `name: type, Arrow type, kind, checker;`.
///
/// - type: the value's Rust type (`str`: a string; `Event` holds a `String`, `Row` and
///   `Cols` an interned id, `Sym`).
/// - kind: `num` a number; `name` an enum stored as its name (`Named`); `text` a string.
/// - checker: what `Cols` keeps of it: `-` nothing (the rules do not read it); `(f: T)` the
///   column `Cols::f` of `T`; `(f: T, "msg")` narrower than the file's type, a value that
///   does not fit refusing the trace with "row N: msg" (`{}` is the value); `(f: T,
///   scanned)` seq, which the page reader scans instead of keeping (`seqscan`).
///
/// Invoked with the name of a macro, which receives the table as
/// `required { rows } nullable { rows }`; the types are named as `trace::event` names them,
/// so the invoking module has `EventKind`, `Ctx` and `Sym` in scope where it uses them.
macro_rules! columns {
    ($cb:ident) => {
        $cb! {
            required {
                /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
                ts_ns: u64, UInt64, num, (ts: u64);
                /// CPU the event fired on. The checker keeps 16 bits (Linux's NR_CPUS is at
                /// most 8192): half the bytes of a u32, on every row.
                cpu: u32, UInt32, num,
                    (cpu: u16, "CPU {} is beyond what the checker handles (CPU numbers up to 65535)");
                /// Per-CPU sequence number; gaps are lost events.
                seq: u64, UInt64, num, (seq: u64, scanned);
                /// The event kind, by its tracepoint's name.
                event: EventKind, Utf8, name, (kind: EventKind);
                /// Execution context: task, softirq or hardirq.
                ctx: Ctx, Utf8, name, (ctx: Ctx);
                /// The task that was current when the event fired.
                comm: str, Utf8, text, (comm: Sym);
                /// That task's pid (kernel tid; 0 = idle).
                pid: i32, Int32, num, (pid: i32);
            }
            nullable {
                /// softirq_*: the softirq vector (3 = NET_RX). The checker keeps a byte.
                vec: u32, UInt32, num,
                    (vec: u8, "softirq vector {} out of range (NR_SOFTIRQS is 10)");
                /// napi_poll: the NAPI instance (keyed hash unless recorded with --raw-pointers).
                napi: u64, UInt64, num, (napi: u64);
                /// netif_rx / netif_receive_skb: the skb (keyed hash unless --raw-pointers).
                skb: u64, UInt64, num, (skb: u64);
                /// csd_queue_cpu / csd_function_entry: the call_single_data (keyed hash).
                csd: u64, UInt64, num, -;
                /// napi_poll: device name, "(no_device)" for the per-CPU backlog; netif_*: device.
                dev: str, Utf8, text, (dev: Sym);
                /// Packet length.
                len: u32, UInt32, num, -;
                /// Packets processed by this poll.
                work: i32, Int32, num, (work: i32);
                /// The poll's budget (weight).
                budget: i32, Int32, num, (budget: i32);
                /// netif_rx_exit: 0 = queued, 1 = dropped (backlog full).
                ret: i32, Int32, num, (ret: i32);
                /// CPU an IPI / csd / wake-up is aimed at.
                target_cpu: i32, Int32, num, (target_cpu: i32);
                /// sched_switch: next task; sched_waking/wakeup: woken task.
                target_comm: str, Utf8, text, (target_comm: Sym);
                /// Pid of that task.
                target_pid: i32, Int32, num, -;
                /// sched_switch: state of the task switched out ("S", "R+", "P", ...).
                prev_state: str, Utf8, text, (prev_state: Sym);
                /// Kernel function: csd func, IPI callback (symbol name).
                func: str, Utf8, text, (func: Sym);
                /// napi_poll: the instance's napi_id (netdev genl, SO_INCOMING_NAPI_ID;
                /// null for the backlog and where the kernel's BTF does not say). Schema 2.
                napi_id: u32, UInt32, num, (napi_id: u32);
                /// napi_poll: napi->irq, the IRQ the driver tied the instance to (6.8+;
                /// null when none). Schema 2.
                irq: i32, Int32, num, -;
            }
        }
    };
}
pub(crate) use columns;

/// Per event kind, the columns its ring record (`probe_common::RawEvent`) fills, each
/// `column: source`, in the order the decoder fills them. Sources: `arg0`, `arg1` (numbers);
/// `ptr` (a kernel address: keyed hash unless --raw-pointers, NULL stays 0); `ptr_value`
/// (`ptr` as a plain 32-bit number); `func_id` (`func` as a number, null when 0);
/// `state_irq` (`state` as a number, null unless positive: IRQ 0 is the timer's, never a
/// NAPI's, and a backlog's napi->irq is 0); `name` (a NUL-terminated kernel name); `func` (`func`
/// resolved to a kernel symbol); `state` (`state` printed as sched_switch prints
/// prev_state); `arg0_names(a, b)` (the name `b` when arg0 is 1, else `a`). Every row
/// also has ts_ns, cpu, seq, event, ctx, comm and pid from the record's own fields.
///
/// Invoked with the name of a macro, which receives `Kind | Kind => { column: source, ... };`
/// lines covering every `EventKind` (the decoder's `match` fails to compile otherwise).
#[macro_export]
macro_rules! ring_fields {
    ($cb:ident) => {
        $cb! {
            SoftirqRaise | SoftirqEntry | SoftirqExit => { vec: arg0 };
            NapiPoll => { napi: ptr, work: arg0, budget: arg1, dev: name, napi_id: func_id, irq: state_irq };
            NetifRx | NetifReceiveSkb => { skb: ptr, len: arg0, dev: name };
            // The device-side receive entries (a device NAPI poll hands the skb over).
            NetifReceiveSkbEntry | NapiGroReceiveEntry | NetifReceiveSkbListEntry => { skb: ptr, len: arg0, dev: name };
            NetifRxExit => { ret: arg0 };
            // comm / pid are the task switched out.
            SchedSwitch => { target_comm: name, target_pid: arg1, prev_state: state };
            SchedWaking | SchedWakeup => { target_comm: name, target_pid: arg1, target_cpu: arg0 };
            // ptr: the callsite (not kept); func: the IPI callback.
            IpiSendCpu => { target_cpu: arg0, func: func };
            CsdQueueCpu => { target_cpu: arg0, func: func, csd: ptr };
            CsdFunctionEntry => { func: func, csd: ptr };
            SchedWakeIdleWithoutIpi => { target_cpu: arg0 };
            // kprobe enqueue_to_backlog(skb, cpu, qtail): the backlog RPS chose.
            EnqueueToBacklog => { skb: ptr, target_cpu: arg0 };
            // work: target state (enter) / state reached (exit).
            CpuhpEnter => { target_cpu: arg0, work: arg1 };
            CpuhpExit => { target_cpu: arg0, work: arg1, ret: ptr_value };
            NapiSchedule => { napi: ptr, func: arg0_names("__napi_schedule", "__napi_schedule_irqoff") };
            ProcessBacklog => { napi: ptr, budget: arg1 };
            NapiThreadedPollLoop => { napi: ptr };
            RunBacklogNapi | RunKsoftirqd => { target_cpu: arg0 };
            NetRxAction => {};
        }
    };
}

/// The nullable columns a kind's rows fill (from `ring_fields!`), for tests and docs.
pub fn ring_columns(kind: EventKind) -> &'static [&'static str] {
    macro_rules! names {
        ($($($k:ident)|+ => { $($col:ident: $src:ident $(($($a:tt)*))?),* };)*) => {
            match kind {
                $($(EventKind::$k)|+ => &[$(stringify!($col)),*],)*
            }
        };
    }
    ring_fields!(names)
}

/// Values of a `name` column: an enum from a fixed list, stored as its name (`EventKind`,
/// `Ctx`). The writer's dictionary keys are positions in `ALL`.
pub trait Named: Copy + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self>;
    /// The index of `self` in `ALL`.
    fn key(self) -> u32;
}

impl Named for EventKind {
    const ALL: &'static [EventKind] = &EventKind::ALL;
    fn name(self) -> &'static str {
        EventKind::name(self)
    }
    fn from_name(s: &str) -> Option<Self> {
        EventKind::from_name(s)
    }
    #[inline]
    fn key(self) -> u32 {
        // Codes run 1..=ALL.len(), in ALL's order.
        self as u32 - 1
    }
}

impl Named for Ctx {
    const ALL: &'static [Ctx] = &[Ctx::Task, Ctx::Softirq, Ctx::Hardirq];
    fn name(self) -> &'static str {
        Ctx::name(self)
    }
    fn from_name(s: &str) -> Option<Self> {
        Ctx::from_name(s)
    }
    #[inline]
    fn key(self) -> u32 {
        self as u32
    }
}

/// The Arrow array of a column's Arrow type.
macro_rules! arrow_array {
    (UInt64) => {
        arrow::array::UInt64Array
    };
    (UInt32) => {
        arrow::array::UInt32Array
    };
    (Int32) => {
        arrow::array::Int32Array
    };
    (Utf8) => {
        arrow::array::StringArray
    };
}
pub(crate) use arrow_array;

/// The Arrow primitive type of a number column's Arrow type.
macro_rules! arrow_primitive {
    (UInt64) => {
        arrow::datatypes::UInt64Type
    };
    (UInt32) => {
        arrow::datatypes::UInt32Type
    };
    (Int32) => {
        arrow::datatypes::Int32Type
    };
}
pub(crate) use arrow_primitive;

/// The Arrow schema of a trace file.
pub fn schema() -> SchemaRef {
    macro_rules! fields {
        (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
         nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
            vec![
                $(Field::new(stringify!($r), DataType::$ra, false),)*
                $(Field::new(stringify!($o), DataType::$oa, true),)*
            ]
        };
    }
    Arc::new(Schema::new(columns!(fields)))
}

/// The columns the checker reads (`Cols`), by name.
pub fn check_columns() -> Vec<&'static str> {
    macro_rules! names {
        (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
         nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {{
            let mut v = Vec::new();
            $(if checked!($rk) { v.push(stringify!($r)); })*
            $(if checked!($ok) { v.push(stringify!($o)); })*
            v
        }};
    }
    macro_rules! checked {
        (-) => {
            false
        };
        ($x:tt) => {
            true
        };
    }
    columns!(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_ring_fields_of_real_columns() {
        let s = schema();
        for k in EventKind::ALL {
            for c in ring_columns(k) {
                let f = s.field_with_name(c).unwrap();
                assert!(f.is_nullable(), "{k:?} {c}");
            }
        }
        assert_eq!(
            ring_columns(EventKind::NapiPoll),
            ["napi", "work", "budget", "dev", "napi_id", "irq"]
        );
    }

    #[test]
    fn the_checker_reads_all_but_four() {
        let skip = ["csd", "len", "target_pid", "irq"];
        let want: Vec<String> = (schema().fields().iter())
            .map(|f| f.name().clone())
            .filter(|n| !skip.contains(&n.as_str()))
            .collect();
        assert_eq!(check_columns(), want);
    }
}
