//! The conformance pane: rules of the reference model (`docs/model.md` §11) that
//! per-interval counters can decide, streamed as `top` runs. Batch-level rules (which enqueue
//! started a batch, FIFO, budgets) need the events themselves: `napiscope verify` / `check`.

use analysis::mode::Mode;
use serde::Serialize;

use super::rates::Sample;

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
        let rules: Vec<(&'static str, &'static str)> = match mode {
            Mode::A | Mode::B => {
                let mut r = vec![
                    ("A-1", "no backlog_napi thread work"),
                    ("A-2", "backlog polled in softirq"),
                ];
                if ipi_visible {
                    r.push(("A-3", "remote work follows an RPS IPI"));
                }
                r
            }
            Mode::C => vec![
                ("C-1", "one backlog_napi thread per CPU"),
                ("C-2", "no RPS IPIs"),
                ("C-3", "remote work in backlog_napi"),
            ],
        };
        let mut c = Checks {
            mode: mode.as_str(),
            rules: rules
                .into_iter()
                .map(|(id, says)| RuleState {
                    id,
                    says,
                    evaluated: 0,
                    failed: 0,
                })
                .collect(),
            divergences: Vec::new(),
            mode_enum: mode,
            prev_ipi_rx: Vec::new(),
        };
        // Thread counts are a fact of the host, decided once.
        let (id, ok, detail) = match mode {
            Mode::A | Mode::B => (
                "A-1",
                threads == 0,
                format!("{threads} backlog_napi threads"),
            ),
            Mode::C => (
                "C-1",
                threads == cpus,
                format!("{threads} backlog_napi threads for {cpus} CPUs"),
            ),
        };
        c.record(0.0, id, u32::MAX, ok, detail);
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
        let n = |rate: f64| (rate * dt).round() as u64;
        for c in &s.cpus {
            match self.mode_enum {
                Mode::A | Mode::B => {
                    let thread = n(c.deliveries[3]) + n(c.packets_where[3]);
                    self.record(
                        s.at,
                        "A-1",
                        c.cpu,
                        thread == 0,
                        format!("{thread} packets in backlog_napi/{}", c.cpu),
                    );
                    if n(c.backlog_polls) > 0 {
                        let outside = n(c.packets_where[3]);
                        self.record(
                            s.at,
                            "A-2",
                            c.cpu,
                            outside == 0,
                            format!("{outside} backlog packets outside softirq"),
                        );
                    }
                    let remote = n(c.deliveries[1]);
                    if remote > 0 {
                        let before = self
                            .prev_ipi_rx
                            .iter()
                            .find(|(cpu, _)| *cpu == c.cpu)
                            .map_or(0.0, |(_, r)| *r);
                        let ipis = n(c.rps_ipi_received) + before.round() as u64;
                        self.record(
                            s.at,
                            "A-3",
                            c.cpu,
                            ipis > 0,
                            format!("{remote} remote packets, no RPS IPI"),
                        );
                    }
                }
                Mode::C => {
                    let ipis = n(c.rps_ipi_sent) + n(c.rps_ipi_received);
                    self.record(
                        s.at,
                        "C-2",
                        c.cpu,
                        ipis == 0,
                        format!(
                            "{} RPS IPIs sent, {} received",
                            n(c.rps_ipi_sent),
                            n(c.rps_ipi_received)
                        ),
                    );
                    let remote = n(c.deliveries[1]);
                    if remote + n(c.deliveries[3]) > 0 {
                        self.record(
                            s.at,
                            "C-3",
                            c.cpu,
                            remote == 0,
                            format!("{remote} remote packets in the NET_RX softirq"),
                        );
                    }
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
    fn thread_count_is_checked_once() {
        assert_eq!(Checks::new(Mode::C, 1, 2, true).failed(), 1);
        assert_eq!(Checks::new(Mode::B, 2, 2, true).failed(), 1);
        assert_eq!(Checks::new(Mode::B, 0, 2, false).rules.len(), 2);
    }
}
