//! The polars side of `report`: lazy scans of the input files and the queries over them.
//! Every query ends in a small aggregate; only the per-packet deliveries (a few narrow
//! columns, far fewer rows than events) are ever held in memory.

use polars::prelude::*;

use super::input::Recording;
use crate::{event::RPS_IPI_FUNC, paths::MATCH_WINDOW_NS};
use probe_common::NET_RX_SOFTIRQ;

/// Path codes in the `path` column, in the order of `paths::Path`.
pub const PATH_NAMES: [&str; 4] = [
    "local_softirq",
    "remote_softirq",
    "ksoftirqd",
    "backlog_thread",
];
/// log2 latency buckets: bucket b holds 2^b ≤ latency < 2^(b+1) ns (bucket 0 also holds 0).
pub const MAX_BUCKET: u32 = 40;

/// Collect with polars' streaming engine: the scans are read in morsels, not whole.
pub fn collect(lf: LazyFrame) -> PolarsResult<DataFrame> {
    Ok(lf.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

/// All events of `recs`, with a `file` column (the recording's index): skb/csd/napi hashes
/// are keyed per recording, so packets are only ever paired inside one file.
pub fn scan(recs: &[(usize, &Recording)]) -> PolarsResult<LazyFrame> {
    let mut frames = Vec::with_capacity(recs.len());
    for (i, r) in recs {
        // Partitions come from our own reading of the path (`input::hive_partition`).
        let args = ScanArgsParquet {
            glob: false,
            hive_options: HiveOptions::new_disabled(),
            ..Default::default()
        };
        let mut lf = LazyFrame::scan_parquet(PlRefPath::new(r.path.as_str()), args)?;
        // An older schema's file: the columns it lacks (the schema's last ones) as nulls,
        // so every frame has the same columns in the same order.
        for name in &r.absent {
            let t = crate::trace::schema()
                .field_with_name(name)
                .map(|f| f.data_type().clone());
            let t = match t {
                Ok(arrow::datatypes::DataType::UInt32) => DataType::UInt32,
                Ok(arrow::datatypes::DataType::UInt64) => DataType::UInt64,
                Ok(arrow::datatypes::DataType::Int32) => DataType::Int32,
                _ => DataType::String,
            };
            lf = lf.with_column(lit(NULL).cast(t).alias(name.as_str()));
        }
        let lf = lf.with_column(lit(*i as u32).alias("file"));
        frames.push(lf);
    }
    concat(
        frames,
        UnionArgs {
            rechunk: false,
            parallel: true,
            ..Default::default()
        },
    )
}

fn ev(name: &str) -> Expr {
    col("event").eq(lit(name))
}

fn count_if(cond: Expr, name: &str) -> Expr {
    cond.cast(DataType::UInt64).sum().alias(name)
}

fn prev(name: &str) -> Expr {
    col(name).shift(lit(1)).alias(format!("prev_{name}"))
}

/// `c` starts with `prefix` (which ends in '/'): the byte range [prefix, prefix with '/'
/// replaced by '0'), as comparisons need no string kernels.
fn starts_with_slash(c: &str, prefix: &str) -> Expr {
    let end = format!("{}0", prefix.trim_end_matches('/'));
    col(c).gt_eq(lit(prefix)).and(col(c).lt(lit(end.as_str())))
}

/// The device-side receive entries (`EventKind::is_device_rx`).
fn device_rx() -> Expr {
    ev("netif_receive_skb_entry")
        .or(ev("napi_gro_receive_entry"))
        .or(ev("netif_receive_skb_list_entry"))
}

fn is_rps(func: Expr) -> Expr {
    func.eq(lit(RPS_IPI_FUNC))
}

/// Packet deliveries, the same pairing as `paths::deliveries`: each netif_receive_skb is
/// paired with the latest earlier initiator (netif_rx, or a device-side entry) of the same
/// skb in the same file, if that initiator was not already consumed by an earlier receive,
/// lies within `MATCH_WINDOW_NS` and, for a device-side entry, `paths::pairs` holds (another
/// CPU, or a napi_poll on this CPU in between: `last_poll`, the CPU's latest napi_poll so far,
/// forward-filled in per-CPU time order).
/// Sorting by (file, skb, ts, cpu, seq) puts each skb's events in the global order the
/// reference uses; the pairing is then a comparison with the previous row.
/// Columns: file, cpu, enqueue_cpu, ts_ns, latency_ns, path (u8 code, see `PATH_NAMES`),
/// via (u8: 0 netif_rx, 1 a device's poll).
pub fn deliveries(events: LazyFrame) -> LazyFrame {
    let rx = ev("netif_rx");
    let dev = device_rx();
    let recv = ev("netif_receive_skb");
    let poll = ev("napi_poll");
    let thread =
        when(starts_with_slash("comm", "backlog_napi/").and(col("ctx").neq(lit("softirq"))))
            .then(lit(3u8))
            .when(starts_with_slash("comm", "ksoftirqd/"))
            .then(lit(2u8))
            .otherwise(lit(255u8));
    let steered = col("prev_is_dev")
        .not()
        .or(col("prev_cpu").neq(col("cpu")))
        .or(col("last_poll").gt(col("prev_ts_ns")));
    let rows = events
        .filter(
            rx.clone()
                .or(dev.clone())
                .or(recv)
                .and(col("skb").is_not_null())
                .or(poll.clone()),
        )
        .select([
            col("file"),
            col("skb"),
            col("ts_ns"),
            col("cpu"),
            col("seq"),
            rx.or(dev.clone()).alias("is_rx"),
            dev.alias("is_dev"),
            poll.alias("is_poll"),
            thread.alias("thread"),
        ]);
    with_last_poll(rows)
        .sort_by_exprs(
            [
                col("file"),
                col("skb"),
                col("ts_ns"),
                col("cpu"),
                col("seq"),
            ],
            SortMultipleOptions::default(),
        )
        .with_columns([
            prev("file"),
            prev("skb"),
            prev("ts_ns"),
            prev("cpu"),
            prev("is_rx"),
            prev("is_dev"),
        ])
        .filter(
            col("is_rx")
                .not()
                .and(col("prev_is_rx"))
                .and(col("prev_file").eq(col("file")))
                .and(col("prev_skb").eq(col("skb")))
                .and((col("ts_ns") - col("prev_ts_ns")).lt_eq(lit(MATCH_WINDOW_NS)))
                .and(steered),
        )
        .select([
            col("file"),
            col("cpu"),
            col("prev_cpu").alias("enqueue_cpu"),
            col("ts_ns"),
            (col("ts_ns") - col("prev_ts_ns")).alias("latency_ns"),
            when(col("thread").neq(lit(255u8)))
                .then(col("thread"))
                .when(col("prev_cpu").neq(col("cpu")))
                .then(lit(1u8))
                .otherwise(lit(0u8))
                .alias("path"),
            when(col("prev_is_dev"))
                .then(lit(1u8))
                .otherwise(lit(0u8))
                .alias("via"),
        ])
}

/// The rows of `deliveries` (polls among them, `is_poll`) without the polls, each with
/// `last_poll`: the time of its CPU's latest napi_poll so far (0: none), forward-filled over
/// each CPU's rows in time order. (file, cpu) is one u64 key, filled with the time: polars
/// fills no narrower integers.
fn with_last_poll(rows: LazyFrame) -> LazyFrame {
    let key =
        || col("file").cast(DataType::UInt64) * lit(1u64 << 32) + col("cpu").cast(DataType::UInt64);
    let at_poll = |e: Expr, name: &str| {
        when(col("is_poll"))
            .then(e)
            .otherwise(lit(Null {}).cast(DataType::UInt64))
            .fill_null_with_strategy(FillNullStrategy::Forward(None))
            .alias(name)
    };
    rows.sort_by_exprs(
        [col("file"), col("cpu"), col("ts_ns"), col("seq")],
        SortMultipleOptions::default(),
    )
    .with_columns([
        at_poll(key(), "poll_key"),
        at_poll(col("ts_ns").cast(DataType::UInt64), "poll_ts_ns"),
    ])
    .filter(col("is_poll").not())
    .with_column(
        when(col("poll_key").eq(key()))
            .then(col("poll_ts_ns"))
            .otherwise(lit(0u64))
            .alias("last_poll"),
    )
}

/// Per (file, CPU): event counts and everything the per-CPU table sums.
pub fn per_cpu(events: LazyFrame) -> LazyFrame {
    let net_rx = || col("vec").eq(lit(NET_RX_SOFTIRQ));
    let poll = || ev("napi_poll");
    events.group_by([col("file"), col("cpu")]).agg([
        len().cast(DataType::UInt64).alias("events"),
        col("seq").min().alias("seq_min"),
        col("seq").max().alias("seq_max"),
        col("ts_ns").min().alias("ts_min"),
        col("ts_ns").max().alias("ts_max"),
        count_if(ev("netif_rx"), "enqueued"),
        count_if(ev("softirq_raise").and(net_rx()), "net_rx_raises"),
        count_if(ev("softirq_entry").and(net_rx()), "net_rx_entries"),
        count_if(poll(), "napi_polls"),
        (poll().cast(DataType::Int64) * col("work").cast(DataType::Int64).fill_null(lit(0i64)))
            .sum()
            .alias("napi_packets"),
        count_if(
            poll().and(col("work").eq(col("budget"))),
            "budget_exhausted",
        ),
        count_if(
            poll().and(col("dev").eq(lit("(no_device)"))),
            "backlog_polls",
        ),
        count_if(
            ev("csd_queue_cpu").and(is_rps(col("func"))),
            "rps_ipis_sent",
        ),
        count_if(
            ev("csd_function_entry").and(is_rps(col("func"))),
            "rps_ipis_received",
        ),
        count_if(device_rx(), "device_entries"),
    ])
}

/// Wake-ups of the per-CPU receive threads, by the CPU the woken thread runs on.
pub fn wakeups(events: LazyFrame) -> LazyFrame {
    events
        .filter(ev("sched_waking").and(col("target_cpu").is_not_null()))
        .group_by([col("target_cpu")])
        .agg([
            count_if(
                starts_with_slash("target_comm", "ksoftirqd/"),
                "ksoftirqd_wakeups",
            ),
            count_if(
                starts_with_slash("target_comm", "backlog_napi/"),
                "backlog_wakeups",
            ),
        ])
}

/// Time in the NET_RX softirq per CPU: each softirq_exit paired with the softirq_entry just
/// before it on the same CPU of the same file.
pub fn softirq_time(events: LazyFrame) -> LazyFrame {
    let entry = ev("softirq_entry");
    events
        .filter(
            entry
                .clone()
                .or(ev("softirq_exit"))
                .and(col("vec").eq(lit(NET_RX_SOFTIRQ))),
        )
        .select([
            col("file"),
            col("cpu"),
            col("ts_ns"),
            col("seq"),
            entry.alias("is_entry"),
        ])
        .sort_by_exprs(
            [col("file"), col("cpu"), col("ts_ns"), col("seq")],
            SortMultipleOptions::default(),
        )
        .with_columns([prev("file"), prev("cpu"), prev("ts_ns"), prev("is_entry")])
        .filter(
            col("is_entry")
                .not()
                .and(col("prev_is_entry"))
                .and(col("prev_file").eq(col("file")))
                .and(col("prev_cpu").eq(col("cpu"))),
        )
        .group_by([col("cpu")])
        .agg([
            (col("ts_ns") - col("prev_ts_ns")).sum().alias("softirq_ns"),
            len().cast(DataType::UInt64).alias("softirq_runs"),
        ])
}

/// The log2 bucket of `latency_ns`, with integer comparisons only (no float rounding at
/// powers of two).
fn bucket() -> Expr {
    let mut e = lit(0u32);
    for k in 1..=MAX_BUCKET {
        e = e + col("latency_ns")
            .gt_eq(lit(1u64 << k))
            .cast(DataType::UInt32);
    }
    e.alias("bucket")
}

/// Per path: deliveries and latency percentiles (nearest rank, ceil(q·n)-th value: SQL's
/// `quantile_disc`).
pub fn latency(deliveries: LazyFrame) -> LazyFrame {
    let q = |p: f64, name: &str| {
        col("latency_ns")
            .quantile(lit(p), QuantileMethod::Equiprobable)
            .alias(name)
    };
    deliveries.group_by([col("path")]).agg([
        len().cast(DataType::UInt64).alias("n"),
        q(0.5, "p50"),
        q(0.9, "p90"),
        q(0.99, "p99"),
        col("latency_ns").max().alias("max"),
        col("latency_ns").mean().alias("mean"),
    ])
}

pub fn histogram(deliveries: LazyFrame) -> LazyFrame {
    deliveries
        .with_column(bucket())
        .group_by([col("path"), col("bucket")])
        .agg([len().cast(DataType::UInt64).alias("n")])
}

/// Deliveries per (cpu, path, bin), time measured from each file's first event.
pub fn timeline(deliveries: LazyFrame, starts: DataFrame, bin_ns: u64) -> LazyFrame {
    deliveries
        .join(
            starts.lazy(),
            [col("file")],
            [col("file")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(
            ((col("ts_ns") - col("t0")) / lit(bin_ns))
                .cast(DataType::UInt64)
                .alias("bin"),
        )
        .group_by([col("cpu"), col("path"), col("bin")])
        .agg([len().cast(DataType::UInt64).alias("n")])
}

/// Deliveries per (cpu, path).
pub fn paths_per_cpu(deliveries: LazyFrame) -> LazyFrame {
    deliveries.group_by([col("cpu"), col("path")]).agg([
        len().cast(DataType::UInt64).alias("n"),
        col("via").cast(DataType::UInt64).sum().alias("device"),
    ])
}
