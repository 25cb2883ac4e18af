//! `report NEW --baseline OLD`: both reports side by side, with the differences that matter
//! (a path's share moved, a tail latency grew, IPIs or wake-ups per packet changed) marked.

use serde::Serialize;

use super::{render::Table, Report};

#[derive(Clone, Debug, Serialize)]
pub struct Delta {
    pub metric: String,
    pub baseline: Option<f64>,
    pub new: Option<f64>,
    /// (new - baseline) / baseline, percent.
    pub change_pct: Option<f64>,
    pub matters: bool,
    /// The threshold that makes this metric's change matter.
    pub rule: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub baseline: Report,
    pub new: Report,
    pub deltas: Vec<Delta>,
}

#[derive(Clone, Copy)]
enum Rule {
    /// Absolute difference in percentage points.
    Points(f64),
    /// Ratio new/baseline (either way).
    Factor(f64),
    /// Absolute difference.
    Abs(f64),
    /// Anything from zero to non-zero.
    AppearsOrGrows,
}

impl Rule {
    fn describe(self) -> &'static str {
        match self {
            Rule::Points(_) => "moved by more than 5 points",
            Rule::Factor(_) => "changed by a factor of 1.5 or more",
            Rule::Abs(_) => "changed by 0.05 or more",
            Rule::AppearsOrGrows => "losses appeared or grew",
        }
    }
    fn matters(self, b: Option<f64>, n: Option<f64>) -> bool {
        match (self, b, n) {
            (Rule::Points(p), Some(b), Some(n)) | (Rule::Abs(p), Some(b), Some(n)) => {
                (n - b).abs() > p
            }
            // From or to zero is the largest factor there is.
            (Rule::Factor(f), Some(b), Some(n)) => {
                (b > 0.0) != (n > 0.0) || (b > 0.0 && (n / b >= f || b / n >= f))
            }
            (Rule::AppearsOrGrows, b, Some(n)) => n > b.unwrap_or(0.0),
            (Rule::Abs(_) | Rule::Points(_), None, Some(n)) => n != 0.0,
            _ => false,
        }
    }
}

fn delta(metric: String, b: Option<f64>, n: Option<f64>, rule: Rule) -> Delta {
    Delta {
        change_pct: match (b, n) {
            (Some(b), Some(n)) if b != 0.0 => Some((n - b) / b * 100.0),
            _ => None,
        },
        matters: rule.matters(b, n),
        rule: rule.describe(),
        metric,
        baseline: b,
        new: n,
    }
}

pub fn compare(new: Report, baseline: Report) -> Comparison {
    let (b, n) = (&baseline.summary, &new.summary);
    let mut d = Vec::new();
    for (pb, pn) in b.paths.iter().zip(&n.paths) {
        d.push(delta(
            format!("{} share %", pb.path),
            Some(pb.share_pct),
            Some(pn.share_pct),
            Rule::Points(5.0),
        ));
    }
    for (pb, pn) in b.paths.iter().zip(&n.paths) {
        let p99 = |p: &super::summary::PathRow| p.latency_ns.as_ref().map(|l| l.p99 as f64);
        if pb.latency_ns.is_some() || pn.latency_ns.is_some() {
            d.push(delta(
                format!("{} p99 latency ns", pb.path),
                p99(pb),
                p99(pn),
                Rule::Factor(1.5),
            ));
        }
    }
    let (tb, tn) = (&b.totals, &n.totals);
    d.push(delta(
        "RPS IPIs per packet".into(),
        tb.ipis_per_packet,
        tn.ipis_per_packet,
        Rule::Abs(0.05),
    ));
    d.push(delta(
        "thread wake-ups per packet".into(),
        tb.wakeups_per_packet,
        tn.wakeups_per_packet,
        Rule::Abs(0.05),
    ));
    d.push(delta(
        "mean napi_poll batch".into(),
        tb.mean_batch,
        tn.mean_batch,
        Rule::Factor(1.5),
    ));
    d.push(delta(
        "budget exhausted % of polls".into(),
        tb.budget_exhausted_pct,
        tn.budget_exhausted_pct,
        Rule::Points(5.0),
    ));
    d.push(delta(
        "NET_RX softirq ns per packet".into(),
        tb.softirq_ns_per_packet,
        tn.softirq_ns_per_packet,
        Rule::Factor(1.5),
    ));
    d.push(delta(
        "lost events".into(),
        Some((tb.lost_recorded + tb.seq_gaps) as f64),
        Some((tn.lost_recorded + tn.seq_gaps) as f64),
        Rule::AppearsOrGrows,
    ));
    Comparison {
        baseline,
        new,
        deltas: d,
    }
}

fn val(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The side-by-side table; `color` marks what matters in red (for a terminal).
pub fn text(c: &Comparison, color: bool) -> String {
    let mut t = Table::new(&["metric", "baseline", "new", "change", ""]);
    for d in &c.deltas {
        t.row(vec![
            d.metric.clone(),
            val(d.baseline),
            val(d.new),
            d.change_pct.map_or("-".into(), |p| format!("{p:+.1}%")),
            if d.matters { "!".into() } else { String::new() },
        ]);
    }
    let mut out = format!(
        "baseline: {} recording(s), kernel {}, mode {}\nnew:      {} recording(s), kernel {}, \
         mode {}\n\n",
        c.baseline.recordings.len(),
        c.baseline.meta(|r| r.kernel_release.clone()),
        c.baseline.meta(|r| r.mode.clone()),
        c.new.recordings.len(),
        c.new.meta(|r| r.kernel_release.clone()),
        c.new.meta(|r| r.mode.clone()),
    );
    for line in t.render().lines() {
        if color && line.ends_with('!') {
            out.push_str(&format!("\x1b[1;31m{line}\x1b[0m\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let n = c.deltas.iter().filter(|d| d.matters).count();
    out.push_str(&format!(
        "\n{n} difference(s) that matter (!): path share ±5 points, p99 ×1.5, IPIs or \
         wake-ups per packet ±0.05, batch ×1.5, budget hits ±5 points, softirq cost ×1.5, \
         new losses\n"
    ));
    out.push_str("\n== baseline\n");
    out.push_str(&super::render::summary_text(&c.baseline.summary));
    out.push_str("\n== new\n");
    out.push_str(&super::render::summary_text(&c.new.summary));
    out
}
