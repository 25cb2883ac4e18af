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

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, RPS_IPI_FUNC};
use probe_common::NET_RX_SOFTIRQ;

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
        EventKind::SoftirqEntry if vec == Some(NET_RX_SOFTIRQ) => Some(Counter::NetRx),
        _ => None,
    }
}

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

/// Events counted per CPU and counter in the two windows (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Events surely inside the kernel's window.
    pub inner: u64,
    /// Events possibly inside it.
    pub outer: u64,
}

/// Per CPU (index = CPU number), per counter.
pub type WindowCounts = Vec<[Bounds; 3]>;

/// Counts events into the windows of two snapshots as they stream past, for `record`: the
/// end snapshot is taken while events still arrive, so events that come after it are kept
/// (just their time) until the end bounds are known.
pub struct EdgeCounter {
    start: (u64, u64),
    /// Per CPU and counter: events with `ts >= start.ts_hi` and with
    /// `start.ts_lo <= ts < start.ts_hi`, taken before the end snapshot.
    after_start: Vec<[u64; 3]>,
    start_edge: Vec<[u64; 3]>,
    /// Events seen after the end snapshot was taken: (cpu, counter, ts).
    late: Vec<(u32, Counter, u64)>,
    ended: bool,
}

impl EdgeCounter {
    pub fn new(start: &Snapshot) -> EdgeCounter {
        EdgeCounter {
            start: (start.ts_lo, start.ts_hi),
            after_start: Vec::new(),
            start_edge: Vec::new(),
            late: Vec::new(),
            ended: false,
        }
    }

    /// From now on events may be later than the end snapshot (call right before taking it).
    pub fn end_taken(&mut self) {
        self.ended = true;
    }

    #[inline]
    pub fn see(&mut self, cpu: u32, counter: Counter, ts: u64) {
        if self.ended {
            self.late.push((cpu, counter, ts));
            return;
        }
        let (lo, hi) = self.start;
        if ts < lo {
            return;
        }
        let c = cpu as usize;
        if c >= self.after_start.len() {
            self.after_start.resize(c + 1, [0; 3]);
            self.start_edge.resize(c + 1, [0; 3]);
        }
        if ts >= hi {
            self.after_start[c][counter.index()] += 1;
        } else {
            self.start_edge[c][counter.index()] += 1;
        }
    }

    pub fn finish(self, end: &Snapshot) -> WindowCounts {
        let mut w: WindowCounts = self
            .after_start
            .iter()
            .zip(&self.start_edge)
            .map(|(a, e)| {
                std::array::from_fn(|i| Bounds {
                    inner: a[i],
                    outer: a[i] + e[i],
                })
            })
            .collect();
        let mut counts = Counts::new(self.start.0, self.start.1, end.ts_lo, end.ts_hi);
        for (cpu, counter, ts) in self.late {
            counts.see(cpu, counter, ts);
        }
        add(&mut w, &counts.finish());
        w
    }
}

fn add(into: &mut WindowCounts, other: &WindowCounts) {
    if other.len() > into.len() {
        into.resize(other.len(), Default::default());
    }
    for (a, b) in into.iter_mut().zip(other) {
        for i in 0..3 {
            a[i].inner += b[i].inner;
            a[i].outer += b[i].outer;
        }
    }
}

/// Counts events into the windows of two known snapshots (a recorded file's events).
pub struct Counts {
    bounds: [u64; 4],
    w: WindowCounts,
}

impl Counts {
    pub fn new(start_lo: u64, start_hi: u64, end_lo: u64, end_hi: u64) -> Counts {
        Counts {
            bounds: [start_lo, start_hi, end_lo, end_hi],
            w: Vec::new(),
        }
    }

    #[inline]
    pub fn see(&mut self, cpu: u32, counter: Counter, ts: u64) {
        let [slo, shi, elo, ehi] = self.bounds;
        let outer = ts >= slo && ts < ehi;
        if !outer {
            return;
        }
        let c = cpu as usize;
        if c >= self.w.len() {
            self.w.resize(c + 1, Default::default());
        }
        let b = &mut self.w[c][counter.index()];
        b.outer += 1;
        if ts >= shi && ts < elo {
            b.inner += 1;
        }
    }

    pub fn finish(self) -> WindowCounts {
        self.w
    }
}

/// What one counter on one CPU says about the recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Comparison {
    /// The kernel's count lies between the events surely in the window (`events`) and
    /// those possibly in it (`events + edge`).
    Match { kernel: u64, events: u64, edge: u64 },
    /// The recording misses between `min` and `max` of what the kernel counted.
    Short {
        kernel: u64,
        events: u64,
        min: u64,
        max: u64,
    },
    /// More events than the kernel counted: not a loss (the counter and the event disagree
    /// on this kernel), but not a match either.
    Over { kernel: u64, events: u64 },
    /// Cannot be compared, and why.
    NotCompared { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterCheck {
    pub cpu: u32,
    pub counter: Counter,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// The completeness verdict of a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    /// Every compared counter matches and nothing was lost.
    Complete,
    /// Some events are missing (a counter is short, or the ring lost events).
    Incomplete,
    /// Nothing could be compared.
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelCheck {
    pub verdict: Completeness,
    pub checks: Vec<CounterCheck>,
    /// dropped / time_squeeze / flow_limit deltas per CPU: shown, not compared.
    pub other: BTreeMap<u32, BTreeMap<String, u64>>,
}

impl KernelCheck {
    /// Per counter, the most the recording can miss (for the checker's "possibly missing").
    pub fn short_by_counter(&self) -> BTreeMap<Counter, u64> {
        let mut m = BTreeMap::new();
        for c in &self.checks {
            if let Comparison::Short { max, .. } = c.comparison {
                *m.entry(c.counter).or_default() += max;
            }
        }
        m
    }

    pub fn short_total(&self) -> (u64, u64) {
        self.checks
            .iter()
            .fold((0, 0), |(a, b), c| match c.comparison {
                Comparison::Short { min, max, .. } => (a + min, b + max),
                _ => (a, b),
            })
    }

    /// One line per CPU and counter, for terminals.
    pub fn lines(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| {
                let what = format!("cpu{} {:<12}", c.cpu, c.counter.name());
                match &c.comparison {
                    Comparison::Match {
                        kernel,
                        events,
                        edge,
                    } => {
                        let edge = if *edge > 0 {
                            format!(" (+{edge} at the window's edges)")
                        } else {
                            String::new()
                        };
                        format!("{what} kernel {kernel:>9}  events {events:>9}  match{edge}")
                    }
                    Comparison::Short {
                        kernel,
                        events,
                        min,
                        max,
                    } => {
                        let n = if min == max {
                            min.to_string()
                        } else {
                            format!("{min}–{max}")
                        };
                        format!(
                            "{what} kernel {kernel:>9}  events {events:>9}  SHORT by {n} {}",
                            c.counter.event()
                        )
                    }
                    Comparison::Over { kernel, events } => format!(
                        "{what} kernel {kernel:>9}  events {events:>9}  more events than the \
                         kernel counted"
                    ),
                    Comparison::NotCompared { reason } => {
                        format!("{what} not compared: {reason}")
                    }
                }
            })
            .collect()
    }
}

/// What the recording set up, for deciding what can be compared.
#[derive(Clone, Debug, Default)]
pub struct Coverage {
    /// CPUs recorded (None: all).
    pub cpus: Option<Vec<u32>>,
    /// Counters whose event was recorded (its probe attached).
    pub recorded: Vec<Counter>,
    /// Events the recording knows it lost, per CPU (ring full, seq gaps).
    pub known_lost: Vec<u64>,
    /// Events the kernel's recursion guard skipped (counted per program, not per CPU).
    pub recursion_misses: u64,
    /// A CPU went offline or online during the recording (cpuhp events): the kernel's
    /// counters then move without the events one for one (a dying CPU's pending RPS IPIs
    /// run from the hotplug path), and model.md §8.2 leaves the window unspecified.
    pub hotplug: bool,
}

/// Hold the events' counts against the kernel's deltas, per CPU and counter.
pub fn compare(start: &Snapshot, end: &Snapshot, w: &WindowCounts, cov: &Coverage) -> KernelCheck {
    let mut checks = Vec::new();
    let mut other = BTreeMap::new();
    let mut cpus: Vec<u32> = start.cpus.iter().map(|c| c.cpu).collect();
    for c in &end.cpus {
        if !cpus.contains(&c.cpu) {
            cpus.push(c.cpu);
        }
    }
    cpus.sort_unstable();
    let mut compared = 0;
    let mut short = false;
    for cpu in cpus {
        let (s, e) = (start.cpu(cpu), end.cpu(cpu));
        if let (Some(s), Some(e)) = (s, e) {
            let d = |a: u32, b: u32| b.wrapping_sub(a) as u64;
            let mut o = BTreeMap::new();
            o.insert("dropped".to_string(), d(s.dropped, e.dropped));
            o.insert(
                "time_squeeze".to_string(),
                d(s.time_squeeze, e.time_squeeze),
            );
            o.insert("flow_limit".to_string(), d(s.flow_limit, e.flow_limit));
            other.insert(cpu, o);
        }
        for counter in Counter::ALL {
            let not = |reason: &str| Comparison::NotCompared {
                reason: reason.to_string(),
            };
            let comparison = if cov.cpus.as_ref().is_some_and(|c| !c.contains(&cpu)) {
                not("CPU not recorded (-C)")
            } else if cov.hotplug {
                not("a CPU was hotplugged during the recording")
            } else if !cov.recorded.contains(&counter) {
                not(&format!("{} was not recorded", counter.event()))
            } else {
                match (
                    s.and_then(|s| s.get(counter)),
                    e.and_then(|e| e.get(counter)),
                ) {
                    (Some(a), Some(b)) => {
                        compared += 1;
                        let kernel = b.wrapping_sub(a) as u64;
                        let bounds = w
                            .get(cpu as usize)
                            .map(|b| b[counter.index()].clone())
                            .unwrap_or_default();
                        if kernel > bounds.outer {
                            short = true;
                            Comparison::Short {
                                kernel,
                                events: bounds.inner,
                                min: kernel - bounds.outer,
                                max: kernel - bounds.inner,
                            }
                        } else if kernel < bounds.inner {
                            Comparison::Over {
                                kernel,
                                events: bounds.inner,
                            }
                        } else {
                            Comparison::Match {
                                kernel,
                                events: bounds.inner,
                                edge: bounds.outer - bounds.inner,
                            }
                        }
                    }
                    _ => not("CPU offline at the start or the end (hotplug)"),
                }
            };
            checks.push(CounterCheck {
                cpu,
                counter,
                comparison,
            });
        }
    }
    let lost = cov.known_lost.iter().any(|n| *n > 0) || cov.recursion_misses > 0;
    let verdict = if short || lost {
        Completeness::Incomplete
    } else if compared == 0 {
        Completeness::Unknown
    } else {
        Completeness::Complete
    };
    KernelCheck {
        verdict,
        checks,
        other,
    }
}

/// The metadata key of the blind windows (`Blind` per CPU).
pub const BLIND_KEY: &str = "blind_windows";

/// One CPU's blind windows: stretches in which the kernel ran none of the recorder's eBPF
/// programs there (the task then current is one the kernel does not run them for), found
/// in the kernel by a task other than the one sched_switch switched to. `last` holds the
/// most recent of them (the kernel keeps a few per CPU); `windows` and `ns` count all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blind {
    pub cpu: u32,
    pub windows: u64,
    pub ns: u64,
    pub last: Vec<BlindSpan>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindSpan {
    pub from_ns: u64,
    pub to_ns: u64,
    /// The task that was current (switched to, and never seen switching away).
    pub pid: u32,
    /// Its name, when the recorder could still read it at the end.
    pub comm: Option<String>,
}

/// The blind windows a recording stored, if any.
pub fn blind_of(meta: &crate::trace::TraceMeta) -> Vec<Blind> {
    meta.get(BLIND_KEY)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// One line per CPU with blind windows, for terminals.
pub fn blind_lines(b: &[Blind]) -> Vec<String> {
    b.iter()
        .filter(|b| b.windows > 0)
        .map(|b| {
            let mut who: Vec<String> = b
                .last
                .iter()
                .map(|s| match &s.comm {
                    Some(c) => format!("{c} (pid {})", s.pid),
                    None => format!("pid {}", s.pid),
                })
                .collect();
            who.sort();
            who.dedup();
            format!(
                "cpu{}: {} window(s), {:.3} ms, in which the kernel ran no napiscope program; \
                 current then: {}",
                b.cpu,
                b.windows,
                b.ns as f64 / 1e6,
                who.join(", ")
            )
        })
        .collect()
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
mod tests {
    use super::*;

    const SOFTNET: &str = "\
00000013 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
0000226b 00000002 00000001 00000000 00000000 00000000 00000000 00000000 00000000 000000ff 00000003 00000000 00000001 00000000 00000000
";
    const SOFTIRQS: &str = "                    CPU0       CPU1
          HI:          0          0
      NET_TX:          1          2
      NET_RX:        100     200000
";

    #[test]
    fn parses_softnet_stat_and_softirqs() {
        let s = Snapshot::parse(1, 2, SOFTNET, SOFTIRQS).unwrap();
        assert_eq!(s.cpus.len(), 2);
        let c1 = s.cpu(1).unwrap();
        assert_eq!(c1.processed, 0x226b);
        assert_eq!(c1.dropped, 2);
        assert_eq!(c1.time_squeeze, 1);
        assert_eq!(c1.received_rps, 0xff);
        assert_eq!(c1.flow_limit, 3);
        assert_eq!(c1.net_rx, Some(200000));
        assert_eq!(s.cpu(0).unwrap().net_rx, Some(100));
    }

    #[test]
    fn softnet_rows_name_their_cpu_when_one_is_offline() {
        // CPU 0 offline: one row, whose 13th column says CPU 1.
        let one = SOFTNET.lines().nth(1).unwrap();
        let s = Snapshot::parse(0, 0, one, SOFTIRQS).unwrap();
        assert_eq!(s.cpus.len(), 1);
        assert_eq!(s.cpus[0].cpu, 1);
        assert_eq!(s.cpus[0].net_rx, Some(200000));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Snapshot::parse(0, 0, "zz 00", SOFTIRQS).is_err());
        assert!(Snapshot::parse(0, 0, "00 01", SOFTIRQS).is_err());
        assert!(Snapshot::parse(0, 0, SOFTNET, "CPU0\nHI: 0\n").is_err());
        assert!(Snapshot::parse(0, 0, SOFTNET, "").is_err());
    }

    fn snap(ts: (u64, u64), processed: [u32; 2]) -> Snapshot {
        Snapshot {
            ts_lo: ts.0,
            ts_hi: ts.1,
            cpus: (0..2)
                .map(|cpu| CpuCounters {
                    cpu,
                    processed: processed[cpu as usize],
                    net_rx: Some(0),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn all() -> Coverage {
        Coverage {
            cpus: None,
            recorded: Counter::ALL.to_vec(),
            known_lost: vec![],
            recursion_misses: 0,
            hotplug: false,
        }
    }

    fn processed(k: &KernelCheck, cpu: u32) -> &Comparison {
        &k.checks
            .iter()
            .find(|c| c.cpu == cpu && c.counter == Counter::Processed)
            .unwrap()
            .comparison
    }

    #[test]
    fn window_edges_bound_the_count_on_both_sides() {
        // Start read in [100, 110), end in [1000, 1010). Events at 105 and 1005 may or may
        // not be in the kernel's window; 500 surely is.
        let (s, e) = (snap((100, 110), [0, 0]), snap((1000, 1010), [0, 0]));
        let mut c = Counts::new(100, 110, 1000, 1010);
        for ts in [50, 105, 500, 1005, 2000] {
            c.see(1, Counter::Processed, ts);
        }
        let w = c.finish();
        assert_eq!(w[1][0], Bounds { inner: 1, outer: 3 });
        for (kernel, want) in [
            (1, "match"),
            (2, "match"),
            (3, "match"),
            (0, "over"),
            (5, "short 2-4"),
        ] {
            let e = snap((1000, 1010), [0, kernel]);
            let k = compare(&s, &e, &w, &all());
            let got = match processed(&k, 1) {
                Comparison::Match { .. } => "match".to_string(),
                Comparison::Over { .. } => "over".to_string(),
                Comparison::Short { min, max, .. } => format!("short {min}-{max}"),
                Comparison::NotCompared { reason } => reason.clone(),
            };
            assert_eq!(got, want, "kernel delta {kernel}");
        }
        let _ = e;
    }

    #[test]
    fn counters_that_wrap_give_the_true_delta() {
        let s = snap((0, 0), [0, u32::MAX - 1]);
        let e = snap((10, 10), [0, 3]); // +5 across the wrap
        let mut c = Counts::new(0, 0, 10, 10);
        for ts in 1..=5 {
            c.see(1, Counter::Processed, ts);
        }
        let k = compare(&s, &e, &c.finish(), &all());
        assert_eq!(
            processed(&k, 1),
            &Comparison::Match {
                kernel: 5,
                events: 5,
                edge: 0
            }
        );
        assert_eq!(k.verdict, Completeness::Complete);
    }

    #[test]
    fn a_deficit_is_incomplete_and_names_cpu_and_counter() {
        let s = snap((0, 0), [0, 0]);
        let e = snap((10, 10), [0, 7]);
        let mut c = Counts::new(0, 0, 10, 10);
        for ts in 1..=4 {
            c.see(1, Counter::Processed, ts);
        }
        let k = compare(&s, &e, &c.finish(), &all());
        assert_eq!(k.verdict, Completeness::Incomplete);
        assert_eq!(k.short_total(), (3, 3));
        assert_eq!(k.short_by_counter().get(&Counter::Processed), Some(&3));
        assert!(k
            .lines()
            .iter()
            .any(|l| l.contains("cpu1 processed") && l.contains("SHORT by 3")));
    }

    #[test]
    fn offline_and_unrecorded_cpus_are_not_compared() {
        let s = snap((0, 0), [0, 0]);
        let mut e = snap((10, 10), [0, 0]);
        e.cpus.retain(|c| c.cpu == 0); // CPU 1 went offline
        let cov = Coverage {
            cpus: Some(vec![1]),
            ..all()
        };
        let k = compare(&s, &e, &Vec::new(), &cov);
        assert!(
            matches!(processed(&k, 0), Comparison::NotCompared { reason } if reason.contains("-C"))
        );
        assert!(
            matches!(processed(&k, 1), Comparison::NotCompared { reason } if reason.contains("offline"))
        );
        assert_eq!(k.verdict, Completeness::Unknown);
    }

    #[test]
    fn known_losses_make_it_incomplete_even_when_counters_match() {
        let s = snap((0, 0), [0, 0]);
        let e = snap((10, 10), [0, 0]);
        let cov = Coverage {
            known_lost: vec![0, 2],
            ..all()
        };
        assert_eq!(
            compare(&s, &e, &Vec::new(), &cov).verdict,
            Completeness::Incomplete
        );
    }

    #[test]
    fn the_streaming_counter_agrees_with_the_file_counter() {
        // Events stream in; the end snapshot is taken at 1000..1010 while events up to 1200
        // still arrive (some from before it, drained late).
        let start = snap((100, 110), [0, 0]);
        let end = snap((1000, 1010), [0, 0]);
        let before: Vec<u64> = vec![90, 100, 105, 110, 400, 999];
        let late: Vec<u64> = vec![999, 1000, 1005, 1010, 1200];
        let mut edge = EdgeCounter::new(&start);
        for ts in &before {
            edge.see(1, Counter::Processed, *ts);
        }
        edge.end_taken();
        for ts in &late {
            edge.see(1, Counter::Processed, *ts);
        }
        let mut file = Counts::new(100, 110, 1000, 1010);
        for ts in before.iter().chain(&late) {
            file.see(1, Counter::Processed, *ts);
        }
        assert_eq!(edge.finish(&end), file.finish());
    }

    #[test]
    fn only_the_counted_events_count() {
        assert_eq!(
            counter_of(EventKind::NetifReceiveSkb, None, None),
            Some(Counter::Processed)
        );
        assert_eq!(
            counter_of(EventKind::CsdFunctionEntry, None, Some(RPS_IPI_FUNC)),
            Some(Counter::ReceivedRps)
        );
        assert_eq!(
            counter_of(EventKind::CsdFunctionEntry, None, Some("other")),
            None
        );
        assert_eq!(
            counter_of(EventKind::SoftirqEntry, Some(3), None),
            Some(Counter::NetRx)
        );
        assert_eq!(counter_of(EventKind::SoftirqEntry, Some(1), None), None);
        assert_eq!(counter_of(EventKind::NetifRx, None, None), None);
    }
}
