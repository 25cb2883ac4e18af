//! The kernel's counters read from /proc/net/softnet_stat and /proc/softirqs.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::Counter;

/// One CPU's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuCounters {
    pub cpu: u32,
    pub processed: u32,
    pub dropped: u32,
    pub time_squeeze: u32,
    pub received_rps: u32,
    pub flow_limit: u32,
    /// None when /proc/softirqs had no column for this CPU.
    pub net_rx: Option<u32>,
}

impl CpuCounters {
    /// The value of a compared counter (None: /proc/softirqs had no column for this CPU).
    pub fn get(&self, c: Counter) -> Option<u32> {
        match c {
            Counter::Processed => Some(self.processed),
            Counter::ReceivedRps => Some(self.received_rps),
            Counter::NetRx => self.net_rx,
        }
    }
}

/// The counters of every online CPU, read between two CLOCK_MONOTONIC readings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub ts_lo: u64,
    pub ts_hi: u64,
    pub cpus: Vec<CpuCounters>,
}

impl Snapshot {
    /// Build from the two files' texts. softnet_stat has a row per online CPU; since 5.10 its
    /// 13th column is the CPU number (before that the rows are in CPU order, which is right
    /// only while every CPU is online). /proc/softirqs has a column per possible CPU.
    pub fn parse(ts_lo: u64, ts_hi: u64, softnet_stat: &str, softirqs: &str) -> Result<Snapshot> {
        let net_rx = parse_net_rx(softirqs)?;
        let mut cpus = Vec::new();
        for (row, line) in softnet_stat.lines().enumerate() {
            let cols: Vec<u32> = line
                .split_whitespace()
                .map(|w| u32::from_str_radix(w, 16))
                .collect::<Result<_, _>>()
                .with_context(|| format!("softnet_stat row {row}: not hex: {line:?}"))?;
            if cols.len() < 11 {
                bail!(
                    "softnet_stat row {row} has {} columns, expected 11 or more",
                    cols.len()
                );
            }
            let cpu = if cols.len() >= 13 {
                cols[12]
            } else {
                row as u32
            };
            cpus.push(CpuCounters {
                cpu,
                processed: cols[0],
                dropped: cols[1],
                time_squeeze: cols[2],
                received_rps: cols[9],
                flow_limit: cols[10],
                net_rx: net_rx.get(&cpu).copied(),
            });
        }
        Ok(Snapshot { ts_lo, ts_hi, cpus })
    }

    pub fn cpu(&self, cpu: u32) -> Option<&CpuCounters> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }
}

/// /proc/softirqs' NET_RX row, by CPU number from the header (`CPU0 CPU1 ...`).
fn parse_net_rx(text: &str) -> Result<BTreeMap<u32, u32>> {
    let mut lines = text.lines();
    let header: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.strip_prefix("CPU").and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .context("/proc/softirqs: header is not CPU0 CPU1 ...")?;
    let Some(row) = lines.find(|l| l.trim_start().starts_with("NET_RX:")) else {
        bail!("/proc/softirqs has no NET_RX row");
    };
    let counts: Vec<u32> = row
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("/proc/softirqs NET_RX: not numbers")?;
    Ok(header.into_iter().zip(counts).collect())
}
