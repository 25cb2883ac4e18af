//! What the whole machine did while a scenario sent, from /proc (no tracing).

/// Machine-wide counters over the sending window (all CPUs, so other load counts too).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct SystemDelta {
    /// /proc/stat `ctxt`.
    pub context_switches: u64,
    /// /proc/interrupts `CAL`: function-call IPIs (RPS IPIs are csd calls).
    pub call_ipis: u64,
    /// /proc/interrupts `RES`: rescheduling IPIs (remote wake-ups).
    pub resched_ipis: u64,
    /// /proc/softirqs `NET_RX`.
    pub net_rx_softirqs: u64,
}

impl SystemDelta {
    pub fn read() -> SystemDelta {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let irqs = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
        let soft = std::fs::read_to_string("/proc/softirqs").unwrap_or_default();
        SystemDelta {
            context_switches: stat
                .lines()
                .find_map(|l| l.strip_prefix("ctxt "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            call_ipis: row_sum(&irqs, "CAL:"),
            resched_ipis: row_sum(&irqs, "RES:"),
            net_rx_softirqs: row_sum(&soft, "NET_RX:"),
        }
    }

    pub fn since(self, before: SystemDelta) -> SystemDelta {
        SystemDelta {
            context_switches: self
                .context_switches
                .saturating_sub(before.context_switches),
            call_ipis: self.call_ipis.saturating_sub(before.call_ipis),
            resched_ipis: self.resched_ipis.saturating_sub(before.resched_ipis),
            net_rx_softirqs: self.net_rx_softirqs.saturating_sub(before.net_rx_softirqs),
        }
    }
}

/// Sum of the per-CPU numbers on the line starting with `label` (stops at the description).
pub(super) fn row_sum(text: &str, label: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| {
            rest.split_whitespace()
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}
