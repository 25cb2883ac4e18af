//! `napiscope report`: the analysis library's report on the terminal, as JSON or as SVGs.

use std::path::PathBuf;

#[cfg(feature = "report")]
use analysis::report::{self, compare, plot, render, InputError};
use anyhow::Result;

use crate::cli::CliError;

#[derive(clap::Args)]
#[cfg_attr(not(feature = "report"), allow(dead_code))]
pub struct Args {
    /// Trace files, or directories searched for *.parquet (hive `key=value/` directories
    /// become partitions, each reported on its own as well)
    #[arg(required = true, value_name = "TRACE.parquet|DIR")]
    inputs: Vec<PathBuf>,
    /// Machine-readable output: the same numbers as the tables, as one JSON object
    #[arg(long)]
    json: bool,
    /// Also write SVG charts into DIR: latency-<path>.svg, timeline-cpu<N>.svg
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Compare with this older recording (file or directory): both side by side,
    /// differences that matter marked `!`
    #[arg(long, value_name = "OLD")]
    baseline: Option<PathBuf>,
}

/// Unusable input (missing, not Parquet, not a trace, empty) → exit 2 with its message.
#[cfg(feature = "report")]
fn build(inputs: &[PathBuf]) -> Result<report::Report> {
    report::build(inputs).map_err(|e| match e.downcast_ref::<InputError>() {
        Some(i) => CliError::usage(i.0.clone()).into(),
        None => e,
    })
}

#[cfg(not(feature = "report"))]
pub fn run(_: Args) -> Result<u8> {
    Err(CliError::usage(
        "this is the lean napiscope tracer, built without `report` (target/lean/napiscope, \
         --no-default-features); the whole tool is target/release/napiscope: cargo build \
         --release -p probe-cli (or cargo xtask run)",
    )
    .into())
}

#[cfg(feature = "report")]
pub fn run(o: Args) -> Result<u8> {
    use std::io::IsTerminal;
    let new = build(&o.inputs)?;
    let baseline = o
        .baseline
        .as_ref()
        .map(|b| build(std::slice::from_ref(b)))
        .transpose()?;
    let mut plots = Vec::new();
    if let Some(dir) = &o.plot {
        plots = plot::write(&new.summary, dir)
            .map_err(|e| CliError::usage(format!("--plot {}: {e:#}", dir.display())))?;
        if let Some(b) = &baseline {
            plots.extend(
                plot::write(&b.summary, &dir.join("baseline"))
                    .map_err(|e| CliError::usage(format!("--plot {}: {e:#}", dir.display())))?,
            );
        }
    }
    match baseline {
        Some(b) => {
            let c = compare::compare(new, b);
            if o.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", compare::text(&c, std::io::stdout().is_terminal()));
            }
        }
        None if o.json => println!("{}", serde_json::to_string_pretty(&new)?),
        None => print!("{}", render::text(&new)),
    }
    for p in &plots {
        eprintln!("wrote {}", p.display());
    }
    Ok(0)
}
