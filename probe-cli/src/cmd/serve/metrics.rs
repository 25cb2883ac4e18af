//! What `serve` exposes, as one Prometheus collector over the latest snapshot of the kernel's
//! counters: every counter a monotonic `_total` since `serve` started (a restart starts them
//! at 0 again, which Prometheus's `rate()` takes as a reset; `start_time_seconds` says when),
//! latencies as histograms in seconds, the mode and its evidence as an info metric, and the
//! model's counter rules as evaluations and divergences per rule.

use std::collections::BTreeMap;

use probe_common::{where_, CpuCounters, LAT_BUCKETS, PATHS, PATH_NAMES};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};

use crate::live::{checks::Checks, rates::Snapshot};

/// Everything a scrape shows; the ticker thread replaces it, the HTTP thread encodes it.
#[derive(Debug)]
pub struct Exported {
    pub snap: Snapshot,
    pub checks: Checks,
    /// Events the kernel counted and napiscope's programs did not, per (CPU, counter),
    /// summed over the intervals since start (the kernel-counter cross-check).
    pub kernel_short: BTreeMap<(u32, &'static str), u64>,
    /// False while no interval was compared (the first second, or a filter is set).
    pub kernel_compared: bool,
    pub info: Info,
    /// (probe, attached) for every probe napiscope tried.
    pub probes: Vec<(String, bool)>,
    /// Seconds since the Unix epoch when `serve` started.
    pub start_time: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Info {
    pub version: String,
    pub kernel: String,
    pub mode: String,
    pub checked_as: String,
    pub evidence: String,
    pub filter: String,
}

pub(super) type Labels = Vec<(&'static str, String)>;

fn cpu(c: u32) -> Labels {
    vec![("cpu", c.to_string())]
}

pub(super) fn with(mut l: Labels, k: &'static str, v: &str) -> Labels {
    l.push((k, v.to_string()));
    l
}

/// One metric family: name (without prefix, unit or `_total`), help, unit, type, samples.
pub(super) struct Family<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub unit: Option<Unit>,
    pub samples: Vec<(Labels, Value)>,
}

pub(super) enum Value {
    Counter(f64),
    Gauge(f64),
    /// Per-bucket counts (upper bound in seconds, count), sum in seconds, count.
    Histogram(Vec<(f64, u64)>, f64, u64),
}

impl Family<'_> {
    fn metric_type(&self) -> MetricType {
        match self.samples.first().map(|s| &s.1) {
            Some(Value::Gauge(_)) => MetricType::Gauge,
            Some(Value::Histogram(..)) => MetricType::Histogram,
            _ => MetricType::Counter,
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.samples.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor(
            self.name,
            self.help,
            self.unit.as_ref(),
            self.metric_type(),
        )?;
        for (labels, v) in &self.samples {
            encode_sample(m.encode_family(labels)?, v)?;
        }
        Ok(())
    }
}

fn encode_sample(mut m: MetricEncoder, v: &Value) -> Result<(), std::fmt::Error> {
    match v {
        Value::Counter(x) => ConstCounter::new(*x).encode(m),
        Value::Gauge(x) => ConstGauge::new(*x).encode(m),
        Value::Histogram(buckets, sum, count) => {
            m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
        }
    }
}

/// A per-CPU counter family from one field of the kernel's counters.
fn per_cpu<'a>(
    s: &Snapshot,
    name: &'a str,
    help: &'a str,
    get: impl Fn(&CpuCounters) -> u64,
) -> Family<'a> {
    Family {
        name,
        help,
        unit: None,
        samples: s
            .cpus
            .iter()
            .map(|(c, v)| (cpu(*c), Value::Counter(get(v) as f64)))
            .collect(),
    }
}

/// Bucket b of the kernel's histogram holds [2^b, 2^(b+1)) ns; the last one all above.
fn latency_histogram(hist: &[u64; LAT_BUCKETS], sum_ns: u64) -> Value {
    let buckets = hist
        .iter()
        .enumerate()
        .map(|(b, n)| {
            let upper = if b == LAT_BUCKETS - 1 {
                f64::INFINITY
            } else {
                (1u64 << (b + 1)) as f64 / 1e9
            };
            (upper, *n)
        })
        .collect();
    Value::Histogram(buckets, sum_ns as f64 / 1e9, hist.iter().sum())
}

impl Exported {
    // long: one table of every family napiscope exports, each with its help text.
    fn families(&self) -> Vec<Family<'_>> {
        let s = &self.snap;
        let mut f = vec![
            per_cpu(
                s,
                "events",
                "Tracepoint hits napiscope's programs counted",
                |c| c.events,
            ),
            per_cpu(
                s,
                "net_rx_raises",
                "NET_RX softirq raises (irq:softirq_raise vec=3)",
                |c| c.net_rx_raise,
            ),
            Family {
                name: "net_rx_runs",
                help: "NET_RX softirq runs, by where they ran",
                unit: None,
                samples: s
                    .cpus
                    .iter()
                    .flat_map(|(c, v)| {
                        ["irq_exit", "bh_enable", "ksoftirqd"]
                            .iter()
                            .zip(v.net_rx_runs)
                            .map(|(w, n)| (with(cpu(*c), "context", w), Value::Counter(n as f64)))
                    })
                    .collect(),
            },
            Family {
                name: "net_rx",
                help: "Time spent in the NET_RX softirq",
                unit: Some(Unit::Seconds),
                samples: s
                    .cpus
                    .iter()
                    .map(|(c, v)| (cpu(*c), Value::Counter(v.net_rx_ns as f64 / 1e9)))
                    .collect(),
            },
            per_cpu(
                s,
                "napi_polls",
                "NAPI polls (napi:napi_poll), every instance",
                |c| c.polls,
            ),
            per_cpu(
                s,
                "backlog_polls",
                "Polls of the per-CPU backlog NAPI",
                |c| c.backlog_polls,
            ),
            Family {
                name: "polled_packets",
                help: "Packets NAPI polls processed, by where the poll ran (irq-exit, bh-enable: \
                       the NET_RX softirq; ksoftirqd; backlog_napi thread; task: busy poll)",
                unit: None,
                samples: s
                    .cpus
                    .iter()
                    .flat_map(|(c, v)| {
                        where_::NAMES
                            .iter()
                            .zip(v.poll_packets_where)
                            .map(|(w, n)| (with(cpu(*c), "context", w), Value::Counter(n as f64)))
                    })
                    .collect(),
            },
            per_cpu(
                s,
                "poll_budget_exhausted",
                "Polls that used their whole budget (more work was left)",
                |c| c.poll_budget_exhausted,
            ),
            per_cpu(
                s,
                "backlog_enqueues",
                "Packets netif_rx enqueued to a backlog from this CPU",
                |c| c.enqueues,
            ),
            per_cpu(
                s,
                "backlog_drops",
                "Enqueues the target backlog refused (full)",
                |c| c.enqueue_drops,
            ),
            Family {
                name: "deliveries",
                help:
                    "Packets delivered (netif_receive_skb) on this CPU, by path from their enqueue",
                unit: None,
                samples: s
                    .cpus
                    .iter()
                    .flat_map(|(c, v)| {
                        PATH_NAMES
                            .iter()
                            .zip(v.deliveries)
                            .map(|(p, n)| (with(cpu(*c), "path", p), Value::Counter(n as f64)))
                    })
                    .collect(),
            },
            per_cpu(
                s,
                "unpaired_deliveries",
                "Deliveries with no netif_rx seen for their skb (device NAPI, GRO)",
                |c| c.unmatched,
            ),
            per_cpu(
                s,
                "rps_ipis_sent",
                "RPS IPIs sent from this CPU (csd rps_trigger_softirq)",
                |c| c.rps_ipi_sent,
            ),
            per_cpu(s, "rps_ipis_received", "RPS IPIs run on this CPU", |c| {
                c.rps_ipi_received
            }),
            per_cpu(s, "ipis_sent", "IPIs of any kind sent from this CPU", |c| {
                c.ipi_sent
            }),
            Family {
                name: "thread_runs",
                help: "Switches to this CPU's ksoftirqd and backlog_napi threads",
                unit: None,
                samples: s
                    .cpus
                    .iter()
                    .flat_map(|(c, v)| {
                        [
                            (
                                with(cpu(*c), "thread", "ksoftirqd"),
                                Value::Counter(v.ksoftirqd_runs as f64),
                            ),
                            (
                                with(cpu(*c), "thread", "backlog_napi"),
                                Value::Counter(v.backlog_runs as f64),
                            ),
                        ]
                    })
                    .collect(),
            },
            Family {
                name: "thread_wakeups",
                help: "Wake-ups of this CPU's ksoftirqd and backlog_napi threads (sched_waking)",
                unit: None,
                samples: s
                    .woken
                    .iter()
                    .flat_map(|(c, [k, b])| {
                        [
                            (
                                with(cpu(*c), "thread", "ksoftirqd"),
                                Value::Counter(*k as f64),
                            ),
                            (
                                with(cpu(*c), "thread", "backlog_napi"),
                                Value::Counter(*b as f64),
                            ),
                        ]
                    })
                    .collect(),
            },
            Family {
                name: "enqueue_to_delivery",
                help: "Latency from netif_rx to netif_receive_skb of the same skb, by path \
                       (log2 buckets: within a factor of 2)",
                unit: Some(Unit::Seconds),
                samples: s
                    .cpus
                    .iter()
                    .flat_map(|(c, v)| {
                        (0..PATHS).map(|p| {
                            (
                                with(cpu(*c), "path", PATH_NAMES[p]),
                                latency_histogram(&v.latency[p], v.latency_ns_sum[p]),
                            )
                        })
                    })
                    .collect(),
            },
        ];
        f.extend(super::napi_metrics::families(s));
        f.extend(self.health());
        f.extend(self.rules());
        f
    }

    /// napiscope's own state: probes, what the kernel skipped, cost, the cross-check.
    fn health(&self) -> Vec<Family<'_>> {
        let s = &self.snap;
        let one = |v: Value| vec![(Labels::new(), v)];
        let attached = self.probes.iter().filter(|p| p.1).count();
        vec![
            Family {
                name: "probe_attached",
                help: "1 if this probe is attached, 0 if not (`napiscope status` says why)",
                unit: None,
                samples: self
                    .probes
                    .iter()
                    .map(|(p, a)| (vec![("probe", p.clone())], Value::Gauge(*a as u8 as f64)))
                    .collect(),
            },
            Family {
                name: "probes_attached",
                help: "Probes attached",
                unit: None,
                samples: one(Value::Gauge(attached as f64)),
            },
            Family {
                name: "skipped_program_runs",
                help: "eBPF program runs the kernel skipped (another program was running on \
                       that CPU): the counters are short by these",
                unit: None,
                samples: one(Value::Counter(s.misses as f64)),
            },
            Family {
                name: "bpf_run_time",
                help: "CPU time napiscope's eBPF programs ran (0 without BPF statistics)",
                unit: Some(Unit::Seconds),
                samples: one(Value::Counter(s.bpf_ns as f64 / 1e9)),
            },
            Family {
                name: "kernel_counter_shortfall",
                help: "Events the kernel's own counters (softnet_stat, /proc/softirqs) saw and \
                       napiscope's did not, since start",
                unit: None,
                samples: self
                    .kernel_short
                    .iter()
                    .map(|((c, k), n)| (with(cpu(*c), "counter", k), Value::Counter(*n as f64)))
                    .collect(),
            },
            Family {
                name: "kernel_counters_compared",
                help: "1 once an interval was held against the kernel's counters (never with a filter)",
                unit: None,
                samples: one(Value::Gauge(self.kernel_compared as u8 as f64)),
            },
            Family {
                name: "start_time",
                help: "When this napiscope serve started, since the Unix epoch: its counters \
                       start at 0 then",
                unit: Some(Unit::Seconds),
                samples: one(Value::Gauge(self.start_time)),
            },
        ]
    }

    /// The model's counter rules, checked each interval (`top`'s pane).
    fn rules(&self) -> Vec<Family<'_>> {
        let rule = |id: &str| vec![("rule", id.to_string())];
        vec![
            Family {
                name: "rule_evaluations",
                help: "Intervals and CPUs a counter rule of the model was evaluated on",
                unit: None,
                samples: self
                    .checks
                    .rules
                    .iter()
                    .map(|r| (rule(r.id), Value::Counter(r.evaluated as f64)))
                    .collect(),
            },
            Family {
                name: "rule_divergences",
                help: "Evaluations where the kernel did not do what the model of its mode says",
                unit: None,
                samples: self
                    .checks
                    .rules
                    .iter()
                    .map(|r| (rule(r.id), Value::Counter(r.failed as f64)))
                    .collect(),
            },
        ]
    }
}

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = self.0.lock().map_err(|_| std::fmt::Error)?;
        let i = &e.info;
        let info = vec![
            ("version", i.version.clone()),
            ("kernel", i.kernel.clone()),
            ("mode", i.mode.clone()),
            ("checked_as", i.checked_as.clone()),
            ("evidence", i.evidence.clone()),
            ("filter", i.filter.clone()),
        ];
        let mut m = encoder.encode_descriptor(
            "build",
            "napiscope's version, the kernel, its backlog-NAPI mode and the evidence for it",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&info)?;
        for f in e.families() {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The state both threads share.
#[derive(Debug, Clone)]
pub struct Shared(pub std::sync::Arc<std::sync::Mutex<Exported>>);

/// Content types: the Prometheus text format 0.0.4, or OpenMetrics 1.0 when the scraper
/// asks for it (Prometheus does, in its Accept header).
pub fn render(shared: &Shared, accept: &str) -> Result<(String, &'static str), std::fmt::Error> {
    let mut registry = Registry::with_prefix("napiscope");
    registry.register_collector(Box::new(shared.clone()));
    let mut out = String::new();
    if accept.contains("application/openmetrics-text") {
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok((
            out,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok((
            out,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ))
    }
}
