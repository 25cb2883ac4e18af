//! What the eBPF programs count in the kernel for `napiscope top` and `serve` (per CPU and
//! per NAPI instance; nothing crosses the ring buffer), and the names of what they count.

use crate::COMM_LEN;

/// Where receive work ran: the context of a NET_RX softirq or a NAPI poll (`napiscope top`).
pub mod where_ {
    /// NET_RX softirq run on the way out of a hard interrupt (or from the idle task).
    pub const IRQ_EXIT: usize = 0;
    /// NET_RX softirq run by a task re-enabling bottom halves (local_bh_enable / netif_rx).
    pub const BH_ENABLE: usize = 1;
    /// `ksoftirqd/N`.
    pub const KSOFTIRQD: usize = 2;
    /// A `backlog_napi/N` thread polling outside softirq (mode C).
    pub const BACKLOG_THREAD: usize = 3;
    /// A threaded device NAPI's own kthread, `napi/<dev>-<napi id>` (napi_threaded_poll,
    /// 29863d41bb6e, v5.12), polling outside softirq.
    pub const NAPI_THREAD: usize = 4;
    /// Any other task polling outside softirq: busy polling (napi_busy_loop from a socket
    /// with SO_BUSY_POLL / net.core.busy_read, or epoll busy poll).
    pub const BUSY_POLL: usize = 5;
    pub const COUNT: usize = 6;
    pub const NAMES: [&str; COUNT] = [
        "irq-exit",
        "bh-enable",
        "ksoftirqd",
        "backlog_napi",
        "napi_thread",
        "busy_poll",
    ];
    /// A softirq that starts within this long of a hard interrupt's exit ran at irq exit.
    pub const IRQ_EXIT_WINDOW_NS: u64 = 5_000;
}

/// Packet path classes, in the order of `analysis::paths::Path`.
pub const PATHS: usize = 4;
pub const PATH_NAMES: [&str; PATHS] = [
    "local_softirq",
    "remote_softirq",
    "ksoftirqd",
    "backlog_thread",
];
/// Latency histogram buckets: bucket b counts latencies in [2^b, 2^(b+1)) ns (b = 0 also
/// holds 0 ns); the last bucket is open-ended (≥ 2^31 ns ≈ 2.1 s).
pub const LAT_BUCKETS: usize = 32;

/// Counters the eBPF programs aggregate per CPU for `napiscope top` (one entry of a per-CPU
/// array; nothing crosses the ring buffer). All monotonic: userspace shows deltas.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CpuCounters {
    /// Tracepoint hits counted (all programs).
    pub events: u64,
    pub net_rx_raise: u64,
    /// NET_RX softirq runs by where (`where_::IRQ_EXIT`, `BH_ENABLE`, `KSOFTIRQD`).
    pub net_rx_runs: [u64; 3],
    /// Time spent in the NET_RX softirq, ns.
    pub net_rx_ns: u64,
    pub polls: u64,
    pub poll_packets: u64,
    /// Polls that used their whole budget (work == budget): more work was left.
    pub poll_budget_exhausted: u64,
    /// Polls of the per-CPU backlog NAPI (dev `(no_device)`).
    pub backlog_polls: u64,
    /// Packets polled, by where (`where_::*`).
    pub poll_packets_where: [u64; where_::COUNT],
    /// netif_rx on this CPU: packets enqueued to a backlog (this CPU's or, with RPS, another's).
    pub enqueues: u64,
    /// netif_rx_exit with NET_RX_DROP: the target backlog was full.
    pub enqueue_drops: u64,
    /// netif_receive_skb on this CPU matched to its netif_rx, by path (`PATH_NAMES`).
    pub deliveries: [u64; PATHS],
    /// Deliveries by a backlog_napi thread of packets enqueued on the same CPU (mode C's
    /// model keeps those in the local softirq).
    pub backlog_thread_local: u64,
    /// netif_receive_skb without a netif_rx (NIC NAPI, GRO): no path, no latency.
    pub unmatched: u64,
    pub rps_ipi_sent: u64,
    pub rps_ipi_received: u64,
    /// IPIs of any kind sent from this CPU.
    pub ipi_sent: u64,
    /// Switches to ksoftirqd/N, backlog_napi/N and threaded device NAPIs' `napi/<dev>-<id>`
    /// on this CPU.
    pub ksoftirqd_runs: u64,
    pub backlog_runs: u64,
    pub napi_thread_runs: u64,
    /// Wake-ups of ksoftirqd/N, backlog_napi/N and `napi/<dev>-<id>` sent from this CPU
    /// (any target).
    pub ksoftirqd_wakeups_sent: u64,
    pub backlog_wakeups_sent: u64,
    pub napi_thread_wakeups_sent: u64,
    /// Enqueue-to-processing latency per path, log2 ns buckets.
    pub latency: [[u64; LAT_BUCKETS]; PATHS],
    /// The same latencies summed per path, ns (a histogram's `_sum`, for mean latencies).
    pub latency_ns_sum: [u64; PATHS],
}

impl CpuCounters {
    pub const fn zeroed() -> CpuCounters {
        CpuCounters {
            events: 0,
            net_rx_raise: 0,
            net_rx_runs: [0; 3],
            net_rx_ns: 0,
            polls: 0,
            poll_packets: 0,
            poll_budget_exhausted: 0,
            backlog_polls: 0,
            poll_packets_where: [0; where_::COUNT],
            enqueues: 0,
            enqueue_drops: 0,
            deliveries: [0; PATHS],
            backlog_thread_local: 0,
            unmatched: 0,
            rps_ipi_sent: 0,
            rps_ipi_received: 0,
            ipi_sent: 0,
            ksoftirqd_runs: 0,
            backlog_runs: 0,
            napi_thread_runs: 0,
            ksoftirqd_wakeups_sent: 0,
            backlog_wakeups_sent: 0,
            napi_thread_wakeups_sent: 0,
            latency: [[0; LAT_BUCKETS]; PATHS],
            latency_ns_sum: [0; PATHS],
        }
    }
}

const _: () =
    assert!(core::mem::size_of::<CpuCounters>() == 8 * (33 + PATHS * LAT_BUCKETS + PATHS));

/// One NAPI instance's counters on one CPU (`top`'s per-NAPI rows): a value of the NAPI
/// per-CPU map, keyed by the `napi_struct` address. Monotonic, as CpuCounters; the
/// identity fields hold what the latest poll on this CPU saw.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NapiCounters {
    pub polls: u64,
    pub packets: u64,
    /// Polls that used their whole budget.
    pub budget_exhausted: u64,
    /// Polls and packets by where the poll ran (`where_::*`).
    pub polls_where: [u64; where_::COUNT],
    pub packets_where: [u64; where_::COUNT],
    /// Polls at the exit of a device interrupt (`last_irq`), and the time from that
    /// interrupt's handler entry to the end of the poll, summed.
    pub irq_polls: u64,
    pub irq_to_poll_ns: u64,
    /// Polls run by a device interrupt's handler thread (`irq/<N>-…`, every device interrupt
    /// on PREEMPT_RT) when it enabled BH again after raising NET_RX: also `last_irq`'s, with
    /// no hard-IRQ time to measure from.
    pub irq_thread_polls: u64,
    /// napi->napi_id (0: not hashed, as the backlog NAPIs; or not readable on this kernel).
    pub napi_id: u32,
    /// napi->irq as the driver set it (netif_napi_set_irq, v6.8+), -1 if unset or unknown.
    pub irq: i32,
    /// The device interrupt the latest irq-exit (or irq-thread) poll followed, -1: none.
    pub last_irq: i32,
    /// The task that ran the latest poll outside softirq (0: none).
    pub task_pid: u32,
    /// The latest softirq poll on this CPU used its whole budget: the next one continues
    /// that scheduling (net_rx_action's repoll list), with no raise of its own.
    pub carried: u32,
    pub _pad: u32,
    /// The device (`napi->dev->name`; `(no_device)` for a backlog).
    pub dev: [u8; COMM_LEN],
    /// That task's comm.
    pub task_comm: [u8; COMM_LEN],
}

impl NapiCounters {
    pub const fn zeroed() -> NapiCounters {
        NapiCounters {
            polls: 0,
            packets: 0,
            budget_exhausted: 0,
            polls_where: [0; where_::COUNT],
            packets_where: [0; where_::COUNT],
            irq_polls: 0,
            irq_to_poll_ns: 0,
            irq_thread_polls: 0,
            napi_id: 0,
            irq: -1,
            last_irq: -1,
            task_pid: 0,
            carried: 0,
            _pad: 0,
            dev: [0; COMM_LEN],
            task_comm: [0; COMM_LEN],
        }
    }
}

const _: () =
    assert!(core::mem::size_of::<NapiCounters>() == 8 * (6 + 2 * where_::COUNT) + 24 + 32);

/// Per-NAPI rows `top` keeps (LRU: instances that went away age out).
pub const MAX_NAPIS: u32 = 1024;

/// Wake-ups of a CPU's kernel threads, counted where the target is known (the woken task's
/// CPU): index `cpu * 2 + WOKEN_KSOFTIRQD | WOKEN_BACKLOG` of the WOKEN array.
pub const WOKEN_KSOFTIRQD: usize = 0;
pub const WOKEN_BACKLOG: usize = 1;
/// Slots per CPU in WOKEN (the `napi/<dev>-<id>` threads are counted where they are woken
/// from, `napi_thread_wakeups_sent`, and per instance by their runs).
pub const WOKEN_SLOTS: usize = 2;
