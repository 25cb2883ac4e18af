//! The numbers of a report, computed from the polars queries. The structs are the JSON
//! (`report --json`) and the source of the terminal tables, so the two cannot disagree.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use polars::prelude::{col, df, lit, DataFrame, DataType, IntoLazy, LazyFrame};
use serde::Serialize;

use super::{
    advice::{self, Advice},
    input::Recording,
    napi::{self, NapiRow},
    query::{self, MAX_BUCKET, PATH_NAMES},
};
use crate::paths::{Path, Via};

/// Counts per packet path (where the receive work ran).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PathCounts {
    pub local_softirq: u64,
    pub remote_softirq: u64,
    pub ksoftirqd: u64,
    pub backlog_thread: u64,
}

impl PathCounts {
    pub fn get(&self, code: usize) -> u64 {
        [
            self.local_softirq,
            self.remote_softirq,
            self.ksoftirqd,
            self.backlog_thread,
        ][code]
    }
    fn add(&mut self, code: usize, n: u64) {
        match code {
            0 => self.local_softirq += n,
            1 => self.remote_softirq += n,
            2 => self.ksoftirqd += n,
            _ => self.backlog_thread += n,
        }
    }
    pub fn total(&self) -> u64 {
        (0..4).map(|i| self.get(i)).sum()
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// Deliveries with 2^k ≤ latency < 2^(k+1) ns.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub from_ns: u64,
    pub to_ns: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PathRow {
    pub path: &'static str,
    pub deliveries: u64,
    /// Share of all deliveries, in percent.
    pub share_pct: f64,
    /// Enqueue (netif_rx) to processing (netif_receive_skb), nanoseconds.
    pub latency_ns: Option<Latency>,
    pub histogram: Vec<Bucket>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct CpuRow {
    pub cpu: u32,
    pub events: u64,
    /// netif_rx on this CPU (packets enqueued here).
    pub enqueued: u64,
    /// Device-side receive entries on this CPU (skbs a device's poll handed over here).
    pub device_entries: u64,
    /// Packets whose receive work ran on this CPU, by path.
    pub deliveries: PathCounts,
    pub delivered: u64,
    /// Of them, steered here by RPS from a device's poll (paired with its device-side entry).
    pub device_initiated: u64,
    pub net_rx_raises: u64,
    pub net_rx_entries: u64,
    pub softirq_runs: u64,
    pub softirq_time_ns: u64,
    pub napi_polls: u64,
    pub napi_packets: u64,
    pub mean_batch: Option<f64>,
    /// Polls with work == budget (the batch was cut short).
    pub budget_exhausted: u64,
    /// Polls of the per-CPU backlog NAPI (`dev` = `(no_device)`).
    pub backlog_polls: u64,
    pub rps_ipis_sent: u64,
    pub rps_ipis_received: u64,
    pub ksoftirqd_wakeups: u64,
    pub backlog_thread_wakeups: u64,
    /// RPS IPIs received here per packet delivered here.
    pub ipis_per_packet: Option<f64>,
    /// Wake-ups of this CPU's ksoftirqd and backlog_napi threads per packet delivered here.
    pub wakeups_per_packet: Option<f64>,
    pub lost_recorded: u64,
    pub seq_gaps: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Totals {
    pub events: u64,
    pub enqueued: u64,
    pub device_entries: u64,
    pub delivered: u64,
    pub deliveries: PathCounts,
    /// Deliveries paired with a device-side entry; the rest of `device_entries` were
    /// delivered in place, merged by GRO into another skb, or not seen delivered.
    pub device_initiated: u64,
    pub rps_ipis_sent: u64,
    pub rps_ipis_received: u64,
    pub ksoftirqd_wakeups: u64,
    pub backlog_thread_wakeups: u64,
    /// RPS IPIs sent per packet delivered.
    pub ipis_per_packet: Option<f64>,
    pub wakeups_per_packet: Option<f64>,
    pub napi_polls: u64,
    pub napi_packets: u64,
    pub mean_batch: Option<f64>,
    pub budget_exhausted: u64,
    pub budget_exhausted_pct: Option<f64>,
    pub softirq_time_ns: u64,
    pub softirq_ns_per_packet: Option<f64>,
    /// Events lost in the kernel (metadata `lost_per_cpu`) and gaps seen in `seq`.
    pub lost_recorded: u64,
    pub seq_gaps: u64,
    /// Time from the first to the last event, summed over recordings.
    pub span_s: f64,
}

/// Deliveries per CPU and path in fixed-width time bins, from each recording's first event.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Timeline {
    pub bin_ms: u64,
    pub bins: usize,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Series {
    pub cpu: u32,
    pub path: &'static str,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub totals: Totals,
    pub paths: Vec<PathRow>,
    /// The deliveries a device's poll handed over (RPS from a device NAPI: poll on CPU a →
    /// enqueue_to_backlog on b → IPI or thread wake-up → delivery), by path, with latency
    /// from the device-side entry; they are also counted in `paths`. Only paths that had any.
    pub device_paths: Vec<PathRow>,
    /// Every NAPI instance that polled: devices' queues, then the CPUs' backlogs.
    pub napis: Vec<NapiRow>,
    /// What to try, with the numbers behind it (`advice::RULES`).
    pub advice: Vec<Advice>,
    pub cpus: Vec<CpuRow>,
    pub timeline: Timeline,
}

pub(super) fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    let c = df
        .column(name)?
        .cast(&DataType::UInt64)
        .with_context(|| format!("column {name}"))?;
    let ca = c.u64()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(0)).collect())
}

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    let ca = c.f64()?;
    Ok((0..ca.len()).map(|i| ca.get(i).unwrap_or(0.0)).collect())
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Timeline bins: 100 ms, widened so a long recording has at most `MAX_BINS` bins.
const MAX_BINS: u64 = 300;
fn bin_ns(span_ns: u64) -> u64 {
    let step = 100_000_000u64;
    let need = span_ns / MAX_BINS + 1;
    need.div_ceil(step).max(1) * step
}

/// Summarise the recordings `recs` (indices into the report's input list).
pub fn summarize(recs: &[(usize, &Recording)]) -> Result<Summary> {
    let events = query::scan(recs)?;
    let mut cpus: BTreeMap<u32, CpuRow> = BTreeMap::new();
    let starts = add_counts(&events, &mut cpus)?;
    add_lost(recs, &mut cpus);
    add_wakeups(&events, &mut cpus)?;
    add_softirq_time(&events, &mut cpus)?;
    // The deliveries are the one per-packet frame; everything else is aggregated in polars.
    let dl = query::collect(query::deliveries(events.clone())).context("packet pairing")?;
    let per = query::collect(query::paths_per_cpu(dl.clone().lazy()))?;
    let (pcpu, ppath, pn) = (u64s(&per, "cpu")?, u64s(&per, "path")?, u64s(&per, "n")?);
    let pdev = u64s(&per, "device")?;
    for i in 0..per.height() {
        let r = row(&mut cpus, pcpu[i]);
        r.deliveries.add(ppath[i] as usize, pn[i]);
        r.device_initiated += pdev[i];
    }
    let mut totals = totals_of(&mut cpus);
    let span_ns: u64 = starts.values().map(|(a, b)| b.saturating_sub(*a)).sum();
    totals.span_s = span_ns as f64 / 1e9;

    let paths = path_rows(&dl, totals.delivered, |p| p.name())?;
    let device = dl.clone().lazy().filter(col("via").eq(lit(1u8)));
    let device_paths = path_rows(&query::collect(device)?, totals.delivered, |p| {
        p.label(Via::Device)
    })?
    .into_iter()
    .filter(|r| r.deliveries > 0)
    .collect();
    let mut napis = napi::napi_rows(&events)?;
    let kernel: Vec<_> = (recs.iter())
        .flat_map(|(_, r)| r.napi_instances())
        .collect();
    napi::join_kernel(&mut napis, &kernel);
    let timeline = timeline(&dl, &starts)?;
    let mut s = Summary {
        totals,
        paths,
        device_paths,
        napis,
        cpus: cpus.into_values().collect(),
        timeline,
        advice: Vec::new(),
    };
    s.advice = advice::advise(&s, &advice::Facts::of(recs));
    Ok(s)
}

/// The row of `cpu`, made when first seen.
fn row(cpus: &mut BTreeMap<u32, CpuRow>, cpu: u64) -> &mut CpuRow {
    let cpu = cpu as u32;
    cpus.entry(cpu).or_insert_with(|| CpuRow {
        cpu,
        ..Default::default()
    })
}

/// Per (file, cpu) counts; seq gaps are per file, summed here. Returns each file's first and
/// last timestamp.
fn add_counts(
    events: &LazyFrame,
    cpus: &mut BTreeMap<u32, CpuRow>,
) -> Result<BTreeMap<u32, (u64, u64)>> {
    let pc = query::collect(query::per_cpu(events.clone())).context("per-CPU counts")?;
    let mut starts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let cols = [
        "file",
        "cpu",
        "events",
        "seq_min",
        "seq_max",
        "ts_min",
        "ts_max",
        "enqueued",
        "net_rx_raises",
        "net_rx_entries",
        "napi_polls",
        "napi_packets",
        "budget_exhausted",
        "backlog_polls",
        "rps_ipis_sent",
        "rps_ipis_received",
        "device_entries",
    ];
    let v: Vec<Vec<u64>> = cols.iter().map(|c| u64s(&pc, c)).collect::<Result<_>>()?;
    for i in 0..pc.height() {
        let row_i: Vec<u64> = v.iter().map(|c| c[i]).collect();
        let g = |k: usize| row_i[k];
        let r = row(cpus, g(1));
        r.events += g(2);
        r.seq_gaps += (g(4) - g(3) + 1).saturating_sub(g(2));
        r.enqueued += g(7);
        r.net_rx_raises += g(8);
        r.net_rx_entries += g(9);
        r.napi_polls += g(10);
        r.napi_packets += g(11);
        r.budget_exhausted += g(12);
        r.backlog_polls += g(13);
        r.rps_ipis_sent += g(14);
        r.rps_ipis_received += g(15);
        r.device_entries += g(16);
        let s = starts.entry(g(0) as u32).or_insert((u64::MAX, 0));
        *s = (s.0.min(g(5)), s.1.max(g(6)));
    }
    Ok(starts)
}

/// Events the recorder knew it lost (its metadata), per CPU.
fn add_lost(recs: &[(usize, &Recording)], cpus: &mut BTreeMap<u32, CpuRow>) {
    for (_, rec) in recs {
        for (cpu, n) in rec.lost_per_cpu.iter().enumerate() {
            if *n > 0 {
                row(cpus, cpu as u64).lost_recorded += n;
            }
        }
    }
}

fn add_wakeups(events: &LazyFrame, cpus: &mut BTreeMap<u32, CpuRow>) -> Result<()> {
    let wk = query::collect(query::wakeups(events.clone())).context("wake-ups")?;
    let (tc, ks, bl) = (
        u64s(&wk, "target_cpu")?,
        u64s(&wk, "ksoftirqd_wakeups")?,
        u64s(&wk, "backlog_wakeups")?,
    );
    for i in 0..wk.height() {
        let r = row(cpus, tc[i]);
        r.ksoftirqd_wakeups += ks[i];
        r.backlog_thread_wakeups += bl[i];
    }
    Ok(())
}

/// NET_RX softirq time, on CPUs that already have a row.
fn add_softirq_time(events: &LazyFrame, cpus: &mut BTreeMap<u32, CpuRow>) -> Result<()> {
    let st = query::collect(query::softirq_time(events.clone())).context("softirq time")?;
    let (sc, sns, sruns) = (
        u64s(&st, "cpu")?,
        u64s(&st, "softirq_ns")?,
        u64s(&st, "softirq_runs")?,
    );
    for i in 0..st.height() {
        if let Some(r) = cpus.get_mut(&(sc[i] as u32)) {
            r.softirq_time_ns += sns[i];
            r.softirq_runs += sruns[i];
        }
    }
    Ok(())
}

/// Each CPU's ratios, and the totals over all CPUs (span_s is the caller's).
fn totals_of(cpus: &mut BTreeMap<u32, CpuRow>) -> Totals {
    let mut t = Totals::default();
    for r in cpus.values_mut() {
        r.delivered = r.deliveries.total();
        r.mean_batch = ratio(r.napi_packets, r.napi_polls);
        r.ipis_per_packet = ratio(r.rps_ipis_received, r.delivered);
        r.wakeups_per_packet = ratio(r.ksoftirqd_wakeups + r.backlog_thread_wakeups, r.delivered);
        t.events += r.events;
        t.enqueued += r.enqueued;
        t.device_entries += r.device_entries;
        t.delivered += r.delivered;
        t.device_initiated += r.device_initiated;
        for p in 0..4 {
            t.deliveries.add(p, r.deliveries.get(p));
        }
        t.rps_ipis_sent += r.rps_ipis_sent;
        t.rps_ipis_received += r.rps_ipis_received;
        t.ksoftirqd_wakeups += r.ksoftirqd_wakeups;
        t.backlog_thread_wakeups += r.backlog_thread_wakeups;
        t.napi_polls += r.napi_polls;
        t.napi_packets += r.napi_packets;
        t.budget_exhausted += r.budget_exhausted;
        t.softirq_time_ns += r.softirq_time_ns;
        t.lost_recorded += r.lost_recorded;
        t.seq_gaps += r.seq_gaps;
    }
    t.ipis_per_packet = ratio(t.rps_ipis_sent, t.delivered);
    t.wakeups_per_packet = ratio(t.ksoftirqd_wakeups + t.backlog_thread_wakeups, t.delivered);
    t.mean_batch = ratio(t.napi_packets, t.napi_polls);
    t.budget_exhausted_pct = ratio(t.budget_exhausted, t.napi_polls).map(|r| r * 100.0);
    t.softirq_ns_per_packet = ratio(t.softirq_time_ns, t.delivered);
    t
}

/// One row per path of the deliveries `dl`, named by `name`; shares are of `delivered`.
fn path_rows(
    dl: &DataFrame,
    delivered: u64,
    name: impl Fn(Path) -> &'static str,
) -> Result<Vec<PathRow>> {
    let lat = query::collect(query::latency(dl.clone().lazy())).context("latency")?;
    let hist = query::collect(query::histogram(dl.clone().lazy())).context("histogram")?;
    let (lp, p50, p90, p99, max) = (
        u64s(&lat, "path")?,
        u64s(&lat, "p50")?,
        u64s(&lat, "p90")?,
        u64s(&lat, "p99")?,
        u64s(&lat, "max")?,
    );
    let mean = f64s(&lat, "mean")?;
    let (hp, hb, hn) = (
        u64s(&hist, "path")?,
        u64s(&hist, "bucket")?,
        u64s(&hist, "n")?,
    );
    let mut rows = Vec::new();
    let ln = u64s(&lat, "n")?;
    for (code, path) in Path::ALL.into_iter().enumerate() {
        let at = (0..lat.height()).find(|&i| lp[i] as usize == code);
        let n = at.map_or(0, |i| ln[i]);
        let latency_ns = at.map(|i| Latency {
            p50: p50[i],
            p90: p90[i],
            p99: p99[i],
            max: max[i],
            mean: mean[i],
        });
        let mut histogram: Vec<Bucket> = (0..hist.height())
            .filter(|&i| hp[i] as usize == code)
            .map(|i| Bucket {
                from_ns: if hb[i] == 0 { 0 } else { 1u64 << hb[i] },
                to_ns: 1u64 << (hb[i].min(MAX_BUCKET as u64) + 1),
                count: hn[i],
            })
            .collect();
        histogram.sort_by_key(|b| b.from_ns);
        rows.push(PathRow {
            path: name(path),
            deliveries: n,
            share_pct: ratio(n, delivered).map_or(0.0, |r| r * 100.0),
            latency_ns,
            histogram,
        });
    }
    Ok(rows)
}

fn timeline(dl: &DataFrame, starts: &BTreeMap<u32, (u64, u64)>) -> Result<Timeline> {
    let span = starts
        .values()
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0);
    let bin = bin_ns(span);
    let bins = (span / bin + 1) as usize;
    let sdf = df!(
        "file" => starts.keys().copied().collect::<Vec<u32>>(),
        "t0" => starts.values().map(|s| s.0).collect::<Vec<u64>>(),
    )?;
    let tl = query::collect(query::timeline(dl.clone().lazy(), sdf, bin)).context("timeline")?;
    let (c, p, b, n) = (
        u64s(&tl, "cpu")?,
        u64s(&tl, "path")?,
        u64s(&tl, "bin")?,
        u64s(&tl, "n")?,
    );
    let mut m: BTreeMap<(u32, usize), Vec<u64>> = BTreeMap::new();
    for i in 0..tl.height() {
        let v = m
            .entry((c[i] as u32, p[i] as usize))
            .or_insert_with(|| vec![0; bins]);
        if let Some(x) = v.get_mut(b[i] as usize) {
            *x += n[i];
        }
    }
    Ok(Timeline {
        bin_ms: bin / 1_000_000,
        bins,
        series: m
            .into_iter()
            .map(|((cpu, p), counts)| Series {
                cpu,
                path: PATH_NAMES[p.min(3)],
                counts,
            })
            .collect(),
    })
}
