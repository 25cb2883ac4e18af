use super::{
    layout::{CpuSlots, Groups},
    lost::lost_windows,
    *,
};
use crate::{
    event::Event,
    trace::{seqscan, TraceMeta},
};

#[test]
fn loss_windows_from_seq_gaps_in_and_out_of_time_order() {
    // (ts, cpu, seq): CPU 0 in order with a gap of 2; CPU 1 starts at seq 3, then its
    // seq goes back to 2 (the single pass hands it to the sort by seq).
    let rows = [
        (10, 0, 0),
        (15, 1, 3),
        (20, 0, 1),
        (25, 1, 2),
        (30, 0, 4),
        (40, 0, 5),
    ];
    let events: Vec<Event> = rows
        .iter()
        .map(|&(ts, cpu, seq)| Event::new(ts, cpu, seq, EventKind::NetifRx))
        .collect();
    let c = Cols::from_events(&events);
    let mut meta = TraceMeta::default();
    meta.set("lost_per_cpu", "[0,5]");
    let facts = seqscan::scan(&c.ts, &c.cpu, &c.seq);
    let w = lost_windows(&c, facts, &meta);
    assert_eq!(w[&0], vec![(20, 30)]);
    // Sorted by seq: 2 (ts 25), 3 (ts 15): 2 lost before; the counters say 5, so the
    // rest were lost after the last event by seq.
    assert_eq!(w[&1], vec![(0, 25), (15, u64::MAX)]);
}

#[test]
fn index_records_stay_compact() {
    // A 50M-event trace holds ~4M of each: every 8 bytes is ~30 MB to fault in.
    assert_eq!(std::mem::size_of::<Delivery>(), 40);
    assert_eq!(std::mem::size_of::<Poll>(), 32);
    assert_eq!(std::mem::size_of::<Batch>(), 20);
    assert_eq!(DeliveryRef::new(Some(0)).get(), Some(0));
    assert_eq!(DeliveryRef::new(Some(7)).get(), Some(7));
    assert_eq!(DeliveryRef::new(None).get(), None);
}

#[test]
fn cpus_get_slots_in_order() {
    let slots = CpuSlots::of_cpus(&[7, 9, 5000]); // 5000: past the table, the map
    assert_eq!(slots.get(5000), Some(2));
    assert_eq!(
        (slots.get(7), slots.get(9), slots.get(8)),
        (Some(0), Some(1), None)
    );
}

#[test]
fn groups_keep_row_order() {
    let g = Groups::of_rows(&[2, 0, 3], [2, 0, 2, 0, 2].into_iter());
    assert_eq!(g.get(0), [1, 3]);
    assert!(g.get(1).is_empty());
    assert_eq!(g.get(2), [0, 2, 4]);
}

/// Issue 19: a device's NAPI poll on CPU 0 hands skb 9 to GRO; RPS steers it to CPU 1,
/// whose NET_RX softirq delivers it and then polls its backlog. The delivery pairs with the
/// device-side entry (there is no netif_rx), and the backlog batch has it as initiator.
#[test]
fn a_device_entry_on_cpu_0_initiates_the_delivery_on_cpu_1() {
    let ev = |ts, cpu, kind, f: &dyn Fn(&mut Event)| {
        let mut e = Event::new(ts, cpu, ts, kind);
        f(&mut e);
        e
    };
    let events = vec![
        ev(10, 0, EventKind::NapiGroReceiveEntry, &|e| {
            e.skb = Some(9);
            e.dev = Some("veth1".into());
        }),
        ev(15, 0, EventKind::NapiPoll, &|e| {
            e.dev = Some("veth1".into());
            (e.work, e.budget) = (Some(1), Some(64));
        }),
        ev(30, 1, EventKind::NetifReceiveSkb, &|e| {
            e.skb = Some(9);
            e.ctx = crate::event::Ctx::Softirq;
        }),
        ev(31, 1, EventKind::NapiPoll, &|e| {
            e.dev = Some(crate::event::BACKLOG_DEV.into());
            (e.work, e.budget) = (Some(1), Some(64));
            e.ctx = crate::event::Ctx::Softirq;
        }),
    ];
    let ix = Index::build(Cols::from_events(&events), &TraceMeta::default());
    assert_eq!(ix.deliveries.len(), 1, "the delivery has an initiator");
    let d = &ix.deliveries[0];
    assert_eq!((d.from, d.to, d.t_enq, d.t_rcv), (0, 1, 10, 30));
    assert_eq!(ix.via(d), crate::paths::Via::Device);
    assert_eq!(ix.batches.len(), 1);
    assert_eq!(ix.batches[0].init.get(), Some(0));
    let paths = crate::check::tally::packets_by_path(&ix);
    assert_eq!(paths.get("device_remote_softirq"), Some(&1), "{paths:?}");
    let batches = crate::check::tally::batches_by_path(&ix);
    assert_eq!(
        batches.get("device, remote → softirq"),
        Some(&1),
        "{batches:?}"
    );
}
