//! One row of a napiscope trace: the typed form shared by `record`, `simulate`, `check` and
//! `report`. Its fields are the Parquet columns (docs/schema.md), in order: made from the
//! one table of them, `schema::columns!`.

pub use probe_common::{Ctx, EventKind};

use super::schema::columns;

/// A column's type in `Event`: strings owned.
macro_rules! owned {
    (text $t:tt) => {
        String
    };
    ($c:ident $t:ty) => {
        $t
    };
}

macro_rules! event_struct {
    (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
     nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
        #[derive(Clone, Debug, PartialEq)]
        pub struct Event {
            $($(#[$rm])* pub $r: owned!($rc $rt),)*
            $($(#[$om])* pub $o: Option<owned!($oc $ot)>,)*
        }

        impl Event {
            /// The required columns given, every nullable one null.
            #[allow(clippy::too_many_arguments)]
            pub fn with_required($($r: owned!($rc $rt)),*) -> Event {
                Event {
                    $($r,)*
                    $($o: None,)*
                }
            }
        }
    };
}
columns!(event_struct);

impl Event {
    /// An event of a task (ctx task, no comm, pid 0), every nullable column null.
    pub fn new(ts_ns: u64, cpu: u32, seq: u64, event: EventKind) -> Event {
        Event::with_required(ts_ns, cpu, seq, event, Ctx::Task, String::new(), 0)
    }

    /// A poll of a CPU's backlog NAPI: it never has a device (model.md §1.2).
    pub fn is_backlog_poll(&self) -> bool {
        self.event == EventKind::NapiPoll && self.dev.as_deref() == Some(BACKLOG_DEV)
    }
}

/// The device name napi:napi_poll prints for a NAPI without a device: the per-CPU backlog.
pub const BACKLOG_DEV: &str = "(no_device)";
/// A CPU's backlog NAPI, not a device queue: no napi id, and no device (`(no_device)`, or no
/// name at all where the kernel gave none).
pub fn is_backlog_napi(dev: &str, napi_id: u32) -> bool {
    napi_id == 0 && (dev.is_empty() || dev.starts_with('('))
}

/// A NAPI instance's name in tables: `veth1:8193` (device and napi id), `eth1` (a device's
/// instance without one), `backlog/1` (CPU 1's backlog; `backlog/?` where the CPU is not one).
pub fn napi_label(dev: &str, napi_id: u32, cpu: Option<u32>) -> String {
    if is_backlog_napi(dev, napi_id) {
        format!("backlog/{}", cpu.map_or("?".into(), |c| c.to_string()))
    } else if napi_id == 0 {
        dev.to_string()
    } else {
        format!("{dev}:{napi_id}")
    }
}

/// The csd function of an RPS IPI.
pub const RPS_IPI_FUNC: &str = "rps_trigger_softirq";

/// Where a device NAPI's poll ran, from its row's context and task (docs/model.md §8.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollPlace {
    /// In the NET_RX softirq (net_rx_action → napi_poll), whatever task it interrupted.
    NetRx,
    /// In a `napi/<dev>-<id>` thread (napi_threaded_poll_loop).
    Thread,
    /// In another task: busy polling (napi_busy_loop), or a hard IRQ (netpoll).
    Other,
}

/// The comm prefix of threaded NAPI's kthreads (napi_kthread_create).
pub const NAPI_THREAD_PREFIX: &str = "napi/";

impl PollPlace {
    pub fn of(ctx: Ctx, comm: &str) -> PollPlace {
        match ctx {
            Ctx::Softirq => PollPlace::NetRx,
            Ctx::Task if comm.starts_with(NAPI_THREAD_PREFIX) => PollPlace::Thread,
            _ => PollPlace::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PollPlace::NetRx => "the NET_RX softirq",
            PollPlace::Thread => "its napi/ thread",
            PollPlace::Other => "a busy-polling task",
        }
    }
}
