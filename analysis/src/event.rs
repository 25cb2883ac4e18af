//! One row of a napiscope trace: the typed form shared by `record`, `simulate`, `check` and
//! `report`. The Parquet columns (docs/schema.md) are these fields, in this order.

pub use probe_common::{Ctx, EventKind};

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub cpu: u32,
    /// Per-CPU sequence number; gaps are lost events.
    pub seq: u64,
    pub event: EventKind,
    pub ctx: Ctx,
    /// The task that was current when the event fired.
    pub comm: String,
    pub pid: i32,
    /// softirq_*: the softirq vector (3 = NET_RX).
    pub vec: Option<u32>,
    /// napi_poll: the NAPI instance (keyed hash unless recorded with --raw-pointers).
    pub napi: Option<u64>,
    /// netif_rx / netif_receive_skb: the skb (keyed hash unless --raw-pointers).
    pub skb: Option<u64>,
    /// csd_queue_cpu / csd_function_entry: the call_single_data (keyed hash).
    pub csd: Option<u64>,
    /// napi_poll: device name, "(no_device)" for the per-CPU backlog; netif_*: device.
    pub dev: Option<String>,
    pub len: Option<u32>,
    pub work: Option<i32>,
    pub budget: Option<i32>,
    /// netif_rx_exit: 0 = queued, 1 = dropped (backlog full).
    pub ret: Option<i32>,
    /// CPU an IPI / csd / wake-up is aimed at.
    pub target_cpu: Option<i32>,
    /// sched_switch: next task; sched_waking/wakeup: woken task.
    pub target_comm: Option<String>,
    pub target_pid: Option<i32>,
    /// sched_switch: state of the task switched out ("S", "R+", "P", ...).
    pub prev_state: Option<String>,
    /// Kernel function: csd func, IPI callback (symbol name).
    pub func: Option<String>,
}

impl Event {
    pub fn new(ts_ns: u64, cpu: u32, seq: u64, event: EventKind) -> Event {
        Event {
            ts_ns,
            cpu,
            seq,
            event,
            ctx: Ctx::Task,
            comm: String::new(),
            pid: 0,
            vec: None,
            napi: None,
            skb: None,
            csd: None,
            dev: None,
            len: None,
            work: None,
            budget: None,
            ret: None,
            target_cpu: None,
            target_comm: None,
            target_pid: None,
            prev_state: None,
            func: None,
        }
    }

    /// A poll of a CPU's backlog NAPI: it never has a device (model.md §1.2).
    pub fn is_backlog_poll(&self) -> bool {
        self.event == EventKind::NapiPoll && self.dev.as_deref() == Some(BACKLOG_DEV)
    }
}

/// The device name napi:napi_poll prints for a NAPI without a device: the per-CPU backlog.
pub const BACKLOG_DEV: &str = "(no_device)";
/// The csd function of an RPS IPI.
pub const RPS_IPI_FUNC: &str = "rps_trigger_softirq";
