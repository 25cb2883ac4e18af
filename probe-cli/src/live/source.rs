//! `top`'s window into the kernel: the eBPF programs loaded with in-kernel counting on and
//! the ring buffer off, and one snapshot of their maps per interval.

use std::{os::fd::OwnedFd, path::Path, time::Instant};

use anyhow::{Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use probe_common::{CpuCounters, Filter, NapiCounters, FILTER_COMM, FILTER_DEV, FILTER_NONE};

use super::filter::TextFilter;
use super::rates::Snapshot;
use crate::kernel::{probes, symbols::Symbols};

pub struct KernelSource {
    pub loaded: probes::Loaded,
    counters: PerCpuArray<MapData, CpuCounters>,
    woken: Array<MapData, u64>,
    filter: Array<MapData, Filter>,
    napi: PerCpuHashMap<MapData, u64, NapiCounters>,
    cpus: Vec<u32>,
    start: Instant,
    /// BPF run-time statistics stay enabled while this descriptor is open (and only then).
    stats: Option<OwnedFd>,
}

impl KernelSource {
    pub fn open(tracefs: &Path, cpus: Vec<u32>) -> Result<KernelSource> {
        let settings = probe_common::Settings {
            events: 0,
            counters: 1,
            ..probe_common::Settings::default()
        };
        let symbols = Symbols::load();
        // The ring buffer stays empty with events off; the smallest legal size.
        let mut loaded = probes::load(tracefs, &settings, 4096, &symbols, true)?;
        let counters = loaded.take_map("COUNTERS")?;
        let woken = loaded.take_map("WOKEN")?;
        let filter = loaded.take_map("FILTER")?;
        let napi = loaded.take_map("NAPI")?;
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
        Ok(KernelSource {
            loaded,
            counters,
            woken,
            filter,
            napi,
            cpus,
            start: Instant::now(),
            stats,
        })
    }

    /// Whether the eBPF programs' own CPU time can be shown.
    pub fn has_run_time(&self) -> bool {
        self.stats.is_some()
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let at = self.start.elapsed().as_secs_f64();
        let kernel_lo = crate::kernel::counters::snapshot().ok();
        let per_cpu = self
            .counters
            .get(&0, 0)
            .context("reading the COUNTERS map")?;
        let kernel_hi = crate::kernel::counters::snapshot().ok();
        let mut snap = Snapshot {
            at,
            kernel: kernel_lo.zip(kernel_hi),
            ..Snapshot::default()
        };
        for &cpu in &self.cpus {
            if let Some(c) = per_cpu.get(cpu as usize) {
                snap.cpus.insert(cpu, *c);
            }
            let k = self.woken.get(&(cpu * 2), 0).unwrap_or(0);
            let b = self.woken.get(&(cpu * 2 + 1), 0).unwrap_or(0);
            snap.woken.insert(cpu, [k, b]);
        }
        // An entry the LRU evicts between the key walk and its read is skipped: it was not
        // polled lately.
        for (napi, per_cpu) in self.napi.iter().flatten() {
            snap.napi.insert(napi, per_cpu.iter().copied().collect());
        }
        snap.napi_info = crate::kernel::napi_info::gather().0;
        snap.irq_names = crate::kernel::napi_info::irq_names();
        let (run_ns, _, misses) = self.loaded.prog_stats();
        snap.bpf_ns = run_ns;
        snap.misses = misses;
        snap.self_cpu_ns = self_cpu_ns();
        Ok(snap)
    }

    pub fn set_filter(&mut self, f: Option<&TextFilter>) -> Result<()> {
        let mut v = Filter {
            kind: FILTER_NONE,
            ..Filter::default()
        };
        if let Some(f) = f {
            let (kind, name) = match f {
                TextFilter::Dev(n) => (FILTER_DEV, n),
                TextFilter::Comm(n) => (FILTER_COMM, n),
            };
            let n = name.len().min(v.pattern.len() - 1);
            v.kind = kind;
            v.len = n as u32;
            v.pattern[..n].copy_from_slice(&name.as_bytes()[..n]);
        }
        self.filter
            .set(0, v, 0)
            .context("updating the FILTER map")?;
        Ok(())
    }
}

/// This process's user + system CPU time.
fn self_cpu_ns() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}
