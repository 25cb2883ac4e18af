//! The per-NAPI pane under the CPU table: one row per NAPI instance polled in the last
//! interval (device queues and the CPUs' backlogs), with where its polls ran — the move of a
//! device from the NET_RX softirq to its `napi/<dev>-<id>` thread when `threaded` is switched
//! on shows here.

use probe_common::where_;
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    widgets::{Cell, Row, Table},
    Frame,
};

use super::app::App;
use super::ui::{ascii, block};
use crate::live::napi::NapiRates;
use crate::live::rates::{human, human_ns};

/// At most this many instances are listed; the rest are counted in the title.
const MAX_ROWS: usize = 6;

/// Split the table's area into the CPU table and, when NAPI instances were polled and the
/// CPU table keeps all its rows, the NAPI pane below it.
pub(super) fn split(app: &App, area: Rect) -> (Rect, Option<Rect>) {
    let n = app
        .latest
        .as_ref()
        .map_or(0, |s| s.napis.len().min(MAX_ROWS));
    let cpu_rows = app.rows().len() as u16 + 3;
    let want = n as u16 + 3;
    if n == 0 || area.height < cpu_rows + want {
        return (area, None);
    }
    let [cpus, napis] =
        Layout::vertical([Constraint::Min(cpu_rows), Constraint::Length(want)]).areas(area);
    (cpus, Some(napis))
}

type Column = (&'static str, u16, fn(&NapiRates, bool) -> String);

const COLUMNS: [Column; 11] = [
    ("NAPI", 18, |n, _| n.label()),
    ("cpus", 5, |n, _| {
        let c: Vec<String> = n.cpus.iter().map(u32::to_string).collect();
        c.join(",")
    }),
    ("polls/s", 8, |n, _| human(n.polls)),
    ("pkts/s", 8, |n, _| human(n.packets)),
    ("exh/s", 6, |n, _| human(n.budget_exhausted)),
    ("softirq", 8, |n, _| {
        human(n.polls_where[where_::IRQ_EXIT] + n.polls_where[where_::BH_ENABLE])
    }),
    ("ksoftirqd", 9, |n, _| {
        human(n.polls_where[where_::KSOFTIRQD])
    }),
    ("thread", 8, |n, _| {
        human(n.polls_where[where_::NAPI_THREAD] + n.polls_where[where_::BACKLOG_THREAD])
    }),
    ("busy", 6, |n, _| human(n.polls_where[where_::BUSY_POLL])),
    ("irq", 5, |n, _| {
        n.irq.or(n.last_irq).map_or("-".into(), |i| i.to_string())
    }),
    ("irq→poll", 9, |n, ascii| {
        human_ns(n.irq_to_poll_ns.unwrap_or(0.0), ascii)
    }),
];

pub(super) fn draw(f: &mut Frame, app: &App, area: Rect) {
    let Some(s) = &app.latest else { return };
    // The polling task takes what width is left.
    let fixed: u16 = COLUMNS.iter().map(|c| c.1 + 1).sum::<u16>() + 2;
    let task_width = area.width.saturating_sub(fixed);
    let header = COLUMNS
        .iter()
        .map(|c| {
            if app.ascii {
                ascii(c.0)
            } else {
                c.0.to_string()
            }
        })
        .chain((task_width >= 8).then(|| "task".to_string()))
        .map(Cell::from);
    let rows = s.napis.iter().take(MAX_ROWS).map(|n| {
        let cells = COLUMNS.iter().map(|c| c.2(n, app.ascii));
        let task = n
            .task
            .as_ref()
            .map_or("-".into(), |(pid, c)| format!("{c} ({pid})"));
        Row::new(
            cells
                .chain((task_width >= 8).then_some(task))
                .map(Cell::from),
        )
    });
    let mut widths: Vec<Constraint> = COLUMNS.iter().map(|c| Constraint::Length(c.1)).collect();
    widths.push(Constraint::Min(0));
    let more = s.napis.len().saturating_sub(MAX_ROWS);
    let title = match more {
        0 => " per NAPI instance: polls by where they ran ".to_string(),
        n => format!(" per NAPI instance: polls by where they ran ({n} more: --json) "),
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(block(app, title));
    f.render_widget(table, area);
}
