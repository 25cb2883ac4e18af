//! `napiscope report`: the analysis library's report on the terminal, as JSON or as SVGs;
//! and where `record --hive DIR` puts its file.

use std::path::{Path, PathBuf};

#[cfg(feature = "report")]
use analysis::report::{self, compare, plot, render, InputError};
use anyhow::Result;

use crate::CliError;

#[cfg_attr(not(feature = "report"), allow(dead_code))]
pub struct ReportOpts {
    pub inputs: Vec<PathBuf>,
    pub json: bool,
    pub plot: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
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
pub fn run(_: ReportOpts) -> Result<u8> {
    Err(CliError::usage(
        "this napiscope was built without `report` (cargo build --no-default-features); \
         build it with default features: cargo build --release -p probe-cli",
    )
    .into())
}

#[cfg(feature = "report")]
pub fn run(o: ReportOpts) -> Result<u8> {
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
