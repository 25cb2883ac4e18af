//! The kernel's own per-CPU receive counters, and a recording's events held against them.
//!
//! A recording can only prove it is complete against something it did not make itself: the
//! counters the kernel keeps anyway. Each row of this table is one fact: which counter, where
//! the kernel keeps it, and which event it counts one for one.
//!
//! | counter        | source                                   | event counted one for one              |
//! |----------------|------------------------------------------|----------------------------------------|
//! | `processed`    | `/proc/net/softnet_stat` column 0        | `netif_receive_skb`                    |
//! | `received_rps` | `/proc/net/softnet_stat` column 9        | `csd_function_entry` of `rps_trigger_softirq` |
//! | `net_rx`       | `/proc/softirqs` NET_RX                  | `softirq_entry` with vec 3             |
//!
//! (`__netif_receive_skb_core` bumps `processed` next to `trace_netif_receive_skb`;
//! `rps_trigger_softirq` bumps `received_rps`; `handle_softirqs` bumps the softirq count just
//! before `trace_softirq_entry`.) `dropped`, `time_squeeze` and `flow_limit` are kept in the
//! snapshot and shown, but no event counts them one for one, so they are not compared.
//!
//! The kernel's counters are `unsigned int`: deltas are taken modulo 2^32. A snapshot is read
//! between two CLOCK_MONOTONIC readings (`ts_lo`, `ts_hi`) on the events' clock, so the events
//! of the window lie between those with `start.ts_hi <= ts < end.ts_lo` (surely inside) and
//! those with `start.ts_lo <= ts < end.ts_hi` (possibly inside): a complete recording has a
//! count between the two for every counter, and a deficit is bounded on both sides.

//!
//! The jobs: `snapshot.rs` reads the counters, `window.rs` counts a recording's events into
//! the two windows, `compare.rs` holds one against the other, `blind.rs` keeps the windows
//! in which the kernel ran none of the recorder's programs; this file names the counters
//! and what a recording stores.

mod blind;
mod compare;
mod snapshot;
mod window;

use serde::{Deserialize, Serialize};

use crate::event::{EventKind, RPS_IPI_FUNC};
pub use blind::{blind_lines, blind_of, Blind, BlindSpan, BLIND_KEY};
pub use compare::{compare, Comparison, Completeness, CounterCheck, Coverage, KernelCheck};
pub use snapshot::{CpuCounters, Snapshot};
pub use window::{Bounds, Counts, EdgeCounter, WindowCounts};

/// The NET_RX softirq vector.
pub const NET_RX_VEC: u32 = 3;

/// The compared counters, in the order of the table above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    Processed,
    ReceivedRps,
    NetRx,
}

impl Counter {
    pub const ALL: [Counter; 3] = [Counter::Processed, Counter::ReceivedRps, Counter::NetRx];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Processed => "processed",
            Counter::ReceivedRps => "received_rps",
            Counter::NetRx => "net_rx",
        }
    }

    /// Where the kernel keeps it, for messages.
    pub fn source(self) -> &'static str {
        match self {
            Counter::Processed => "softnet_stat processed",
            Counter::ReceivedRps => "softnet_stat received_rps",
            Counter::NetRx => "/proc/softirqs NET_RX",
        }
    }

    /// The event that counts it, for messages.
    pub fn event(self) -> &'static str {
        match self {
            Counter::Processed => "netif_receive_skb",
            Counter::ReceivedRps => "csd_function_entry(rps_trigger_softirq)",
            Counter::NetRx => "softirq_entry(NET_RX)",
        }
    }

    /// The event kind behind it (for the checker's "possibly missing" kinds).
    pub fn kind(self) -> EventKind {
        match self {
            Counter::Processed => EventKind::NetifReceiveSkb,
            Counter::ReceivedRps => EventKind::CsdFunctionEntry,
            Counter::NetRx => EventKind::SoftirqEntry,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which counter an event counts one for, if any. `vec` is the softirq vector, `func` the
/// csd function's name.
#[inline]
pub fn counter_of(kind: EventKind, vec: Option<u32>, func: Option<&str>) -> Option<Counter> {
    match kind {
        EventKind::NetifReceiveSkb => Some(Counter::Processed),
        EventKind::CsdFunctionEntry if func == Some(RPS_IPI_FUNC) => Some(Counter::ReceivedRps),
        EventKind::SoftirqEntry if vec == Some(NET_RX_VEC) => Some(Counter::NetRx),
        _ => None,
    }
}

/// The metadata key of `record`'s own comparison (a `KernelCheck`).
pub const CHECK_KEY: &str = "kernel_check";

/// The metadata key holding the two snapshots.
pub const META_KEY: &str = "kernel_counters";

/// What a recording stores under `META_KEY`: the two snapshots and what it set up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshots {
    pub start: Snapshot,
    pub end: Snapshot,
    /// CPUs recorded (None: all).
    pub cpus: Option<Vec<u32>>,
    /// Counters whose event was recorded.
    pub recorded: Vec<Counter>,
}

impl Snapshots {
    /// Compare with a file's window counts; `known_lost` per CPU and the recursion misses
    /// from its metadata.
    pub fn compare(
        &self,
        w: &WindowCounts,
        known_lost: Vec<u64>,
        misses: u64,
        hotplug: bool,
    ) -> KernelCheck {
        let cov = Coverage {
            cpus: self.cpus.clone(),
            recorded: self.recorded.clone(),
            known_lost,
            recursion_misses: misses,
            hotplug,
        };
        compare(&self.start, &self.end, w, &cov)
    }

    /// A fresh counter for these snapshots' windows.
    pub fn counts(&self) -> Counts {
        Counts::new(
            self.start.ts_lo,
            self.start.ts_hi,
            self.end.ts_lo,
            self.end.ts_hi,
        )
    }
}

#[cfg(test)]
mod tests;
