use std::path::{Path, PathBuf};

use super::*;
use crate::{
    mode::Mode,
    model::sim::{simulate, SimOpts, Workload},
    paths,
    trace::write_trace,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("napiscope-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sim(mode: Mode, ncpu: usize, w: Workload, packets: usize, seed: u64, out: &Path) -> Vec<Event> {
    let mut o = SimOpts::new(mode, ncpu, w);
    o.packets = packets;
    o.seed = seed;
    let s = simulate(&o);
    write_trace(out, &s.events, &s.meta).unwrap();
    s.events
}

use crate::Event;

/// The polars pairing and `paths::deliveries` find the same packets on the same paths, and
/// with the same initiator: `device` turns every netif_rx into a device-side entry, so a
/// local one pairs only across a napi_poll of its CPU (`paths::pairs`).
#[test]
fn polars_pairing_agrees_with_paths_deliveries() {
    let d = tmpdir("agree");
    for (mode, w, seed, device) in [
        (Mode::C, Workload::Mixed, 3, false),
        (Mode::B, Workload::Mixed, 4, false),
        (Mode::B, Workload::Rps, 5, false),
        (Mode::B, Workload::Mixed, 6, true),
        (Mode::C, Workload::Mixed, 7, true),
    ] {
        let f = d.join("t.parquet");
        let mut events = sim(mode, 3, w, 800, seed, &f);
        if device {
            as_device_entries(&mut events);
            write_trace(&f, &events, &crate::TraceMeta::default()).unwrap();
        }
        let rec = input::resolve(std::slice::from_ref(&f)).unwrap();
        let lf = query::scan(&[(0, &rec[0])]).unwrap();
        let df = query::collect(query::deliveries(lf)).unwrap();
        let col = |n: &str| summary::u64s(&df, n).unwrap();
        let (cpu, enq, ts, lat, path, via) = (
            col("cpu"),
            col("enqueue_cpu"),
            col("ts_ns"),
            col("latency_ns"),
            col("path"),
            col("via"),
        );
        let mut ours: Vec<Pairing> = (0..df.height())
            .map(|i| {
                let p = query::PATH_NAMES[path[i] as usize];
                (ts[i], cpu[i], enq[i], lat[i], p, via[i] == 1)
            })
            .collect();
        let mut reference: Vec<Pairing> = paths::deliveries(&events)
            .iter()
            .map(|d| {
                let lat = d.ts - d.enqueue_ts;
                let dev = d.via == paths::Via::Device;
                (
                    d.ts,
                    d.cpu as u64,
                    d.enqueue_cpu as u64,
                    lat,
                    d.path.name(),
                    dev,
                )
            })
            .collect();
        ours.sort();
        reference.sort();
        assert!(reference.len() > 300, "{mode:?}: {}", reference.len());
        assert_eq!(ours, reference, "{mode:?} {w:?} device {device}");
        if device {
            let local = reference.iter().filter(|r| r.1 == r.2).count();
            assert!(local > 0 && reference.iter().all(|r| r.5), "{local}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// (ts, cpu, enqueue cpu, latency, path, from a device's poll)
type Pairing = (u64, u64, u64, u64, &'static str, bool);

/// Every netif_rx of `events` as one of the device-side entries, in turn; after every
/// other one its device's poll ends (a napi_poll on its CPU 1 ns later).
fn as_device_entries(events: &mut Vec<Event>) {
    let kinds = [
        EventKind::NapiGroReceiveEntry,
        EventKind::NetifReceiveSkbEntry,
        EventKind::NetifReceiveSkbListEntry,
    ];
    let mut polls = Vec::new();
    let rx = events.iter_mut().filter(|e| e.event == EventKind::NetifRx);
    for (i, e) in rx.enumerate() {
        e.event = kinds[i % 3];
        if i % 2 == 0 {
            let mut p = Event::new(e.ts_ns + 1, e.cpu, e.seq, EventKind::NapiPoll);
            (p.dev, p.work, p.budget) = (Some("eth0".into()), Some(1), Some(64));
            polls.push(p);
        }
    }
    events.extend(polls);
    events.sort_by_key(|e| (e.ts_ns, e.cpu, e.seq));
}

#[test]
fn skb_hashes_are_paired_only_within_one_file() {
    // The same skb value in two recordings must never pair across them.
    let d = tmpdir("perfile");
    let mut a = Event::new(1_000, 0, 0, EventKind::NetifRx);
    a.skb = Some(42);
    let mut b = Event::new(2_000, 1, 0, EventKind::NetifReceiveSkb);
    b.skb = Some(42);
    b.ctx = crate::Ctx::Softirq;
    let meta = crate::TraceMeta::default();
    write_trace(&d.join("a.parquet"), &[a.clone()], &meta).unwrap();
    write_trace(&d.join("b.parquet"), &[b.clone()], &meta).unwrap();
    let r = build(std::slice::from_ref(&d)).unwrap();
    assert_eq!(r.summary.totals.delivered, 0);
    write_trace(&d.join("a.parquet"), &[a, b], &meta).unwrap();
    let r = build(std::slice::from_ref(&d)).unwrap();
    assert_eq!(r.summary.totals.delivered, 1);
    assert_eq!(r.summary.totals.deliveries.remote_softirq, 1);
    let _ = std::fs::remove_dir_all(&d);
}

use crate::EventKind;

#[test]
fn mode_c_rps_is_processed_by_the_backlog_thread_without_ipis() {
    let d = tmpdir("modec");
    let f = d.join("c.parquet");
    let events = sim(Mode::C, 2, Workload::Rps, 1000, 1, &f);
    let r = build(std::slice::from_ref(&f)).unwrap();
    let s = &r.summary;
    let cpu1 = s.cpus.iter().find(|c| c.cpu == 1).unwrap();
    assert!(
        cpu1.deliveries.backlog_thread * 10 >= cpu1.delivered * 9,
        "{cpu1:?}"
    );
    assert!(cpu1.backlog_thread_wakeups > 0, "{cpu1:?}");
    assert_eq!(s.totals.ipis_per_packet, Some(0.0));
    assert_eq!(s.totals.rps_ipis_sent, 0);
    // Totals agree with a direct count over the events.
    let polls = events
        .iter()
        .filter(|e| e.event == EventKind::NapiPoll)
        .count() as u64;
    assert_eq!(s.totals.napi_polls, polls);
    assert_eq!(s.totals.events, events.len() as u64);
    let work: u64 = events
        .iter()
        .filter(|e| e.event == EventKind::NapiPoll)
        .map(|e| e.work.unwrap_or(0) as u64)
        .sum();
    assert_eq!(s.totals.napi_packets, work);
    let bt = &s.paths[3];
    assert_eq!(bt.path, "backlog_thread");
    let l = bt.latency_ns.as_ref().unwrap();
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{l:?}");
    let in_hist: u64 = bt.histogram.iter().map(|b| b.count).sum();
    assert_eq!(in_hist, bt.deliveries);
    for b in &bt.histogram {
        assert!(b.from_ns <= l.max && b.to_ns > b.from_ns);
    }
    let in_timeline: u64 = s.timeline.series.iter().flat_map(|x| x.counts.iter()).sum();
    assert_eq!(in_timeline, s.totals.delivered);
    // The text tables carry the JSON's numbers.
    let text = render::text(&r);
    assert!(text.contains(&format!("{}", cpu1.deliveries.backlog_thread)));
    assert!(text.contains("backlog_thread"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn mode_b_rps_goes_by_ipi_and_the_comparison_flags_it() {
    let d = tmpdir("modeb");
    let (fb, fc) = (d.join("b.parquet"), d.join("c.parquet"));
    sim(Mode::B, 2, Workload::Rps, 1000, 1, &fb);
    sim(Mode::C, 2, Workload::Rps, 1000, 1, &fc);
    let b = build(std::slice::from_ref(&fb)).unwrap();
    let cpu1 = b.summary.cpus.iter().find(|c| c.cpu == 1).unwrap();
    assert!(cpu1.deliveries.remote_softirq > 0 && cpu1.rps_ipis_received > 0);
    let cpu0 = b.summary.cpus.iter().find(|c| c.cpu == 0).unwrap();
    assert!(cpu0.rps_ipis_sent > 0);
    assert!(cpu1.softirq_time_ns > 0 && cpu1.softirq_runs > 0);
    let c = build(std::slice::from_ref(&fc)).unwrap();
    let cmp = compare::compare(c, b);
    let matters: Vec<&str> = cmp
        .deltas
        .iter()
        .filter(|d| d.matters)
        .map(|d| d.metric.as_str())
        .collect();
    assert!(matters.contains(&"backlog_thread share %"), "{matters:?}");
    assert!(matters.contains(&"remote_softirq share %"), "{matters:?}");
    assert!(matters.contains(&"RPS IPIs per packet"), "{matters:?}");
    assert!(!matters.contains(&"lost events"), "{matters:?}");
    // Mode C runs no NET_RX softirq for RPS traffic: from some cost to none matters.
    assert!(
        matters.contains(&"NET_RX softirq ns per packet"),
        "{matters:?}"
    );
    let text = compare::text(&cmp, false);
    assert!(text.contains("backlog_thread share %") && text.contains('!'));
    assert!(!text.contains("\x1b["));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_hive_directory_is_reported_per_partition() {
    let d = tmpdir("hive");
    for (host, mode) in [("a", Mode::B), ("b", Mode::C)] {
        let p = d.join(format!("host={host}/kernel=6.18"));
        std::fs::create_dir_all(&p).unwrap();
        sim(mode, 2, Workload::Rps, 300, 2, &p.join("1.parquet"));
    }
    std::fs::write(d.join("README.txt"), "not a trace").unwrap();
    let r = build(std::slice::from_ref(&d)).unwrap();
    assert_eq!(r.recordings.len(), 2);
    assert_eq!(r.partitions.len(), 2);
    assert_eq!(r.partitions[0].partition, "host=a/kernel=6.18");
    let a = &r.partitions[0].summary.totals;
    let b = &r.partitions[1].summary.totals;
    assert!(a.deliveries.remote_softirq > 0 && a.deliveries.backlog_thread == 0);
    assert!(b.deliveries.backlog_thread > 0 && b.rps_ipis_sent == 0);
    assert_eq!(r.summary.totals.delivered, a.delivered + b.delivered);
    assert_eq!(r.summary.totals.events, a.events + b.events);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn plots_are_svg_files_with_content() {
    let d = tmpdir("plot");
    let f = d.join("m.parquet");
    sim(Mode::B, 2, Workload::Mixed, 500, 7, &f);
    let r = build(std::slice::from_ref(&f)).unwrap();
    let files = plot::write(&r.summary, &d.join("plots")).unwrap();
    assert!(files
        .iter()
        .any(|f| f.ends_with("latency-remote_softirq.svg")));
    assert!(files.iter().any(|f| f.ends_with("timeline-cpu1.svg")));
    for f in files {
        let s = std::fs::read_to_string(&f).unwrap();
        assert!(s.contains("<svg") && s.len() > 1000, "{}", f.display());
        assert!(s.contains("<rect") || s.contains("<polyline"));
    }
    let _ = std::fs::remove_dir_all(&d);
}

fn input_error(paths: &[PathBuf]) -> String {
    let e = build(paths).unwrap_err();
    assert!(e.downcast_ref::<InputError>().is_some(), "{e:#}");
    format!("{e:#}")
}

#[test]
fn bad_input_is_an_input_error_naming_the_problem() {
    let d = tmpdir("bad");
    assert!(input_error(&[d.join("nope.parquet")]).contains("cannot open"));
    std::fs::write(d.join("junk.parquet"), b"PAR1 not really").unwrap();
    assert!(input_error(&[d.join("junk.parquet")]).contains("not a Parquet file"));
    std::fs::write(d.join("zero.parquet"), b"").unwrap();
    assert!(input_error(&[d.join("zero.parquet")]).contains("empty"));
    // Parquet, but another schema.
    let other = d.join("other.parquet");
    {
        use arrow::{array::UInt64Array, datatypes::*};
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new(
            "ts_ns",
            DataType::UInt64,
            false,
        )]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(UInt64Array::from(vec![1u64]))],
        )
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&other).unwrap(),
            schema,
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let e = input_error(std::slice::from_ref(&other));
    assert!(
        e.contains("not a napiscope trace: ") && e.contains("missing column `cpu`"),
        "{e}"
    );
    // A valid trace with no rows.
    let empty = d.join("empty.parquet");
    write_trace(&empty, &[], &crate::TraceMeta::default()).unwrap();
    let e = input_error(std::slice::from_ref(&empty));
    assert!(e.contains("empty recording") && e.contains("0 rows"), "{e}");
    let sub = d.join("nothing-here");
    std::fs::create_dir_all(&sub).unwrap();
    assert!(input_error(&[sub]).contains("no .parquet files"));
    let _ = std::fs::remove_dir_all(&d);
}
