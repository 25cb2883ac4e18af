//! Each advice rule fires on numbers that show its condition and stays quiet on numbers that
//! do not; and `report` gives advice on a recording that needs it.

use super::{
    advice::{advise, rule_ids, Facts},
    summary::{CpuRow, Summary},
    *,
};
use crate::{
    kcounters::{CpuCounters, Snapshot, Snapshots, META_KEY},
    mode::Mode,
    model::sim::{simulate, SimOpts, Workload},
    trace::write_trace,
};

fn ids(s: &Summary, f: &Facts) -> Vec<&'static str> {
    advise(s, f).iter().map(|a| a.id).collect()
}

fn softnet(cpu: u32, dropped: u64, squeeze: u64, flow: u64) -> Facts {
    let mut f = Facts::default();
    f.softnet.insert(cpu, [dropped, squeeze, flow]);
    f.softnet.insert(cpu + 1, [0, 0, 0]);
    f.net_core
        .insert("netdev_max_backlog".into(), "1000".into());
    f
}

#[test]
fn quiet_numbers_give_no_advice() {
    let mut s = Summary::default();
    s.totals.delivered = 10_000;
    s.totals.deliveries.remote_softirq = 10_000;
    assert_eq!(ids(&s, &softnet(0, 0, 0, 0)), Vec::<&str>::new());
    assert_eq!(ids(&s, &Facts::default()), Vec::<&str>::new());
}

#[test]
fn softnet_growth_advises_its_setting_with_the_numbers() {
    let s = Summary::default();
    let a = advise(&s, &softnet(1, 42, 0, 0));
    assert_eq!(
        a.iter().map(|a| a.id).collect::<Vec<_>>(),
        ["backlog-drops"]
    );
    assert!(
        a[0].evidence.contains("42") && a[0].evidence.contains("cpu1 +42"),
        "{a:?}"
    );
    assert!(
        a[0].try_this
            .contains("net.core.netdev_max_backlog (recorded: 1000)"),
        "{a:?}"
    );
    assert_eq!(ids(&s, &softnet(0, 0, 7, 0)), ["time-squeeze"]);
    assert_eq!(ids(&s, &softnet(0, 0, 0, 3)), ["flow-limit"]);
    assert_eq!(
        ids(&s, &softnet(0, 1, 1, 1)),
        ["backlog-drops", "time-squeeze", "flow-limit"]
    );
}

#[test]
fn ksoftirqd_takeover_needs_a_share_and_a_count() {
    let mut s = Summary::default();
    (s.totals.delivered, s.totals.deliveries.ksoftirqd) = (1000, 100);
    assert_eq!(ids(&s, &Facts::default()), ["ksoftirqd"]);
    s.totals.deliveries.ksoftirqd = 40; // 4%, and under 50
    assert!(ids(&s, &Facts::default()).is_empty());
    (s.totals.delivered, s.totals.deliveries.ksoftirqd) = (100, 49); // half, but few
    assert!(ids(&s, &Facts::default()).is_empty());
}

fn cpu(n: u32, remote: u64, thread: u64) -> CpuRow {
    let mut c = CpuRow {
        cpu: n,
        ..CpuRow::default()
    };
    (c.deliveries.remote_softirq, c.deliveries.backlog_thread) = (remote, thread);
    c
}

#[test]
fn rps_imbalance_needs_two_targets_one_twice_the_other() {
    let mut s = Summary {
        cpus: vec![cpu(0, 0, 0), cpu(1, 900, 0), cpu(2, 100, 0)],
        ..Summary::default()
    };
    let a = advise(&s, &Facts::default());
    assert_eq!(
        a.iter().map(|a| a.id).collect::<Vec<_>>(),
        ["rps-unbalanced"]
    );
    assert!(
        a[0].evidence.contains("cpu1 gets 9.0× what cpu2 gets"),
        "{a:?}"
    );
    s.cpus = vec![cpu(1, 500, 0), cpu(2, 0, 400)]; // within 2×, mode C's threads count too
    assert!(ids(&s, &Facts::default()).is_empty());
    s.cpus = vec![cpu(0, 0, 0), cpu(1, 5000, 0)]; // one target: nothing to balance
    assert!(ids(&s, &Facts::default()).is_empty());
}

#[test]
fn ipi_cost_is_advised_in_modes_a_and_b_only() {
    let mut s = Summary::default();
    (s.totals.rps_ipis_sent, s.totals.ipis_per_packet) = (700, Some(0.7));
    let facts = |m: &str| Facts {
        modes: vec![m.to_string()],
        ..Facts::default()
    };
    let a = advise(&s, &facts("B"));
    assert_eq!(a.iter().map(|a| a.id).collect::<Vec<_>>(), ["ipi-cost"]);
    assert!(a[0].try_this.contains("thread_backlog_napi"), "{a:?}");
    assert!(advise(&s, &facts("A"))[0].try_this.contains("6.10+"));
    assert!(ids(&s, &facts("C")).is_empty());
    s.totals.ipis_per_packet = Some(0.1);
    assert!(ids(&s, &facts("B")).is_empty());
}

fn counters(cpu: u32, dropped: u32) -> CpuCounters {
    CpuCounters {
        cpu,
        processed: 0,
        dropped,
        time_squeeze: 0,
        received_rps: 0,
        flow_limit: 0,
        net_rx: Some(0),
    }
}

/// Through `report`: a mode-B RPS recording gets the IPI advice; with the kernel's counters
/// in its metadata showing drops on CPU 1 (across a u32 wrap) also the drop advice; a
/// loopback one gets none.
#[test]
fn report_advises_on_a_recording_that_needs_it() {
    let d = std::env::temp_dir().join(format!("napiscope-advice-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let run = |mode, w, meta: &crate::TraceMeta, name: &str| {
        let mut o = SimOpts::new(mode, 2, w);
        o.packets = 600;
        let sim = simulate(&o);
        let mut m = sim.meta.clone();
        m.0.extend(meta.0.clone());
        let f = d.join(name);
        write_trace(&f, &sim.events, &m).unwrap();
        build(std::slice::from_ref(&f)).unwrap()
    };
    let quiet = crate::TraceMeta::default();
    let r = run(Mode::B, Workload::Rps, &quiet, "rps.parquet");
    let got: Vec<&str> = r.summary.advice.iter().map(|a| a.id).collect();
    assert_eq!(got, ["ipi-cost"], "{:#?}", r.summary.totals);
    let mut meta = crate::TraceMeta::default();
    let snaps = Snapshots {
        start: Snapshot {
            ts_lo: 0,
            ts_hi: 1,
            cpus: vec![counters(0, 5), counters(1, u32::MAX - 1)],
        },
        end: Snapshot {
            ts_lo: 2,
            ts_hi: 3,
            cpus: vec![counters(0, 5), counters(1, 3)],
        },
        cpus: None,
        recorded: Vec::new(),
    };
    meta.set(META_KEY, serde_json::to_string(&snaps).unwrap());
    let r = run(Mode::B, Workload::Rps, &meta, "drops.parquet");
    let drops = (r.summary.advice.iter()).find(|a| a.id == "backlog-drops");
    assert!(
        drops.is_some_and(|a| a.evidence.contains("cpu1 +5") && !a.evidence.contains("cpu0")),
        "{:#?}",
        r.summary.advice
    );
    assert!(render::text(&r).contains("[backlog-drops]"));
    let r = run(Mode::B, Workload::Loopback, &quiet, "lo.parquet");
    assert!(r.summary.advice.is_empty(), "{:#?}", r.summary.advice);
    assert!(render::text(&r).contains("Advice: none"));
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(rule_ids().len(), 6);
}
