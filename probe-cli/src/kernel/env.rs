//! What every command that traces first gathers about this machine: the kernel and its mode
//! (A/B/C) with evidence, the caller's rights, tracefs; and the metadata a trace keeps of it.

use std::path::PathBuf;

use analysis::{
    mode::ModeVerdict,
    model::features::{Decided, META_KEY},
    TraceMeta,
};
use serde::Serialize;

use super::{
    btf::Btf,
    features::{self, Sources},
    system::{self, Kernel, Rights},
    tracefs::{self, TracefsInfo},
};

#[derive(Serialize)]
pub struct Environment {
    pub kernel: Kernel,
    pub mode: ModeVerdict,
    /// F1–F7 of this kernel, each with its evidence.
    pub features: Vec<Decided>,
    pub rights: Rights,
    pub tracefs: TracefsInfo,
}

impl Environment {
    pub fn gather() -> Environment {
        let tracefs = tracefs::find_or_mount();
        let tpath = tracefs.path.as_ref().map(PathBuf::from);
        let kallsyms = features::kallsyms_names();
        let btf = Btf::from_sys_fs().ok();
        let (kernel, mode) = system::kernel(tpath.as_deref(), kallsyms.as_ref(), btf.as_ref());
        let features = features::gather(&Sources {
            release: &kernel.release,
            btf: btf.as_ref(),
            kallsyms: kallsyms.as_ref(),
            tracefs: tpath.as_deref(),
            changelog: features::changelog(&kernel.release),
        });
        Environment {
            kernel,
            mode,
            features,
            rights: Rights::current(),
            tracefs,
        }
    }

    pub fn tracefs_path(&self) -> Option<PathBuf> {
        self.tracefs.path.as_ref().map(PathBuf::from)
    }

    /// The metadata every trace carries about the machine it came from.
    pub fn trace_meta(&self) -> TraceMeta {
        let mut m = TraceMeta::default();
        m.set("napiscope_version", crate::build_info::VERSION);
        m.set("kernel_release", &self.kernel.release);
        m.set("kernel_version", &self.kernel.version);
        m.set("cmdline", &self.kernel.cmdline);
        m.set("mode", self.mode.mode.as_str());
        m.set(
            "mode_evidence",
            serde_json::to_string(&self.mode.evidence).unwrap_or_default(),
        );
        m.set(
            META_KEY,
            serde_json::to_string(&self.features).unwrap_or_default(),
        );
        m.set("cpus", self.kernel.cpus_possible.to_string());
        m.set(
            "cpus_online",
            serde_json::to_string(&self.kernel.cpus_online).unwrap_or_default(),
        );
        m.set("preempt_rt", self.kernel.preempt_rt.to_string());
        m.set("hostname", hostname());
        m.set(
            analysis::trace::NET_CORE_KEY,
            serde_json::to_string(&net_core()).unwrap_or_default(),
        );
        m
    }
}

/// The `net.core` sysctls `report`'s advice names (those this kernel has).
const NET_CORE: &[&str] = &[
    "netdev_max_backlog",
    "netdev_budget",
    "netdev_budget_usecs",
    "dev_weight",
    "flow_limit_table_len",
    "flow_limit_cpu_bitmap",
    "rps_sock_flow_entries",
    "busy_poll",
    "busy_read",
];

fn net_core() -> std::collections::BTreeMap<&'static str, String> {
    (NET_CORE.iter())
        .filter_map(|k| {
            let v = std::fs::read_to_string(format!("/proc/sys/net/core/{k}")).ok()?;
            Some((*k, v.trim().to_string()))
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}
