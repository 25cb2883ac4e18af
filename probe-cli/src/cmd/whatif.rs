//! `napiscope whatif`: a recording's packets replayed through the model of another mode, as
//! a table of what was observed against what the other mode would have done.

use std::path::PathBuf;

use analysis::{
    mode::Mode,
    whatif::{self, WhatIf, WhatIfOpts},
};
use anyhow::Result;

use crate::cli::{parse_mode, CliError};

pub const AFTER_HELP: &str =
    "How it works: every packet the recording delivered (netif_rx paired with its
netif_receive_skb) is an arrival: when, on which CPU, and to which backlog (the CPU that
received it, i.e. RPS's choice). The arrivals are replayed through napiscope's model of
net/core/dev.c with the other mode's use_backlog_threads(), and the replay is counted the way
the recording is: NET_RX raises and runs, RPS IPIs sent/received, backlog_napi/N wake-ups and
runs, backlog polls and batches, packets by path, median latency by path.

The replay fixes what the kernel leaves to timing: an RPS IPI takes --ipi-latency, a woken
backlog_napi/N runs --wake-latency later. Each defaults to the recording's own median when it
shows one, else to the other one's median (both are an idle CPU being woken), and the output
says which. It cannot know the thread's real scheduling latency, how the senders would pace
themselves in the other mode, ksoftirqd deferral or idle polling: compare per packet.

Examples:
  napiscope record -o b.parquet -d 5 & napiscope scenario loopback-rps -d 3s
  napiscope whatif --mode C b.parquet             threads on: IPIs gone, wake-ups instead
  napiscope whatif --mode C b.parquet --wake-latency 50us --json
  napiscope whatif --mode B threads-on.parquet    the reverse

Exit codes: 0 done, 2 bad input (missing file, not a trace, no delivered packet, a mode the
trace cannot tell, or --mode equal to the trace's own).";

#[derive(clap::Args)]
pub struct Args {
    /// A recording (`napiscope record`) or a simulated trace, Parquet
    #[arg(value_name = "TRACE.parquet")]
    trace: PathBuf,
    /// The mode to predict: A or B (RPS IPIs, NET_RX softirq), C (backlog_napi threads);
    /// not the trace's own
    #[arg(long, value_parser = parse_mode)]
    mode: Mode,
    /// RPS IPI flight time to assume (csd_queue_cpu → rps_trigger_softirq), e.g. 20us
    #[arg(long, value_name = "TIME", value_parser = parse_ns)]
    ipi_latency: Option<u64>,
    /// backlog_napi/N wake-up to run time to assume (sched_waking → sched_switch), e.g. 50us
    #[arg(long, value_name = "TIME", value_parser = parse_ns)]
    wake_latency: Option<u64>,
    /// Print the comparison (per CPU, totals, per packet, latencies, assumptions) as JSON
    #[arg(long)]
    json: bool,
}

/// "20us", "1.5ms", "800ns", "0.00002s" → ns.
fn parse_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
    ]
    .iter()
    .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
    .ok_or_else(|| format!("`{s}`: give a unit (ns, us, ms or s), e.g. 20us"))?;
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a time (e.g. 20us)"))?;
    if !v.is_finite() || v < 0.0 || v * mul > 1e12 {
        return Err(format!("`{s}`: between 0 and 1000 s"));
    }
    Ok((v * mul).round() as u64)
}

pub fn run(a: Args) -> Result<u8> {
    let t = analysis::read_trace(&a.trace)
        .map_err(|e| CliError::usage(format!("{}: {e:#}", a.trace.display())))?;
    let o = WhatIfOpts {
        ipi_ns: a.ipi_latency,
        wake_ns: a.wake_latency,
    };
    let w = whatif::whatif(&t, a.mode, &o).map_err(CliError::usage)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&w)?);
    } else {
        print_table(&w, &a.trace.display().to_string());
    }
    Ok(0)
}

fn print_table(w: &WhatIf, name: &str) {
    let (o, p) = (&w.observed, &w.predicted);
    println!(
        "{name}: mode {} ({}), {} CPUs, {} packets replayed{}",
        o.mode.as_str(),
        w.mode_evidence,
        w.cpus,
        w.packets,
        match w.not_replayed {
            0 => String::new(),
            n => format!(" ({n} netif_rx without a delivery left out)"),
        }
    );
    println!(
        "assumed: RPS IPI {:.1} µs ({}), backlog_napi wake-up {:.1} µs ({})\n",
        w.ipi.ns as f64 / 1e3,
        w.ipi.source,
        w.wake.ns as f64 / 1e3,
        w.wake.source
    );
    let (om, pm) = (o.mode.as_str(), p.mode.as_str());
    println!(
        "{:<20} {:>12} {:>12} {:>10} {:>10}",
        "quantity",
        format!("observed {om}"),
        format!("predicted {pm}"),
        "obs/pkt",
        "pred/pkt"
    );
    let pq = p.total.quantities();
    for ((k, ov), (_, pv)) in o.total.quantities().into_iter().zip(pq) {
        println!(
            "{k:<20} {ov:>12} {pv:>12} {:>10.3} {:>10.3}",
            o.per_packet[k], p.per_packet[k]
        );
    }
    println!("\nmedian latency netif_rx → netif_receive_skb (µs):");
    let paths: std::collections::BTreeSet<&str> = o
        .latency_us
        .keys()
        .chain(p.latency_us.keys())
        .copied()
        .collect();
    for k in paths {
        let f = |m: &std::collections::BTreeMap<&str, f64>| {
            m.get(k).map_or("-".to_string(), |v| format!("{v:.1}"))
        };
        println!(
            "  {k:<18} {:>12} {:>12}",
            f(&o.latency_us),
            f(&p.latency_us)
        );
    }
    println!("\nper CPU (observed → predicted): RPS IPIs received, thread wake-ups, batches");
    for (cpu, (oc, pc)) in o.per_cpu.iter().zip(&p.per_cpu).enumerate() {
        println!(
            "  CPU {cpu}: IPIs {} → {}, wake-ups {} → {}, batches {} → {}, packets {} → {}",
            oc.rps_ipis_received,
            pc.rps_ipis_received,
            oc.thread_wakeups,
            pc.thread_wakeups,
            oc.batches,
            pc.batches,
            oc.packets(),
            pc.packets()
        );
    }
    println!("\nwhat the prediction cannot know:");
    for c in &w.cannot_know {
        println!("  - {c}");
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ns;

    #[test]
    fn times_take_a_unit() {
        assert_eq!(parse_ns("20us"), Ok(20_000));
        assert_eq!(parse_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_ns("800ns"), Ok(800));
        assert_eq!(parse_ns("2s"), Ok(2_000_000_000));
        assert!(parse_ns("20").is_err());
        assert!(parse_ns("-1us").is_err());
        assert!(parse_ns("xus").is_err());
    }
}
