//! Facts about the running kernel and our rights, read from /proc, /sys and uname.

use std::{collections::HashSet, fs, path::Path};

use analysis::mode::{LiveFacts, ModeVerdict};
use serde::Serialize;

use super::btf::Btf;

pub const PATCH_SYMBOLS: [&str; 2] = ["backlog_napi_should_run", "run_backlog_napi"];

// Capability bit numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Clone, Debug, Serialize)]
pub struct Rights {
    pub euid: u32,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
}

impl Rights {
    pub fn current() -> Rights {
        let eff = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let has = |bit: u32| eff & (1u64 << bit) != 0;
        Rights {
            // SAFETY: geteuid has no preconditions.
            euid: unsafe { libc::geteuid() },
            cap_bpf: has(CAP_BPF) || has(CAP_SYS_ADMIN),
            cap_perfmon: has(CAP_PERFMON) || has(CAP_SYS_ADMIN),
            cap_sys_admin: has(CAP_SYS_ADMIN),
        }
    }

    /// Loading tracepoint programs needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN).
    pub fn can_trace(&self) -> bool {
        self.cap_bpf && self.cap_perfmon
    }

    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.cap_bpf {
            m.push("CAP_BPF");
        }
        if !self.cap_perfmon {
            m.push("CAP_PERFMON");
        }
        m
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Kernel {
    pub release: String,
    pub version: String,
    pub cmdline: String,
    pub cpus_online: Vec<u32>,
    pub cpus_possible: u32,
    pub btf: bool,
    pub kprobes: bool,
    pub preempt_rt: bool,
    pub patch_symbols: Vec<String>,
    pub backlog_threads: Vec<String>,
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (s(&u.release), s(&u.version))
}

/// Parse a sysfs CPU list such as "0-3,8,10-11".
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

pub fn online_cpus() -> Vec<u32> {
    fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_else(|| vec![0])
}

pub fn possible_cpus() -> u32 {
    fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .and_then(|v| v.into_iter().max())
        .map(|m| m + 1)
        .unwrap_or(1)
}

/// The patch's symbols (and `register_kprobe`) among /proc/kallsyms' names.
fn patch_symbols(names: &HashSet<String>) -> Vec<String> {
    let mut found: Vec<String> = PATCH_SYMBOLS
        .iter()
        .chain(&["register_kprobe"])
        .filter(|s| names.contains(**s))
        .map(|s| s.to_string())
        .collect();
    found.sort();
    found
}

pub fn backlog_threads() -> Vec<String> {
    let mut v: Vec<(u32, String)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(comm) = fs::read_to_string(e.path().join("comm")) else {
                continue;
            };
            let comm = comm.trim();
            if let Some(n) = comm.strip_prefix("backlog_napi/") {
                v.push((n.parse().unwrap_or(u32::MAX), comm.to_string()));
            }
        }
    }
    v.sort();
    v.into_iter().map(|(_, c)| c).collect()
}

fn config_preempt_rt(release: &str) -> Option<bool> {
    let text = fs::read_to_string(format!("/boot/config-{release}")).ok()?;
    Some(text.lines().any(|l| l.trim() == "CONFIG_PREEMPT_RT=y"))
}

/// PREEMPT_RT, decided as `kernel` decides it, from the two facts it needs: the loader turns
/// on the programs' per-task softirq tracking with it.
pub fn preempt_rt() -> bool {
    let (release, version) = uname();
    analysis::mode::is_preempt_rt(&LiveFacts {
        config_preempt_rt: config_preempt_rt(&release),
        version,
        ..LiveFacts::default()
    })
}

/// The kernel's facts and mode; `kallsyms` (its names) and `btf` are None when unreadable.
pub fn kernel(
    tracefs: Option<&Path>,
    kallsyms: Option<&HashSet<String>>,
    btf: Option<&Btf>,
) -> (Kernel, ModeVerdict) {
    let (release, version) = uname();
    let cmdline = fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .trim()
        .to_string();
    let syms = kallsyms.map(patch_symbols);
    let threads = backlog_threads();
    let facts = LiveFacts {
        release: release.clone(),
        version: version.clone(),
        cmdline: cmdline.clone(),
        patch_symbols: syms
            .iter()
            .flatten()
            .filter(|n| PATCH_SYMBOLS.contains(&n.as_str()))
            .cloned()
            .collect(),
        kallsyms_readable: syms.is_some(),
        // BTF lists the patch's static functions too: evidence when kallsyms is closed.
        btf_patch_funcs: btf.map(|b| {
            PATCH_SYMBOLS
                .iter()
                .filter(|f| b.has_func(f))
                .map(|f| f.to_string())
                .collect()
        }),
        backlog_threads: threads.clone(),
        config_preempt_rt: config_preempt_rt(&release),
    };
    let verdict = analysis::mode::classify_live(&facts);
    let k = Kernel {
        preempt_rt: analysis::mode::is_preempt_rt(&facts),
        release,
        version,
        cmdline,
        cpus_online: online_cpus(),
        cpus_possible: possible_cpus(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        // CONFIG_KPROBES: kprobe_events in tracefs, or register_kprobe in kallsyms (which an
        // unprivileged user can read even when tracefs is closed to it).
        kprobes: tracefs.is_some_and(|t| t.join("kprobe_events").exists())
            || syms
                .as_ref()
                .is_some_and(|s| s.iter().any(|n| n == "register_kprobe")),
        patch_symbols: facts.patch_symbols,
        backlog_threads: threads,
    };
    (k, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
