//! `top`'s detail view of one CPU (Enter): every counter, and latency histograms per path.

use probe_common::{where_, LAT_BUCKETS, PATHS, PATH_NAMES};
use ratatui::{
    layout::{Constraint, Layout, Rect},
    text::Line,
    widgets::Paragraph,
    Frame,
};

use super::app::App;
use super::ui::{ascii, block};
use crate::live::rates::{human, human_ns, percentile, CpuRates};

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let Some(cpu) = app.selected_cpu() else {
        f.render_widget(Paragraph::new("no CPU selected"), area);
        return;
    };
    let outer = block(app, format!(" CPU {cpu} (Enter: back to the table) "));
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let [left, right] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(20)]).areas(inner);
    let Some(c) = app
        .latest
        .as_ref()
        .and_then(|s| s.cpus.iter().find(|c| c.cpu == cpu))
    else {
        return;
    };
    f.render_widget(Paragraph::new(counter_lines(c, app.ascii)), left);
    f.render_widget(Paragraph::new(latency_lines(app, cpu, right.width)), right);
}

/// Every counter of one CPU, per second.
fn counter_lines(c: &CpuRates, ascii_only: bool) -> Vec<Line<'static>> {
    let mut lines = vec![
        format!("NET_RX raised          {:>10}/s", human(c.net_rx_raise)),
        format!(
            "NET_RX runs irq/bh/ksd {:>4}/{}/{}",
            human(c.net_rx_runs[0]),
            human(c.net_rx_runs[1]),
            human(c.net_rx_runs[2])
        ),
        format!("NET_RX busy            {:>10.1}%", c.net_rx_busy_pct),
        format!("polls                  {:>10}/s", human(c.polls)),
        format!("  of the backlog       {:>10}/s", human(c.backlog_polls)),
        format!("  budget exhausted     {:>10}/s", human(c.budget_exhausted)),
    ];
    for (i, n) in where_::NAMES[..where_::NAPI_THREAD].iter().enumerate() {
        lines.push(format!(
            "packets in {n:<12}{:>10}/s",
            human(c.packets_where[i])
        ));
    }
    // The two other tasks share a row: the pane has no line to spare at 36 rows.
    lines.push(format!(
        "packets napi_thr/busy  {:>5}/{}",
        human(c.packets_where[where_::NAPI_THREAD]),
        human(c.packets_where[where_::BUSY_POLL])
    ));
    lines.extend([
        format!("enqueued here          {:>10}/s", human(c.enqueues)),
        format!("  dropped (backlog full){:>9}/s", human(c.drops)),
        format!(
            "RPS IPIs sent/received {:>5}/{}",
            human(c.rps_ipi_sent),
            human(c.rps_ipi_received)
        ),
        format!("IPIs sent (all)        {:>10}/s", human(c.ipi_sent)),
        format!(
            "ksoftirqd woken/runs   {:>5}/{}",
            human(c.ksoftirqd_woken),
            human(c.ksoftirqd_runs)
        ),
        format!(
            "backlog_napi woken/runs{:>5}/{}",
            human(c.backlog_woken),
            human(c.backlog_runs)
        ),
    ]);
    for (i, n) in PATH_NAMES.iter().enumerate() {
        lines.push(format!("delivered {n:<14}{:>8}/s", human(c.deliveries[i])));
    }
    lines
        .into_iter()
        .map(|s| Line::from(if ascii_only { ascii(&s) } else { s }))
        .collect()
}

/// Latency histograms over the kept history, per path, as bars `width` columns wide at
/// most.
fn latency_lines(app: &App, cpu: u32, width: u16) -> Vec<Line<'static>> {
    let mut hist = [[0u64; LAT_BUCKETS]; PATHS];
    if let Some(h) = app.history.get(&cpu) {
        for r in h {
            for (sum, h) in hist.iter_mut().zip(&r.hist) {
                for (x, n) in sum.iter_mut().zip(h) {
                    *x += n;
                }
            }
        }
    }
    let bar_w = width.saturating_sub(30).max(4) as u64;
    let mut out = vec![Line::from(format!(
        "enqueue-to-processing latency, last {} intervals",
        app.history.get(&cpu).map_or(0, |h| h.len())
    ))];
    for p in 0..PATHS {
        let total: u64 = hist[p].iter().sum();
        if total == 0 {
            continue;
        }
        out.push(Line::from(format!(
            "{} ({} packets, p50 {}, p99 {})",
            PATH_NAMES[p],
            total,
            human_ns(percentile(&hist[p], 0.5), app.ascii),
            human_ns(percentile(&hist[p], 0.99), app.ascii)
        )));
        let max = *hist[p].iter().max().unwrap_or(&1);
        for (b, &n) in hist[p].iter().enumerate().filter(|(_, n)| **n > 0) {
            let len = (n * bar_w).div_ceil(max) as usize;
            let bar = if app.ascii { "#" } else { "█" }.repeat(len);
            out.push(Line::from(format!(
                "  {:>8} {:<w$} {}",
                format!("<{}", human_ns((1u64 << (b + 1)) as f64, app.ascii)),
                bar,
                n,
                w = bar_w as usize
            )));
        }
    }
    out
}
