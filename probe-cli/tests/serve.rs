//! `napiscope serve` scraped by a real Prometheus (Debian's `prometheus`, started here on
//! loopback): the exposition passes `promtool check metrics`, and the rates Prometheus
//! computes from it match the veth + RPS scenario and the kernel's own counters.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

mod common;
use common::{kernel_lock, kernel_tests_enabled, napiscope, tmp_dir, BIN};

const SERVE: &str = "127.0.0.1:19977";
const PROM: &str = "127.0.0.1:19090";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One number from Prometheus's query API (an instant vector of one sample), at `time`.
fn query(q: &str, time: Option<f64>) -> Option<f64> {
    let url = format!("http://{PROM}/api/v1/query");
    let t = time.map(|t| format!("time={t:.3}"));
    let mut args = vec!["--get", "--data-urlencode"];
    let qq = format!("query={q}");
    args.push(&qq);
    if let Some(t) = &t {
        args.extend(["--data-urlencode", t]);
    }
    args.push(&url);
    let v: Value = serde_json::from_str(&curl(&args)?).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn received_rps() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .map(|l| u64::from_str_radix(l.split_whitespace().nth(9).unwrap_or("0"), 16).unwrap_or(0))
        .sum()
}

#[test]
fn prometheus_scrapes_serve_and_its_rates_match_the_scenario() {
    if !kernel_tests_enabled() {
        return;
    }
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("Debian's prometheus is not installed (apt-get install prometheus; .ci/run does)");
    }
    let _lock = kernel_lock();
    let dir = tmp_dir("serve");
    let serve = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", SERVE, "--interval", "500ms"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics_url = format!("http://{SERVE}/metrics");
    wait_for("serve answering /metrics", 60, || {
        curl(&[&metrics_url]).is_some_and(|m| m.contains("napiscope_build_info"))
    });

    // Both formats, and promtool's linter on the classic one.
    let text = curl(&[&metrics_url]).unwrap();
    let open = curl(&[
        "-H",
        "Accept: application/openmetrics-text; version=1.0.0",
        &metrics_url,
    ])
    .unwrap();
    assert!(
        open.ends_with("# EOF\n") && !text.contains("# EOF"),
        "{open}"
    );
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let lint = lint.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: napiscope\n    \
             static_configs: [{{targets: ['{SERVE}']}}]\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={PROM}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("Prometheus scraping serve", 60, || {
        query("up{job=\"napiscope\"}", None) == Some(1.0)
    });

    let rps_before = received_rps();
    let start = now();
    let out = napiscope(&[
        "scenario", "veth-rps", "--rate", "2000", "-d", "6s", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (received, secs) = (
        rep["received"].as_f64().unwrap(),
        rep["seconds"].as_f64().unwrap(),
    );
    let rps_ipis = (received_rps() - rps_before) as f64;
    std::thread::sleep(Duration::from_secs(3)); // a scrape after the last packet

    // Prometheus's own rate over the middle of the run, against what the scenario received.
    let mid = start + secs / 2.0 + 1.0;
    let rate = query("sum(rate(napiscope_deliveries_total[4s]))", Some(mid)).unwrap();
    let want = received / secs;
    assert!(
        (rate - want).abs() < 0.35 * want,
        "Prometheus says {rate:.0} deliveries/s, the scenario received {want:.0}/s"
    );
    // Totals over the whole run: deliveries as received, RPS IPIs as the kernel counted them.
    let window = format!("{:.0}s", now() - start + 2.0);
    let delivered = query(
        &format!("sum(increase(napiscope_deliveries_total[{window}]))"),
        None,
    )
    .unwrap();
    assert!(
        (delivered - received).abs() < 0.15 * received + 50.0,
        "Prometheus: {delivered:.0} delivered, the scenario received {received}"
    );
    let ipis = query(
        &format!("sum(increase(napiscope_rps_ipis_received_total[{window}]))"),
        None,
    )
    .unwrap();
    assert!(
        (ipis - rps_ipis).abs() < 0.15 * rps_ipis + 20.0,
        "Prometheus: {ipis:.0} RPS IPIs received, softnet_stat: {rps_ipis}"
    );
    assert_eq!(query("napiscope_kernel_counters_compared", None), Some(1.0));
    assert_eq!(
        query("sum(napiscope_rule_divergences_total)", None),
        Some(0.0),
        "the host's mode diverged from its model"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
