//! From two snapshots of the kernel's monotonic counters to per-second rates and interval
//! latency histograms: the numbers `top` shows, exports and checks.

use std::collections::BTreeMap;

use analysis::kcounters::Counter;
use probe_common::{where_, CpuCounters, LAT_BUCKETS, PATHS, PATH_NAMES};
use serde_json::{json, Value};

/// Everything read from the kernel at one instant.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Seconds since `top` started (monotonic).
    pub at: f64,
    pub cpus: BTreeMap<u32, CpuCounters>,
    /// Wake-ups of each CPU's [ksoftirqd, backlog_napi] thread.
    pub woken: BTreeMap<u32, [u64; 2]>,
    /// napiscope's own user + system CPU time, ns.
    pub self_cpu_ns: u64,
    /// Run time of napiscope's eBPF programs, ns (0 without BPF statistics).
    pub bpf_ns: u64,
    /// Program runs the kernel skipped (nested in another eBPF program).
    pub misses: u64,
    /// The kernel's own per-CPU counters, read just before and just after the maps.
    pub kernel: Option<(analysis::kcounters::Snapshot, analysis::kcounters::Snapshot)>,
    /// Each NAPI instance's counters per CPU.
    pub napi: super::napi::NapiSnapshot,
    /// What the kernel says of its NAPI instances (netlink, /proc), by napi id.
    pub napi_info: BTreeMap<u32, crate::kernel::napi_info::NapiInfo>,
    /// Interrupt number → its handler's name (/proc/interrupts: `virtio1-input.0`).
    pub irq_names: BTreeMap<i32, String>,
}

/// Latency summary of one path over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ns: f64,
    pub p99_ns: f64,
}

/// One CPU over one interval; counts are per second unless named otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuRates {
    pub cpu: u32,
    pub net_rx_raise: f64,
    /// NET_RX softirq runs by where: irq-exit, bh-enable, ksoftirqd.
    pub net_rx_runs: [f64; 3],
    /// Share of the interval spent in the NET_RX softirq, %.
    pub net_rx_busy_pct: f64,
    pub polls: f64,
    pub packets: f64,
    /// Packets polled by where (`where_::NAMES`).
    pub packets_where: [f64; where_::COUNT],
    pub budget_exhausted: f64,
    pub backlog_polls: f64,
    pub enqueues: f64,
    pub drops: f64,
    /// Deliveries on this CPU by path (`PATH_NAMES`).
    pub deliveries: [f64; PATHS],
    pub backlog_thread_local: f64,
    pub unmatched: f64,
    pub rps_ipi_sent: f64,
    pub rps_ipi_received: f64,
    pub ipi_sent: f64,
    pub ksoftirqd_runs: f64,
    pub backlog_runs: f64,
    pub ksoftirqd_woken: f64,
    pub backlog_woken: f64,
    pub latency: [Latency; PATHS],
    /// This interval's latency histogram per path (counts, not rates).
    pub hist: [[u64; LAT_BUCKETS]; PATHS],
}

impl CpuRates {
    pub fn woken(&self) -> f64 {
        self.ksoftirqd_woken + self.backlog_woken
    }
    pub fn thread_runs(&self) -> f64 {
        self.ksoftirqd_runs + self.backlog_runs
    }
    /// p99 over all paths of this CPU.
    pub fn p99_ns(&self) -> Option<f64> {
        merged(self.hist.iter()).map(|h| percentile(&h, 0.99))
    }
    pub fn p50_ns(&self) -> Option<f64> {
        merged(self.hist.iter()).map(|h| percentile(&h, 0.50))
    }

    pub fn to_json(&self) -> Value {
        let by = |names: &[&str], v: &[f64]| -> Value {
            Value::Object(
                names
                    .iter()
                    .zip(v)
                    .map(|(n, x)| (n.to_string(), json!(round(*x))))
                    .collect(),
            )
        };
        let latency: serde_json::Map<String, Value> = PATH_NAMES
            .iter()
            .zip(&self.latency)
            .filter(|(_, l)| l.count > 0)
            .map(|(n, l)| {
                (
                    n.to_string(),
                    json!({"count": l.count, "p50_ns": round(l.p50_ns), "p99_ns": round(l.p99_ns)}),
                )
            })
            .collect();
        json!({
            "cpu": self.cpu,
            "net_rx_raise": round(self.net_rx_raise),
            "net_rx_runs": by(&where_::NAMES[..3], &self.net_rx_runs),
            "net_rx_busy_pct": round(self.net_rx_busy_pct),
            "polls": round(self.polls),
            "packets": round(self.packets),
            "packets_by_where": by(&where_::NAMES, &self.packets_where),
            "budget_exhausted": round(self.budget_exhausted),
            "backlog_polls": round(self.backlog_polls),
            "enqueues": round(self.enqueues),
            "drops": round(self.drops),
            "deliveries": by(&PATH_NAMES, &self.deliveries),
            "backlog_thread_local": round(self.backlog_thread_local),
            "unmatched_deliveries": round(self.unmatched),
            "rps_ipi_sent": round(self.rps_ipi_sent),
            "rps_ipi_received": round(self.rps_ipi_received),
            "ipi_sent": round(self.ipi_sent),
            "ksoftirqd_runs": round(self.ksoftirqd_runs),
            "backlog_runs": round(self.backlog_runs),
            "ksoftirqd_woken": round(self.ksoftirqd_woken),
            "backlog_woken": round(self.backlog_woken),
            "latency": latency,
        })
    }
}

/// Two decimals are plenty for rates; keeps the JSON lines short.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Machine-wide figures for one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overall {
    pub interval_s: f64,
    pub events_per_s: f64,
    pub missed: u64,
    /// napiscope's process CPU, % of one CPU.
    pub self_cpu_pct: f64,
    /// napiscope's eBPF programs, % of one CPU.
    pub bpf_cpu_pct: f64,
}

/// One interval: every CPU plus the machine-wide figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since start at the end of the interval.
    pub at: f64,
    pub cpus: Vec<CpuRates>,
    pub overall: Overall,
    /// Per CPU and counter, what the in-kernel counts lack against the kernel's own
    /// counters over this interval (empty when they could not be read).
    pub kernel: Vec<KernelShort>,
    /// The NAPI instances polled in the interval, busiest first.
    pub napis: Vec<super::napi::NapiRates>,
}

/// One CPU and counter over one interval: the kernel counted between `inner` and `outer`
/// (the reads bracket the maps' read), napiscope's programs counted `counted`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelShort {
    pub cpu: u32,
    pub counter: &'static str,
    pub inner: u64,
    pub outer: u64,
    pub counted: u64,
}

impl KernelShort {
    /// Events the kernel surely counted that the programs did not.
    pub fn short(&self) -> u64 {
        self.inner.saturating_sub(self.counted)
    }
}

/// What the in-kernel counters hold for one of the kernel's counters (analysis::kcounters).
fn counted(c: &CpuCounters, counter: Counter) -> u64 {
    match counter {
        Counter::Processed => c.deliveries.iter().sum::<u64>() + c.unmatched,
        Counter::ReceivedRps => c.rps_ipi_received,
        Counter::NetRx => c.net_rx_runs.iter().sum(),
    }
}

fn kernel_shorts(prev: &Snapshot, cur: &Snapshot) -> Vec<KernelShort> {
    let (Some((plo, phi)), Some((clo, chi))) = (&prev.kernel, &cur.kernel) else {
        return Vec::new();
    };
    let zero = CpuCounters::zeroed();
    let mut out = Vec::new();
    for (&cpu, c) in &cur.cpus {
        let p = prev.cpus.get(&cpu).unwrap_or(&zero);
        for counter in Counter::ALL {
            let get = |s: &analysis::kcounters::Snapshot| s.cpu(cpu).and_then(|k| k.get(counter));
            let (Some(a), Some(b), Some(x), Some(y)) = (get(phi), get(clo), get(plo), get(chi))
            else {
                continue;
            };
            out.push(KernelShort {
                cpu,
                counter: counter.name(),
                inner: b.wrapping_sub(a) as u64,
                outer: y.wrapping_sub(x) as u64,
                counted: counted(c, counter).saturating_sub(counted(p, counter)),
            });
        }
    }
    out
}

impl Sample {
    pub fn between(prev: &Snapshot, cur: &Snapshot) -> Sample {
        let secs = (cur.at - prev.at).max(1e-6);
        let zero = CpuCounters::zeroed();
        let mut events = 0u64;
        let cpus = cur
            .cpus
            .iter()
            .map(|(&cpu, c)| {
                let p = prev.cpus.get(&cpu).unwrap_or(&zero);
                events += c.events.saturating_sub(p.events);
                let w0 = prev.woken.get(&cpu).copied().unwrap_or([0; 2]);
                let w1 = cur.woken.get(&cpu).copied().unwrap_or([0; 2]);
                cpu_rates(cpu, p, c, w0, w1, secs)
            })
            .collect();
        let ns = secs * 1e9;
        Sample {
            at: cur.at,
            kernel: kernel_shorts(prev, cur),
            napis: super::napi::between(&prev.napi, &cur.napi, secs, &cur.napi_info)
                .into_iter()
                .map(|mut n| {
                    n.last_irq_name = n.last_irq.and_then(|i| cur.irq_names.get(&i).cloned());
                    n
                })
                .collect(),
            cpus,
            overall: Overall {
                interval_s: secs,
                events_per_s: events as f64 / secs,
                missed: cur.misses.saturating_sub(prev.misses),
                self_cpu_pct: cur.self_cpu_ns.saturating_sub(prev.self_cpu_ns) as f64 / ns * 100.0,
                bpf_cpu_pct: cur.bpf_ns.saturating_sub(prev.bpf_ns) as f64 / ns * 100.0,
            },
        }
    }

    /// Latency per path over all CPUs.
    pub fn path_latency(&self) -> [Latency; PATHS] {
        std::array::from_fn(|p| {
            let h = merged(self.cpus.iter().map(|c| &c.hist[p]));
            latency(&h.unwrap_or([0; LAT_BUCKETS]))
        })
    }

    pub fn path_rates(&self) -> [f64; PATHS] {
        let mut out = [0.0; PATHS];
        for c in &self.cpus {
            for (o, d) in out.iter_mut().zip(c.deliveries) {
                *o += d;
            }
        }
        out
    }
}

fn cpu_rates(
    cpu: u32,
    p: &CpuCounters,
    c: &CpuCounters,
    w0: [u64; 2],
    w1: [u64; 2],
    secs: f64,
) -> CpuRates {
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    let arr = |a: &[u64], b: &[u64], out: &mut [f64]| {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = y.saturating_sub(*x) as f64 / secs;
        }
    };
    let mut r = CpuRates {
        cpu,
        net_rx_raise: d(p.net_rx_raise, c.net_rx_raise),
        net_rx_busy_pct: c.net_rx_ns.saturating_sub(p.net_rx_ns) as f64 / (secs * 1e9) * 100.0,
        polls: d(p.polls, c.polls),
        packets: d(p.poll_packets, c.poll_packets),
        budget_exhausted: d(p.poll_budget_exhausted, c.poll_budget_exhausted),
        backlog_polls: d(p.backlog_polls, c.backlog_polls),
        enqueues: d(p.enqueues, c.enqueues),
        drops: d(p.enqueue_drops, c.enqueue_drops),
        backlog_thread_local: d(p.backlog_thread_local, c.backlog_thread_local),
        unmatched: d(p.unmatched, c.unmatched),
        rps_ipi_sent: d(p.rps_ipi_sent, c.rps_ipi_sent),
        rps_ipi_received: d(p.rps_ipi_received, c.rps_ipi_received),
        ipi_sent: d(p.ipi_sent, c.ipi_sent),
        ksoftirqd_runs: d(p.ksoftirqd_runs, c.ksoftirqd_runs),
        backlog_runs: d(p.backlog_runs, c.backlog_runs),
        ksoftirqd_woken: d(w0[0], w1[0]),
        backlog_woken: d(w0[1], w1[1]),
        ..CpuRates::default()
    };
    arr(&p.net_rx_runs, &c.net_rx_runs, &mut r.net_rx_runs);
    arr(
        &p.poll_packets_where,
        &c.poll_packets_where,
        &mut r.packets_where,
    );
    arr(&p.deliveries, &c.deliveries, &mut r.deliveries);
    for path in 0..PATHS {
        for b in 0..LAT_BUCKETS {
            r.hist[path][b] = c.latency[path][b].saturating_sub(p.latency[path][b]);
        }
        r.latency[path] = latency(&r.hist[path]);
    }
    r
}

pub fn latency(h: &[u64; LAT_BUCKETS]) -> Latency {
    Latency {
        count: h.iter().sum(),
        p50_ns: percentile(h, 0.50),
        p99_ns: percentile(h, 0.99),
    }
}

fn merged<'a>(hs: impl Iterator<Item = &'a [u64; LAT_BUCKETS]>) -> Option<[u64; LAT_BUCKETS]> {
    let mut out = [0u64; LAT_BUCKETS];
    for h in hs {
        for (o, n) in out.iter_mut().zip(h) {
            *o += n;
        }
    }
    (out.iter().sum::<u64>() > 0).then_some(out)
}

/// Bucket b holds [2^b, 2^(b+1)) ns (b = 0: [0, 2)). The quantile is interpolated linearly
/// inside its bucket, so it is exact to within a factor of 2. 0 for an empty histogram.
pub fn percentile(h: &[u64; LAT_BUCKETS], q: f64) -> f64 {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let want = (q * total as f64).max(1.0);
    let mut seen = 0.0;
    for (b, &n) in h.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if seen + n as f64 >= want {
            let lo = if b == 0 { 0.0 } else { (1u64 << b) as f64 };
            let hi = (1u64 << (b + 1)) as f64;
            return lo + (hi - lo) * ((want - seen) / n as f64);
        }
        seen += n as f64;
    }
    (1u64 << LAT_BUCKETS) as f64
}

/// 1234 → "1.2k", 0 → "0", fractional rates below 10 keep one decimal.
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 10.0 || a == 0.0 || (x - x.round()).abs() < 0.05 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// 850 → "850ns", 12_500 → "12.5µs" (or "us" in ASCII).
pub fn human_ns(ns: f64, ascii: bool) -> String {
    let us = if ascii { "us" } else { "µs" };
    if ns <= 0.0 {
        "-".into()
    } else if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}{us}", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(usize, u64)]) -> [u64; LAT_BUCKETS] {
        let mut h = [0; LAT_BUCKETS];
        for &(b, n) in pairs {
            h[b] = n;
        }
        h
    }

    #[test]
    fn percentiles_fall_in_the_right_bucket() {
        // 90 samples in [1024, 2048) ns, 10 in [65536, 131072).
        let h = hist(&[(10, 90), (16, 10)]);
        let p50 = percentile(&h, 0.5);
        assert!((1024.0..2048.0).contains(&p50), "{p50}");
        let p99 = percentile(&h, 0.99);
        assert!((65536.0..=131072.0).contains(&p99), "{p99}");
        assert_eq!(percentile(&[0; LAT_BUCKETS], 0.5), 0.0);
        assert_eq!(latency(&h).count, 100);
    }

    #[test]
    fn rates_are_deltas_per_second() {
        let mut a = CpuCounters::zeroed();
        a.rps_ipi_received = 100;
        a.deliveries[1] = 50;
        a.latency[1][12] = 50;
        a.net_rx_ns = 0;
        let mut b = a;
        b.rps_ipi_received = 300;
        b.deliveries[1] = 450;
        b.latency[1][12] = 450;
        b.net_rx_ns = 100_000_000;
        b.events = 1000;
        let prev = Snapshot {
            at: 1.0,
            cpus: [(1, a)].into(),
            woken: [(1, [0, 5])].into(),
            ..Snapshot::default()
        };
        let cur = Snapshot {
            at: 3.0,
            cpus: [(1, b)].into(),
            woken: [(1, [0, 25])].into(),
            self_cpu_ns: 20_000_000,
            ..Snapshot::default()
        };
        let s = Sample::between(&prev, &cur);
        let c = &s.cpus[0];
        assert_eq!(c.rps_ipi_received, 100.0);
        assert_eq!(c.deliveries[1], 200.0);
        assert_eq!(c.backlog_woken, 10.0);
        assert_eq!(c.latency[1].count, 400);
        assert!((c.net_rx_busy_pct - 5.0).abs() < 1e-9);
        assert_eq!(s.overall.events_per_s, 500.0);
        assert!((s.overall.self_cpu_pct - 1.0).abs() < 1e-9);
        assert_eq!(s.path_rates()[1], 200.0);
        let j = c.to_json();
        assert_eq!(j["deliveries"]["remote_softirq"], 200.0);
        assert_eq!(j["latency"]["remote_softirq"]["count"], 400);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(1234.0), "1.2k");
        assert_eq!(human(45_000.0), "45k");
        assert_eq!(human(2_500_000.0), "2.5M");
        assert_eq!(human_ns(12_500.0, false), "12.5µs");
        assert_eq!(human_ns(12_500.0, true), "12.5us");
        assert_eq!(human_ns(0.0, true), "-");
    }
}
