//! What a rule says about a trace: its verdict, its counts, and the first divergences.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Inconclusive,
    Warn,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    pub rule: &'static str,
    pub cpu: u32,
    pub ts_ns: u64,
    pub message: String,
    /// What the model expected instead.
    pub expected: String,
    /// The events involved, one line each.
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleResult {
    pub id: &'static str,
    pub title: &'static str,
    pub verdict: Verdict,
    /// Instances that passed.
    pub passed: u64,
    pub failed: u64,
    pub warned: u64,
    pub inconclusive: u64,
    pub note: Option<String>,
    /// The first divergences (all are counted in `failed` / `warned`).
    pub divergences: Vec<Divergence>,
}

const MAX_DIVERGENCES: usize = 10;

impl RuleResult {
    pub(crate) fn new(id: &'static str, title: &'static str) -> RuleResult {
        RuleResult {
            id,
            title,
            verdict: Verdict::Inconclusive,
            passed: 0,
            failed: 0,
            warned: 0,
            inconclusive: 0,
            note: None,
            divergences: Vec::new(),
        }
    }
    pub(crate) fn pass(&mut self) {
        self.passed += 1;
    }
    pub(crate) fn unsure(&mut self) {
        self.inconclusive += 1;
    }
    pub(crate) fn fail(&mut self, d: Divergence) {
        self.failed += 1;
        if self.divergences.len() < MAX_DIVERGENCES {
            self.divergences.push(d);
        }
    }
    pub(crate) fn warn(&mut self, d: Divergence) {
        self.warned += 1;
        if self.divergences.len() < MAX_DIVERGENCES {
            self.divergences.push(d);
        }
    }
    pub(crate) fn note(mut self, n: impl Into<String>) -> RuleResult {
        self.note = Some(n.into());
        self
    }
    pub(crate) fn finish(mut self) -> RuleResult {
        self.verdict = if self.failed > 0 {
            Verdict::Fail
        } else if self.warned > 0 {
            Verdict::Warn
        } else if self.passed > 0 {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        };
        self
    }
}
