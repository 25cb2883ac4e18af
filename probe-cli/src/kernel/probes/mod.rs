//! Loading napiscope's eBPF programs and attaching them, one tracepoint at a time: a probe
//! that cannot attach is reported with its reason and the others still run.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::FEntry,
    Ebpf, EbpfLoader,
};
use probe_common::{CpuState, Settings, TpOffsets, RINGS};
use serde::Serialize;

mod attach;
mod specs;

pub use specs::{BtfGroup, ProbeSpec, RawNeeds, Role, FUNCTION_KPROBES, SPECS};

static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/napiscope-probes"));

#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// "category:event" for tracepoints, the function name for function probes.
    pub name: String,
    /// "tp_btf" | "raw_tracepoint" | "tracepoint" | "kprobe"
    pub kind: &'static str,
    pub role: Role,
    /// The eBPF program attached.
    pub program: Option<&'static str>,
    pub attached: bool,
    /// Why it did not attach.
    pub reason: Option<String>,
    /// Why the preferred kinds (tp_btf, raw_tracepoint) were not used, each named.
    pub fallback: Option<String>,
    /// Instructions the verifier walked to accept the program (its limit is 1,000,000:
    /// past it the load fails with E2BIG). None where not loaded or the kernel does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_insns: Option<u32>,
}

impl ProbeResult {
    /// Not attached (yet); `reason` / `attached` are filled in by whoever tries.
    pub fn new(name: impl Into<String>, kind: &'static str, role: Role) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind,
            role,
            program: None,
            attached: false,
            reason: None,
            fallback: None,
            verified_insns: None,
        }
    }
}

/// The verifier's limit on instructions walked per program (kernel/bpf/verifier.c
/// BPF_COMPLEXITY_LIMIT_INSNS).
pub const VERIFIER_INSN_LIMIT: u32 = 1_000_000;

pub struct Loaded {
    pub ebpf: Ebpf,
    pub results: Vec<ProbeResult>,
}

impl Loaded {
    /// Can fentry programs load here? Loads a no-op fentry on net_rx_action (not attached).
    pub fn fentry_available(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        let prog: &mut FEntry = self
            .ebpf
            .program_mut("fentry_availability")
            .ok_or("program missing")?
            .try_into()
            .map_err(|e| format!("{e}"))?;
        prog.load("net_rx_action", &btf).map_err(|e| {
            let mut s = format!("{e:#}");
            if let Some(src) = std::error::Error::source(&e) {
                s = format!("{s}: {src}");
            }
            s.lines().next().unwrap_or("").chars().take(200).collect()
        })
    }

    /// Per program: how often the kernel skipped it because an eBPF program was already
    /// running on that CPU (`recursion_misses`). Such events are lost without a seq gap.
    pub fn recursion_misses(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (name, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            if let Some(n) = recursion_misses(std::os::fd::AsRawFd::as_raw_fd(
                &std::os::fd::AsFd::as_fd(fd),
            )) {
                out.insert(name.to_string(), n);
            }
        }
        out
    }

    /// Summed over every loaded program: (run time ns, runs, recursion misses). Run time
    /// and runs stay 0 unless BPF statistics are enabled (`aya::sys::enable_stats`).
    pub fn prog_stats(&self) -> (u64, u64, u64) {
        let mut t = (0, 0, 0);
        for (_, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(fd));
            if let Some(i) = prog_info(fd) {
                t.0 += i.run_time_ns;
                t.1 += i.run_cnt;
                t.2 += i.recursion_misses;
            }
        }
        t
    }

    pub fn take_map<T>(&mut self, name: &str) -> Result<T>
    where
        T: TryFrom<aya::maps::Map>,
        <T as TryFrom<aya::maps::Map>>::Error: std::error::Error + Send + Sync + 'static,
    {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("{name} map missing from the eBPF object"))?;
        Ok(T::try_from(map)?)
    }

    pub fn attached_events(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.attached && r.role == Role::Event)
            .count()
    }

    /// The event rings some CPU writes to (see `ring_sizes`).
    pub fn take_rings(&mut self) -> Result<Vec<RingBuf<MapData>>> {
        (0..used_rings(crate::kernel::system::possible_cpus()))
            .map(|i| {
                let name = format!("EVENTS{i}");
                let map = self
                    .ebpf
                    .take_map(&name)
                    .with_context(|| format!("{name} map missing from the eBPF object"))?;
                Ok(RingBuf::try_from(map)?)
            })
            .collect()
    }

    pub fn take_state(&mut self) -> Result<PerCpuArray<MapData, CpuState>> {
        let map = self
            .ebpf
            .take_map("STATE")
            .context("STATE map missing from the eBPF object")?;
        Ok(PerCpuArray::try_from(map)?)
    }
}

/// The programs' settings for recording `cpus` (None: all) and NET_RX only or every softirq
/// vector.
pub fn build_settings(cpus: Option<&[u32]>, all_softirqs: bool) -> Settings {
    let mut s = Settings::default();
    if let Some(cpus) = cpus {
        s.cpu_mask = [0; 16];
        for c in cpus {
            s.cpu_mask[*c as usize / 64] |= 1 << (c % 64);
        }
    }
    if all_softirqs {
        s.softirq_mask = u32::MAX;
    }
    s
}

/// Rings some CPU writes to: CPU c uses ring `c % RINGS`.
pub fn used_rings(possible_cpus: u32) -> usize {
    (possible_cpus as usize).clamp(1, RINGS)
}

/// Bytes of each event ring: `total` split evenly among the used rings (a power of two each,
/// as the kernel requires, at least a page), one page for the rest.
pub fn ring_sizes(total: u32, possible_cpus: u32) -> [u32; RINGS] {
    let used = used_rings(possible_cpus) as u32;
    let each = 1u32 << (total / used).max(PAGE).ilog2();
    std::array::from_fn(|i| if (i as u32) < used { each } else { PAGE })
}

const PAGE: u32 = 4096;

/// Load the programs with this kernel's offsets and attach every probe that can attach.
/// `prefer_raw`: attach tp_btf and raw tracepoints where they read the same values (false:
/// classic tracepoints everywhere, to compare cost or output).
pub fn load(
    tracefs: &Path,
    settings: &Settings,
    ring_bytes: u32,
    symbols: &crate::kernel::symbols::Symbols,
    prefer_raw: bool,
) -> Result<Loaded> {
    let (offsets, bad) = attach::offsets(tracefs);
    let found = match crate::kernel::btf::Btf::from_sys_fs() {
        Ok(b) => crate::kernel::btf::kernel_offsets(&b),
        Err(e) => crate::kernel::btf::Found::none(&e),
    };
    let rps_func = symbols.addr_of("rps_trigger_softirq").unwrap_or(0);
    let mut ebpf = load_object(settings, ring_bytes, &offsets, &found, rps_func)?;
    let mut tracepoints = attach::Tracepoints {
        ebpf: &mut ebpf,
        tracefs,
        found: &found,
        bad: &bad,
        prefer_raw,
        loaded: Vec::new(),
        vmlinux: None,
    };
    // `top` does without the record-only probes: not attached, and not listed as missing.
    let mut results: Vec<ProbeResult> = SPECS
        .iter()
        .filter(|s| !(s.events_only && settings.counters != 0))
        .map(|s| tracepoints.attach(s))
        .collect();
    let kprobes = tracefs.join("kprobe_events").exists();
    results.push(attach::rps_kprobe(&mut ebpf, kprobes, &results, rps_func));
    for (function, program, covered_by) in FUNCTION_KPROBES {
        let mut r = ProbeResult::new(*function, "kprobe", Role::Event);
        if !kprobes {
            r.reason = Some(format!(
                "kernel has no kprobes (CONFIG_KPROBES off); {covered_by} cover this path"
            ));
        } else if symbols.addr_of(function).is_none() {
            r.reason = Some(format!(
                "{function} is not in /proc/kallsyms (inlined or absent)"
            ));
        } else {
            attach::attach_kprobe(&mut ebpf, &mut r, program, function);
        }
        results.push(r);
    }
    for r in results.iter_mut().filter(|r| r.attached) {
        r.verified_insns = r.program.and_then(|name| verified_insns(&ebpf, name));
    }
    Ok(Loaded { ebpf, results })
}

/// How many instructions the verifier walked for the loaded program `name` (kernel ≥ 5.16).
fn verified_insns(ebpf: &Ebpf, name: &str) -> Option<u32> {
    let fd = ebpf.program(name)?.fd().ok()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(fd));
    prog_info(fd).map(|i| i.verified_insns).filter(|&n| n > 0)
}

/// The eBPF object loaded into the kernel with this kernel's offsets and the settings filled
/// in, its rings sized; nothing attached yet.
fn load_object(
    settings: &Settings,
    ring_bytes: u32,
    offsets: &TpOffsets,
    found: &crate::kernel::btf::Found,
    rps_func: u64,
) -> Result<Ebpf> {
    let sizes = ring_sizes(ring_bytes, crate::kernel::system::possible_cpus());
    let names: Vec<String> = (0..RINGS).map(|i| format!("EVENTS{i}")).collect();
    // Every loader gets it from here: softirq context is per task on PREEMPT_RT.
    let settings = Settings {
        softirq_per_task: crate::kernel::system::preempt_rt() as u32,
        ..*settings
    };
    let mut loader = EbpfLoader::new();
    loader
        .override_global("OFFSETS", offsets, true)
        .override_global("SETTINGS", &settings, true)
        .override_global("RPS_FUNC", &rps_func, true)
        .override_global("KOFFSETS", &found.offsets, true);
    for (name, size) in names.iter().zip(sizes) {
        loader.map_max_entries(name, size);
    }
    loader
        // Only `top` (counters) pairs skbs in the kernel.
        .map_max_entries(
            "INFLIGHT",
            if settings.counters != 0 {
                probe_common::INFLIGHT_SLOTS
            } else {
                1
            },
        )
        .load(PROBES)
        .context("loading napiscope's eBPF programs into the kernel")
}

/// `bpf(BPF_OBJ_GET_INFO_BY_FD)` on a program fd → its recursion_misses counter.
fn recursion_misses(fd: i32) -> Option<u64> {
    prog_info(fd).map(|i| i.recursion_misses)
}

fn prog_info(fd: i32) -> Option<aya_obj::generated::bpf_prog_info> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain data; the kernel fills at most info_len bytes of it.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: a valid attr for BPF_OBJ_GET_INFO_BY_FD (15) of the given size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            15,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (rc == 0).then_some(info)
}

/// The probes that did not attach, one line per reason ("not attached: a, b (why)"): on a
/// kernel without kprobes eight function probes share one reason, and a newcomer should
/// read it once, not eight times.
pub fn not_attached_lines(results: &[ProbeResult]) -> Vec<String> {
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in results.iter().filter(|r| !r.attached) {
        let why = r.reason.as_deref().unwrap_or("no reason given");
        match by_reason.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(&r.name),
            None => by_reason.push((why, vec![&r.name])),
        }
    }
    by_reason
        .into_iter()
        .map(|(why, names)| format!("not attached: {} ({why})", names.join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_that_share_a_reason_share_a_line() {
        let mut rs: Vec<ProbeResult> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ProbeResult::new(*n, "kprobe", Role::Event))
            .collect();
        rs[0].reason = Some("no kprobes".into());
        rs[1].attached = true;
        rs[2].reason = Some("not needed".into());
        rs[3].reason = Some("no kprobes".into());
        assert_eq!(
            not_attached_lines(&rs),
            [
                "not attached: a, d (no kprobes)",
                "not attached: c (not needed)"
            ]
        );
    }

    #[test]
    fn settings_cpu_mask() {
        let s = build_settings(Some(&[1, 65]), false);
        assert_eq!(s.cpu_mask[0], 0b10);
        assert_eq!(s.cpu_mask[1], 0b10);
        assert_eq!(s.softirq_mask, 1 << 3);
        assert_eq!(build_settings(None, true).softirq_mask, u32::MAX);
    }
}
