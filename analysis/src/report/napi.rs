//! Per-NAPI rows of a report: every instance that polled (the CPUs' backlogs and the devices'
//! queues), with its polls, packets, budget exhaustion and where the polls ran — the NET_RX
//! softirq, ksoftirqd, its `napi/<dev>-<id>` thread, a backlog thread, or a task busy polling
//! (napi_busy_loop) — and which tasks polled it outside softirq.
//!
//! polars groups the napi_poll rows by (file, instance, CPU, place, polling task), a few rows
//! per instance; the rows are then merged by the instance's name (`event::napi_label`), so
//! the same queue in several recordings (or hours of one host) is one row.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use polars::prelude::{col, len, lit, when, DataFrame, DataType, Expr, LazyFrame};
use serde::Serialize;

use super::{query, summary::u64s};
use crate::{
    event::{napi_label, BACKLOG_DEV, NAPI_THREAD_PREFIX},
    trace::KernelNapi,
};

/// Where a poll ran, as the `place` code of `polls` (and the index of `NapiRow::polls_where`).
pub const PLACES: [&str; 6] = [
    "net_rx",
    "ksoftirqd",
    "napi_thread",
    "backlog_thread",
    "busy_poll",
    "hardirq",
];

/// One NAPI instance (or several of the same name, see `instances`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct NapiRow {
    /// `veth1:8193`, `eth1` (no napi id), `backlog/1`.
    pub napi: String,
    pub dev: String,
    /// napi->napi_id; None in files recorded before schema 2, 0 for the backlogs.
    pub napi_id: Option<u32>,
    /// napi->irq where the driver set it (6.8+).
    pub irq: Option<i32>,
    /// (recording, napi_struct) pairs merged into this row.
    pub instances: u64,
    pub cpus: Vec<u32>,
    pub polls: u64,
    pub packets: u64,
    pub mean_batch: Option<f64>,
    /// Polls with work == budget.
    pub budget_exhausted: u64,
    /// Polls by place (`PLACES`), in that order (JSON: an object keyed by place).
    #[serde(serialize_with = "by_place")]
    pub polls_where: [u64; PLACES.len()],
    #[serde(serialize_with = "by_place")]
    pub packets_where: [u64; PLACES.len()],
    /// The tasks that polled it outside softirq (its thread, busy pollers): comm → polls.
    pub tasks: BTreeMap<String, u64>,
    /// What the kernel told of it while it was recorded (metadata `napi_instances`): its
    /// `napi/<dev>-<id>` thread.
    pub thread_pid: Option<u32>,
}

impl NapiRow {
    /// Where most polls ran.
    pub fn mostly(&self) -> &'static str {
        let (i, n) = (self.polls_where.iter().enumerate())
            .max_by_key(|(_, n)| **n)
            .unwrap_or((0, &0));
        if *n == 0 {
            "-"
        } else {
            PLACES[i]
        }
    }

    pub fn is_backlog(&self) -> bool {
        self.dev == BACKLOG_DEV
    }
}

fn by_place<S: serde::Serializer>(v: &[u64; PLACES.len()], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(PLACES.len()))?;
    for (name, n) in PLACES.iter().zip(v) {
        m.serialize_entry(name, n)?;
    }
    m.end()
}

fn starts(prefix: &str) -> Expr {
    let end = format!("{}0", prefix.trim_end_matches('/'));
    col("comm")
        .gt_eq(lit(prefix))
        .and(col("comm").lt(lit(end.as_str())))
}

/// The napi_poll rows grouped by (file, napi, dev, cpu, place, task): counts per group.
fn polls(events: LazyFrame) -> LazyFrame {
    let softirq = col("ctx").eq(lit("softirq"));
    let task = col("ctx").eq(lit("task"));
    let place = when(softirq.clone().and(starts("ksoftirqd/")))
        .then(lit(1u8))
        .when(softirq.clone())
        .then(lit(0u8))
        .when(task.clone().and(starts(NAPI_THREAD_PREFIX)))
        .then(lit(2u8))
        .when(task.clone().and(starts("backlog_napi/")))
        .then(lit(3u8))
        .when(task.clone())
        .then(lit(4u8))
        .otherwise(lit(5u8));
    let work = col("work").cast(DataType::Int64).fill_null(lit(0i64));
    events
        .filter(col("event").eq(lit("napi_poll")))
        .select([
            col("file"),
            col("napi").fill_null(lit(0u64)),
            col("dev").fill_null(lit("")),
            col("cpu"),
            place.alias("place"),
            when(task)
                .then(col("comm"))
                .otherwise(lit(""))
                .alias("task"),
            col("napi_id"),
            col("irq"),
            work.clone().alias("work"),
            col("work")
                .eq(col("budget"))
                .fill_null(lit(false))
                .alias("exhausted"),
        ])
        .group_by([
            col("file"),
            col("napi"),
            col("dev"),
            col("cpu"),
            col("place"),
            col("task"),
        ])
        .agg([
            len().cast(DataType::UInt64).alias("polls"),
            col("work").sum().alias("packets"),
            col("exhausted")
                .cast(DataType::UInt64)
                .sum()
                .alias("exhausted"),
            col("napi_id").max().alias("napi_id"),
            col("irq").max().alias("irq"),
        ])
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = df.column(name)?.str()?.clone();
    Ok((0..c.len())
        .map(|i| c.get(i).unwrap_or("").to_string())
        .collect())
}

fn opt_i64s(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    let c = df.column(name)?.cast(&DataType::Int64)?;
    let c = c.i64()?;
    Ok((0..c.len()).map(|i| c.get(i)).collect())
}

/// Join the rows with what the recordings' kernels told of each napi id: the IRQ where the
/// poll's row had none (napi->irq is only set by some drivers; genl reads the same field,
/// but older files have no irq column), and the instance's thread.
pub fn join_kernel(rows: &mut [NapiRow], kernel: &[KernelNapi]) {
    for r in rows.iter_mut() {
        let Some(id) = r.napi_id.filter(|id| *id > 0) else {
            continue;
        };
        let same = |k: &&KernelNapi| k.napi_id == id && k.dev.as_deref().is_none_or(|d| d == r.dev);
        if let Some(k) = kernel.iter().find(same) {
            r.irq = r.irq.or(k.irq.map(|i| i as i32));
            r.thread_pid = r.thread_pid.or(k.thread_pid);
        }
    }
}

/// The per-NAPI rows of `events`: devices first (most polls first), then the backlogs by CPU.
pub fn napi_rows(events: &LazyFrame) -> Result<Vec<NapiRow>> {
    let df = query::collect(polls(events.clone())).context("per-NAPI polls")?;
    let (file, napi, cpu, place) = (
        u64s(&df, "file")?,
        u64s(&df, "napi")?,
        u64s(&df, "cpu")?,
        u64s(&df, "place")?,
    );
    let (n, packets, exh) = (
        u64s(&df, "polls")?,
        opt_i64s(&df, "packets")?,
        u64s(&df, "exhausted")?,
    );
    let (dev, task) = (strings(&df, "dev")?, strings(&df, "task")?);
    let (napi_id, irq) = (opt_i64s(&df, "napi_id")?, opt_i64s(&df, "irq")?);
    // One instance is one (file, napi): its device, napi id and CPUs, from all its groups.
    type Instance = (String, Option<u32>, BTreeSet<u32>);
    let mut instances: BTreeMap<(u64, u64), Instance> = BTreeMap::new();
    for i in 0..df.height() {
        let e = instances
            .entry((file[i], napi[i]))
            .or_insert_with(|| (dev[i].clone(), None, BTreeSet::new()));
        e.1 = e.1.max(napi_id[i].map(|v| v as u32));
        e.2.insert(cpu[i] as u32);
    }
    // Its name (needing its CPU when it is a backlog) is its row's; one row per name.
    let mut rows: BTreeMap<String, NapiRow> = BTreeMap::new();
    let mut label_of: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (key, (d, id, cpus)) in &instances {
        let only_cpu = (cpus.len() == 1).then(|| *cpus.first().unwrap_or(&0));
        let label = napi_label(d, id.unwrap_or(0), only_cpu);
        let r = rows.entry(label.clone()).or_insert_with(|| NapiRow {
            napi: label.clone(),
            dev: d.clone(),
            ..NapiRow::default()
        });
        r.instances += 1;
        r.napi_id = r.napi_id.max(*id);
        label_of.insert(*key, label);
    }
    for i in 0..df.height() {
        let Some(r) = rows.get_mut(&label_of[&(file[i], napi[i])]) else {
            continue;
        };
        if !r.cpus.contains(&(cpu[i] as u32)) {
            r.cpus.push(cpu[i] as u32);
            r.cpus.sort_unstable();
        }
        r.irq = r.irq.max(irq[i].filter(|v| *v > 0).map(|v| v as i32));
        let p = (place[i] as usize).min(PLACES.len() - 1);
        let work = packets[i].unwrap_or(0).max(0) as u64;
        r.polls += n[i];
        r.packets += work;
        r.budget_exhausted += exh[i];
        r.polls_where[p] += n[i];
        r.packets_where[p] += work;
        if !task[i].is_empty() {
            *r.tasks.entry(task[i].clone()).or_default() += n[i];
        }
    }
    let mut out: Vec<NapiRow> = rows.into_values().collect();
    for r in &mut out {
        r.mean_batch = (r.polls > 0).then(|| r.packets as f64 / r.polls as f64);
    }
    out.sort_by_key(|r| {
        (
            r.is_backlog(),
            std::cmp::Reverse(if r.is_backlog() { 0 } else { r.polls }),
            r.cpus.first().copied(),
            r.napi.clone(),
        )
    });
    Ok(out)
}
