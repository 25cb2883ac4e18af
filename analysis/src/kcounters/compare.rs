//! The events' counts held against the kernel's deltas: per CPU and counter, and the
//! recording's completeness verdict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Counter, CpuCounters, Snapshot, WindowCounts};

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
            other.insert(cpu, shown_deltas(s, e));
        }
        for counter in Counter::ALL {
            let comparison = compare_one(cpu, counter, (s, e), w, cov);
            match comparison {
                Comparison::NotCompared { .. } => {}
                Comparison::Short { .. } => {
                    compared += 1;
                    short = true;
                }
                _ => compared += 1,
            }
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

/// The deltas shown but not compared: no event counts them one for one.
fn shown_deltas(s: &CpuCounters, e: &CpuCounters) -> BTreeMap<String, u64> {
    let d = |a: u32, b: u32| b.wrapping_sub(a) as u64;
    let mut o = BTreeMap::new();
    o.insert("dropped".to_string(), d(s.dropped, e.dropped));
    o.insert(
        "time_squeeze".to_string(),
        d(s.time_squeeze, e.time_squeeze),
    );
    o.insert("flow_limit".to_string(), d(s.flow_limit, e.flow_limit));
    o
}

/// One counter on one CPU: the kernel's delta between the snapshots `(start, end)` against
/// the events counted in the windows, or why it cannot be compared.
fn compare_one(
    cpu: u32,
    counter: Counter,
    (s, e): (Option<&CpuCounters>, Option<&CpuCounters>),
    w: &WindowCounts,
    cov: &Coverage,
) -> Comparison {
    let not = |reason: &str| Comparison::NotCompared {
        reason: reason.to_string(),
    };
    if cov.cpus.as_ref().is_some_and(|c| !c.contains(&cpu)) {
        return not("CPU not recorded (-C)");
    } else if cov.hotplug {
        return not("a CPU was hotplugged during the recording");
    } else if !cov.recorded.contains(&counter) {
        return not(&format!("{} was not recorded", counter.event()));
    }
    let (Some(a), Some(b)) = (
        s.and_then(|s| s.get(counter)),
        e.and_then(|e| e.get(counter)),
    ) else {
        return not("CPU offline at the start or the end (hotplug)");
    };
    let kernel = b.wrapping_sub(a) as u64;
    let bounds = w
        .get(cpu as usize)
        .map(|b| b[counter.index()].clone())
        .unwrap_or_default();
    if kernel > bounds.outer {
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
