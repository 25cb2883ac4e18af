//! What a recording reports: its summary, and the numbers it gathers for it from the kernel
//! (per-CPU losses and blind windows, recursion misses) and from reading the file back.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use probe_common::CpuState;

use crate::kernel::probes;

#[derive(Default, serde::Serialize)]
pub struct RecordSummary {
    pub output: String,
    pub events: u64,
    pub bytes: u64,
    pub bytes_per_event: f64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub lost_per_cpu: Vec<u64>,
    pub lost_total: u64,
    pub seq_gaps_per_cpu: Vec<u64>,
    pub stop_reason: String,
    pub per_event: BTreeMap<String, u64>,
    pub per_cpu: BTreeMap<u32, u64>,
    /// Where received packets were processed (from reading the file back), when small enough.
    pub paths: Option<BTreeMap<String, u64>>,
    pub rps_hops: Option<u64>,
    /// Events skipped by the kernel's recursion protection, per event ("ctx" for the
    /// context trackers).
    pub missed_by_event: BTreeMap<String, u64>,
    /// CPU seconds the recorder itself spent (all its threads) from the start of recording
    /// to the finished file — not loading, not the read-back: the cost per event of tracing.
    pub recording_user_s: f64,
    pub recording_sys_s: f64,
    /// Most events waiting for the encoder at once, and how long finishing the file took
    /// after the recording stopped (the encoder catching up with a saturated machine).
    pub max_queued_events: u64,
    pub encode_after_stop_s: f64,
    /// False when the kernel refused to run the encoder as SCHED_IDLE.
    pub encoder_idle: bool,
    /// "complete", "incomplete" or "unknown": the events held against the kernel's own
    /// per-CPU counters (and the recording's known losses).
    pub completeness: String,
    /// Per CPU and counter: the kernel's count, the events, and what is short.
    pub kernel_counters: Option<analysis::kcounters::KernelCheck>,
    /// Per CPU: windows in which the kernel ran none of napiscope's programs.
    pub blind: Vec<analysis::kcounters::Blind>,
}

impl RecordSummary {
    pub fn incomplete(&self) -> bool {
        self.completeness == "incomplete"
    }
}

/// User and system CPU seconds of this process so far (all threads).
pub fn process_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(u.ru_utime), tv(u.ru_stime))
}

/// Map program recursion misses to event names (context trackers count as "ctx").
pub fn missed_by_event(
    results: &[probes::ProbeResult],
    misses: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in results.iter().filter(|r| r.attached) {
        let Some(p) = r.program else { continue };
        if !seen.insert(p) {
            continue; // one program on several tracepoints: count it once
        }
        let n = misses.get(p).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let key = match r.role {
            probes::Role::Context => "ctx".to_string(),
            _ if r.name == "rps_trigger_softirq" => "csd_function_entry".to_string(),
            probes::Role::Event => r.name.split(':').nth(1).unwrap_or(&r.name).to_string(),
        };
        *out.entry(key).or_default() += n;
    }
    out
}

/// Read the finished file back: proves it is readable, and tells where packets went. The
/// checker's column reader, not an `Event` per row: 2M events take ~0.5 s, not ~2.5 s.
pub fn read_back(summary: &mut RecordSummary, path: &std::path::Path) -> Result<()> {
    if summary.events > 2_000_000 {
        return Ok(()); // use `napiscope report` for big files; keep record's memory flat
    }
    let (cols, _) = analysis::trace::read_columns(path).context("reading the recording back")?;
    let (paths, hops) = analysis::paths::summary_of_cols(&cols);
    summary.paths = Some(paths.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    summary.rps_hops = Some(hops as u64);
    Ok(())
}

/// Per CPU, the windows in which the kernel ran none of our programs (see CpuState).
pub fn blind_per_cpu(
    state: &aya::maps::PerCpuArray<aya::maps::MapData, CpuState>,
    ncpu: usize,
) -> Vec<analysis::kcounters::Blind> {
    let Ok(values) = state.get(&0, 0) else {
        return Vec::new();
    };
    values
        .iter()
        .take(ncpu)
        .enumerate()
        .filter(|(_, s)| s.blind_windows > 0)
        .map(|(cpu, s)| {
            let kept = (s.blind_windows as usize).min(probe_common::BLIND_LOG);
            let mut last: Vec<_> = s.blind_log[..]
                .iter()
                .filter(|w| w.to_ns > 0)
                .take(kept)
                .map(|w| analysis::kcounters::BlindSpan {
                    from_ns: w.from_ns,
                    to_ns: w.to_ns,
                    pid: w.pid,
                    comm: std::fs::read_to_string(format!("/proc/{}/comm", w.pid))
                        .ok()
                        .map(|c| c.trim().to_string()),
                })
                .collect();
            last.sort_by_key(|w| w.from_ns);
            analysis::kcounters::Blind {
                cpu: cpu as u32,
                windows: s.blind_windows,
                ns: s.blind_ns,
                last,
            }
        })
        .collect()
}

pub fn lost_per_cpu(
    state: &aya::maps::PerCpuArray<aya::maps::MapData, CpuState>,
    ncpu: usize,
) -> Vec<u64> {
    match state.get(&0, 0) {
        Ok(values) => values.iter().take(ncpu).map(|s| s.lost).collect(),
        Err(_) => vec![0; ncpu],
    }
}
