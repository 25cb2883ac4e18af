//! `napiscope whatif`: what a recording would have looked like in another mode. The
//! recording's arrivals (each delivered packet's netif_rx: time, CPU, and the backlog it
//! went to — the CPU that received it) are replayed through the model (`model::replay`) with
//! the other mode's `use_backlog_threads()`, and the replay is counted exactly as the
//! recording is (`counts`): NET_RX raises, RPS IPIs, backlog_napi wake-ups and runs, polls,
//! batches, packets by path, latency by path.
//!
//! The replay is deterministic: the delays the kernel leaves to timing are two numbers,
//! measured in the recording where it shows them and otherwise assumed (`Delays`).

pub mod counts;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    event::{Event, EventKind, RPS_IPI_FUNC},
    mode::Mode,
    model::{
        replay::{replay, Arrival, ReplayOpts},
        Features,
    },
    paths::{self, Delivery},
    trace::Trace,
};
use counts::Counts;

/// When neither delay can be measured in the recording (no RPS IPI, no thread wake-up).
pub const FALLBACK_DELAY_NS: u64 = 10_000;

#[derive(Clone, Debug, Default)]
pub struct WhatIfOpts {
    /// csd_queue_cpu → rps_trigger_softirq; None: the recording's median, else the thread
    /// wake-up's, else `FALLBACK_DELAY_NS`.
    pub ipi_ns: Option<u64>,
    /// sched_waking(backlog_napi/N) → its sched_switch; None: the recording's median, else
    /// the IPI's, else `FALLBACK_DELAY_NS`.
    pub wake_ns: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Delay {
    pub ns: u64,
    /// "given", "measured in the recording (median of N)", or what it was assumed from.
    pub source: String,
}

/// The recording's batch windows (first enqueue → the poll that emptied the backlog), as
/// the replay uses them: moved by `shift_us`, the other mode's delay minus this one's.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    pub median_us: f64,
    pub batches: usize,
    pub shift_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub mode: Mode,
    pub per_cpu: Vec<Counts>,
    pub total: Counts,
    /// Each quantity of `total` divided by the replayed packets.
    pub per_packet: BTreeMap<&'static str, f64>,
    /// Median netif_rx → netif_receive_skb per path, µs.
    pub latency_us: BTreeMap<&'static str, f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WhatIf {
    pub cpus: usize,
    /// Delivered packets, replayed as arrivals.
    pub packets: u64,
    /// netif_rx events without a matching delivery (dropped, lost, or past the trace's end):
    /// not replayed.
    pub not_replayed: u64,
    pub mode_evidence: String,
    pub ipi: Delay,
    pub wake: Delay,
    /// The batch windows the replay draws from.
    pub window: Window,
    pub features: Features,
    pub observed: Side,
    pub predicted: Side,
    /// What the prediction cannot know, in words.
    pub cannot_know: Vec<String>,
}

/// The mode the recording was made in: its metadata (`record` writes the mode status
/// showed), else the trace itself (backlog_napi threads → C, RPS IPIs → B).
pub fn trace_mode(t: &Trace) -> Option<(Mode, String)> {
    if let Some(m) = t.meta.get("mode").and_then(Mode::parse) {
        return Some((m, "the recording's metadata".into()));
    }
    let thread = t.events.iter().any(|e| {
        counts::backlog_thread_cpu(&e.comm).is_some()
            || e.target_comm
                .as_deref()
                .is_some_and(|c| counts::backlog_thread_cpu(c).is_some())
    });
    let ipi = t
        .events
        .iter()
        .any(|e| e.func.as_deref() == Some(RPS_IPI_FUNC));
    match (thread, ipi) {
        (true, false) => Some((Mode::C, "the trace: backlog_napi threads".into())),
        (false, true) => Some((Mode::B, "the trace: RPS IPIs (A or B; B assumed)".into())),
        _ => None,
    }
}

fn cpus_of(t: &Trace) -> usize {
    let seen = t
        .events
        .iter()
        .map(|e| e.cpu as usize + 1)
        .max()
        .unwrap_or(1);
    t.meta
        .get("cpus")
        .and_then(|c| c.parse().ok())
        .unwrap_or(seen)
        .max(seen)
}

/// Replay `t` (made in its own mode) in mode `to`. Errors: a mode the trace cannot tell,
/// `to` equal to the trace's mode, a trace without delivered packets.
pub fn whatif(t: &Trace, to: Mode, o: &WhatIfOpts) -> Result<WhatIf, String> {
    let (from, mode_evidence) = trace_mode(t).ok_or(
        "the trace does not say its mode (no metadata, and it shows neither backlog_napi \
         threads nor RPS IPIs alone)",
    )?;
    if from == to {
        return Err(format!(
            "the trace is already mode {} ({mode_evidence}); ask for another mode",
            to.as_str()
        ));
    }
    compare(t, from, to, mode_evidence, o)
}

/// `whatif` without refusing `from == to`: replaying a trace into its own mode is the
/// replay's self-consistency test.
pub(crate) fn compare(
    t: &Trace,
    from: Mode,
    to: Mode,
    mode_evidence: String,
    o: &WhatIfOpts,
) -> Result<WhatIf, String> {
    let mut sorted: Vec<&Event> = t.events.iter().collect();
    sorted.sort_by_key(|e| (e.ts_ns, e.cpu, e.seq));
    let sorted: Vec<Event> = sorted.into_iter().cloned().collect();
    let delivered = paths::deliveries(&sorted);
    if delivered.is_empty() {
        return Err("no delivered packet in the trace (netif_rx paired with \
                    netif_receive_skb): nothing to replay"
            .into());
    }
    let cpus = cpus_of(t);
    let (ipi, wake, measured) = delays(&sorted, o);
    // The recording's batch windows, moved by what the other mode's mechanism costs more
    // (or less) than this one's: the target's service time is taken to be the same.
    let own = measured[(from == Mode::C) as usize];
    let target = if to == Mode::C { &wake } else { &ipi };
    let shift = target.ns as i64 - own.unwrap_or(target.ns) as i64;
    let mut windows: Vec<u64> = counts::batch_windows(&sorted, &delivered)
        .into_iter()
        .map(|w| (w as i64 + shift).max(0) as u64)
        .collect();
    if windows.is_empty() {
        windows.push(target.ns);
    }
    let window = Window {
        median_us: counts::median(windows.clone()).unwrap_or(0) as f64 / 1e3,
        batches: windows.len(),
        shift_us: shift as f64 / 1e3,
    };
    let features = Features::from_meta(&t.meta);
    // Numbered afresh: the recording's skbs are slab addresses, reused once freed, and the
    // replay may hold a packet past its address's next use.
    let arrivals: Vec<Arrival> = delivered
        .iter()
        .enumerate()
        .map(|(i, d)| arrival(d, i as u64 + 1))
        .collect();
    let ro = ReplayOpts {
        mode: to,
        ncpu: cpus,
        features,
        windows,
        seed: 1,
    };
    let predicted = replay(&ro, &arrivals);
    let pd = paths::deliveries(&predicted);
    let packets = delivered.len() as u64;
    let rx = t
        .events
        .iter()
        .filter(|e| e.event == EventKind::NetifRx)
        .count() as u64;
    Ok(WhatIf {
        cpus,
        packets,
        not_replayed: rx.saturating_sub(packets),
        mode_evidence,
        observed: side(from, &sorted, &delivered, cpus, packets),
        predicted: side(to, &predicted, &pd, cpus, packets),
        ipi,
        wake,
        window,
        features,
        cannot_know: cannot_know(from, to),
    })
}

fn arrival(d: &Delivery, skb: u64) -> Arrival {
    Arrival {
        ts: d.enqueue_ts,
        cpu: d.enqueue_cpu as usize,
        target: d.cpu as usize,
        skb,
    }
}

/// The two delays: given, else measured, else the other one measured (an idle CPU is woken
/// for a thread by an IPI too — or by setting its polling flag — so the two are of one
/// order), else `FALLBACK_DELAY_NS`; and the measured medians, [IPI, wake-up].
fn delays(sorted: &[Event], o: &WhatIfOpts) -> (Delay, Delay, [Option<u64>; 2]) {
    let ipi_m = counts::ipi_latency_ns(sorted);
    let wake_m = counts::wake_latency_ns(sorted);
    let pick = |given: Option<u64>, own: Option<u64>, other: Option<u64>, other_name: &str| {
        let (ns, source) = match (given, own, other) {
            (Some(ns), ..) => (ns, "given".to_string()),
            (None, Some(ns), _) => (ns, "measured in the recording (median)".into()),
            (None, None, Some(ns)) => (ns, format!("assumed: the recording's median {other_name}")),
            (None, None, None) => (
                FALLBACK_DELAY_NS,
                "assumed: nothing to measure it by".into(),
            ),
        };
        Delay { ns, source }
    };
    (
        pick(o.ipi_ns, ipi_m, wake_m, "backlog_napi wake-up latency"),
        pick(o.wake_ns, wake_m, ipi_m, "RPS IPI latency"),
        [ipi_m, wake_m],
    )
}

fn side(mode: Mode, sorted: &[Event], d: &[Delivery], cpus: usize, packets: u64) -> Side {
    let per_cpu = counts::per_cpu(sorted, d, cpus);
    let mut total = Counts::default();
    for c in &per_cpu {
        total.add(c);
    }
    let per_packet = total
        .quantities()
        .into_iter()
        .map(|(k, v)| (k, v as f64 / packets.max(1) as f64))
        .collect();
    let latency_us = counts::latency_by_path(d)
        .into_iter()
        .map(|(k, ns)| (k, ns as f64 / 1e3))
        .collect();
    Side {
        mode,
        per_cpu,
        total,
        per_packet,
        latency_us,
    }
}

/// What the replay takes as given or leaves out, for `from` → `to`.
fn cannot_know(from: Mode, to: Mode) -> Vec<String> {
    let mut v = vec![
        "the senders' timing: arrivals are replayed at their recorded times, though in the \
         other mode the sending CPU does different work and would send at other times"
            .to_string(),
        "batch sizes follow from the assumed delays: a slower IPI or wake-up gathers more \
         packets per batch, and so fewer IPIs / wake-ups per packet"
            .to_string(),
        "ksoftirqd deferral and idle polling (sched_wake_idle_without_ipi) are not predicted: \
         pending softirqs run at the sender's local_bh_enable, every IPI is sent"
            .to_string(),
        "packets not delivered in the recording (drops, losses) and other NAPIs' work are \
         not replayed; observed counts include whatever else the machine did"
            .to_string(),
    ];
    if to == Mode::C {
        v.insert(
            0,
            "the scheduling latency of backlog_napi/N: a fixed delay, not the scheduler's \
             decision (a busy target CPU, the thread's priority, CFS/EEVDF preemption)"
                .into(),
        );
    }
    if from == Mode::C {
        v.insert(
            0,
            "the RPS IPI's flight time in the other mode: a fixed delay (csd lock, IPI \
             delivery, the target's irq latency are not measured in a mode C recording)"
                .into(),
        );
    }
    v
}

#[cfg(test)]
mod tests;
