//! Records shared by napiscope's eBPF programs (kernel side) and `napiscope` (user side).
//!
//! Every struct is `#[repr(C)]` with explicit padding so that its layout is the same on the
//! BPF target and on the host; the `const` assertions below fail the build if it is not.
#![no_std]

mod config;
mod counters;
pub use config::{KernelOffsets, Settings, TpOffsets};
pub use counters::*;

/// Kind of a recorded event. The numeric codes are stable: they cross the ring buffer.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    SoftirqRaise = 1,
    SoftirqEntry = 2,
    SoftirqExit = 3,
    NapiPoll = 4,
    NetifRx = 5,
    NetifRxExit = 6,
    NetifReceiveSkb = 7,
    SchedSwitch = 8,
    SchedWaking = 9,
    SchedWakeup = 10,
    IpiSendCpu = 11,
    CsdQueueCpu = 12,
    CsdFunctionEntry = 13,
    SchedWakeIdleWithoutIpi = 14,
    /// kprobe enqueue_to_backlog(skb, cpu, qtail): the RPS target CPU, directly.
    EnqueueToBacklog = 15,
    /// cpuhp:cpuhp_enter: a hotplug state callback starts (the CPU going up or down).
    CpuhpEnter = 16,
    /// cpuhp:cpuhp_exit: it returned.
    CpuhpExit = 17,
    /// kprobe __napi_schedule / __napi_schedule_irqoff(napi): a NAPI is scheduled.
    NapiSchedule = 18,
    /// kprobe process_backlog(napi, quota): a backlog poll, directly.
    ProcessBacklog = 19,
    /// kprobe net_rx_action: the NET_RX softirq handler runs.
    NetRxAction = 20,
    /// kprobe run_backlog_napi(cpu): a backlog_napi thread runs its loop (mode C).
    RunBacklogNapi = 21,
    /// kprobe napi_threaded_poll_loop(napi): the threaded poll loop (mode C backlog thread).
    NapiThreadedPollLoop = 22,
    /// kprobe run_ksoftirqd(cpu): ksoftirqd runs pending softirqs.
    RunKsoftirqd = 23,
    /// net:netif_receive_skb_entry: a driver (device NAPI poll) hands an skb to
    /// netif_receive_skb on this CPU; with RPS, get_rps_cpu → enqueue_to_backlog follows.
    NetifReceiveSkbEntry = 24,
    /// net:napi_gro_receive_entry: an skb enters GRO in a device NAPI poll on this CPU (before
    /// any merge: a merged skb is never delivered itself, its head is).
    NapiGroReceiveEntry = 25,
    /// net:netif_receive_skb_list_entry: one skb of a list a driver hands to
    /// netif_receive_skb_list on this CPU.
    NetifReceiveSkbListEntry = 26,
}

impl EventKind {
    pub const ALL: [EventKind; 26] = [
        EventKind::SoftirqRaise,
        EventKind::SoftirqEntry,
        EventKind::SoftirqExit,
        EventKind::NapiPoll,
        EventKind::NetifRx,
        EventKind::NetifRxExit,
        EventKind::NetifReceiveSkb,
        EventKind::SchedSwitch,
        EventKind::SchedWaking,
        EventKind::SchedWakeup,
        EventKind::IpiSendCpu,
        EventKind::CsdQueueCpu,
        EventKind::CsdFunctionEntry,
        EventKind::SchedWakeIdleWithoutIpi,
        EventKind::EnqueueToBacklog,
        EventKind::CpuhpEnter,
        EventKind::CpuhpExit,
        EventKind::NapiSchedule,
        EventKind::ProcessBacklog,
        EventKind::NetRxAction,
        EventKind::RunBacklogNapi,
        EventKind::NapiThreadedPollLoop,
        EventKind::RunKsoftirqd,
        EventKind::NetifReceiveSkbEntry,
        EventKind::NapiGroReceiveEntry,
        EventKind::NetifReceiveSkbListEntry,
    ];

    pub fn from_code(code: u16) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| *k as u16 == code)
    }

    /// The tracepoint's own name; this is what the `event` column holds.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::SoftirqRaise => "softirq_raise",
            EventKind::SoftirqEntry => "softirq_entry",
            EventKind::SoftirqExit => "softirq_exit",
            EventKind::NapiPoll => "napi_poll",
            EventKind::NetifRx => "netif_rx",
            EventKind::NetifRxExit => "netif_rx_exit",
            EventKind::NetifReceiveSkb => "netif_receive_skb",
            EventKind::SchedSwitch => "sched_switch",
            EventKind::SchedWaking => "sched_waking",
            EventKind::SchedWakeup => "sched_wakeup",
            EventKind::IpiSendCpu => "ipi_send_cpu",
            EventKind::CsdQueueCpu => "csd_queue_cpu",
            EventKind::CsdFunctionEntry => "csd_function_entry",
            EventKind::SchedWakeIdleWithoutIpi => "sched_wake_idle_without_ipi",
            EventKind::EnqueueToBacklog => "enqueue_to_backlog",
            EventKind::CpuhpEnter => "cpuhp_enter",
            EventKind::CpuhpExit => "cpuhp_exit",
            EventKind::NapiSchedule => "napi_schedule",
            EventKind::ProcessBacklog => "process_backlog",
            EventKind::NetRxAction => "net_rx_action",
            EventKind::RunBacklogNapi => "run_backlog_napi",
            EventKind::NapiThreadedPollLoop => "napi_threaded_poll_loop",
            EventKind::RunKsoftirqd => "run_ksoftirqd",
            EventKind::NetifReceiveSkbEntry => "netif_receive_skb_entry",
            EventKind::NapiGroReceiveEntry => "napi_gro_receive_entry",
            EventKind::NetifReceiveSkbListEntry => "netif_receive_skb_list_entry",
        }
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// A device-side receive entry: a device's NAPI poll hands the skb to the stack here.
    pub fn is_device_rx(self) -> bool {
        matches!(
            self,
            EventKind::NetifReceiveSkbEntry
                | EventKind::NapiGroReceiveEntry
                | EventKind::NetifReceiveSkbListEntry
        )
    }
}

/// Execution context of the CPU when the event fired, tracked per CPU in the kernel from
/// irq/softirq entry and exit tracepoints (BPF tracepoint programs run before the kernel fills
/// `common_flags`, so the ftrace context flags are not available to them).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ctx {
    /// Process context (this includes BH-disabled sections such as a backlog thread's poll).
    Task = 0,
    /// Serving a softirq (between softirq_entry and softirq_exit on this CPU).
    Softirq = 1,
    /// Inside a hard interrupt handler or an IPI / APIC vector.
    Hardirq = 2,
}

impl Ctx {
    pub fn from_code(code: u8) -> Option<Ctx> {
        match code {
            0 => Some(Ctx::Task),
            1 => Some(Ctx::Softirq),
            2 => Some(Ctx::Hardirq),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Ctx::Task => "task",
            Ctx::Softirq => "softirq",
            Ctx::Hardirq => "hardirq",
        }
    }
    pub fn from_name(name: &str) -> Option<Ctx> {
        [Ctx::Task, Ctx::Softirq, Ctx::Hardirq]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

pub const COMM_LEN: usize = 16;

/// One event as written into the ring buffer. Which generic field carries what depends on
/// `kind`: the table is `analysis::ring_fields!` (analysis/src/trace/schema.rs); its prose,
/// docs/schema.md.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub ts_ns: u64,
    /// Per-CPU sequence number, incremented for every event the CPU produced, including the
    /// ones lost because the ring buffer was full: a gap proves a loss.
    pub seq: u64,
    /// skb, napi or csd address, or the IPI callsite.
    pub ptr: u64,
    /// A kernel function address (csd func, IPI callback).
    pub func: u64,
    /// sched_switch prev_state.
    pub state: i64,
    pub cpu: u32,
    /// The current task's pid (kernel tid).
    pub pid: u32,
    /// vec / work / len / ret / target cpu.
    pub arg0: i32,
    /// budget / the other task's pid.
    pub arg1: i32,
    pub kind: u16,
    pub ctx: u8,
    pub _pad: [u8; 5],
    /// The current task's comm.
    pub comm: [u8; COMM_LEN],
    /// Device name, or the other task's comm (woken task, next task).
    pub name: [u8; COMM_LEN],
}

impl RawEvent {
    pub const fn zeroed() -> RawEvent {
        RawEvent {
            ts_ns: 0,
            seq: 0,
            ptr: 0,
            func: 0,
            state: 0,
            cpu: 0,
            pid: 0,
            arg0: 0,
            arg1: 0,
            kind: 0,
            ctx: 0,
            _pad: [0; 5],
            comm: [0; COMM_LEN],
            name: [0; COMM_LEN],
        }
    }
}

const _: () = assert!(core::mem::size_of::<RawEvent>() == 96);
const _: () = assert!(core::mem::align_of::<RawEvent>() == 8);

/// Per-CPU state kept by the eBPF programs (one entry of a per-CPU array).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuState {
    /// Next sequence number.
    pub seq: u64,
    /// Events this CPU could not put into the ring buffer.
    pub lost: u64,
    /// Events emitted successfully.
    pub emitted: u64,
    /// Nesting depth of hard interrupt handlers.
    pub hardirq_depth: u32,
    /// Softirq vector being served + 1, or 0.
    pub softirq: u32,
    /// When the last hard interrupt handler on this CPU returned (`top`: a softirq that
    /// starts right after one runs at interrupt exit).
    pub last_hardirq_exit_ns: u64,
    /// When the NET_RX softirq being served started, or 0.
    pub net_rx_start_ns: u64,
    /// Where that NET_RX softirq runs (a `Where` code).
    pub net_rx_where: u32,
    /// The task sched_switch last switched to on this CPU, pid + 1 (0: none seen yet).
    pub cur_pid: u32,
    /// The task it switched from, pid + 1: still current for a moment after the tracepoint.
    pub prev_pid: u32,
    pub _pad: u32,
    /// When that switch happened.
    pub switch_ns: u64,
    /// Blind windows: an event came from a task other than the one switched to, so the
    /// kernel ran none of our programs (not even sched_switch) from the switch until then.
    pub blind_windows: u64,
    /// Their total length.
    pub blind_ns: u64,
    /// The last `BLIND_LOG` of them, at `blind_windows % BLIND_LOG`.
    pub blind_log: [BlindWindow; BLIND_LOG],
    /// The device interrupt (irq_handler_entry's irq) last handled on this CPU, when its
    /// handler started and when it returned (0: none yet): a NAPI poll in a NET_RX softirq
    /// that started right after that return is attributed to it (`top`).
    pub last_irq: i32,
    /// The device interrupt whose handler runs now, + 1 (0: none, or an APIC vector).
    pub cur_irq: i32,
    pub last_irq_ns: u64,
    pub last_irq_exit_ns: u64,
    /// NET_RX raises not yet matched with a NAPI poll, oldest first: a ring, entries
    /// `raise_head..raise_tail` at `% RAISE_FIFO`. Each is the device interrupt in whose
    /// handler ____napi_schedule raised NET_RX (-1: another context) and when that handler
    /// started. net_rx_action polls its list in scheduling order, so the n-th new instance
    /// a run polls is the n-th raise's (`top`'s per-NAPI IRQ attribution).
    pub raise_irq: [i32; RAISE_FIFO],
    pub raise_ns: [u64; RAISE_FIFO],
    pub raise_head: u32,
    pub raise_tail: u32,
}

/// NET_RX raises a CPU remembers until a poll takes them (a power of two).
pub const RAISE_FIFO: usize = 8;

/// How many blind windows each CPU remembers.
pub const BLIND_LOG: usize = 8;

/// A stretch of time in which the kernel ran no napiscope program on a CPU while `pid` was
/// current (a task the kernel does not run eBPF programs for).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlindWindow {
    pub from_ns: u64,
    pub to_ns: u64,
    pub pid: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<BlindWindow>() == 24);
const _: () =
    assert!(core::mem::size_of::<CpuState>() == 112 + 12 * RAISE_FIFO + 8 + 24 * BLIND_LOG);

/// An skb between netif_rx and netif_receive_skb: a slot of `top`'s in-flight table (`skb`
/// 0: free).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    pub skb: u64,
    pub ts_ns: u64,
    pub cpu: u32,
    pub _pad: u32,
}

/// Slots of the in-flight table (a power of two), in pairs: an skb goes to the free (or
/// older) slot of its pair. Far more than the packets a host has between enqueue and
/// delivery (netdev_max_backlog per CPU, 1000 by default); 3 MiB.
pub const INFLIGHT_SLOTS: u32 = 1 << 17;
/// An entry older than this is an skb that was never delivered (dropped, merged): its slot
/// is free (as `analysis::paths::MATCH_WINDOW_NS`).
pub const INFLIGHT_STALE_NS: u64 = 1_000_000_000;

/// What `top`'s `/` filter keeps, changeable while the programs run (FILTER map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// FILTER_NONE, FILTER_DEV or FILTER_COMM.
    pub kind: u32,
    /// Bytes of `pattern` that must match (a prefix).
    pub len: u32,
    pub pattern: [u8; COMM_LEN],
}

pub const FILTER_NONE: u32 = 0;
/// Count polls, enqueues and deliveries only for devices whose name starts with `pattern`.
pub const FILTER_DEV: u32 = 1;
/// Count only events that fire while a task whose name starts with `pattern` is current.
pub const FILTER_COMM: u32 = 2;
const _: () = assert!(core::mem::size_of::<Filter>() == 24);

pub const NET_RX_SOFTIRQ: u32 = 3;
pub const MAX_CPUS: usize = 1024;
/// Event ring buffers (`EVENTS0`..): CPU c writes to ring `c % RINGS`. CPUs sharing one ring
/// take its lock and bounce its cache lines on every event; with one ring per CPU (up to
/// this many) they do not.
pub const RINGS: usize = 4;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, repr(C), no implicit padding (checked by the size asserts).
    unsafe impl aya::Pod for super::RawEvent {}
    unsafe impl aya::Pod for super::CpuState {}
    unsafe impl aya::Pod for super::TpOffsets {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::Settings {}
    unsafe impl aya::Pod for super::CpuCounters {}
    unsafe impl aya::Pod for super::Inflight {}
    unsafe impl aya::Pod for super::NapiCounters {}
    unsafe impl aya::Pod for super::Filter {}
}
