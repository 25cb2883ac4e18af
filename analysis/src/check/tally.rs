//! Received packets counted by path, and backlog batches by origin and class, for the
//! report; and the columns read as `paths::Step`s, for `record`'s summary.

use std::collections::BTreeMap;

use super::index::{Class, Index};
use crate::paths::{classify_task, Path, Step, StepRows, TaskKind, Via};
use crate::trace::cols::Cols;

/// Packets by path (`Path::label`: the path, and `device_` when a device's poll started the
/// hop), from the deliveries the index paired.
pub(super) fn packets_by_path(ix: &Index) -> BTreeMap<String, u64> {
    // Counted per (initiator, path) in an array, named once per pair.
    let mut per_path = [[0u64; 4]; 2];
    let path_of = |p: Path| p as usize;
    // Each distinct task name sorted once.
    let strs = &ix.c.strs;
    let task: Vec<TaskKind> = (0..strs.len() as u32)
        .map(|s| TaskKind::of(strs.get(s)))
        .collect();
    for d in &ix.deliveries {
        let rcv = ix.ev(d.rcv);
        let path = classify_task(d.from, d.to, rcv.ctx(), task[rcv.comm_sym() as usize]);
        per_path[ix.via(d) as usize][path_of(path)] += 1;
    }
    let mut paths: BTreeMap<&str, u64> = BTreeMap::new();
    for via in [Via::NetifRx, Via::Device] {
        for p in Path::ALL {
            let n = per_path[via as usize][path_of(p)];
            if n > 0 {
                paths.insert(p.label(via), n);
            }
        }
    }
    paths.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
}

/// Complete batches by "origin → class".
pub(super) fn batches_by_path(ix: &Index) -> BTreeMap<String, u64> {
    // Counted per (origin, class) in an array, named once per pair.
    const ORIGINS: [&str; 5] = [
        "remote",
        "local",
        "no traced enqueue",
        "device, remote",
        "device, local",
    ];
    const CLASSES: [Class; 4] = [Class::Softirq, Class::Thread, Class::Other, Class::Mixed];
    let mut per_batch_path = [[0u64; CLASSES.len()]; ORIGINS.len()];
    for b in ix.batches.iter().filter(|b| b.complete) {
        let origin = match b.init.get().map(|i| &ix.deliveries[i as usize]) {
            Some(d) => {
                let device = if ix.via(d) == Via::Device { 3 } else { 0 };
                device + usize::from(d.from == b.cpu)
            }
            None => 2,
        };
        let class = CLASSES.iter().position(|c| *c == b.class).unwrap_or(0);
        per_batch_path[origin][class] += 1;
    }
    let mut batch_paths: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (origin, counts) in ORIGINS.iter().zip(per_batch_path) {
        for (class, n) in CLASSES.iter().zip(counts) {
            if n > 0 {
                batch_paths.insert((origin, class.name()), n);
            }
        }
    }
    batch_paths
        .into_iter()
        .map(|((origin, class), n)| (format!("{origin} → {class}"), n))
        .collect()
}

/// `record` reads its file back as columns and follows packets through them
/// (`paths::summary_of_cols`) without building an `Event` (and its strings) per row.
impl StepRows for Cols {
    fn rows(&self) -> usize {
        self.len()
    }

    fn step(&self, i: usize) -> Step<'_> {
        let e = self.row(i);
        Step {
            ts: e.ts_ns(),
            cpu: e.cpu(),
            // A reader drops seq only from rows already in time order, where the row
            // number keeps the ties in place.
            seq: self.seq.get(i).copied().unwrap_or(i as u64),
            kind: e.event(),
            ctx: e.ctx(),
            comm: e.comm(),
            skb: e.skb(),
            func: e.func(),
            vec: e.vec(),
            target_cpu: e.target_cpu(),
            backlog_poll: e.is_backlog_poll(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        mode::Mode,
        model::sim::{simulate, SimOpts, Workload},
        paths::{deliveries, path_counts, rps_hops, summary_of_cols},
    };

    #[test]
    fn the_column_path_counts_what_the_event_path_counts() {
        for mode in [Mode::B, Mode::C] {
            let mut o = SimOpts::new(mode, 4, Workload::Mixed);
            o.packets = 400;
            let events = simulate(&o).events;
            let d = deliveries(&events);
            let (paths, hops) = summary_of_cols(&Cols::from_events(&events));
            assert_eq!(paths, path_counts(&d));
            assert_eq!(hops, rps_hops(&events).len());
            assert!(paths.values().sum::<u64>() > 300, "{paths:?}");
            if mode == Mode::B {
                assert!(hops > 50, "{hops} hops");
            }
        }
    }
}
