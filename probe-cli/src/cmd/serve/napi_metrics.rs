//! Per-NAPI-instance counters for `serve`: polls and packets by where they ran, budget
//! exhaustion, polls started by a device interrupt. Labelled by device and napi id (the
//! CPUs' backlogs, which have neither, by CPU), summed over the CPUs that polled the
//! instance. An instance the kernel's LRU map drops and sees again restarts at 0, which
//! Prometheus's `rate()` takes as a counter reset.

use probe_common::{where_, NapiCounters};

use super::metrics::{with, Family, Labels, Value};
use crate::live::rates::Snapshot;

/// One instance: its labels and its counters summed over CPUs.
fn instances(s: &Snapshot) -> Vec<(Labels, NapiCounters)> {
    s.napi
        .values()
        .filter_map(|per_cpu| {
            let mut sum = NapiCounters::zeroed();
            let (mut busiest, mut labels) = (0, None);
            for (cpu, c) in per_cpu.iter().enumerate() {
                sum.polls += c.polls;
                sum.packets += c.packets;
                sum.budget_exhausted += c.budget_exhausted;
                sum.irq_polls += c.irq_polls;
                for w in 0..where_::COUNT {
                    sum.polls_where[w] += c.polls_where[w];
                    sum.packets_where[w] += c.packets_where[w];
                }
                if c.polls > busiest {
                    busiest = c.polls;
                    labels = Some(instance_labels(c, cpu as u32));
                }
            }
            labels.map(|l| (l, sum))
        })
        .collect()
}

fn instance_labels(c: &NapiCounters, cpu: u32) -> Labels {
    let end = c.dev.iter().position(|&b| b == 0).unwrap_or(c.dev.len());
    let dev = String::from_utf8_lossy(&c.dev[..end]).into_owned();
    if c.napi_id == 0 && (dev.is_empty() || dev.starts_with('(')) {
        vec![("napi", format!("backlog/{cpu}")), ("dev", String::new())]
    } else {
        vec![("napi", format!("{dev}:{}", c.napi_id)), ("dev", dev)]
    }
}

pub(super) fn families(s: &Snapshot) -> Vec<Family<'static>> {
    let rows = instances(s);
    let by_where = |get: fn(&NapiCounters) -> &[u64; where_::COUNT]| -> Vec<(Labels, Value)> {
        rows.iter()
            .flat_map(|(l, c)| {
                where_::NAMES
                    .iter()
                    .zip(get(c))
                    .map(|(w, n)| (with(l.clone(), "context", w), Value::Counter(*n as f64)))
            })
            .collect()
    };
    let each = |get: fn(&NapiCounters) -> u64| -> Vec<(Labels, Value)> {
        rows.iter()
            .map(|(l, c)| (l.clone(), Value::Counter(get(c) as f64)))
            .collect()
    };
    vec![
        Family {
            name: "napi_instance_polls",
            help: "Polls of one NAPI instance, by where they ran (irq_exit, bh_enable: the \
                   NET_RX softirq; ksoftirqd; backlog_thread; napi_thread: its napi/<dev>-<id> \
                   thread; busy_poll: a task)",
            unit: None,
            samples: by_where(|c| &c.polls_where),
        },
        Family {
            name: "napi_instance_packets",
            help: "Packets one NAPI instance's polls processed, by where the poll ran",
            unit: None,
            samples: by_where(|c| &c.packets_where),
        },
        Family {
            name: "napi_instance_budget_exhausted",
            help: "Polls of one NAPI instance that used their whole budget",
            unit: None,
            samples: each(|c| c.budget_exhausted),
        },
        Family {
            name: "napi_instance_irq_polls",
            help: "Polls of one NAPI instance in a NET_RX softirq a device interrupt's exit \
                   started",
            unit: None,
            samples: each(|c| c.irq_polls),
        },
    ]
}
