//! `napiscope report`: where receive work ran, per CPU and per packet path, with latencies,
//! NAPI batches, softirq time, IPIs, wake-ups and losses — for one recording or a fleet's
//! (a hive-partitioned directory), computed with lazy, streaming polars scans.
//!
//! - `input`: which files, their hive partition and footer metadata (bad input → `InputError`)
//! - `query`: the polars queries (packet pairing = `paths::deliveries`' semantics)
//! - `summary`: the numbers, as serialisable structs; `napi`: the per-NAPI rows; `advice`:
//!   what to try, from those numbers
//! - `render`: terminal tables from those structs; `compare`: `--baseline`; `plot`: SVGs

pub mod advice;
pub mod compare;
pub mod input;
pub mod napi;
pub mod plot;
pub mod query;
pub mod render;
pub mod summary;

#[cfg(test)]
mod advice_tests;
#[cfg(test)]
mod napi_tests;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Result;
use serde::Serialize;

pub use input::{InputError, Recording};
pub use summary::Summary;

/// A whole report: the inputs' metadata, the summary over all of them, and one summary per
/// hive partition when the inputs span more than one.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub recordings: Vec<Recording>,
    #[serde(flatten)]
    pub summary: Summary,
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    pub partition: String,
    pub recordings: usize,
    #[serde(flatten)]
    pub summary: Summary,
}

impl Report {
    /// One value when every recording agrees, else all of them joined with `,`.
    pub fn meta(&self, f: impl Fn(&Recording) -> Option<String>) -> String {
        let mut v: Vec<String> = self.recordings.iter().filter_map(f).collect();
        v.sort();
        v.dedup();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(",")
        }
    }
}

/// Build the report of `inputs` (files and/or directories).
pub fn build(inputs: &[PathBuf]) -> Result<Report> {
    let recordings = input::resolve(inputs)?;
    // Empty files add nothing and polars cannot scan a file without row groups.
    let all: Vec<(usize, &Recording)> = recordings
        .iter()
        .enumerate()
        .filter(|(_, r)| r.rows > 0)
        .collect();
    let summary = summary::summarize(&all)?;
    let mut groups: BTreeMap<String, Vec<(usize, &Recording)>> = BTreeMap::new();
    for (i, r) in &all {
        groups.entry(r.partition_label()).or_default().push((*i, r));
    }
    let mut partitions = Vec::new();
    if groups.len() > 1 {
        for (label, recs) in groups {
            partitions.push(Partition {
                partition: label,
                recordings: recs.len(),
                summary: summary::summarize(&recs)?,
            });
        }
    }
    Ok(Report {
        recordings,
        summary,
        partitions,
    })
}
