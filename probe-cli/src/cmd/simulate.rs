//! `napiscope simulate`: a trace from the reference model, with the same schema as `record`.

use std::path::{Path, PathBuf};

use analysis::{
    check,
    mode::Mode,
    model::{
        sim::{simulate, SimOpts, Workload},
        Features,
    },
    Trace,
};
use anyhow::Result;

use crate::{
    cli::{parse_mode, CliError},
    output::print_paths,
};

#[derive(clap::Args)]
pub struct Args {
    /// A: no patch; B: patch, threads off; C: backlog_napi threads on
    #[arg(long, value_parser = parse_mode)]
    mode: Mode,
    /// CPUs of the simulated machine (rps uses 0 and 1; mixed uses all)
    #[arg(long, default_value_t = 2)]
    cpus: usize,
    /// rps: CPU 0 → RPS → CPU 1; loopback: local; mixed: every CPU, random targets
    #[arg(long, default_value = "rps", value_parser = parse_workload)]
    workload: Workload,
    /// Packets the workload sends (in all, not per CPU)
    #[arg(long, default_value_t = 2000)]
    packets: usize,
    /// Seed for the kernel's free choices (same seed, same trace)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kernel release whose version features to model (e.g. 6.1.0, 6.12.118)
    #[arg(long)]
    kernel: Option<String>,
    /// Write the trace here (Parquet, the schema `record` writes); without it only the
    /// packets by path are printed
    #[arg(short, long, value_name = "FILE.parquet")]
    output: Option<PathBuf>,
    /// Write N copies of the run back to back (each one second after the last, per-CPU
    /// seq continued): traces of any size with the model's mix of events, to measure
    /// `check` and `report` without holding them in memory here
    #[arg(long, default_value_t = 1, value_name = "N", requires = "output")]
    copies: u32,
}

pub fn run(a: Args) -> Result<u8> {
    let output = a.output.clone();
    run_simulate(a, output.as_deref())
}

fn run_simulate(a: Args, output: Option<&Path>) -> Result<u8> {
    let Args {
        mode,
        cpus,
        workload,
        ..
    } = a;
    if cpus == 0 || cpus > 1024 {
        return Err(CliError::usage(format!("--cpus must be 1..=1024, got {cpus}")).into());
    }
    if a.copies == 0 {
        return Err(CliError::usage("--copies must be at least 1").into());
    }
    let mut o = SimOpts::new(mode, cpus, workload);
    o.packets = a.packets;
    o.seed = a.seed;
    if let Some(k) = &a.kernel {
        o.features = Features::for_release(k);
    }
    let s = simulate(&o);
    let mut trace = Trace {
        events: s.events,
        meta: s.meta,
    };
    let report = check::check(&trace, Some(mode));
    if let Some(out) = output {
        let bytes = write_copies(out, &mut trace, a.copies)
            .map_err(|e| CliError::usage(format!("{e:#}")))?;
        let copies = match a.copies {
            1 => String::new(),
            n => format!(" in {n} copies"),
        };
        println!(
            "wrote {} simulated events{copies} (mode {}, {} CPUs, workload {}) to {} ({:.1} KB)",
            trace.events.len() as u64 * a.copies as u64,
            mode.as_str(),
            cpus,
            workload.name(),
            out.display(),
            bytes as f64 / 1e3
        );
    } else {
        println!(
            "simulated {} events (mode {}, {} CPUs, workload {}); use -o FILE to keep them",
            trace.events.len(),
            mode.as_str(),
            cpus,
            workload.name()
        );
    }
    print_paths(&report);
    Ok(0)
}

/// Write `copies` copies of the trace back to back: each copy's timestamps start one second
/// after the previous copy's last event (past every pairing window the checker uses), and
/// each CPU's seq continues where it stopped, so the file reads as one long recording.
/// The events are shifted in place between copies; nothing else is held in memory.
fn write_copies(out: &Path, trace: &mut Trace, copies: u32) -> Result<u64> {
    let mut w = analysis::TraceWriter::create(out)?;
    let (first, last) = trace
        .events
        .iter()
        .fold((u64::MAX, 0), |(a, b), e| (a.min(e.ts_ns), b.max(e.ts_ns)));
    let shift = last.saturating_sub(first) + 1_000_000_000;
    let mut seq_span: std::collections::HashMap<u32, (u64, u64)> = Default::default();
    for e in &trace.events {
        let s = seq_span.entry(e.cpu).or_insert((e.seq, e.seq));
        *s = (s.0.min(e.seq), s.1.max(e.seq));
    }
    for copy in 0..copies {
        if copy > 0 {
            for e in &mut trace.events {
                let (lo, hi) = seq_span[&e.cpu];
                e.ts_ns += shift;
                e.seq += hi - lo + 1;
            }
        }
        for e in &trace.events {
            w.push(e)?;
        }
    }
    if copies > 1 {
        trace.meta.set("sim_copies", copies.to_string());
    }
    w.finish(&trace.meta)
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::parse(s).ok_or_else(|| format!("unknown workload `{s}`: use rps, loopback or mixed"))
}
