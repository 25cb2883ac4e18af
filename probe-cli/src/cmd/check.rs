//! `napiscope check`: a trace against the reference model's rules; as text, JSON or JUnit.

use std::path::{Path, PathBuf};

use analysis::{
    check::{self, CheckReport, Verdict},
    mode::Mode,
};
use anyhow::{Context as _, Result};

use crate::{
    cli::{parse_mode, CliError, INCOMPLETE},
    output::print_paths,
};

#[derive(clap::Args)]
pub struct Args {
    /// A recording (`napiscope record`) or a simulated trace (`napiscope simulate`), Parquet
    #[arg(value_name = "TRACE.parquet")]
    trace: PathBuf,
    /// Mode to check against: auto (from the trace, then its metadata), A, B or C
    #[arg(long, default_value = "auto", value_parser = parse_mode_auto)]
    pub(crate) mode: ModeArg,
    /// Print the verdict, every rule's counts and the divergences as one JSON object
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report (one test case per rule)
    #[arg(long, value_name = "FILE.xml")]
    junit: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<u8> {
    run_check(&a.trace, a.mode.0, a.json, a.junit.as_deref())
}

fn run_check(trace: &Path, mode: Option<Mode>, json: bool, junit: Option<&Path>) -> Result<u8> {
    // Straight into columns: no per-row Event with owned strings.
    let (cols, meta) =
        analysis::trace::read_columns(trace).map_err(|e| CliError::usage(format!("{e:#}")))?;
    if cols.is_empty() {
        return Err(CliError::usage(format!("{} holds no events", trace.display())).into());
    }
    let report = check::check_cols(cols, &meta, mode);
    if let Some(j) = junit {
        std::fs::write(j, junit_xml(&report, &trace.display().to_string()))
            .with_context(|| format!("writing {}", j.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &trace.display().to_string());
    }
    Ok(exit_code(&report))
}

/// 1 when a rule diverged, else 3 (`INCOMPLETE`) when the trace misses events, else 0.
pub fn exit_code(r: &CheckReport) -> u8 {
    if r.divergent() {
        1
    } else if r.incomplete() {
        INCOMPLETE
    } else {
        0
    }
}

/// The completeness lines of a check: per CPU and counter, and the verdict.
fn print_completeness(r: &CheckReport) {
    if let Some(k) = &r.kernel_counters {
        println!("against the kernel's own counters (recorded at start and end):");
        for l in k.lines() {
            println!("  {l}");
        }
    }
    for l in analysis::kcounters::blind_lines(&r.blind) {
        println!("  blind: {l} (inconclusive there)");
    }
    match r.completeness {
        analysis::kcounters::Completeness::Complete => {
            println!("completeness: complete (every event the kernel counted is in the trace)")
        }
        analysis::kcounters::Completeness::Incomplete => println!(
            "completeness: INCOMPLETE — events are missing; the rules that need them are \
             INCONCLUSIVE, not FAIL (exit 3 unless a rule still diverges)"
        ),
        analysis::kcounters::Completeness::Unknown => println!(
            "completeness: unknown (the trace has no kernel-counter snapshots: simulated, or \
             recorded before napiscope kept them)"
        ),
    }
}

pub fn print_report(r: &CheckReport, name: &str) {
    println!(
        "{name}: {} events, {} backlog batches, mode {} ({})",
        r.events,
        r.batches,
        r.mode.map_or("?", Mode::as_str),
        r.mode_source
    );
    if r.lost_events > 0 {
        println!(
            "lost events: {} (windows touched by them are inconclusive)",
            r.lost_events
        );
    }
    print_completeness(r);
    print_paths(r);
    println!(
        "{:<6} {:<13} {:>7} {:>6} {:>6} {:>7}  rule",
        "id", "verdict", "pass", "fail", "warn", "inconc"
    );
    for x in &r.rules {
        println!(
            "{:<6} {:<13} {:>7} {:>6} {:>6} {:>7}  {}{}",
            x.id,
            x.verdict.name(),
            x.passed,
            x.failed,
            x.warned,
            x.inconclusive,
            x.title,
            x.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    let divs: Vec<_> = r.rules.iter().flat_map(|x| &x.divergences).collect();
    if !divs.is_empty() {
        println!("\ndivergences (first {} per rule):", 10);
        for d in divs.iter().take(30) {
            println!(
                "  {} cpu{} {:.6} s: {}",
                d.rule,
                d.cpu,
                d.ts_ns as f64 / 1e9,
                d.message
            );
            println!("      expected: {}", d.expected);
            for e in &d.events {
                println!("      | {e}");
            }
        }
    }
    println!(
        "\nverdict: {}",
        match r.verdict {
            Verdict::Fail => "DIVERGENT (the kernel did not do what the model says)",
            Verdict::Warn => "CONFORMANT with warnings",
            Verdict::Pass => "CONFORMANT",
            Verdict::Inconclusive => "INCONCLUSIVE (nothing the rules could decide)",
        }
    );
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn junit_xml(r: &CheckReport, name: &str) -> String {
    let fails = r
        .rules
        .iter()
        .filter(|x| x.verdict == Verdict::Fail)
        .count();
    let skips = r
        .rules
        .iter()
        .filter(|x| x.verdict == Verdict::Inconclusive)
        .count();
    let incomplete = r.incomplete();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"napiscope check {}\" tests=\"{}\" failures=\"{fails}\" skipped=\"{}\">\n",
        xml_escape(name),
        r.rules.len() + 1,
        skips + usize::from(incomplete)
    );
    s.push_str("  <testcase classname=\"napiscope\" name=\"recording complete\">");
    if incomplete {
        let why = r
            .kernel_counters
            .as_ref()
            .map(|k| k.lines().join("\n"))
            .unwrap_or_else(|| format!("{} events lost", r.lost_events));
        s.push_str(&format!(
            "<skipped message=\"the recording misses events: inconclusive\">{}</skipped>",
            xml_escape(&why)
        ));
    }
    s.push_str("</testcase>\n");
    for x in &r.rules {
        s.push_str(&format!(
            "  <testcase classname=\"napiscope.mode{}\" name=\"{} {}\">",
            r.mode.map_or("?", Mode::as_str),
            x.id,
            xml_escape(x.title)
        ));
        match x.verdict {
            Verdict::Fail => {
                let body: Vec<String> = x
                    .divergences
                    .iter()
                    .map(|d| format!("{}\nexpected: {}", d.message, d.expected))
                    .collect();
                s.push_str(&format!(
                    "<failure message=\"{} instance(s) diverge\">{}</failure>",
                    x.failed,
                    xml_escape(&body.join("\n\n"))
                ));
            }
            Verdict::Inconclusive => s.push_str(&format!(
                "<skipped message=\"{}\"/>",
                xml_escape(x.note.as_deref().unwrap_or("inconclusive"))
            )),
            _ => {}
        }
        s.push_str("</testcase>\n");
    }
    s.push_str("</testsuite>\n");
    s
}

/// `--mode auto|A|B|C`: None = auto.
#[derive(Clone, Copy, Debug)]
pub struct ModeArg(pub Option<Mode>);

fn parse_mode_auto(s: &str) -> Result<ModeArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        Ok(ModeArg(None))
    } else {
        parse_mode(s).map(|m| ModeArg(Some(m)))
    }
}
