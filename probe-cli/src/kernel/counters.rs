//! Snapshots of the kernel's per-CPU receive counters (`analysis::kcounters`), read between
//! two CLOCK_MONOTONIC readings — the clock of the events (bpf_ktime_get_ns).

use analysis::kcounters::{Counter, Snapshot};
use anyhow::{Context as _, Result};

use crate::kernel::probes::ProbeResult;

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Read /proc/net/softnet_stat and /proc/softirqs now.
pub fn snapshot() -> Result<Snapshot> {
    let lo = monotonic_ns();
    let softnet = std::fs::read_to_string("/proc/net/softnet_stat")
        .context("reading /proc/net/softnet_stat")?;
    let softirqs = std::fs::read_to_string("/proc/softirqs").context("reading /proc/softirqs")?;
    let hi = monotonic_ns();
    Snapshot::parse(lo, hi, &softnet, &softirqs)
}

/// The counters whose event an attached probe records.
pub fn recorded(results: &[ProbeResult]) -> Vec<Counter> {
    let on = |name: &str| results.iter().any(|r| r.attached && r.name == name);
    let mut v = Vec::new();
    if on("net:netif_receive_skb") {
        v.push(Counter::Processed);
    }
    if on("csd:csd_function_entry") || on("rps_trigger_softirq") {
        v.push(Counter::ReceivedRps);
    }
    if on("irq:softirq_entry") {
        v.push(Counter::NetRx);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_counters_for_every_online_cpu() {
        let s = snapshot().unwrap();
        assert!(s.ts_lo <= s.ts_hi);
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(s.cpus.len() >= online.min(1));
        assert!(s.cpus.iter().all(|c| c.net_rx.is_some()));
    }
}
