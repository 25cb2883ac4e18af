//! `napiscope serve`: a Prometheus exporter. The same in-kernel counters as `top` (no events
//! cross to user space), read each interval, held against the model's counter rules and the
//! kernel's own counters, and served on `/metrics` in the Prometheus text format or
//! OpenMetrics.

mod metrics;
mod napi_metrics;

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use analysis::mode::Mode;
use anyhow::{Context as _, Result};

use crate::{
    build_info::VERSION,
    cli::{parse_duration, parse_mode, tracing_env, CliError},
    kernel::system,
    live::{checks::Checks, filter::TextFilter, rates::Sample, source::KernelSource},
    signals,
};
use metrics::{Exported, Info, Shared};

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve /metrics on; loopback unless you ask for more (e.g. 0.0.0.0:9977)
    #[arg(long, default_value = "127.0.0.1:9977", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// How often the counters are read and the model's counter rules checked
    #[arg(short, long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Check the kernel against this mode (A, B or C) instead of the detected one
    #[arg(long, value_parser = parse_mode)]
    expect_mode: Option<Mode>,
    /// Count only a device or a task, by name prefix: dev=veth0, comm=iperf3 (in the kernel)
    #[arg(long, value_name = "FILTER")]
    filter: Option<String>,
}

pub const AFTER_HELP: &str = "\
Examples:
  napiscope serve                              http://127.0.0.1:9977/metrics
  napiscope serve --listen 0.0.0.0:9977        reachable from other hosts (asked for)
  curl -s localhost:9977/metrics | grep rps_ipis

Prometheus scrape config:
  scrape_configs:
    - job_name: napiscope
      static_configs: [{targets: ['127.0.0.1:9977']}]

Every counter is a `_total` since serve started (napiscope_start_time_seconds says when; a
restart starts at 0, which rate() treats as a reset). Latency: napiscope_enqueue_to_delivery_seconds
histograms per CPU and path. The mode and its evidence: labels of napiscope_build_info.
Divergences from the model: napiscope_rule_divergences_total{rule}. A systemd unit is in
dist/napiscope-serve.service. SIGINT or SIGTERM stops it (probes detached).";

pub fn run(a: Args) -> Result<u8> {
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&a.interval) {
        return Err(CliError::usage("--interval must be between 100ms and 60s").into());
    }
    let filter = match &a.filter {
        Some(s) => TextFilter::parse(s).map_err(|e| CliError::usage(format!("--filter: {e}")))?,
        None => None,
    };
    let (env, tracefs) = tracing_env()?;
    let server = tiny_http::Server::http(a.listen)
        .map_err(|e| CliError::usage(format!("cannot listen on {}: {e}", a.listen)))?;
    eprintln!("napiscope serve: loading and attaching probes...");
    let online = system::online_cpus();
    let mut src = KernelSource::open(&tracefs, online.clone())?;
    for line in crate::kernel::probes::not_attached_lines(&src.loaded.results) {
        eprintln!("napiscope:   {line}");
    }
    src.set_filter(filter.as_ref())?;
    let mode = a.expect_mode.unwrap_or(env.mode.mode);
    let ipi_visible = src.loaded.results.iter().any(|r| {
        r.attached && (r.name == "csd:csd_function_entry" || r.name.contains("rps_trigger_softirq"))
    });
    let first = src.snapshot()?;
    let shared = Shared(Arc::new(Mutex::new(Exported {
        snap: first.clone(),
        checks: Checks::new(
            mode,
            system::backlog_threads().len(),
            online.len(),
            ipi_visible,
        ),
        kernel_short: Default::default(),
        kernel_compared: false,
        info: Info {
            version: VERSION.to_string(),
            kernel: env.kernel.release.clone(),
            mode: env.mode.mode.as_str().to_string(),
            checked_as: mode.as_str().to_string(),
            evidence: env.mode.evidence.join("; "),
            filter: filter.as_ref().map_or(String::new(), |f| f.describe()),
        },
        probes: src
            .loaded
            .results
            .iter()
            .map(|r| (r.name.clone(), r.attached))
            .collect(),
        start_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    })));
    let stop = signals::stop_flag_on_signals();
    eprintln!(
        "napiscope serve: http://{}/metrics (mode {}, every {:?})",
        a.listen,
        mode.as_str(),
        a.interval
    );
    let ticker = {
        let (shared, stop, filtered) = (shared.clone(), stop.clone(), filter.is_some());
        std::thread::spawn(move || tick(src, first, &shared, &stop, a.interval, filtered))
    };
    while !stop.load(Ordering::SeqCst) {
        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(200)) {
            answer(req, &shared);
        }
        if ticker.is_finished() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    match ticker.join() {
        Ok(r) => r.map(|()| 0),
        Err(_) => anyhow::bail!("the counter reader panicked"),
    }
}

/// Each interval: read the maps, check the counter rules on the interval, and hold it
/// against the kernel's counters (unless a filter counts only a subset).
fn tick(
    src: KernelSource,
    mut prev: crate::live::rates::Snapshot,
    shared: &Shared,
    stop: &std::sync::atomic::AtomicBool,
    every: Duration,
    filtered: bool,
) -> Result<()> {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(every);
        let cur = src.snapshot()?;
        let s = Sample::between(&prev, &cur);
        let mut e = shared
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("state poisoned"))?;
        e.checks.observe(&s);
        if !filtered && !s.kernel.is_empty() {
            e.kernel_compared = true;
            for k in &s.kernel {
                *e.kernel_short.entry((k.cpu, k.counter)).or_default() += k.short();
            }
        }
        e.snap = cur.clone();
        prev = cur;
    }
    Ok(())
}

fn answer(req: tiny_http::Request, shared: &Shared) {
    let accept = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map_or(String::new(), |h| h.value.to_string());
    let header =
        |v: &str| tiny_http::Header::from_bytes("Content-Type", v).expect("a valid header");
    let resp = match (req.method(), req.url()) {
        (tiny_http::Method::Get, "/metrics") => match metrics::render(shared, &accept) {
            Ok((body, ct)) => tiny_http::Response::from_string(body).with_header(header(ct)),
            Err(_) => tiny_http::Response::from_string("encoding failed\n").with_status_code(500),
        },
        (tiny_http::Method::Get, "/") => {
            tiny_http::Response::from_string("napiscope serve: metrics at /metrics\n")
                .with_header(header("text/plain; charset=utf-8"))
        }
        _ => tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404),
    };
    // A scraper that hung up is its problem, not the exporter's.
    let _ = req.respond(resp).context("answering a scrape");
}
