//! `napiscope status`: what this host is, which mode it runs, what we may do, what attaches.

use analysis::model::features::Decided;
use serde::Serialize;

use crate::kernel::{
    env::Environment,
    probes::{self, build_settings, ProbeResult},
    system::{Kernel, Rights},
    tracefs::TracefsInfo,
};

#[derive(clap::Args)]
pub struct Args {
    /// Machine-readable output (one JSON object)
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let s = gather();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print(&s);
    }
    Ok(0)
}

#[derive(Serialize)]
pub struct Status {
    pub napiscope_version: &'static str,
    pub kernel_release: String,
    pub mode: &'static str,
    pub mode_description: &'static str,
    pub mode_evidence: Vec<String>,
    pub anomalies: Vec<String>,
    /// F1–F7 (model.md §2.2, §3), each with the evidence that decided it.
    pub features: Vec<Decided>,
    pub kernel: Kernel,
    pub rights: Rights,
    pub tracefs: TracefsInfo,
    pub btf: bool,
    pub kprobes: bool,
    pub fentry: String,
    /// What `record` attaches.
    pub probes: Vec<ProbeResult>,
    /// What `top` and `serve` attach: the same tracepoints with their in-kernel counting
    /// compiled in, a different program for the verifier (empty when loading was not tried).
    pub counting_probes: Vec<ProbeResult>,
}

pub fn gather() -> Status {
    let env = Environment::gather();
    let mut fentry = match (env.rights.can_trace(), env.tracefs_path()) {
        (false, _) => format!("not probed: needs {}", env.rights.missing().join(" + ")),
        (true, None) => "not probed: tracefs unavailable (see above)".to_string(),
        (true, Some(_)) => String::new(),
    };
    let counting_probes = match (env.rights.can_trace(), env.tracefs_path()) {
        (true, Some(t)) => counting_probes(&t),
        _ => Vec::new(),
    };
    let mut probe_results = match (env.rights.can_trace(), env.tracefs_path()) {
        (false, _) => not_tried(&format!(
            "not tried: loading eBPF needs {} (run as root)",
            env.rights.missing().join(" and ")
        )),
        (true, None) => not_tried("not tried: tracefs unavailable"),
        (true, Some(t)) => match probes::load(
            &t,
            &build_settings(None, false),
            4096 * 16,
            &crate::kernel::symbols::Symbols::load(),
            true,
        ) {
            Ok(mut loaded) => {
                fentry = match loaded.fentry_available() {
                    Ok(()) => "available (a test program loaded on net_rx_action)".into(),
                    Err(e) => fentry_unavailable(&e),
                };
                loaded.results.clone()
            }
            Err(e) => not_tried(&format!("eBPF load failed: {e:#}")),
        },
    };
    if !probe_results
        .iter()
        .any(|p| p.name == "rps_trigger_softirq")
    {
        probe_results.push(ProbeResult {
            name: "rps_trigger_softirq".into(),
            kind: "kprobe",
            role: probes::Role::Event,
            program: None,
            attached: false,
            reason: probe_results.first().and_then(|p| p.reason.clone()),
            fallback: None,
            verified_insns: None,
        });
    };
    Status {
        napiscope_version: crate::build_info::VERSION,
        kernel_release: env.kernel.release.clone(),
        mode: env.mode.mode.as_str(),
        mode_description: env.mode.mode.describe(),
        mode_evidence: env.mode.evidence.clone(),
        anomalies: env.mode.anomalies.clone(),
        features: env.features.clone(),
        btf: env.kernel.btf,
        kprobes: env.kernel.kprobes,
        fentry,
        kernel: env.kernel,
        rights: env.rights,
        tracefs: env.tracefs,
        probes: probe_results,
        counting_probes,
    }
}

/// Load the probes as `top` does (counters on, record-only probes left out): a program the
/// verifier accepts for `record` can still be refused with its counting code.
fn counting_probes(tracefs: &std::path::Path) -> Vec<ProbeResult> {
    let settings = probe_common::Settings {
        counters: 1,
        ..build_settings(None, false)
    };
    let symbols = crate::kernel::symbols::Symbols::load();
    match probes::load(tracefs, &settings, 4096, &symbols, true) {
        Ok(loaded) => loaded.results,
        Err(e) => not_tried(&format!("eBPF load failed: {e:#}")),
    }
}

/// Why fentry did not load, in words, and what napiscope does without it. With the rights
/// to trace, EPERM means the kernel itself refuses BPF trampolines here (lockdown, a
/// sandbox's seccomp or LSM policy), which no flag of napiscope's can change.
fn fentry_unavailable(err: &str) -> String {
    let without = "napiscope does not need fentry: its probes are tp_btf and raw tracepoints \
                   (listed below)";
    if err.contains("Operation not permitted") {
        format!(
            "unavailable: this kernel refuses fentry programs although the rights above \
             suffice (BPF_PROG_LOAD: Operation not permitted; BPF trampolines locked down or \
             blocked by a sandbox). {without}"
        )
    } else {
        format!("unavailable ({err}). {without}")
    }
}

fn not_tried(why: &str) -> Vec<ProbeResult> {
    probes::SPECS
        .iter()
        .map(|s| ProbeResult {
            reason: Some(why.to_string()),
            ..ProbeResult::new(format!("{}:{}", s.category, s.event), "tracepoint", s.role)
        })
        .collect()
}

pub fn print(s: &Status) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!("napiscope {}", s.napiscope_version);
    println!("kernel      {} ({})", s.kernel_release, s.kernel.version);
    println!("mode        {} — {}", s.mode, s.mode_description);
    for e in &s.mode_evidence {
        println!("            · {e}");
    }
    for a in &s.anomalies {
        println!("            ! anomaly: {a}");
    }
    println!("features    (model.md §2.2; \"by version\": nothing observable decided)");
    for f in &s.features {
        let on = if f.on { "on " } else { "off" };
        println!("            {} {on} {:<25} {}", f.id, f.field, f.evidence);
    }
    println!(
        "cpus        online {:?}, possible {}",
        s.kernel.cpus_online, s.kernel.cpus_possible
    );
    println!(
        "rights      euid {}, CAP_BPF {}, CAP_PERFMON {}",
        s.rights.euid,
        yes(s.rights.cap_bpf),
        yes(s.rights.cap_perfmon)
    );
    println!(
        "tracefs     {} ({})",
        s.tracefs.path.as_deref().unwrap_or("-"),
        s.tracefs.state
    );
    if !s.rights.can_trace() || s.tracefs.path.is_none() {
        println!("            → {}", crate::cli::SETCAP_ADVICE);
    }
    println!("btf         {}", yes(s.btf));
    println!("kprobes     {}", yes(s.kprobes));
    println!("fentry      {}", s.fentry);
    println!("probes (record; verifier instructions walked, of its 1M limit):");
    print_probes(&s.probes);
    let refused: Vec<&ProbeResult> = s
        .counting_probes
        .iter()
        .filter(|c| !c.attached && s.probes.iter().any(|p| p.name == c.name && p.attached))
        .collect();
    match (s.counting_probes.is_empty(), refused.is_empty()) {
        (true, _) => {}
        (false, true) => println!(
            "counting    top/serve attach the same probes (largest program: {} instructions)",
            s.counting_probes
                .iter()
                .filter_map(|p| p.verified_insns)
                .max()
                .unwrap_or(0)
        ),
        (false, false) => {
            println!("counting    top/serve lose probes that record attaches:");
            print_probes(&refused.into_iter().cloned().collect::<Vec<_>>());
        }
    }
}

fn print_probes(list: &[ProbeResult]) {
    for p in list {
        if p.verified_insns.unwrap_or(0) > probes::VERIFIER_INSN_LIMIT / 2 {
            println!(
                "  !  {} is past half the verifier's instruction limit",
                p.name
            );
        }
        let mark = if p.attached { "ok " } else { "-- " };
        let role = match p.role {
            probes::Role::Event => "",
            probes::Role::Context => " [context]",
        };
        match &p.reason {
            Some(r) if !p.attached => println!("  {mark}{:<42} {}{role}: {r}", p.name, p.kind),
            _ => match p.verified_insns {
                Some(n) => println!("  {mark}{:<42} {:<15} {n:>7}{role}", p.name, p.kind),
                None => println!("  {mark}{:<42} {}{role}", p.name, p.kind),
            },
        }
        if let (true, Some(f)) = (p.attached, &p.fallback) {
            println!("       {} because {f}", p.kind);
        }
    }
}
