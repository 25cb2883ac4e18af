//! Terminal tables, rendered from the same structs `--json` prints.

use std::fmt::Write as _;

use super::{
    napi::PLACES,
    summary::{CpuRow, Summary},
    Report,
};

/// A plain text table: the first column left-aligned, the others right-aligned.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn render(&self) -> String {
        let n = self.head.len();
        let mut w = vec![0; n];
        for r in std::iter::once(&self.head).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.head).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str("  ");
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// 1234 ns → "1.2µs"; None → "-".
pub fn dur(ns: Option<f64>) -> String {
    let Some(ns) = ns else { return "-".into() };
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

pub fn num(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

pub fn header(r: &Report) -> String {
    let t = &r.summary.totals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "napiscope report: {} recording(s), {} events over {:.2} s",
        r.recordings.len(),
        t.events,
        t.span_s
    );
    let _ = writeln!(
        s,
        "kernel {}  mode {}  source {}  host {}  cpus {}  recorded {} s",
        r.meta(|x| x.kernel_release.clone()),
        r.meta(|x| x.mode.clone()),
        r.meta(|x| x.source.clone()),
        r.meta(|x| x.hostname.clone()),
        r.meta(|x| x.cpus.map(|c| c.to_string())),
        r.meta(|x| x.duration_s.map(|d| format!("{d:.1}"))),
    );
    let _ = writeln!(
        s,
        "lost events: {} (ring buffer, per metadata), {} (gaps in seq){}",
        t.lost_recorded,
        t.seq_gaps,
        if t.lost_recorded + t.seq_gaps > 0 {
            "  ! counts near losses are lower bounds"
        } else {
            ""
        }
    );
    let count = |v: &str| {
        r.recordings
            .iter()
            .filter(|x| x.completeness.as_deref() == Some(v))
            .count()
    };
    let (c, i) = (count("complete"), count("incomplete"));
    let _ = writeln!(
        s,
        "against the kernel's own counters: {c} complete, {i} incomplete, {} not compared",
        r.recordings.len() - c - i
    );
    for x in r
        .recordings
        .iter()
        .filter(|x| x.completeness.as_deref() == Some("incomplete"))
        .take(5)
    {
        let short: Vec<String> = x
            .kernel_check
            .as_ref()
            .map(|k| {
                k.lines()
                    .into_iter()
                    .filter(|l| l.contains("SHORT"))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "  ! {}: {}",
            x.path,
            if short.is_empty() {
                "events lost or skipped (see its record summary)".to_string()
            } else {
                short.join("; ")
            }
        );
    }
    s
}

pub fn paths_table(s: &Summary) -> String {
    let mut t = Table::new(&[
        "path", "packets", "share", "p50", "p90", "p99", "max", "mean",
    ]);
    // The device-initiated rows are a part of the plain ones: below them, marked as such.
    for p in s.paths.iter().chain(&s.device_paths) {
        let l = p.latency_ns.as_ref();
        t.row(vec![
            p.path.to_string(),
            p.deliveries.to_string(),
            format!("{:.1}%", p.share_pct),
            dur(l.map(|l| l.p50 as f64)),
            dur(l.map(|l| l.p90 as f64)),
            dur(l.map(|l| l.p99 as f64)),
            dur(l.map(|l| l.max as f64)),
            dur(l.map(|l| l.mean)),
        ]);
    }
    t.render()
}

/// The advice, each with its evidence; one line saying there is none otherwise.
pub fn advice_text(s: &Summary) -> String {
    if s.advice.is_empty() {
        return "\nAdvice: none (no drops, time squeeze, ksoftirqd takeover, RPS imbalance, IPI \
                cost or flow-limit hits worth acting on)\n"
            .into();
    }
    let mut out =
        String::from("\nAdvice (from the numbers below each; napiscope changes nothing):\n");
    for a in &s.advice {
        let _ = writeln!(out, "  [{}] {}", a.id, a.title);
        let _ = writeln!(out, "      seen: {}", a.evidence);
        let _ = writeln!(out, "      try:  {}", a.try_this);
    }
    out
}

/// One row per NAPI instance: what polled it where, and how much.
pub fn napi_table(s: &Summary) -> String {
    let mut head = vec![
        "napi",
        "irq",
        "cpus",
        "polls",
        "packets",
        "batch",
        "budget_hit",
    ];
    head.extend(PLACES);
    head.push("tasks");
    let mut t = Table::new(&head);
    for n in &s.napis {
        let cpus: Vec<String> = n.cpus.iter().map(|c| c.to_string()).collect();
        let tasks: Vec<String> = (n.tasks.iter())
            .map(|(comm, polls)| format!("{comm} ({polls})"))
            .collect();
        let mut row = vec![
            n.napi.clone(),
            n.irq.map_or("-".into(), |i| i.to_string()),
            cpus.join(","),
            n.polls.to_string(),
            n.packets.to_string(),
            num(n.mean_batch, 2),
            n.budget_exhausted.to_string(),
        ];
        row.extend(n.polls_where.iter().map(|p| p.to_string()));
        row.push(if tasks.is_empty() {
            "-".into()
        } else {
            tasks.join(", ")
        });
        t.row(row);
    }
    t.render()
}

fn cpu_label(c: &CpuRow) -> String {
    format!("cpu{}", c.cpu)
}

pub fn where_table(s: &Summary) -> String {
    let mut t = Table::new(&[
        "cpu",
        "enqueued",
        "local_softirq",
        "remote_softirq",
        "ksoftirqd",
        "backlog_thread",
        "ipis_sent",
        "ipis_recv",
        "ksoftirqd_wake",
        "backlog_wake",
        "ipi/pkt",
        "wake/pkt",
    ]);
    for c in &s.cpus {
        t.row(vec![
            cpu_label(c),
            c.enqueued.to_string(),
            c.deliveries.local_softirq.to_string(),
            c.deliveries.remote_softirq.to_string(),
            c.deliveries.ksoftirqd.to_string(),
            c.deliveries.backlog_thread.to_string(),
            c.rps_ipis_sent.to_string(),
            c.rps_ipis_received.to_string(),
            c.ksoftirqd_wakeups.to_string(),
            c.backlog_thread_wakeups.to_string(),
            num(c.ipis_per_packet, 3),
            num(c.wakeups_per_packet, 3),
        ]);
    }
    t.render()
}

pub fn cost_table(s: &Summary) -> String {
    let mut t = Table::new(&[
        "cpu",
        "net_rx_raise",
        "net_rx_entry",
        "softirq_time",
        "polls",
        "pkts_polled",
        "batch",
        "budget_hit",
        "backlog_polls",
        "events",
        "lost",
        "seq_gaps",
    ]);
    for c in &s.cpus {
        t.row(vec![
            cpu_label(c),
            c.net_rx_raises.to_string(),
            c.net_rx_entries.to_string(),
            dur(Some(c.softirq_time_ns as f64)),
            c.napi_polls.to_string(),
            c.napi_packets.to_string(),
            num(c.mean_batch, 2),
            c.budget_exhausted.to_string(),
            c.backlog_polls.to_string(),
            c.events.to_string(),
            c.lost_recorded.to_string(),
            c.seq_gaps.to_string(),
        ]);
    }
    t.render()
}

pub fn totals_line(s: &Summary) -> String {
    let t = &s.totals;
    format!(
        "packets: {} enqueued (netif_rx), {} handed over by a device poll ({} of them \
         steered to a backlog and paired), {} delivered; RPS IPIs per packet {}; thread \
         wake-ups per packet {}; mean napi_poll batch {}; budget exhausted in {}% of polls; \
         NET_RX softirq {} per packet\n",
        t.enqueued,
        t.device_entries,
        t.device_initiated,
        t.delivered,
        num(t.ipis_per_packet, 3),
        num(t.wakeups_per_packet, 3),
        num(t.mean_batch, 2),
        num(t.budget_exhausted_pct, 1),
        dur(t.softirq_ns_per_packet),
    )
}

pub fn summary_text(s: &Summary) -> String {
    let mut out = format!(
        "{}\nWhere packets were processed (enqueue → processing latency; device_* rows: \
         handed over by a device's poll, steered by RPS, latency from that poll):\n{}\n\
         Per CPU: where receive work ran, IPIs and wake-ups:\n{}\n\
         Per CPU: NET_RX softirq and NAPI polls:\n{}",
        totals_line(s),
        paths_table(s),
        where_table(s),
        cost_table(s)
    );
    if !s.napis.is_empty() {
        let _ = write!(
            out,
            "\nPer NAPI instance: polls by where they ran (net_rx: the NET_RX softirq; \
             busy_poll: a task's napi_busy_loop):\n{}",
            napi_table(s)
        );
    }
    out.push_str(&advice_text(s));
    out
}

pub fn text(r: &Report) -> String {
    let mut out = header(r);
    out.push('\n');
    out.push_str(&summary_text(&r.summary));
    for p in &r.partitions {
        let _ = write!(
            out,
            "\n== partition {} ({} recording(s))\n",
            p.partition, p.recordings
        );
        out.push_str(&summary_text(&p.summary));
    }
    out
}
