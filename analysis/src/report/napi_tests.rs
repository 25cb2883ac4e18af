//! The per-NAPI rows and the device-initiated path rows of `report`.

use super::{napi::PLACES, *};
use crate::{trace::write_trace, Ctx, Event, EventKind, TraceMeta};

fn poll(ts: u64, cpu: u32, napi: u64, dev: &str, ctx: Ctx, comm: &str, work: i32) -> Event {
    let mut e = Event::new(ts, cpu, ts, EventKind::NapiPoll);
    (e.ctx, e.comm, e.napi, e.dev) = (ctx, comm.into(), Some(napi), Some(dev.into()));
    (e.work, e.budget) = (Some(work), Some(64));
    e
}

fn report_of(name: &str, events: &[Event]) -> Report {
    report_with(name, events, &TraceMeta::default())
}

fn report_with(name: &str, events: &[Event], meta: &TraceMeta) -> Report {
    let d = std::env::temp_dir().join(format!("napiscope-napi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("t.parquet");
    write_trace(&f, events, meta).unwrap();
    let r = build(std::slice::from_ref(&f)).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    r
}

/// One veth instance polled in each place a device NAPI can be polled, and two backlogs.
#[test]
fn each_instance_is_one_row_with_its_polls_by_place() {
    use Ctx::{Softirq, Task};
    let veth = |ts, cpu, ctx, comm: &str, work| {
        let mut e = poll(ts, cpu, 0x10, "nsc1", ctx, comm, work);
        (e.napi_id, e.irq) = (Some(282), Some(-1));
        e
    };
    let bl = "(no_device)";
    let mut ev = vec![
        veth(1, 0, Softirq, "swapper/0", 2),
        veth(2, 0, Softirq, "napiscope", 2),
        veth(3, 0, Softirq, "swapper/0", 2),
        veth(4, 0, Softirq, "ksoftirqd/0", 64),
        veth(5, 1, Task, "napi/nsc1-282", 1),
        veth(6, 1, Task, "napi/nsc1-282", 1),
        veth(7, 1, Task, "napiscope-busy", 0),
        veth(8, 1, Task, "napiscope-busy", 3),
        poll(9, 0, 0x20, bl, Softirq, "swapper/0", 1),
        poll(10, 0, 0x20, bl, Softirq, "swapper/0", 1),
        poll(11, 1, 0x30, bl, Task, "backlog_napi/1", 4),
    ];
    ev.sort_by_key(|e| e.ts_ns);
    let r = report_of("places", &ev);
    let names: Vec<&str> = r.summary.napis.iter().map(|n| n.napi.as_str()).collect();
    assert_eq!(names, ["nsc1:282", "backlog/0", "backlog/1"]);
    let v = &r.summary.napis[0];
    assert_eq!((v.polls, v.packets, v.budget_exhausted), (8, 75, 1));
    assert_eq!(v.polls_where, [3, 1, 2, 0, 2, 0]);
    assert_eq!(v.packets_where, [6, 64, 2, 0, 3, 0]);
    assert_eq!((v.cpus.clone(), v.irq, v.instances), (vec![0, 1], None, 1));
    let tasks: Vec<(&str, u64)> = v.tasks.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(tasks, [("napi/nsc1-282", 2), ("napiscope-busy", 2)]);
    assert_eq!(v.mostly(), "net_rx");
    let b1 = &r.summary.napis[2];
    assert_eq!(
        (b1.polls_where[3], b1.packets, b1.cpus.clone()),
        (1, 4, vec![1])
    );
    // Every poll is in exactly one place.
    for n in &r.summary.napis {
        assert_eq!(n.polls_where.iter().sum::<u64>(), n.polls, "{}", n.napi);
    }
    let text = render::text(&r);
    assert!(text.contains("Per NAPI instance"), "{text}");
    for place in PLACES {
        assert!(text.contains(place), "{place} column missing:\n{text}");
    }
    assert!(text.contains("napiscope-busy (2)"), "{text}");
}

/// The same queue in two recordings is one row of two instances; a device without napi ids
/// (a schema-1 file) is named by its device alone.
#[test]
fn recordings_of_one_queue_merge_and_old_files_name_the_device() {
    let mut a = poll(1, 0, 0x10, "eth1", Ctx::Softirq, "swapper/0", 5);
    a.napi_id = Some(8194);
    a.irq = Some(28);
    let mut b = a.clone();
    (b.ts_ns, b.napi) = (2, Some(0x99));
    let r = report_of("merge", &[a, b]);
    let n = &r.summary.napis;
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(
        (n[0].napi.as_str(), n[0].instances, n[0].irq),
        ("eth1:8194", 2, Some(28))
    );
    let old = poll(1, 0, 0x10, "eth1", Ctx::Softirq, "swapper/0", 5);
    let r = report_of("old", &[old]);
    assert_eq!(r.summary.napis[0].napi, "eth1");
    assert_eq!(r.summary.napis[0].napi_id, None);
}

/// What the kernel told of an instance (the recording's `napi_instances`) joins its row by
/// napi id: the IRQ the poll rows lacked, and its thread.
#[test]
fn the_kernels_description_of_an_instance_joins_its_row() {
    let mut p = poll(1, 0, 0x10, "eth1", Ctx::Softirq, "swapper/0", 5);
    p.napi_id = Some(8194);
    let k = |id, dev: &str| crate::trace::KernelNapi {
        napi_id: id,
        dev: Some(dev.into()),
        irq: Some(28),
        thread_pid: Some(555),
    };
    let mut meta = TraceMeta::default();
    let kernel = [k(8194, "eth1"), k(8195, "eth1"), k(8194, "other")];
    meta.set(
        crate::trace::NAPI_INSTANCES_KEY,
        serde_json::to_string(&kernel).unwrap(),
    );
    let r = report_with("join", &[p.clone()], &meta);
    let n = &r.summary.napis[0];
    assert_eq!((n.irq, n.thread_pid), (Some(28), Some(555)));
    // Another device's napi id 8194 (another namespace) is not this one.
    meta.set(
        crate::trace::NAPI_INSTANCES_KEY,
        serde_json::to_string(&kernel[2..]).unwrap(),
    );
    let r = report_with("join2", &[p], &meta);
    assert_eq!(r.summary.napis[0].thread_pid, None);
}

/// RPS from a device poll: the deliveries paired with a device-side entry are the
/// device_* rows, with the hop's latency, and add up to `device_initiated`.
#[test]
fn device_initiated_deliveries_have_their_own_path_rows() {
    let mut ev = Vec::new();
    for i in 0..20u64 {
        let t = 1000 + i * 100;
        let mut entry = Event::new(t, 0, 4 * i, EventKind::NapiGroReceiveEntry);
        (entry.skb, entry.ctx) = (Some(0x1000 + i), Ctx::Softirq);
        let mut p = poll(t + 5, 0, 0x10, "nsc1", Ctx::Softirq, "swapper/0", 1);
        p.seq = 4 * i + 1;
        let mut rx = Event::new(t + 40, 1, 4 * i + 2, EventKind::NetifReceiveSkb);
        (rx.skb, rx.ctx) = (Some(0x1000 + i), Ctx::Softirq);
        ev.extend([entry, p, rx]);
    }
    let r = report_of("device", &ev);
    let s = &r.summary;
    assert_eq!(s.totals.device_initiated, 20);
    let rows: Vec<(&str, u64)> = (s.device_paths.iter())
        .map(|p| (p.path, p.deliveries))
        .collect();
    assert_eq!(rows, [("device_remote_softirq", 20)]);
    assert_eq!(
        s.device_paths[0].latency_ns.as_ref().map(|l| l.p50),
        Some(40)
    );
    // They are a part of the plain rows, not more deliveries.
    let remote = s.paths.iter().find(|p| p.path == "remote_softirq").unwrap();
    assert_eq!(remote.deliveries, 20);
    assert!(render::text(&r).contains("device_remote_softirq"));
}
