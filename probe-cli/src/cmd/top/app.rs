//! `top`'s state, separate from drawing: samples and history, sorting, filters, selection,
//! views and what each key does. Pure, so tests drive it with synthetic samples.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{json, Value};

use crate::live::checks::Checks;
pub use crate::live::filter::TextFilter;
use crate::live::rates::{round, CpuRates, Sample};

/// Samples kept per CPU for sparklines and the detail view.
pub const HISTORY: usize = 300;

/// What the header says about the host and the probes.
#[derive(Clone, Debug, Default)]
pub struct Header {
    pub release: String,
    pub mode: String,
    pub mode_description: String,
    pub evidence: Vec<String>,
    pub expected_mode: Option<String>,
    pub probes_attached: usize,
    pub probes_total: usize,
    pub fallbacks: Vec<String>,
    pub not_attached: Vec<String>,
    pub interval_s: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Cpu,
    NetRx,
    Packets,
    Enqueues,
    IpiRx,
    IpiTx,
    Wakeups,
    P99,
}

impl SortKey {
    const ALL: [SortKey; 8] = [
        SortKey::Cpu,
        SortKey::NetRx,
        SortKey::Packets,
        SortKey::Enqueues,
        SortKey::IpiRx,
        SortKey::IpiTx,
        SortKey::Wakeups,
        SortKey::P99,
    ];
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Cpu => "cpu",
            SortKey::NetRx => "NET_RX/s",
            SortKey::Packets => "pkts/s",
            SortKey::Enqueues => "enq/s",
            SortKey::IpiRx => "IPI rx/s",
            SortKey::IpiTx => "IPI tx/s",
            SortKey::Wakeups => "wake/s",
            SortKey::P99 => "p99",
        }
    }
    fn value(self, c: &CpuRates) -> f64 {
        match self {
            SortKey::Cpu => c.cpu as f64,
            SortKey::NetRx => c.net_rx_raise,
            SortKey::Packets => c.packets,
            SortKey::Enqueues => c.enqueues,
            SortKey::IpiRx => c.rps_ipi_received,
            SortKey::IpiTx => c.rps_ipi_sent,
            SortKey::Wakeups => c.woken(),
            SortKey::P99 => c.p99_ns().unwrap_or(0.0),
        }
    }
    fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Table,
    Detail,
    Help,
}

/// A line being typed at the bottom (after `c` or `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    None,
    Cpus(String),
    Filter(String),
}

/// What the run loop must do after a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    None,
    Quit,
    Export,
    SetFilter(Option<TextFilter>),
}

pub struct App {
    pub header: Header,
    pub latest: Option<Sample>,
    pub history: BTreeMap<u32, VecDeque<CpuRates>>,
    pub samples: u64,
    pub sort: SortKey,
    pub sort_desc: bool,
    pub cpu_filter: Option<Vec<u32>>,
    pub text_filter: Option<TextFilter>,
    pub selected: usize,
    pub paused: bool,
    pub view: View,
    pub input: Input,
    pub message: Option<String>,
    pub checks: Checks,
    pub ascii: bool,
    /// Lost-by-recursion program runs since start / reset.
    pub missed_total: u64,
    /// Per (CPU, counter): events the kernel counted that the programs did not, since
    /// start / reset (only while no filter is set: a filter counts a subset on purpose).
    pub kernel_short: BTreeMap<(u32, &'static str), u64>,
    /// Whether the kernel's counters could be read at all.
    pub kernel_compared: bool,
}

impl App {
    pub fn new(header: Header, checks: Checks, ascii: bool) -> App {
        App {
            header,
            latest: None,
            history: BTreeMap::new(),
            samples: 0,
            sort: SortKey::Cpu,
            sort_desc: false,
            cpu_filter: None,
            text_filter: None,
            selected: 0,
            paused: false,
            view: View::Table,
            input: Input::None,
            message: None,
            checks,
            ascii,
            missed_total: 0,
            kernel_short: BTreeMap::new(),
            kernel_compared: false,
        }
    }

    /// A new interval. While paused the screen keeps the old one (nothing is lost: the
    /// counters keep counting in the kernel and the next sample after `p` covers the gap...
    /// of this interval only; history skips paused intervals).
    pub fn push(&mut self, s: Sample) {
        self.checks.observe(&s);
        self.missed_total += s.overall.missed;
        if self.text_filter.is_none() && !s.kernel.is_empty() {
            self.kernel_compared = true;
            for k in &s.kernel {
                let n = k.short();
                if n > 0 {
                    *self.kernel_short.entry((k.cpu, k.counter)).or_default() += n;
                }
            }
        }
        if self.paused {
            return;
        }
        for c in &s.cpus {
            let h = self.history.entry(c.cpu).or_default();
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(c.clone());
        }
        self.samples += 1;
        self.latest = Some(s);
    }

    /// CPUs shown, filtered and sorted.
    pub fn rows(&self) -> Vec<&CpuRates> {
        let Some(s) = &self.latest else {
            return Vec::new();
        };
        let mut v: Vec<&CpuRates> = s
            .cpus
            .iter()
            .filter(|c| self.cpu_filter.as_ref().is_none_or(|f| f.contains(&c.cpu)))
            .collect();
        let key = self.sort;
        v.sort_by(|a, b| {
            let o = key
                .value(a)
                .total_cmp(&key.value(b))
                .then(a.cpu.cmp(&b.cpu));
            if self.sort_desc {
                o.reverse()
            } else {
                o
            }
        });
        v
    }

    pub fn selected_cpu(&self) -> Option<u32> {
        let rows = self.rows();
        rows.get(self.selected.min(rows.len().saturating_sub(1)))
            .map(|c| c.cpu)
    }

    pub fn reset(&mut self) {
        self.history.clear();
        self.samples = 0;
        self.missed_total = 0;
        self.kernel_short.clear();
        self.checks.reset();
        self.message = Some("history and counts reset".into());
    }

    pub fn on_key(&mut self, k: KeyEvent) -> Action {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        match &mut self.input {
            Input::None => {}
            Input::Cpus(buf) | Input::Filter(buf) => {
                match k.code {
                    KeyCode::Esc => self.input = Input::None,
                    KeyCode::Backspace => {
                        buf.pop();
                    }
                    KeyCode::Char(ch) if buf.len() < 64 => buf.push(ch),
                    KeyCode::Enter => return self.finish_input(),
                    _ => {}
                }
                return Action::None;
            }
        }
        self.message = None;
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc => {
                if self.view == View::Table {
                    return Action::Quit;
                }
                self.view = View::Table;
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                self.paused = !self.paused;
                self.message = Some(if self.paused { "paused" } else { "resumed" }.into());
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.sort_desc = self.sort != SortKey::Cpu;
            }
            KeyCode::Char('S') => self.sort_desc = !self.sort_desc,
            KeyCode::Char('c') => self.input = Input::Cpus(String::new()),
            KeyCode::Char('/') => self.input = Input::Filter(String::new()),
            KeyCode::Char('r') => self.reset(),
            KeyCode::Char('e') => return Action::Export,
            KeyCode::Char('?') | KeyCode::Char('h') => {
                self.view = if self.view == View::Help {
                    View::Table
                } else {
                    View::Help
                };
            }
            KeyCode::Enter => {
                self.view = if self.view == View::Detail {
                    View::Table
                } else {
                    View::Detail
                };
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows().len().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            _ => {}
        }
        Action::None
    }

    fn finish_input(&mut self) -> Action {
        let input = std::mem::replace(&mut self.input, Input::None);
        match input {
            Input::Cpus(s) if s.trim().is_empty() => {
                self.cpu_filter = None;
                self.message = Some("showing all CPUs".into());
            }
            Input::Cpus(s) => match crate::kernel::system::parse_cpu_list(s.trim()) {
                Some(list) => {
                    self.message = Some(format!("showing CPUs {}", s.trim()));
                    self.cpu_filter = Some(list);
                    self.selected = 0;
                }
                None => self.message = Some(format!("`{s}` is not a CPU list (e.g. 0,2-3)")),
            },
            Input::Filter(s) => match TextFilter::parse(&s) {
                Ok(f) => {
                    self.message = Some(match &f {
                        Some(f) => format!("counting only {}", f.describe()),
                        None => "filter cleared".into(),
                    });
                    self.text_filter = f.clone();
                    self.history.clear();
                    return Action::SetFilter(f);
                }
                Err(e) => self.message = Some(e),
            },
            Input::None => {}
        }
        Action::None
    }

    /// The view as JSON (`e` and `--json` share it).
    /// The comparison with the kernel's own counters, in a few words.
    pub fn kernel_summary(&self) -> String {
        if self.text_filter.is_some() {
            return "kernel counters: not compared (a filter counts a subset)".into();
        }
        if !self.kernel_compared {
            return "kernel counters: not read yet".into();
        }
        if self.kernel_short.is_empty() {
            return "kernel counters: match".into();
        }
        let parts: Vec<String> = self
            .kernel_short
            .iter()
            .map(|((cpu, c), n)| format!("cpu{cpu} {c} -{n}"))
            .collect();
        format!(
            "SHORT of the kernel's counters since start: {} (the kernel skipped our programs)",
            parts.join(", ")
        )
    }

    fn kernel_json(&self) -> Value {
        if self.text_filter.is_some() || !self.kernel_compared {
            return Value::Null;
        }
        let short: serde_json::Map<String, Value> = self
            .kernel_short
            .iter()
            .map(|((cpu, c), n)| (format!("cpu{cpu}.{c}"), json!(n)))
            .collect();
        json!({ "complete": short.is_empty(), "short_since_start": short })
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self.rows().iter().map(|c| c.to_json()).collect();
        let (at, overall, paths) = match &self.latest {
            Some(s) => {
                let lat = s.path_latency();
                let rates = s.path_rates();
                let paths: serde_json::Map<String, Value> = probe_common::PATH_NAMES
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        (
                            n.to_string(),
                            json!({
                                "deliveries_per_s": round(rates[i]),
                                "p50_ns": round(lat[i].p50_ns),
                                "p99_ns": round(lat[i].p99_ns),
                            }),
                        )
                    })
                    .collect();
                (
                    s.at,
                    json!({
                        "interval_s": round(s.overall.interval_s),
                        "events_per_s": round(s.overall.events_per_s),
                        "missed": s.overall.missed,
                        "self_cpu_pct": round(s.overall.self_cpu_pct),
                        "bpf_cpu_pct": round(s.overall.bpf_cpu_pct),
                    }),
                    Value::Object(paths),
                )
            }
            None => (0.0, Value::Null, Value::Null),
        };
        json!({
            "t": round(at),
            "kernel": self.header.release,
            "mode": self.header.mode,
            "expected_mode": self.header.expected_mode,
            "probes_attached": self.header.probes_attached,
            "probes_total": self.header.probes_total,
            "filter": self.text_filter.as_ref().map(|f| f.describe()),
            "cpu_filter": self.cpu_filter,
            "sort": self.sort.name(),
            "overall": overall,
            "missed_total": self.missed_total,
            "kernel_counters": self.kernel_json(),
            "cpus": rows,
            "napi": self.latest.as_ref().map_or(Vec::new(), |s| {
                s.napis.iter().map(|n| n.to_json()).collect::<Vec<Value>>()
            }),
            "paths": paths,
            "conformance": self.checks,
        })
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
