//! `napiscope recover`: a trace from an interrupted recording's partial file.

use std::path::{Path, PathBuf};

use analysis::trace::output;
use anyhow::Result;

use crate::cli::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The file that was being recorded, or its partial file (.FILE.napiscope-PID.partial)
    #[arg(value_name = "FILE|PARTIAL")]
    input: PathBuf,
    /// Where to write the trace (default: the file that was being recorded)
    #[arg(short, long, value_name = "FILE.parquet")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<u8> {
    recover(&a.input, a.output.as_deref(), a.force)
}

fn recover(input: &Path, out: Option<&Path>, force: bool) -> Result<u8> {
    let paths = match output::Paths::of_partial(input) {
        Some(p) => p,
        None => {
            let mut found = output::leftovers(input);
            match found.len() {
                0 => {
                    return Err(CliError::usage(format!(
                        "no interrupted recording of {} found (one would be beside it, named \
                         .{}.napiscope-PID.partial)",
                        input.display(),
                        input
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    ))
                    .into())
                }
                1 => found.remove(0),
                _ => {
                    return Err(CliError::usage(format!(
                        "several interrupted recordings of {}: recover one at a time, e.g. \
                         `napiscope recover {} -o other.parquet`:\n  {}",
                        input.display(),
                        found[0].partial.display(),
                        found
                            .iter()
                            .map(|p| p.partial.display().to_string())
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    ))
                    .into())
                }
            }
        }
    };
    if !paths.partial.exists() {
        return Err(CliError::usage(format!("{}: no such file", paths.partial.display())).into());
    }
    if paths.writer_running() {
        return Err(CliError::usage(format!(
            "{} is still being written by napiscope (pid {}); stop that recording first (Ctrl-C \
             or SIGTERM finish a complete file)",
            paths.partial.display(),
            paths.pid().unwrap_or(0)
        ))
        .into());
    }
    let target = out.unwrap_or(&paths.target);
    match output::recover_to(&paths, target, force, None) {
        Ok(Some(r)) => {
            println!(
                "recovered {} events into {} — every event up to the recording's last \
                 checkpoint; marked partial (napiscope.partial=true, stop_reason=killed).\n\
                 next: napiscope check {}",
                r.rows,
                r.path.display(),
                r.path.display()
            );
            Ok(0)
        }
        Ok(None) => {
            println!(
                "{}: the recording stopped before its first checkpoint (about 1 s in), so it \
                 held no complete events; removed it",
                paths.partial.display()
            );
            Ok(1)
        }
        Err(e) if e.downcast_ref::<output::Refused>().is_some() => {
            Err(CliError::usage(format!("{e:#}")).into())
        }
        Err(e) => Err(e.context(format!("recovering {}", paths.partial.display()))),
    }
}
