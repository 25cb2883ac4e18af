//! `cargo xtask bench --report`: time and peak memory of `napiscope report --json` on
//! recordings of 1M, 10M and 50M events; a section of BENCHMARKS.md.
//!
//! The traces: one simulated recording of about 1M events (mode B, 4 CPUs, mixed RPS),
//! written 1, 10 and 50 times back to back by `napiscope simulate --copies` (timestamps
//! shifted past the packet pairing window, per-CPU seq continued), so the big files have the
//! simulator's mix of events without holding 50M events in the simulator's memory. The
//! checker benchmark reads the same files.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use super::measure::{timed, trace, Timed, B_PACKETS_PER_1M};
use crate::util::utc_now;

const SIZES: &[(&str, u64)] = &[("1M", 1), ("10M", 10), ("50M", 50)];
const BEGIN: &str = "<!-- bench-report: begin -->";
const END: &str = "<!-- bench-report: end -->";

pub fn run(bin: &Path) -> Result<()> {
    let max = std::env::var("BENCH_REPORT_MAX").ok();
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for (name, copies) in SIZES {
        let f = trace(bin, &dir, "B", B_PACKETS_PER_1M, name, *copies)?;
        let size = std::fs::metadata(&f)?.len() as f64 / 1e6;
        println!("==> napiscope report --json {}", f.display());
        let Timed {
            secs, rss_mib: rss, ..
        } = timed(Command::new(bin).args(["report", "--json"]).arg(&f))?;
        let out = Command::new(bin)
            .args(["report", "--json"])
            .arg(&f)
            .output()?;
        let events = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["totals"]["events"].as_f64())
            .filter(|n| *n > 0.0)
            .context("`napiscope report --json` gave no totals.events")?;
        println!("    {events} events, {secs:.1} s, peak RSS {rss:.0} MiB");
        rows.push(format!(
            "| {name} | {events:.0} | {size:.0} MB | {secs:.1} s | {:.2} M events/s | {rss:.0} MiB |",
            events / secs / 1e6
        ));
        if max.as_deref() == Some(*name) {
            break;
        }
    }
    let section = format!(
        "{BEGIN}\n## `napiscope report`\n\n\
         | trace | events | file | time | rate | peak RSS |\n|---|---|---|---|---|---|\n{}\n\n\
         One run each of `napiscope report --json FILE` (release build, all cores), on the \
         checker's traces: a simulated mode B run (4 CPUs, mixed RPS, 83k packets, 1M events) \
         written 1, 10 and 50 times back to back by `napiscope simulate --copies`. Peak RSS is \
         the child's `ru_maxrss`. Produced by `cargo xtask bench --report` on {}.\n{END}\n",
        rows.join("\n"),
        utc_now()?
    );
    let md = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    std::fs::write("BENCHMARKS.md", put_section(&md, &section))?;
    print!("{section}");
    Ok(())
}

/// `md` with its report section replaced by `section` (markers included), or `section`
/// appended after a blank line when `md` has none.
fn put_section(md: &str, section: &str) -> String {
    match (md.find(BEGIN), md.find(END)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{section}{}",
            &md[..a],
            &md[b + END.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n{section}", md.trim_end()),
    }
}

/// The report section of an existing BENCHMARKS.md, markers included.
pub fn section_of(md: &str) -> Option<String> {
    let (a, b) = (md.find(BEGIN)?, md.find(END)?);
    (b > a).then(|| format!("{}\n", &md[a..b + END.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_section_is_replaced_in_place_or_appended() {
        let section = |body: &str| format!("{BEGIN}\n{body}\n{END}\n");
        let md = put_section("# title\n\n", &section("one"));
        assert_eq!(md, format!("# title\n{}", section("one")));
        let md = format!("{md}\n## after\n");
        let md = put_section(&md, &section("two"));
        assert_eq!(md, format!("# title\n{}## after\n", section("two")));
        assert_eq!(section_of(&md), Some(section("two")));
        assert_eq!(section_of("# no section\n"), None);
    }
}
