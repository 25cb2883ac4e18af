//! The conformance pane: rules of the reference model (`docs/model.md` §11) that
//! per-interval counters can decide, streamed as `top` runs. Batch-level rules (which enqueue
//! started a batch, FIFO, budgets) need the events themselves: `napiscope verify` / `check`.

use analysis::{check::rules::rule_of, mode::Mode};
use serde::Serialize;

use super::rates::{CpuRates, Sample};

/// The pane's rules: the checker's rules (`analysis::check::rules::RULES`, whose `live`
/// says what the pane shows) that counters can decide, each with its counter check.
const LIVE: [Live; 6] = [
    Live::each_interval("A-1", a1)
        .at_start(|threads, _| (threads == 0, format!("{threads} backlog_napi threads"))),
    Live::each_interval("A-2", a2),
    Live::each_interval("A-3", a3).needs_ipi(),
    Live::at_start_only("C-1", |threads, cpus| {
        (
            threads == cpus,
            format!("{threads} backlog_napi threads for {cpus} CPUs"),
        )
    }),
    Live::each_interval("C-2", c2),
    Live::each_interval("C-3", c3),
];

/// A check at start: (backlog_napi threads, online CPUs) → (held, what was seen).
type AtStart = fn(usize, usize) -> (bool, String);
/// A check of one CPU's interval: (held, what was seen), or None when the interval says
/// nothing about the rule.
type PerInterval = fn(&Interval, &CpuRates) -> Option<(bool, String)>;

/// A rule's counter check.
struct Live {
    id: &'static str,
    /// Decided once when `top` starts, from the host's backlog_napi threads and online
    /// CPUs: a fact of the host.
    start: Option<AtStart>,
    /// Decided per CPU and interval, when the interval says something about it: (held,
    /// what was seen).
    interval: Option<PerInterval>,
    /// Only shown when the kernel lets `top` count RPS IPIs.
    needs_ipi: bool,
}

impl Live {
    const fn each_interval(id: &'static str, f: PerInterval) -> Live {
        Live {
            id,
            start: None,
            interval: Some(f),
            needs_ipi: false,
        }
    }

    const fn at_start_only(id: &'static str, f: AtStart) -> Live {
        Live {
            id,
            start: Some(f),
            interval: None,
            needs_ipi: false,
        }
    }

    const fn at_start(mut self, f: AtStart) -> Live {
        self.start = Some(f);
        self
    }

    const fn needs_ipi(mut self) -> Live {
        self.needs_ipi = true;
        self
    }

    /// What the pane shows for it, from the checker's table.
    fn says(&self) -> &'static str {
        rule_of(self.id)
            .and_then(|r| r.live)
            .expect("a pane rule is a checker rule with a live title")
    }

    fn holds_in(&self, mode: Mode) -> bool {
        rule_of(self.id).is_some_and(|r| r.modes.covers(Some(mode)))
    }
}

/// One interval of one sample, as the counter checks read it.
struct Interval<'a> {
    dt: f64,
    /// RPS IPIs received per CPU in the previous interval (a batch's IPI can land in the
    /// interval before its packets).
    prev_ipi_rx: &'a [(u32, f64)],
}

impl Interval<'_> {
    /// A rate as a count over the interval.
    fn n(&self, rate: f64) -> u64 {
        (rate * self.dt).round() as u64
    }
}

fn a1(iv: &Interval, c: &CpuRates) -> Option<(bool, String)> {
    let thread = iv.n(c.deliveries[3]) + iv.n(c.packets_where[3]);
    Some((
        thread == 0,
        format!("{thread} packets in backlog_napi/{}", c.cpu),
    ))
}

fn a2(iv: &Interval, c: &CpuRates) -> Option<(bool, String)> {
    if iv.n(c.backlog_polls) == 0 {
        return None;
    }
    let outside = iv.n(c.packets_where[3]);
    Some((
        outside == 0,
        format!("{outside} backlog packets outside softirq"),
    ))
}

fn a3(iv: &Interval, c: &CpuRates) -> Option<(bool, String)> {
    let remote = iv.n(c.deliveries[1]);
    if remote == 0 {
        return None;
    }
    let before = iv
        .prev_ipi_rx
        .iter()
        .find(|(cpu, _)| *cpu == c.cpu)
        .map_or(0.0, |(_, r)| *r);
    let ipis = iv.n(c.rps_ipi_received) + before.round() as u64;
    Some((ipis > 0, format!("{remote} remote packets, no RPS IPI")))
}

fn c2(iv: &Interval, c: &CpuRates) -> Option<(bool, String)> {
    let ipis = iv.n(c.rps_ipi_sent) + iv.n(c.rps_ipi_received);
    Some((
        ipis == 0,
        format!(
            "{} RPS IPIs sent, {} received",
            iv.n(c.rps_ipi_sent),
            iv.n(c.rps_ipi_received)
        ),
    ))
}

fn c3(iv: &Interval, c: &CpuRates) -> Option<(bool, String)> {
    let remote = iv.n(c.deliveries[1]);
    if remote + iv.n(c.deliveries[3]) == 0 {
        return None;
    }
    Some((
        remote == 0,
        format!("{remote} remote packets in the NET_RX softirq"),
    ))
}

/// A rule as the pane shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleState {
    pub id: &'static str,
    pub says: &'static str,
    /// Intervals in which the rule could be decided / was violated.
    pub evaluated: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Divergence {
    /// Seconds since `top` started.
    pub at: f64,
    pub rule: &'static str,
    pub cpu: u32,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Checks {
    pub mode: &'static str,
    pub rules: Vec<RuleState>,
    /// Newest last; at most `KEEP`.
    pub divergences: Vec<Divergence>,
    #[serde(skip)]
    mode_enum: Mode,
    /// RPS IPIs received per CPU in the previous interval (a batch's IPI can land in the
    /// interval before its packets).
    #[serde(skip)]
    prev_ipi_rx: Vec<(u32, f64)>,
}

const KEEP: usize = 50;

impl Checks {
    /// `threads`: the backlog_napi threads found at start; `cpus`: online CPUs.
    pub fn new(mode: Mode, threads: usize, cpus: usize, ipi_visible: bool) -> Checks {
        let shown = |l: &&Live| l.holds_in(mode) && (ipi_visible || !l.needs_ipi);
        let mut c = Checks {
            mode: mode.as_str(),
            rules: LIVE
                .iter()
                .filter(shown)
                .map(|l| RuleState {
                    id: l.id,
                    says: l.says(),
                    evaluated: 0,
                    failed: 0,
                })
                .collect(),
            divergences: Vec::new(),
            mode_enum: mode,
            prev_ipi_rx: Vec::new(),
        };
        for l in LIVE.iter().filter(|l| l.holds_in(mode)) {
            if let Some(f) = l.start {
                let (ok, detail) = f(threads, cpus);
                c.record(0.0, l.id, u32::MAX, ok, detail);
            }
        }
        c
    }

    pub fn failed(&self) -> u64 {
        self.rules.iter().map(|r| r.failed).sum()
    }

    fn record(&mut self, at: f64, id: &'static str, cpu: u32, ok: bool, detail: String) {
        let Some(rule) = self.rules.iter_mut().find(|r| r.id == id) else {
            return;
        };
        rule.evaluated += 1;
        if !ok {
            rule.failed += 1;
            self.divergences.push(Divergence {
                at,
                rule: id,
                cpu,
                detail,
            });
            if self.divergences.len() > KEEP {
                self.divergences.remove(0);
            }
        }
    }

    pub fn observe(&mut self, s: &Sample) {
        let dt = s.overall.interval_s;
        let prev = std::mem::take(&mut self.prev_ipi_rx);
        let iv = Interval {
            dt,
            prev_ipi_rx: &prev,
        };
        let mode = self.mode_enum;
        for c in &s.cpus {
            for l in LIVE.iter().filter(|l| l.holds_in(mode)) {
                if let Some((ok, detail)) = l.interval.and_then(|f| f(&iv, c)) {
                    self.record(s.at, l.id, c.cpu, ok, detail);
                }
            }
        }
        self.prev_ipi_rx = s
            .cpus
            .iter()
            .map(|c| (c.cpu, c.rps_ipi_received * dt))
            .collect();
    }

    /// Keep the rules and their counts, forget the history (the `r` key).
    pub fn reset(&mut self) {
        for r in &mut self.rules {
            r.evaluated = 0;
            r.failed = 0;
        }
        self.divergences.clear();
        self.prev_ipi_rx.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::rates::{CpuRates, Overall};
    use super::*;

    fn sample(at: f64, cpus: Vec<CpuRates>) -> Sample {
        Sample {
            at,
            cpus,
            overall: Overall {
                interval_s: 1.0,
                ..Overall::default()
            },
            kernel: Vec::new(),
            napis: Vec::new(),
        }
    }

    fn remote(cpu: u32, packets: f64, ipis: f64) -> CpuRates {
        let mut c = CpuRates {
            cpu,
            rps_ipi_received: ipis,
            backlog_polls: 10.0,
            ..CpuRates::default()
        };
        c.deliveries[1] = packets;
        c
    }

    #[test]
    fn mode_b_wants_ipis_for_remote_work() {
        let mut k = Checks::new(Mode::B, 0, 2, true);
        k.observe(&sample(1.0, vec![remote(1, 100.0, 20.0)]));
        assert_eq!(k.failed(), 0);
        // An IPI in the previous interval explains a batch that spills into this one...
        k.observe(&sample(2.0, vec![remote(1, 5.0, 0.0)]));
        assert_eq!(k.failed(), 0);
        // ...but not two intervals later.
        k.observe(&sample(3.0, vec![remote(1, 5.0, 0.0)]));
        assert_eq!(k.failed(), 1);
        assert_eq!(k.divergences[0].rule, "A-3");
        assert_eq!(k.divergences[0].cpu, 1);
    }

    #[test]
    fn mode_c_forbids_rps_ipis_and_remote_softirq_work() {
        let mut k = Checks::new(Mode::C, 2, 2, true);
        assert_eq!(k.failed(), 0);
        let mut ok = CpuRates {
            cpu: 1,
            ..CpuRates::default()
        };
        ok.deliveries[3] = 100.0;
        k.observe(&sample(1.0, vec![ok]));
        assert_eq!(k.failed(), 0);
        k.observe(&sample(2.0, vec![remote(1, 100.0, 20.0)]));
        let ids: Vec<_> = k.divergences.iter().map(|d| d.rule).collect();
        assert_eq!(ids, ["C-2", "C-3"]);
    }

    #[test]
    fn the_pane_shows_the_checker_table_live_rules() {
        let live: Vec<&str> = analysis::check::rules::RULES
            .iter()
            .filter(|r| r.live.is_some())
            .map(|r| r.id)
            .collect();
        let pane: Vec<&str> = LIVE.iter().map(|l| l.id).collect();
        assert_eq!(pane, live);
        let says: Vec<&str> = LIVE.iter().map(Live::says).collect();
        assert_eq!(
            says,
            [
                "no backlog_napi thread work",
                "backlog polled in softirq",
                "remote work follows an RPS IPI",
                "one backlog_napi thread per CPU",
                "no RPS IPIs",
                "remote work in backlog_napi",
            ]
        );
    }

    #[test]
    fn thread_count_is_checked_once() {
        assert_eq!(Checks::new(Mode::C, 1, 2, true).failed(), 1);
        assert_eq!(Checks::new(Mode::B, 2, 2, true).failed(), 1);
        assert_eq!(Checks::new(Mode::B, 0, 2, false).rules.len(), 2);
    }
}
