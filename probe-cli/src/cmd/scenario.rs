//! `napiscope scenario`: drive test traffic through one receive path (`traffic`), inside
//! network namespaces it creates and removes.

use std::time::Duration;

use anyhow::Result;

use crate::{
    cli::{parse_duration, unknown_cpu, CliError},
    kernel::system,
    signals, traffic,
};

#[derive(clap::Args)]
pub struct Args {
    /// veth-rps: remote backlog path (RPS to --rx-cpu); veth-gro-rps: the same, steered
    /// from the receiving veth's GRO poll (no netif_rx); veth-gro-threaded: veth-gro-rps
    /// with the receiving veth's NAPI switched to threaded halfway (its polls move from the
    /// NET_RX softirq to its napi/nsc1-<id> thread); veth-gro-busy-poll: veth-gro-rps with
    /// a receiver on --rx-cpu busy polling the veth's NAPI (SO_BUSY_POLL); loopback: local path;
    /// loopback-rps: loopback with RPS to --rx-cpu
    #[arg(value_enum)]
    kind: traffic::Kind,
    /// CPU the UDP sender is pinned to
    #[arg(long, default_value_t = 0)]
    sender_cpu: u32,
    /// CPU RPS steers receive work to
    #[arg(long, default_value_t = 1)]
    rx_cpu: u32,
    /// How long to send
    #[arg(short, long, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Packets per second; 0 floods
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Take this CPU offline for the middle third of the run, then back online (exercises
    /// dev_cpu_dead; the CPU is brought back online however the scenario ends)
    #[arg(long, value_name = "CPU")]
    hotplug_cpu: Option<u32>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<u8> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::usage(
            "scenarios create network namespaces and need root (CAP_SYS_ADMIN + CAP_NET_ADMIN)",
        )
        .into());
    }
    let online = system::online_cpus();
    for c in [a.sender_cpu, a.rx_cpu] {
        if !online.contains(&c) {
            return Err(unknown_cpu(c, &online).into());
        }
    }
    if let Some(cpu) = a.hotplug_cpu {
        traffic::check_hotplug(cpu, a.sender_cpu).map_err(|e| CliError::usage(format!("{e:#}")))?;
    }
    let stop = signals::stop_flag_on_signals();
    let report = traffic::run(
        &traffic::Opts {
            kind: a.kind,
            sender_cpu: a.sender_cpu,
            rx_cpu: a.rx_cpu,
            duration: a.duration,
            rate: a.rate,
            hotplug_cpu: a.hotplug_cpu,
        },
        stop,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: sent {} UDP packets, received {} in {:.1}s",
            report.scenario, report.sent, report.received, report.seconds
        );
        if let Some(t) = &report.threaded {
            match (&t.switched_at_s, &t.error) {
                (Some(at), _) => println!(
                    "{} went threaded at {at:.1}s: {}",
                    t.dev,
                    t.threads
                        .iter()
                        .map(|(c, pid)| format!("{c} (pid {pid})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (None, Some(e)) => println!("{} did not go threaded: {e}", t.dev),
                (None, None) => println!("{} stayed unthreaded (stopped first)", t.dev),
            }
        }
    }
    Ok(0)
}
