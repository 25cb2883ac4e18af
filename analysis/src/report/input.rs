//! What `report` reads: one file, several files, or a directory tree (hive layout
//! `key=value/` directories become columns). Every file is checked from its Parquet footer
//! alone (it exists, it is Parquet, it has napiscope's columns) before polars scans it.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
};

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use crate::trace::{self, META_PREFIX};

/// Unusable input: the CLI exits 2 with this message.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn bad(msg: String) -> anyhow::Error {
    InputError(msg).into()
}

/// One input file: where it is, its hive partition, and its recording metadata.
#[derive(Clone, Debug, Serialize)]
pub struct Recording {
    pub path: String,
    /// `key=value` directory names between the input directory and the file.
    pub partition: BTreeMap<String, String>,
    pub rows: u64,
    pub source: Option<String>,
    pub hostname: Option<String>,
    pub kernel_release: Option<String>,
    pub mode: Option<String>,
    pub duration_s: Option<f64>,
    pub cpus: Option<u32>,
    pub start_unix_ns: Option<u64>,
    pub lost_per_cpu: Vec<u64>,
    /// "complete", "incomplete" or "unknown": the events against the kernel's own counters,
    /// as `record` found them (None: recorded before napiscope kept them, or simulated).
    pub completeness: Option<String>,
    /// Per CPU and counter, as `record` compared them.
    pub kernel_check: Option<crate::kcounters::KernelCheck>,
    /// Every `napiscope.` key of the footer, as written.
    #[serde(skip)]
    pub meta: BTreeMap<String, String>,
    /// Columns of the current schema this file lacks (an older schema's: read as null).
    #[serde(skip)]
    pub absent: Vec<String>,
}

impl Recording {
    /// The NAPI instances the kernel told of while recording (metadata `napi_instances`).
    pub fn napi_instances(&self) -> Vec<crate::trace::KernelNapi> {
        (self.meta.get(crate::trace::NAPI_INSTANCES_KEY))
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }

    pub fn partition_label(&self) -> String {
        if self.partition.is_empty() {
            return "(all)".into();
        }
        self.partition
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Expand the command line's paths into the recordings to read, checked and in a stable order.
pub fn resolve(inputs: &[PathBuf]) -> anyhow::Result<Vec<Recording>> {
    if inputs.is_empty() {
        return Err(bad(
            "no input: give a trace file or a directory of traces".into()
        ));
    }
    let mut out = Vec::new();
    for input in inputs {
        let md = std::fs::metadata(input).map_err(|e| {
            bad(format!(
                "cannot open {}: {e}; give a trace written by `napiscope record -o FILE` \
                 or a directory of them",
                input.display()
            ))
        })?;
        if md.is_dir() {
            let mut files = Vec::new();
            walk(input, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(bad(format!(
                    "{} holds no .parquet files; record some with \
                     `napiscope record --hive {}`",
                    input.display(),
                    input.display()
                )));
            }
            for f in files {
                let rel = f.strip_prefix(input).unwrap_or(&f).to_path_buf();
                out.push(open(&f, hive_partition(&rel))?);
            }
        } else {
            out.push(open(input, BTreeMap::new())?);
        }
    }
    if out.iter().all(|r| r.rows == 0) {
        let names: Vec<String> = out.iter().map(|r| r.path.clone()).collect();
        return Err(bad(format!(
            "empty recording: {} holds no events (0 rows); record while traffic flows, e.g. \
             `napiscope scenario veth-rps` alongside `napiscope record`",
            names.join(", ")
        )));
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot read directory {}: {e}", dir.display())))?;
    for entry in rd {
        let entry = entry.map_err(|e| bad(format!("reading {}: {e}", dir.display())))?;
        let p = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue; // hidden files and writers' temporaries (_SUCCESS, .part)
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// `host=a/kernel=6.1/x.parquet` → {host: a, kernel: 6.1}.
pub fn hive_partition(rel: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            if let Some((k, v)) = c.as_os_str().to_string_lossy().split_once('=') {
                if !k.is_empty() {
                    m.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    m
}

fn open(path: &Path, partition: BTreeMap<String, String>) -> anyhow::Result<Recording> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| {
        bad(format!(
            "cannot open {shown}: {e}; check the path (a trace is written by \
             `napiscope record -o FILE`)"
        ))
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Err(bad(format!(
            "{shown} is empty (0 bytes): not a Parquet file; re-record it with `napiscope record`"
        )));
    }
    let reader = SerializedFileReader::new(file).map_err(|e| {
        bad(format!(
            "{shown} is not a Parquet file ({e}); give a trace written by `napiscope record` \
             or `napiscope simulate`"
        ))
    })?;
    let fmd = reader.metadata().file_metadata();
    let schema = parquet::arrow::parquet_to_arrow_schema(fmd.schema_descr(), None)
        .map_err(|e| bad(format!("{shown}: unreadable Parquet schema ({e})")))?;
    let mut absent = Vec::new();
    for want in trace::schema().fields() {
        match schema.field_with_name(want.name()) {
            Ok(f) if f.data_type() == want.data_type() => {}
            Err(_) if trace::may_be_absent(want.name()) => absent.push(want.name().clone()),
            Ok(f) => {
                return Err(bad(format!(
                    "not a napiscope trace: {shown}: column `{}` is {} (expected {}); \
                     record one with `napiscope record`",
                    want.name(),
                    f.data_type(),
                    want.data_type()
                )))
            }
            Err(_) => {
                return Err(bad(format!(
                    "not a napiscope trace: {shown}: missing column `{}`; record one with \
                     `napiscope record` or `napiscope simulate`",
                    want.name()
                )))
            }
        }
    }
    let mut meta = BTreeMap::new();
    for kv in fmd.key_value_metadata().into_iter().flatten() {
        if let (Some(k), Some(v)) = (kv.key.strip_prefix(META_PREFIX), &kv.value) {
            meta.insert(k.to_string(), v.clone());
        }
    }
    let get = |k: &str| meta.get(k).cloned();
    fn num<T: std::str::FromStr>(m: &BTreeMap<String, String>, k: &str) -> Option<T> {
        m.get(k).and_then(|v| v.parse().ok())
    }
    Ok(Recording {
        path: path.display().to_string(),
        partition,
        rows: fmd.num_rows().max(0) as u64,
        source: get("source"),
        hostname: get("hostname"),
        kernel_release: get("kernel_release"),
        mode: get("mode"),
        duration_s: num(&meta, "duration_s"),
        cpus: num(&meta, "cpus"),
        start_unix_ns: num(&meta, "start_unix_ns"),
        lost_per_cpu: meta
            .get("lost_per_cpu")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default(),
        completeness: get("completeness"),
        kernel_check: meta
            .get(crate::kcounters::CHECK_KEY)
            .and_then(|s| serde_json::from_str(s).ok()),
        meta,
        absent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_directories_become_partition_columns() {
        let p = hive_partition(Path::new("host=a/kernel=6.1.0/x.parquet"));
        assert_eq!(p.get("host").map(String::as_str), Some("a"));
        assert_eq!(p.get("kernel").map(String::as_str), Some("6.1.0"));
        assert!(hive_partition(Path::new("plain/x.parquet")).is_empty());
        assert!(hive_partition(Path::new("x.parquet")).is_empty());
    }
}
