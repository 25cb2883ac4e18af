//! The end of a recording: its events held against the kernel's counters, the file's final
//! metadata, the file finished (or failed, keeping its last checkpoint), the summary.

use std::time::Instant;

use analysis::{kcounters, TraceMeta};
use anyhow::{Context as _, Result};

use super::{
    summary::{blind_per_cpu, lost_per_cpu, missed_by_event, process_cpu, read_back},
    Live, RecordOpts, RecordSummary, Stopped,
};
use crate::kernel::system;

impl Live {
    /// The events held against the kernel's counters, with the snapshots they came from.
    fn kernel_check(
        &mut self,
        opts: &RecordOpts,
        counters_end: Option<kcounters::Snapshot>,
        lost: &[u64],
        misses: u64,
    ) -> Option<(kcounters::KernelCheck, kcounters::Snapshots)> {
        let (Some(start), Some(end), Some(edge)) = (
            self.counters_start.take(),
            counters_end,
            self.tally.edge.take(),
        ) else {
            return None;
        };
        let w = edge.finish(&end);
        let snaps = kcounters::Snapshots {
            start,
            end,
            cpus: opts.cpus.clone(),
            recorded: crate::kernel::counters::recorded(&self.probe_results),
        };
        let gaps = self.tally.seqs.gaps(self.ncpu);
        let known: Vec<u64> = (0..self.ncpu).map(|c| lost[c].max(gaps[c])).collect();
        let hotplug = self.tally.saw_hotplug();
        Some((snaps.compare(&w, known, misses, hotplug), snaps))
    }

    /// Write the final metadata and finish the file (or fail it, keeping the last
    /// checkpoint), then fill in the summary and read the file back.
    pub(super) fn finish(
        mut self,
        opts: &RecordOpts,
        stopped: Stopped,
        stop_reason: &'static str,
        elapsed: f64,
        cpu0: (f64, f64),
        mut summary: RecordSummary,
    ) -> Result<RecordSummary> {
        let ncpu = self.ncpu;
        let lost = lost_per_cpu(&self.state, ncpu);
        let blind = blind_per_cpu(&self.state, ncpu);
        let rows = self.writer.rows();
        let missed = missed_by_event(&self.probe_results, &stopped.misses);
        let kernel = self.kernel_check(opts, stopped.counters_end, &lost, missed.values().sum());
        let meta = self.final_meta(opts, stop_reason, elapsed, &lost, &missed, &kernel, &blind)?;
        summary.missed_by_event = missed;
        summary.blind = blind;
        if let Some(e) = self.failure.take() {
            let failed = self.writer.fail(&meta, &e);
            return Err(anyhow::Error::new(failed).context(format!(
                "recording stopped after {elapsed:.1} s (probes detached)"
            )));
        }
        let queued = self.writer.queued_rows();
        if let Some(bg) = &mut self.background {
            bg.stop();
            summary.encoder_idle = !bg.refused();
        }
        if queued > 100_000 && !opts.quiet {
            eprintln!("napiscope: encoding the last {queued} events…");
        }
        let finishing = Instant::now();
        let bytes = self
            .writer
            .finish(&meta)
            .context("finishing the Parquet file")?;
        summary.encode_after_stop_s = finishing.elapsed().as_secs_f64();
        let cpu1 = process_cpu();
        summary.recording_user_s = cpu1.0 - cpu0.0;
        summary.recording_sys_s = cpu1.1 - cpu0.1;

        summary.output = opts.output.display().to_string();
        summary.events = rows;
        summary.bytes = bytes;
        summary.bytes_per_event = if rows > 0 {
            bytes as f64 / rows as f64
        } else {
            0.0
        };
        summary.seconds = elapsed;
        summary.events_per_second = rows as f64 / elapsed.max(1e-9);
        summary.lost_total = lost.iter().sum();
        summary.lost_per_cpu = lost;
        summary.seq_gaps_per_cpu = self.tally.seqs.gaps(ncpu);
        self.tally.into_summary(&mut summary);
        summary.stop_reason = stop_reason.into();
        summary.completeness = match &kernel {
            Some((k, _)) => serde_json::to_string(&k.verdict)?
                .trim_matches('"')
                .to_string(),
            None if summary.lost_total > 0 || summary.seq_gaps_per_cpu.iter().any(|g| *g > 0) => {
                "incomplete".into()
            }
            None => "unknown".into(),
        };
        summary.kernel_counters = kernel.map(|(k, _)| k);
        read_back(&mut summary, &opts.output)?;
        Ok(summary)
    }

    /// The file's metadata at the end: the start's, and how the recording went.
    #[allow(clippy::too_many_arguments)] // each is one part of the metadata, computed once
    fn final_meta(
        &self,
        opts: &RecordOpts,
        stop_reason: &str,
        elapsed: f64,
        lost: &[u64],
        missed: &std::collections::BTreeMap<String, u64>,
        kernel: &Option<(kcounters::KernelCheck, kcounters::Snapshots)>,
        blind: &[kcounters::Blind],
    ) -> Result<TraceMeta> {
        let mut meta = self.start_meta.clone();
        meta.set("duration_s", format!("{elapsed:.3}"));
        meta.set("stop_reason", stop_reason);
        meta.set("lost_per_cpu", serde_json::to_string(&lost)?);
        meta.set(
            "seq_gaps_per_cpu",
            serde_json::to_string(&self.tally.seqs.gaps(self.ncpu))?,
        );
        meta.set("bad_records", self.tally.bad.to_string());
        // Events the kernel skipped because another eBPF program ran on the CPU (no seq gap).
        meta.set("missed_by_event", serde_json::to_string(missed)?);
        if let Some((check, snaps)) = kernel {
            meta.set(kcounters::META_KEY, serde_json::to_string(snaps)?);
            meta.set(
                "completeness",
                serde_json::to_string(&check.verdict)?.trim_matches('"'),
            );
            meta.set(kcounters::CHECK_KEY, serde_json::to_string(check)?);
        }
        if !blind.is_empty() {
            meta.set(kcounters::BLIND_KEY, serde_json::to_string(&blind)?);
        }
        // The instances alive now and those seen at the start (devices may have gone since).
        let mut napis: std::collections::BTreeMap<u32, _> = (meta.napi_instances().into_iter())
            .map(|n| (n.napi_id, n))
            .collect();
        napis.extend(crate::kernel::napi_info::gather().0);
        let napis: Vec<_> = napis.into_values().collect();
        meta.set(
            analysis::trace::NAPI_INSTANCES_KEY,
            serde_json::to_string(&napis)?,
        );
        let threads = system::backlog_threads();
        meta.set("backlog_threads", serde_json::to_string(&threads)?);
        if let Some(c) = &opts.control {
            let extra = c.extra_meta.lock().map(|m| m.clone()).unwrap_or_default();
            for (k, v) in extra.0 {
                meta.set(&k, v);
            }
        }
        Ok(meta)
    }
}
