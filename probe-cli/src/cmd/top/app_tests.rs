//! `app`'s tests: keys, filters and state, without a terminal.

use super::*;
use analysis::mode::Mode;

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

pub fn app_with(cpus: &[(u32, f64)]) -> App {
    let mut a = App::new(Header::default(), Checks::new(Mode::B, 0, 2, true), true);
    a.push(Sample {
        at: 1.0,
        cpus: cpus
            .iter()
            .map(|&(cpu, rx)| CpuRates {
                cpu,
                rps_ipi_received: rx,
                ..CpuRates::default()
            })
            .collect(),
        ..Sample::default()
    });
    a
}

#[test]
fn sort_filter_and_select() {
    let mut a = app_with(&[(0, 5.0), (1, 50.0), (2, 20.0)]);
    let order = |a: &App| a.rows().iter().map(|c| c.cpu).collect::<Vec<_>>();
    assert_eq!(order(&a), [0, 1, 2]);
    // s cycles: NET_RX, pkts, enq, IPI rx (descending).
    for _ in 0..4 {
        a.on_key(key(KeyCode::Char('s')));
    }
    assert_eq!(a.sort, SortKey::IpiRx);
    assert_eq!(order(&a), [1, 2, 0]);
    a.on_key(key(KeyCode::Char('S')));
    assert_eq!(order(&a), [0, 2, 1]);
    a.on_key(key(KeyCode::Char('c')));
    for ch in "1-2".chars() {
        a.on_key(key(KeyCode::Char(ch)));
    }
    a.on_key(key(KeyCode::Enter));
    assert_eq!(order(&a), [2, 1]);
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Down));
    assert_eq!(a.selected_cpu(), Some(1));
    a.on_key(key(KeyCode::Char('c')));
    for ch in "x".chars() {
        a.on_key(key(KeyCode::Char(ch)));
    }
    a.on_key(key(KeyCode::Enter));
    assert!(a.message.as_deref().unwrap().contains("not a CPU list"));
    assert_eq!(order(&a), [2, 1], "a bad list keeps the old filter");
}

#[test]
fn keys_map_to_actions() {
    let mut a = app_with(&[(0, 1.0)]);
    assert_eq!(a.on_key(key(KeyCode::Char('e'))), Action::Export);
    a.on_key(key(KeyCode::Char('/')));
    for ch in "dev=veth".chars() {
        a.on_key(key(KeyCode::Char(ch)));
    }
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        Action::SetFilter(Some(TextFilter::Dev("veth".into())))
    );
    a.on_key(key(KeyCode::Char('p')));
    assert!(a.paused);
    let before = a.samples;
    a.push(Sample::default());
    assert_eq!(a.samples, before, "paused: the screen keeps its sample");
    a.on_key(key(KeyCode::Char('?')));
    assert_eq!(a.view, View::Help);
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.view, View::Table);
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn filters_parse() {
    assert_eq!(TextFilter::parse("").unwrap(), None);
    assert_eq!(
        TextFilter::parse("comm=iperf3").unwrap(),
        Some(TextFilter::Comm("iperf3".into()))
    );
    assert_eq!(
        TextFilter::parse("eth0").unwrap(),
        Some(TextFilter::Dev("eth0".into()))
    );
    assert!(TextFilter::parse("pid=1").is_err());
    assert!(TextFilter::parse("dev=0123456789abcdefg").is_err());
}

#[test]
fn json_has_the_rows_shown() {
    let mut a = app_with(&[(0, 5.0), (1, 50.0)]);
    a.cpu_filter = Some(vec![1]);
    let j = a.to_json();
    assert_eq!(j["cpus"].as_array().unwrap().len(), 1);
    assert_eq!(j["cpus"][0]["rps_ipi_received"], 50.0);
    assert_eq!(j["conformance"]["mode"], "B");
}
