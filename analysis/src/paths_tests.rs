//! `paths`' tests: pairing, classification, RPS hops.

use super::*;

// The column path (`summary_of_cols`) is tested where the columns implement
// `StepRows`: check/tally.rs.

fn ev(ts: u64, cpu: u32, kind: EventKind, f: impl FnOnce(&mut Event)) -> Event {
    let mut e = Event::new(ts, cpu, ts, kind);
    f(&mut e);
    e
}

/// The canonical remote sequence of model.md §5.2.
fn remote_hop() -> Vec<Event> {
    use EventKind::*;
    vec![
        ev(10, 0, NetifRx, |e| e.skb = Some(77)),
        ev(11, 0, SoftirqRaise, |e| e.vec = Some(3)),
        ev(12, 0, SoftirqEntry, |e| e.vec = Some(3)),
        ev(13, 0, CsdQueueCpu, |e| {
            e.target_cpu = Some(1);
            e.func = Some(RPS_IPI_FUNC.into());
        }),
        ev(20, 1, CsdFunctionEntry, |e| {
            e.func = Some(RPS_IPI_FUNC.into());
            e.ctx = Ctx::Hardirq;
        }),
        ev(21, 1, SoftirqEntry, |e| e.vec = Some(3)),
        ev(22, 1, NetifReceiveSkb, |e| {
            e.skb = Some(77);
            e.ctx = Ctx::Softirq;
            e.comm = "swapper/1".into();
        }),
        ev(23, 1, NapiPoll, |e| {
            e.dev = Some("(no_device)".into());
            e.work = Some(1);
            e.budget = Some(64);
            e.ctx = Ctx::Softirq;
        }),
    ]
}

#[test]
fn finds_the_complete_hop() {
    let hops = rps_hops(&remote_hop());
    assert_eq!(hops.len(), 1);
    let h = &hops[0];
    assert_eq!(
        (h.from_cpu, h.to_cpu, h.csd_queue, h.csd_entry),
        (0, 1, 13, 20)
    );
    assert_eq!((h.softirq_entry, h.receive, h.backlog_poll), (21, 22, 23));
    let d = deliveries(&remote_hop());
    assert_eq!(d[0].path, Path::RemoteSoftirq);
}

#[test]
fn a_missing_leg_breaks_the_hop() {
    for drop_kind in [
        EventKind::CsdQueueCpu,
        EventKind::CsdFunctionEntry,
        EventKind::SoftirqEntry,
        EventKind::NapiPoll,
    ] {
        let t: Vec<Event> = remote_hop()
            .into_iter()
            // CPU 0 has its own softirq_entry; the legs under test are the others.
            .filter(|e| e.event != drop_kind || (e.cpu == 0 && drop_kind != EventKind::CsdQueueCpu))
            .collect();
        assert!(rps_hops(&t).is_empty(), "hop found without {drop_kind:?}");
    }
}

#[test]
fn classification() {
    assert_eq!(classify(1, 1, Ctx::Softirq, "python3"), Path::LocalSoftirq);
    assert_eq!(
        classify(0, 1, Ctx::Task, "backlog_napi/1"),
        Path::BacklogThread
    );
    // A softirq run at the backlog thread's BH enable is still a softirq (model.md C-4).
    assert_eq!(
        classify(1, 1, Ctx::Softirq, "backlog_napi/1"),
        Path::LocalSoftirq
    );
    assert_eq!(classify(0, 1, Ctx::Softirq, "ksoftirqd/1"), Path::Ksoftirqd);
}

#[test]
fn skb_reuse_outside_the_window_is_not_paired() {
    let t = vec![
        ev(0, 0, EventKind::NetifRx, |e| e.skb = Some(5)),
        ev(MATCH_WINDOW_NS + 10, 0, EventKind::NetifReceiveSkb, |e| {
            e.skb = Some(5)
        }),
    ];
    assert!(deliveries(&t).is_empty());
}

/// A device poll on CPU 0 hands skb 9 to the stack (GRO entry); RPS steers it to CPU 1,
/// whose NET_RX softirq delivers it: the delivery pairs with the device-side entry.
#[test]
fn a_device_entry_initiates_a_remote_delivery() {
    let t = vec![
        ev(10, 0, EventKind::NapiGroReceiveEntry, |e| e.skb = Some(9)),
        ev(15, 0, EventKind::NapiPoll, |e| e.dev = Some("veth1".into())),
        ev(30, 1, EventKind::NetifReceiveSkb, |e| {
            e.skb = Some(9);
            e.ctx = Ctx::Softirq;
            e.comm = "swapper/1".into();
        }),
    ];
    let d = deliveries(&t);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].via, d[0].enqueue_cpu, d[0].cpu), (Via::Device, 0, 1));
    assert_eq!((d[0].enqueue_ts, d[0].ts), (10, 30));
    assert_eq!(d[0].path, Path::RemoteSoftirq);
    assert_eq!(path_counts(&d).get("device_remote_softirq"), Some(&1));
}

/// On the device's own CPU a delivery is a backlog hop only if a NAPI poll ended in
/// between (RPS chose this CPU: its backlog is polled after the device's poll); without one
/// __netif_receive_skb ran in place, inside the poll, and nothing is paired.
#[test]
fn a_device_entry_on_the_same_cpu_pairs_only_across_a_poll() {
    let entry = |ts| ev(ts, 0, EventKind::NetifReceiveSkbEntry, |e| e.skb = Some(4));
    let rcv = |ts| {
        ev(ts, 0, EventKind::NetifReceiveSkb, |e| {
            e.skb = Some(4);
            e.ctx = Ctx::Softirq;
        })
    };
    let poll = |ts| ev(ts, 0, EventKind::NapiPoll, |e| e.dev = Some("eth0".into()));
    assert!(deliveries(&[entry(10), rcv(11), poll(12)]).is_empty());
    // The in-place delivery used its entry up: a later receive of the address pairs with
    // nothing.
    assert!(deliveries(&[entry(10), rcv(11), poll(12), rcv(13)]).is_empty());
    let d = deliveries(&[entry(10), poll(12), rcv(13)]);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].via, d[0].path), (Via::Device, Path::LocalSoftirq));
}
