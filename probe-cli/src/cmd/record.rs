//! `napiscope record`: the recorder (`recorder::run`) on the command line — its flags, where
//! `--hive` puts the file, and the summary it prints.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;

use crate::{
    cli::{parse_cpus, parse_duration, CliError, INCOMPLETE},
    output::fmt_counts,
    recorder::{self, background, RecordSummary},
};

#[derive(clap::Args)]
pub struct Args {
    /// Output Parquet file
    #[arg(
        short,
        long,
        value_name = "FILE.parquet",
        required_unless_present = "hive"
    )]
    output: Option<PathBuf>,
    /// Replace FILE if it exists (also a symbolic link: the link is replaced, not
    /// written through)
    #[arg(long)]
    force: bool,
    /// Write into a hive-partitioned tree instead of -o:
    /// DIR/host=<hostname>/kernel=<release>/<UTC start>.parquet (read it with `report DIR`)
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    hive: Option<PathBuf>,
    /// How long to record: 10, 10s, 500ms, 2m (default: until Ctrl-C)
    #[arg(short, long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Only record these CPUs, e.g. 0,2-3 (default: all)
    #[arg(short = 'C', long, value_name = "CPUS")]
    cpus: Option<String>,
    /// Ring buffer size in MiB (a power of two); raise it if events are lost
    #[arg(long, default_value_t = 64, value_parser = parse_ring_mb)]
    ring_buffer_mb: u32,
    /// Memory in MiB for events waiting to be encoded (default: 1024; at most a quarter
    /// of available memory, larger values are lowered to that). While it has room,
    /// Parquet encoding runs only on CPU time the traced workload leaves idle, so a busy
    /// machine is disturbed less and the file is finished after the recording stops; 0
    /// encodes at normal priority as events come. A bound, not allocated up front
    #[arg(long, value_name = "MiB")]
    encode_buffer_mb: Option<u64>,
    /// Write kernel addresses (skb, napi, csd) as they are, not as a per-recording hash
    #[arg(long)]
    raw_pointers: bool,
    /// Record softirq raise/entry/exit of every vector, not only NET_RX
    #[arg(long)]
    all_softirqs: bool,
    /// Attach classic tracepoints everywhere, also where a raw tracepoint reads the same
    /// values for less (to compare the two; `status` lists which kind each probe uses)
    #[arg(long)]
    classic_tracepoints: bool,
    /// No progress line
    #[arg(short, long)]
    quiet: bool,
    /// Print the final summary as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<u8> {
    let cpus = a.cpus.as_deref().map(parse_cpus).transpose()?;
    let output = match (a.output, a.hive) {
        (Some(o), _) => o,
        (None, Some(dir)) => hive_output(&dir)?,
        (None, None) => return Err(CliError::usage("give -o FILE or --hive DIR").into()),
    };
    let summary = recorder::run(recorder::RecordOpts {
        output,
        duration: a.duration,
        cpus,
        ring_buffer_mb: a.ring_buffer_mb,
        encode_buffer_mb: match a.encode_buffer_mb {
            Some(mb) => background::cap_buffer_mb(mb, a.quiet),
            None => background::default_buffer_mb(),
        },
        force: a.force,
        raw_pointers: a.raw_pointers,
        all_softirqs: a.all_softirqs,
        classic_tracepoints: a.classic_tracepoints,
        quiet: a.quiet,
        control: None,
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(if summary.incomplete() { INCOMPLETE } else { 0 })
}

fn parse_ring_mb(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of MiB"))?;
    if v == 0 || !v.is_power_of_two() || v > 2048 {
        return Err(format!(
            "ring buffer size must be a power of two between 1 and 2048 MiB, got {v}"
        ));
    }
    Ok(v)
}

pub fn print_summary(s: &RecordSummary) {
    println!(
        "wrote {} events to {} ({:.1} MB, {:.1} bytes/event) in {:.1}s — {:.0} events/s, stopped by {}",
        s.events,
        s.output,
        s.bytes as f64 / 1e6,
        s.bytes_per_event,
        s.seconds,
        s.events_per_second,
        s.stop_reason
    );
    if s.lost_total > 0 {
        println!(
            "LOST {} events (per CPU: {:?}): the ring buffer was full; raise --ring-buffer-mb \
             or narrow -C. `napiscope check` treats windows with losses as inconclusive.",
            s.lost_total, s.lost_per_cpu
        );
    }
    print_completeness(s);
    let blind = analysis::kcounters::blind_lines(&s.blind);
    if !blind.is_empty() {
        println!(
            "blind windows (the kernel skipped every napiscope program there; `check` treats \
             them as lost):"
        );
        for l in blind {
            println!("  {l}");
        }
    }
    if !s.missed_by_event.is_empty() {
        println!(
            "skipped by the kernel's eBPF recursion guard (not in seq): {:?} — `check` treats \
             these events as possibly missing",
            s.missed_by_event
        );
    }
    println!("{:<28} {:>10}", "event", "count");
    for (k, v) in &s.per_event {
        println!("{k:<28} {v:>10}");
    }
    println!("per CPU: {}", fmt_counts(&s.per_cpu, "cpu"));
    if let Some(p) = &s.paths {
        println!(
            "received packets by path: {}{}",
            fmt_counts(p, ""),
            s.rps_hops
                .map(|h| format!(
                    "; complete RPS hops (netif_rx → IPI → NET_RX → receive → poll): {h}"
                ))
                .unwrap_or_default()
        );
    }
}

/// Held against the kernel's counters: per CPU and counter, and the verdict.
fn print_completeness(s: &RecordSummary) {
    match &s.kernel_counters {
        Some(k) => {
            println!("against the kernel's own counters (from the first to the last second):");
            for l in k.lines() {
                println!("  {l}");
            }
            let (min, max) = k.short_total();
            match k.verdict {
                analysis::kcounters::Completeness::Complete => println!(
                    "complete: every event the kernel counted is in the file, and no sequence \
                     number is missing"
                ),
                analysis::kcounters::Completeness::Incomplete if max > 0 => println!(
                    "INCOMPLETE: the kernel counted {} more events than the file holds, with \
                     no ring loss and no recursion miss to explain them (the kernel skipped \
                     the programs: see docs/completeness.md). `check` treats those events as \
                     possibly missing: INCONCLUSIVE, never FAIL.",
                    if min == max {
                        min.to_string()
                    } else {
                        format!("{min}–{max}")
                    }
                ),
                analysis::kcounters::Completeness::Incomplete => println!(
                    "INCOMPLETE: the counters match, but events were lost or skipped (see \
                     above)"
                ),
                analysis::kcounters::Completeness::Unknown => println!(
                    "completeness unknown: no kernel counter could be compared (see above)"
                ),
            }
        }
        None if s.lost_total == 0 && s.seq_gaps_per_cpu.iter().all(|g| *g == 0) => println!(
            "no events lost by the ring (per-CPU sequence numbers have no gaps); the kernel's \
             counters could not be read, so events the kernel skipped would not show"
        ),
        None => {}
    }
}

/// A hive path component value: no separators, no `=`.
fn part(v: &str) -> String {
    let v: String = v
        .trim()
        .chars()
        .map(|c| {
            if c == '/' || c == '=' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if v.is_empty() {
        "unknown".into()
    } else {
        v
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `DIR/host=<hostname>/kernel=<release>/<UTC start>.parquet`, directories created.
pub fn hive_output(dir: &Path) -> Result<PathBuf> {
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let host = part(&read("/proc/sys/kernel/hostname"));
    let kernel = part(&read("/proc/sys/kernel/osrelease"));
    let d = dir
        .join(format!("host={host}"))
        .join(format!("kernel={kernel}"));
    std::fs::create_dir_all(&d).map_err(|e| {
        CliError::usage(format!(
            "--hive: cannot create directory {}: {e}",
            d.display()
        ))
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, mo, da) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let name = format!(
        "{y:04}{mo:02}{da:02}T{:02}{:02}{:02}Z-{}.parquet",
        s / 3600,
        s / 60 % 60,
        s % 60,
        std::process::id()
    );
    Ok(d.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_mb("16").unwrap(), 16);
        assert!(parse_ring_mb("3").is_err());
        assert!(parse_ring_mb("0").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_513), (2026, 3, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn hive_values_have_no_separators() {
        assert_eq!(part(" a/b=c \n"), "a_b_c");
        assert_eq!(part(""), "unknown");
    }

    #[test]
    fn hive_output_is_host_then_kernel() {
        let d = std::env::temp_dir().join(format!("napiscope-hive-{}", std::process::id()));
        let p = hive_output(&d).unwrap();
        let rel = p.strip_prefix(&d).unwrap();
        let c: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c[0].starts_with("host=") && c[1].starts_with("kernel="));
        assert!(c[2].ends_with(".parquet"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
