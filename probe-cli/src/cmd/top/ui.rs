//! Drawing `top` from its state: header, per-CPU table, paths / history / conformance panes,
//! the detail and help views, and the footer. Nothing here changes state.

use probe_common::{where_, PATHS, PATH_NAMES};
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    symbols::{bar, border},
    text::Line,
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap},
    Frame,
};

use super::app::{App, Input, View};
use crate::live::rates::{human, human_ns, CpuRates};

pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 8;
/// Below this width the header, the titles and the footer take their short forms, so that
/// the 80×24 terminal people open by default shows every line whole.
const NARROW: u16 = 100;

const ASCII_BORDER: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

const ASCII_BARS: bar::Set = bar::Set {
    full: "#",
    seven_eighths: "#",
    three_quarters: "=",
    five_eighths: "=",
    half: "-",
    three_eighths: "-",
    one_quarter: ".",
    one_eighth: ".",
    empty: " ",
};

pub(super) fn block<'a>(app: &App, title: impl Into<Line<'a>>) -> Block<'a> {
    let b = Block::default().borders(Borders::ALL).title(title);
    if app.ascii {
        b.border_set(ASCII_BORDER)
    } else {
        b
    }
}

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "napiscope top: terminal too small ({}x{}); needs {MIN_WIDTH}x{MIN_HEIGHT}. q quits.",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let panes = if area.height >= 24 {
        panes_height(app, area)
    } else {
        0
    };
    let [head, body, bottom, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(panes),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, app, head);
    match app.view {
        View::Table | View::Help => {
            let (cpus, napis) = super::napi_pane::split(app, body);
            draw_table(f, app, cpus);
            if let Some(a) = napis {
                super::napi_pane::draw(f, app, a);
            }
        }
        View::Detail => super::detail::draw(f, app, body),
    }
    if panes > 0 {
        draw_panes(f, app, bottom);
    }
    draw_footer(f, app, foot);
    if app.view == View::Help {
        draw_help(f, app, area);
    }
}

const PANES: u16 = 9;
/// Below this width the history sparklines do not fit beside the paths and the model.
const SIDE_BY_SIDE: u16 = 110;

/// The panes' height: 9 rows on a wide screen. On a narrow one, every row the CPU table does
/// not need (its CPUs, column header and borders): the model's rules wrap there, and the
/// history goes below them instead of beside.
fn panes_height(app: &App, area: Rect) -> u16 {
    if area.width >= SIDE_BY_SIDE || app.view == View::Detail {
        return PANES;
    }
    let table = app.rows().len() as u16 + 3;
    area.height.saturating_sub(4 + table).max(PANES)
}

/// Rows the model pane needs on a narrow screen: its lines wrapped, and borders.
fn checks_height(app: &App, width: u16) -> u16 {
    let inner = width.saturating_sub(2).max(1) as usize;
    let wrapped: usize = check_lines(app)
        .iter()
        .map(|l| l.chars().count().max(1).div_ceil(inner))
        .sum();
    wrapped as u16 + 2
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let h = &app.header;
    let narrow = area.width < NARROW;
    let dash = if app.ascii { "-" } else { "—" };
    let mut l1 = format!("napiscope top {dash} {} {dash} mode {}", h.release, h.mode);
    if !narrow {
        l1.push_str(&format!(" ({})", h.mode_description));
    }
    if let Some(e) = &h.expected_mode {
        if *e != h.mode {
            l1.push_str(&format!("  EXPECTED MODE {e}"));
        }
    }
    let mut l2 = format!("probes {}/{} attached", h.probes_attached, h.probes_total);
    if !h.fallbacks.is_empty() {
        l2.push_str(&format!(
            ", {} on a fallback kind (`napiscope status` says why)",
            h.fallbacks.len()
        ));
    }
    if !h.not_attached.is_empty() {
        l2.push_str(&format!(", missing: {}", h.not_attached.join(" ")));
    }
    l2.push_str(&format!(" · every {}s", h.interval_s));
    if !h.evidence.is_empty() && !narrow {
        l2.push_str(&format!(" · {}", h.evidence.join("; ")));
    }
    let l3 = match &app.latest {
        Some(s) => {
            let o = &s.overall;
            let mut l = if narrow {
                format!(
                    "events {}/s · missed {} · cost {:.1}%+{:.1}%",
                    human(o.events_per_s),
                    app.missed_total,
                    o.self_cpu_pct,
                    o.bpf_cpu_pct
                )
            } else {
                format!(
                    "events {}/s · missed {} ({} total) · napiscope CPU {:.1}% + eBPF {:.1}%",
                    human(o.events_per_s),
                    o.missed,
                    app.missed_total,
                    o.self_cpu_pct,
                    o.bpf_cpu_pct
                )
            };
            if let Some(t) = &app.text_filter {
                l.push_str(&format!(" · filter {}", t.describe()));
            }
            if let Some(c) = &app.cpu_filter {
                l.push_str(&format!(" · cpus {c:?}"));
            }
            l.push_str(&format!(
                " · sort {}{}",
                app.sort.name(),
                if app.sort_desc { " desc" } else { "" }
            ));
            if app.paused {
                l.push_str(" · PAUSED");
            }
            let kernel = app.kernel_summary();
            let kernel = match kernel.strip_prefix("kernel ") {
                Some(short) if narrow => short.to_string(),
                _ => kernel,
            };
            l.push_str(&format!(" · {kernel}"));
            l
        }
        None => "waiting for the first interval...".into(),
    };
    let text = [l1, l2, l3].map(|s| Line::from(if app.ascii { ascii(&s) } else { s }));
    f.render_widget(Paragraph::new(text.to_vec()), area);
}

/// Replace the few non-ASCII characters this UI writes.
pub(super) fn ascii(s: &str) -> String {
    s.replace('·', "|")
        .replace('—', "-")
        .replace('µ', "u")
        .replace('→', "->")
}

type Column = (&'static str, u16, u8, fn(&CpuRates, bool) -> String);

/// (title, width, priority: higher drops first on narrow terminals, value)
pub(super) const COLUMNS: [Column; 17] = [
    ("CPU", 4, 0, |c, _| c.cpu.to_string()),
    ("NET_RX/s", 8, 0, |c, _| human(c.net_rx_raise)),
    ("pkts/s", 7, 0, |c, _| human(c.packets)),
    ("irq-exit", 8, 1, |c, _| {
        human(c.packets_where[where_::IRQ_EXIT])
    }),
    ("bh-en", 6, 2, |c, _| {
        human(c.packets_where[where_::BH_ENABLE])
    }),
    ("ksoftirqd", 9, 1, |c, _| {
        human(c.packets_where[where_::KSOFTIRQD])
    }),
    ("backlog", 7, 1, |c, _| {
        human(c.packets_where[where_::BACKLOG_THREAD])
    }),
    ("enq/s", 6, 1, |c, _| human(c.enqueues)),
    ("IPI tx", 6, 0, |c, _| human(c.rps_ipi_sent)),
    ("IPI rx", 6, 0, |c, _| human(c.rps_ipi_received)),
    ("wake/s", 6, 2, |c, _| human(c.woken())),
    ("runs/s", 6, 3, |c, _| human(c.thread_runs())),
    ("exh/s", 5, 3, |c, _| human(c.budget_exhausted)),
    ("busy%", 5, 3, |c, _| format!("{:.1}", c.net_rx_busy_pct)),
    ("drop/s", 6, 3, |c, _| human(c.drops)),
    ("p50", 7, 2, |c, a| human_ns(c.p50_ns().unwrap_or(0.0), a)),
    ("p99", 7, 1, |c, a| human_ns(c.p99_ns().unwrap_or(0.0), a)),
];

/// The columns that fit: drop the least important ones first.
pub(super) fn columns_for(width: u16) -> Vec<&'static Column> {
    let mut cols: Vec<&Column> = COLUMNS.iter().collect();
    let total = |c: &[&Column]| c.iter().map(|c| c.1 + 1).sum::<u16>() + 2;
    for prio in (1..=3).rev() {
        while total(&cols) > width {
            match cols.iter().rposition(|c| c.2 == prio) {
                Some(i) => {
                    cols.remove(i);
                }
                None => break,
            }
        }
    }
    cols
}

fn draw_table(f: &mut Frame, app: &App, area: Rect) {
    let cols = columns_for(area.width);
    let rows_data = app.rows();
    let selected = app.selected.min(rows_data.len().saturating_sub(1));
    let header = Row::new(cols.iter().map(|c| Cell::from(c.0)))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = rows_data.iter().enumerate().map(|(i, r)| {
        let row = Row::new(cols.iter().map(|c| Cell::from(c.3(r, app.ascii))));
        if i == selected {
            row.style(Style::default().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.1)).collect();
    let title = if area.width < NARROW {
        " per CPU (? explains the columns) "
    } else {
        " per CPU: NET_RX raises, packets polled by where they ran, RPS IPIs, thread wake-ups, enqueue-to-processing latency "
    };
    let table = Table::new(rows, widths)
        .header(header)
        .block(block(app, title));
    f.render_widget(table, area);
}

fn draw_panes(f: &mut Frame, app: &App, area: Rect) {
    if area.width < SIDE_BY_SIDE {
        // The model's verdict first; the history below it, in the rows left (if 4 or more).
        let top = checks_height(app, area.width - PANES_PATHS_WIDTH).clamp(PANES, area.height);
        let [row, rest] =
            Layout::vertical([Constraint::Length(top), Constraint::Min(0)]).areas(area);
        let [paths, checks] =
            Layout::horizontal([Constraint::Length(PANES_PATHS_WIDTH), Constraint::Min(10)])
                .areas(row);
        draw_paths(f, app, paths);
        draw_checks(f, app, checks);
        if rest.height >= 4 {
            draw_history(f, app, rest);
        }
        return;
    }
    let [paths, history, checks] = Layout::horizontal([
        Constraint::Length(40),
        Constraint::Min(24),
        Constraint::Percentage(45),
    ])
    .areas(area);
    draw_paths(f, app, paths);
    draw_history(f, app, history);
    draw_checks(f, app, checks);
}

const PANES_PATHS_WIDTH: u16 = 40;

fn draw_paths(f: &mut Frame, app: &App, area: Rect) {
    let mut lines = vec![Line::from(format!(
        "{:<15}{:>7}{:>8}{:>8}",
        "path", "pkts/s", "p50", "p99"
    ))];
    if let Some(s) = &app.latest {
        let lat = s.path_latency();
        let rates = s.path_rates();
        for p in 0..PATHS {
            lines.push(Line::from(format!(
                "{:<15}{:>7}{:>8}{:>8}",
                PATH_NAMES[p],
                human(rates[p]),
                human_ns(lat[p].p50_ns, app.ascii),
                human_ns(lat[p].p99_ns, app.ascii)
            )));
        }
        let unmatched: f64 = s.cpus.iter().map(|c| c.unmatched).sum();
        lines.push(Line::from(format!(
            "{:<15}{:>7}",
            "NIC/other",
            human(unmatched)
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(block(app, " where packets went ")),
        area,
    );
}

fn draw_history(f: &mut Frame, app: &App, area: Rect) {
    let cpu = app.selected_cpu();
    let title = match cpu {
        Some(c) => format!(" CPU {c} history "),
        None => " history ".into(),
    };
    let outer = block(app, title);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let Some(h) = cpu.and_then(|c| app.history.get(&c)) else {
        return;
    };
    type Series = (&'static str, fn(&CpuRates) -> f64);
    let series: [Series; 3] = [
        ("pkts/s", |c| c.packets),
        ("NET_RX/s", |c| c.net_rx_raise),
        ("IPI rx/s", |c| c.rps_ipi_received),
    ];
    // As many series as the pane has rows for (two each), most telling first.
    let fit = (inner.height / 2).min(3) as usize;
    let series = &series[..fit];
    let rows = Layout::vertical(vec![Constraint::Length(2); fit]).split(inner);
    let width = inner.width.saturating_sub(16) as usize;
    for ((name, get), row) in series.iter().zip(rows.iter()) {
        let data: Vec<u64> = h
            .iter()
            .rev()
            .take(width)
            .rev()
            .map(|c| get(c).round() as u64)
            .collect();
        let [label, spark] =
            Layout::horizontal([Constraint::Length(16), Constraint::Min(1)]).areas(*row);
        let now = h.back().map_or(0.0, get);
        f.render_widget(Paragraph::new(format!("{name:<9}{:>6}", human(now))), label);
        let mut s = Sparkline::default().data(&data);
        if app.ascii {
            s = s.bar_set(ASCII_BARS);
        }
        f.render_widget(s, spark);
    }
}

/// The conformance pane's lines: each counter rule's verdict, then the latest divergences.
fn check_lines(app: &App) -> Vec<String> {
    let k = &app.checks;
    let mut lines: Vec<String> = k
        .rules
        .iter()
        .map(|r| {
            let verdict = if r.evaluated == 0 {
                "--".to_string()
            } else if r.failed == 0 {
                format!("ok ({})", r.evaluated)
            } else {
                format!("FAIL {}/{}", r.failed, r.evaluated)
            };
            format!("{:<4} {:<11} {}", r.id, verdict, r.says)
        })
        .collect();
    for d in k.divergences.iter().rev().take(3) {
        let cpu = if d.cpu == u32::MAX {
            "host".to_string()
        } else {
            format!("cpu{}", d.cpu)
        };
        lines.push(format!("! {:.0}s {} {cpu}: {}", d.at, d.rule, d.detail));
    }
    lines
}

fn draw_checks(f: &mut Frame, app: &App, area: Rect) {
    let k = &app.checks;
    let lines: Vec<Line> = check_lines(app).into_iter().map(Line::from).collect();
    let title = if area.width < 60 {
        format!(" model {}: counter rules ", k.mode)
    } else {
        format!(
            " model, mode {}: counter rules (all rules: napiscope verify) ",
            k.mode
        )
    };
    // Wrapped, not cut: a narrow pane shows each rule's words on the rows the table left.
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(app, title)),
        area,
    );
}

pub const HELP: &str = "\
q / Esc    quit (Esc leaves a view first)
p / space  pause the display (counting goes on in the kernel)
s / S      next sort column / reverse the order
c          show only some CPUs (e.g. 0,2-3; empty: all)
/          count only a device (dev=veth0 or a bare name) or a task (comm=iperf3);
           applied in the kernel, by name prefix; empty clears
Up/Down    select a CPU (j/k too)
Enter      detail of the selected CPU: every counter, latency histograms
r          reset history and conformance counts
e          export the current view as JSON (napiscope-top-<time>.json)
?          this help

Columns (per second over the last interval): NET_RX/s softirq raises;
pkts/s packets polled; irq-exit / bh-en / ksoftirqd / backlog: those
packets by where the poll ran (softirq at interrupt exit, softirq run by a
task re-enabling bottom halves, ksoftirqd/N, backlog_napi/N thread);
enq/s packets enqueued by netif_rx on this CPU; IPI tx/rx RPS IPIs
(rps_trigger_softirq); wake/s wake-ups of this CPU's ksoftirqd and
backlog_napi; runs/s switches to them; exh/s polls that used their whole
budget; busy% time in NET_RX; p50/p99 enqueue-to-processing latency of the
packets delivered on this CPU (log2 buckets: within a factor of 2).";

fn draw_help(f: &mut Frame, app: &App, area: Rect) {
    let w = area.width.min(80);
    let h = area.height.min(26);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(HELP)
            .wrap(Wrap { trim: false })
            .block(block(app, " help (? or Esc closes) ")),
        r,
    );
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let text = match &app.input {
        Input::Cpus(s) => format!("cpus (e.g. 0,2-3; empty = all; Esc cancels)> {s}_"),
        Input::Filter(s) => format!("filter (dev=NAME | comm=NAME; empty clears; Esc cancels)> {s}_"),
        Input::None => match &app.message {
            Some(m) => m.clone(),
            None if area.width < NARROW => {
                "q quit  p pause  s sort  c cpus  / filter  Enter detail  ? help".into()
            }
            None => "q quit  p pause  s/S sort  c cpus  / filter  Enter detail  r reset  e export  ? help".into(),
        },
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}
