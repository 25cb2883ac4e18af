//! Layout snapshots: synthetic counter streams through Sample → App → ui::draw on ratatui's
//! TestBackend, compared with golden files in probe-cli/tests/snapshots (UPDATE_SNAPSHOTS=1
//! rewrites them; review the diff).

use analysis::mode::Mode;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use probe_common::{where_, CpuCounters, NapiCounters};
use ratatui::{backend::TestBackend, Terminal};

use super::app::{App, Header};
use super::ui;
use crate::live::checks::Checks;
use crate::live::rates::{Sample, Snapshot};

fn header(mode: &str) -> Header {
    Header {
        release: "6.18.44".into(),
        mode: mode.into(),
        mode_description: "test".into(),
        evidence: vec!["synthetic".into()],
        expected_mode: None,
        probes_attached: 14,
        probes_total: 14,
        fallbacks: vec![],
        not_attached: vec![],
        interval_s: 1.0,
    }
}

/// One second of veth+RPS traffic at `pps`: CPU 0 enqueues, sends RPS IPIs, CPU 1 polls its
/// backlog in the NET_RX softirq at irq exit (mode B) or in backlog_napi/1 (mode C).
fn rps_second(c: &mut [CpuCounters; 2], w: &mut [u64; 2], pps: u64, mode_c: bool) {
    let batches = pps / 8;
    c[0].events += 3 * pps;
    c[0].enqueues += pps;
    c[1].events += 4 * pps;
    c[1].polls += batches;
    c[1].backlog_polls += batches;
    c[1].poll_packets += pps;
    if mode_c {
        c[1].poll_packets_where[3] += pps;
        c[1].deliveries[3] += pps;
        c[1].latency[3][14] += pps * 9 / 10;
        c[1].latency[3][17] += pps / 10;
        c[1].backlog_runs += batches;
        w[1] += batches;
        c[0].backlog_wakeups_sent += batches;
    } else {
        c[0].rps_ipi_sent += batches;
        c[0].ipi_sent += batches;
        c[1].rps_ipi_received += batches;
        c[1].net_rx_raise += batches;
        c[1].net_rx_runs[0] += batches;
        c[1].net_rx_ns += 30_000_000;
        c[1].poll_packets_where[0] += pps;
        c[1].deliveries[1] += pps;
        c[1].latency[1][13] += pps * 9 / 10;
        c[1].latency[1][16] += pps / 10;
    }
}

/// CPU 1's backlog NAPI as the NAPI map holds it: the CPU's polls, all of them backlog polls.
fn backlog(c: &CpuCounters) -> NapiCounters {
    let mut n = NapiCounters::zeroed();
    n.dev[..11].copy_from_slice(b"(no_device)");
    n.polls = c.polls;
    n.packets = c.poll_packets;
    for w in 0..where_::COUNT {
        n.packets_where[w] = c.poll_packets_where[w];
        n.polls_where[w] = c.poll_packets_where[w] / 8;
    }
    n
}

fn app_after(seconds: u64, mode_c: bool, ascii: bool) -> App {
    let mode = if mode_c { Mode::C } else { Mode::B };
    let threads = if mode_c { 2 } else { 0 };
    let mut app = App::new(
        header(mode.as_str()),
        Checks::new(mode, threads, 2, true),
        ascii,
    );
    let mut c = [CpuCounters::zeroed(); 2];
    let mut w = [0u64; 2];
    let snap = |at: f64, c: &[CpuCounters; 2], w: &[u64; 2]| Snapshot {
        at,
        cpus: [(0, c[0]), (1, c[1])].into(),
        woken: [(0, [0, 0]), (1, [0, w[1]])].into(),
        self_cpu_ns: (at * 4e6) as u64,
        bpf_ns: (at * 9e6) as u64,
        misses: 0,
        kernel: None,
        napi: [(
            0xffff_8880_0001,
            vec![NapiCounters::zeroed(), backlog(&c[1])],
        )]
        .into(),
        napi_info: Default::default(),
        irq_names: Default::default(),
    };
    let mut prev = snap(0.0, &c, &w);
    for s in 1..=seconds {
        rps_second(&mut c, &mut w, 1000 + 100 * s, mode_c);
        let cur = snap(s as f64, &c, &w);
        app.push(Sample::between(&prev, &cur));
        prev = cur;
    }
    app
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    assert_eq!(
        text, want,
        "layout changed: {name} (UPDATE_SNAPSHOTS=1 to accept)"
    );
}

fn row<'a>(screen: &'a str, cpu: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.trim_start_matches(['|', '│', ' ']).starts_with(cpu))
        .unwrap_or_else(|| panic!("no row for CPU {cpu} in\n{screen}"))
}

#[test]
fn rps_on_mode_b_shows_ipis_and_remote_softirq_on_cpu1() {
    let app = app_after(5, false, false);
    let s = render(&app, 140, 32);
    let cpu1: Vec<&str> = row(&s, "1 ").split_whitespace().collect();
    // CPU NET_RX/s pkts/s irq-exit bh-en ksoftirqd backlog enq/s IPI tx IPI rx ...
    assert_eq!(cpu1[1], "187", "NET_RX/s: {cpu1:?}");
    assert_eq!(cpu1[2], "1.5k", "pkts/s: {cpu1:?}");
    assert_eq!(cpu1[3], "1.5k", "irq-exit: {cpu1:?}");
    assert_eq!(cpu1[9], "187", "IPI rx: {cpu1:?}");
    let cpu0: Vec<&str> = row(&s, "0 ").split_whitespace().collect();
    assert_eq!(cpu0[8], "187", "IPI tx on the sender: {cpu0:?}");
    assert!(s.contains("remote_softirq"), "{s}");
    assert!(s.contains("A-3  ok (5)"), "{s}");
    snapshot("top_mode_b_140x32", &s);
}

#[test]
fn mode_c_shows_backlog_thread_and_no_ipis() {
    let app = app_after(3, true, false);
    let s = render(&app, 140, 32);
    let cpu1: Vec<&str> = row(&s, "1 ").split_whitespace().collect();
    assert_eq!(cpu1[6], "1.3k", "backlog column: {cpu1:?}");
    assert_eq!(cpu1[9], "0", "IPI rx: {cpu1:?}");
    assert!(s.contains("C-2  ok (6)"), "{s}");
    assert!(s.contains("backlog_thread"), "{s}");
    snapshot("top_mode_c_140x32", &s);
}

#[test]
fn small_and_ascii_terminals() {
    let app = app_after(2, false, true);
    let s = render(&app, 80, 24);
    assert!(s.is_ascii(), "ASCII mode drew non-ASCII:\n{s}");
    assert!(s.contains("IPI rx"), "{s}");
    for line in s.lines() {
        assert!(line.chars().count() <= 80);
    }
    // The default terminal's size, laid out on purpose: header, titles and footer whole, no
    // blank table rows while the panes below have something to show.
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[2].contains("counters:"), "{}", lines[2]);
    assert!(
        lines[3].starts_with("+ per CPU (? explains the columns) -"),
        "{}",
        lines[3]
    );
    assert!(lines.last().unwrap().ends_with("? help"), "{s}");
    let panes = lines
        .iter()
        .position(|l| l.contains("where packets went"))
        .unwrap();
    let blank = lines[4..panes]
        .iter()
        .filter(|l| l.trim_matches(['|', '+', '-', ' ']).is_empty())
        .count();
    assert_eq!(
        blank, 1,
        "only the table's bottom border, no blank rows:\n{s}"
    );
    assert!(s.contains("model B: counter rules -"), "{s}");
    assert!(
        s.contains("history") && s.contains("NET_RX/s      0"),
        "{s}"
    );
    snapshot("top_ascii_80x24", &s);
    let tiny = render(&app, 30, 5);
    assert!(tiny.contains("terminal too"), "{tiny}");
}

#[test]
fn detail_and_help_views() {
    let mut app = app_after(4, false, false);
    app.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    let s = render(&app, 120, 36);
    assert!(s.contains("CPU 1 (Enter: back to the table)"), "{s}");
    assert!(s.contains("remote_softirq (5000 packets"), "{s}");
    snapshot("top_detail_120x36", &s);
    app.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE));
    let s = render(&app, 120, 36);
    assert!(s.contains("export the current view as JSON"), "{s}");
}

#[test]
fn a_divergence_reaches_the_pane() {
    // Mode C expected, but the kernel sends RPS IPIs: C-2 and C-3 fail on CPU 1.
    let mut app = App::new(header("B"), Checks::new(Mode::C, 2, 2, true), false);
    let mut c = [CpuCounters::zeroed(); 2];
    let mut w = [0u64; 2];
    let prev = Snapshot {
        cpus: [(0, c[0]), (1, c[1])].into(),
        ..Snapshot::default()
    };
    rps_second(&mut c, &mut w, 800, false);
    let cur = Snapshot {
        at: 1.0,
        cpus: [(0, c[0]), (1, c[1])].into(),
        ..Snapshot::default()
    };
    app.push(Sample::between(&prev, &cur));
    let s = render(&app, 140, 30);
    assert!(s.contains("C-2  FAIL"), "{s}");
    assert!(
        s.contains("C-3 cpu1: 800 remote packets in the NET_RX softirq"),
        "{s}"
    );
}

/// The kernel's own counters for CPU 1 (processed, received_rps, NET_RX) at `ts`.
fn kernel_at(ts: u64, processed: u32, rps: u32, net_rx: u32) -> analysis::kcounters::Snapshot {
    analysis::kcounters::Snapshot {
        ts_lo: ts,
        ts_hi: ts,
        cpus: vec![analysis::kcounters::CpuCounters {
            cpu: 1,
            processed,
            received_rps: rps,
            net_rx: Some(net_rx),
            ..Default::default()
        }],
    }
}

fn counted_snapshot(at: f64, delivered: u64, ipis: u64, runs: u64) -> Snapshot {
    let mut c = CpuCounters::zeroed();
    c.deliveries[1] = delivered;
    c.rps_ipi_received = ipis;
    c.net_rx_runs[0] = runs;
    let mut s = Snapshot {
        at,
        ..Snapshot::default()
    };
    s.cpus.insert(1, c);
    s
}

#[test]
fn top_holds_its_counts_against_the_kernels_counters() {
    // Interval 1: the kernel counted 1000 packets, 100 IPIs, 100 NET_RX; the programs all.
    // Interval 2: the kernel 2000 more, the programs 1990 (the kernel skipped 10).
    let mut s0 = counted_snapshot(0.0, 0, 0, 0);
    s0.kernel = Some((kernel_at(0, 0, 0, 0), kernel_at(1, 0, 0, 0)));
    let mut s1 = counted_snapshot(1.0, 1000, 100, 100);
    s1.kernel = Some((kernel_at(10, 1000, 100, 100), kernel_at(11, 1000, 100, 100)));
    let mut s2 = counted_snapshot(2.0, 2990, 200, 200);
    s2.kernel = Some((kernel_at(20, 3000, 200, 200), kernel_at(21, 3000, 200, 200)));
    let mut app = App::new(header("B"), Checks::new(Mode::B, 0, 2, true), false);
    assert_eq!(app.kernel_summary(), "kernel counters: not read yet");
    app.push(Sample::between(&s0, &s1));
    assert_eq!(app.kernel_summary(), "kernel counters: match");
    app.push(Sample::between(&s1, &s2));
    let said = app.kernel_summary();
    assert!(said.contains("cpu1 processed -10"), "{said}");
    assert!(!said.contains("received_rps"), "{said}");
    assert_eq!(
        app.to_json()["kernel_counters"]["short_since_start"]["cpu1.processed"],
        10
    );
    // A device or task filter counts a subset on purpose: nothing is compared then.
    app.text_filter = Some(crate::live::filter::TextFilter::Dev("veth0".into()));
    assert!(app.kernel_summary().contains("not compared"));
}

#[test]
fn narrow_terminals_keep_the_essential_columns() {
    let all = ui::columns_for(200);
    assert_eq!(all.len(), ui::COLUMNS.len());
    let narrow: Vec<_> = ui::columns_for(80).iter().map(|c| c.0).collect();
    for must in ["CPU", "NET_RX/s", "pkts/s", "IPI tx", "IPI rx"] {
        assert!(
            narrow.contains(&must),
            "{must} missing at 80 columns: {narrow:?}"
        );
    }
    let w: u16 = ui::columns_for(80).iter().map(|c| c.1 + 1).sum::<u16>() + 2;
    assert!(w <= 80, "{w}");
}
