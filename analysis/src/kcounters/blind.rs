//! Blind windows: stretches in which the kernel ran none of the recorder's programs.

use serde::{Deserialize, Serialize};

/// The metadata key of the blind windows (`Blind` per CPU).
pub const BLIND_KEY: &str = "blind_windows";

/// One CPU's blind windows: stretches in which the kernel ran none of the recorder's eBPF
/// programs there (the task then current is one the kernel does not run them for), found
/// in the kernel by a task other than the one sched_switch switched to. `last` holds the
/// most recent of them (the kernel keeps a few per CPU); `windows` and `ns` count all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blind {
    pub cpu: u32,
    pub windows: u64,
    pub ns: u64,
    pub last: Vec<BlindSpan>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindSpan {
    pub from_ns: u64,
    pub to_ns: u64,
    /// The task that was current (switched to, and never seen switching away).
    pub pid: u32,
    /// Its name, when the recorder could still read it at the end.
    pub comm: Option<String>,
}

/// The blind windows a recording stored, if any.
pub fn blind_of(meta: &crate::trace::TraceMeta) -> Vec<Blind> {
    meta.get(BLIND_KEY)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// One line per CPU with blind windows, for terminals.
pub fn blind_lines(b: &[Blind]) -> Vec<String> {
    b.iter()
        .filter(|b| b.windows > 0)
        .map(|b| {
            let mut who: Vec<String> = b
                .last
                .iter()
                .map(|s| match &s.comm {
                    Some(c) => format!("{c} (pid {})", s.pid),
                    None => format!("pid {}", s.pid),
                })
                .collect();
            who.sort();
            who.dedup();
            format!(
                "cpu{}: {} window(s), {:.3} ms, in which the kernel ran no napiscope program; \
                 current then: {}",
                b.cpu,
                b.windows,
                b.ns as f64 / 1e6,
                who.join(", ")
            )
        })
        .collect()
}
