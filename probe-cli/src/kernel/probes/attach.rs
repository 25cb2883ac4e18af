//! Attaching one probe: the classic tracepoint's record offsets from tracefs, the raw and
//! BTF-typed variants after checking that they read what the classic one records, and
//! function kprobes. Each records its outcome; none stops the others.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::{
    programs::{BtfTracePoint, KProbe, RawTracePoint, TracePoint},
    Ebpf,
};
use probe_common::TpOffsets;

use super::{BtfGroup, ProbeResult, ProbeSpec, RawNeeds, Role};
use crate::kernel::{btf::Found, tracefs};

/// Read every field offset the programs need. A tracepoint whose format is missing or
/// unexpected leaves its offsets at 0 and is reported as not attachable.
pub(super) fn offsets(tracefs: &Path) -> (TpOffsets, Vec<(&'static str, String)>) {
    let mut o = TpOffsets::default();
    let mut bad: Vec<(&'static str, String)> = Vec::new();
    let ptr = &[8u32][..];
    let int = &[4u32][..];
    let comm = &[16u32][..];
    let state = &[4u32, 8][..];
    macro_rules! fill {
        ($prog:literal, $cat:literal, $ev:literal, { $($dst:ident = $field:literal : $sizes:expr),* $(,)? }) => {{
            let r: Result<()> = (|| {
                let f = tracefs::event_fields(tracefs, $cat, $ev)?;
                $( o.$dst = tracefs::offset(&f, $ev, $field, $sizes)?; )*
                Ok(())
            })();
            if let Err(e) = r {
                bad.push(($prog, format!("{e:#}")));
            }
        }};
    }
    fill!("softirq_raise", "irq", "softirq_raise", { softirq_vec = "vec": int });
    fill!("irq_handler_entry", "irq", "irq_handler_entry", { irq_entry_irq = "irq": int });
    fill!("napi_poll", "napi", "napi_poll", {
        napi_napi = "napi": ptr, napi_dev_name = "dev_name": int,
        napi_work = "work": int, napi_budget = "budget": int,
    });
    fill!("sched_switch", "sched", "sched_switch", {
        switch_prev_comm = "prev_comm": comm, switch_prev_pid = "prev_pid": int,
        switch_prev_state = "prev_state": state, switch_next_comm = "next_comm": comm,
        switch_next_pid = "next_pid": int,
    });
    fill!("sched_waking", "sched", "sched_waking", {
        waking_comm = "comm": comm, waking_pid = "pid": int, waking_target_cpu = "target_cpu": int,
    });
    fill!("sched_wakeup", "sched", "sched_wakeup", {
        wakeup_comm = "comm": comm, wakeup_pid = "pid": int, wakeup_target_cpu = "target_cpu": int,
    });
    fill!("ipi_send_cpu", "ipi", "ipi_send_cpu", {
        ipi_cpu = "cpu": int, ipi_callsite = "callsite": ptr, ipi_callback = "callback": ptr,
    });
    fill!("csd_queue_cpu", "csd", "csd_queue_cpu", {
        csdq_cpu = "cpu": int, csdq_func = "func": ptr, csdq_csd = "csd": ptr,
    });
    fill!("csd_function_entry", "csd", "csd_function_entry", {
        csdf_func = "func": ptr, csdf_csd = "csd": ptr,
    });
    fill!("sched_wake_idle_without_ipi", "sched", "sched_wake_idle_without_ipi", { idle_cpu = "cpu": int });
    fill!("netif_rx", "net", "netif_rx", {
        rx_skb = "skbaddr": ptr, rx_len = "len": int, rx_name = "name": int,
    });
    fill!("netif_rx_exit", "net", "netif_rx_exit", { rxexit_ret = "ret": int });
    fill!("netif_receive_skb", "net", "netif_receive_skb", {
        rcv_skb = "skbaddr": ptr, rcv_len = "len": int, rcv_name = "name": int,
    });
    fill!("netif_receive_skb_entry", "net", "netif_receive_skb_entry", {
        devrx_skb = "skbaddr": ptr, devrx_len = "len": int, devrx_name = "name": int,
    });
    fill!("cpuhp_enter", "cpuhp", "cpuhp_enter", {
        cpuhp_enter_cpu = "cpu": int, cpuhp_enter_target = "target": int,
        cpuhp_enter_idx = "idx": int,
    });
    fill!("cpuhp_exit", "cpuhp", "cpuhp_exit", {
        cpuhp_exit_cpu = "cpu": int, cpuhp_exit_state = "state": int,
        cpuhp_exit_idx = "idx": int, cpuhp_exit_ret = "ret": int,
    });
    // softirq_entry/exit share softirq_raise's record layout (DECLARE_EVENT_CLASS softirq).
    same_class(
        &mut bad,
        "softirq_raise",
        &["softirq_entry", "softirq_exit"],
    );
    // And the device-side receive entries share netif_receive_skb_entry's
    // (DECLARE_EVENT_CLASS net_dev_rx_verbose_template).
    same_class(
        &mut bad,
        "netif_receive_skb_entry",
        &["napi_gro_receive_entry", "netif_receive_skb_list_entry"],
    );
    (o, bad)
}

/// Events of one DECLARE_EVENT_CLASS share `read`'s record layout: when its format could not
/// be read, they are not attachable for the same reason.
fn same_class(bad: &mut Vec<(&'static str, String)>, read: &str, others: &[&'static str]) {
    if let Some((_, why)) = bad.iter().find(|(p, _)| *p == read).cloned() {
        bad.extend(others.iter().map(|p| (*p, why.clone())));
    }
}

/// Attaches the tracepoints of `SPECS` one by one, each with the first kind that works:
/// tp_btf, raw_tracepoint, classic (`prefer_raw` false: classic only).
pub(super) struct Tracepoints<'a> {
    pub ebpf: &'a mut Ebpf,
    pub tracefs: &'a Path,
    pub found: &'a Found,
    /// Programs whose record offsets could not be read, and why (`offsets`).
    pub bad: &'a [(&'static str, String)],
    pub prefer_raw: bool,
    /// Programs loaded so far (one program may serve several tracepoints).
    pub loaded: Vec<&'static str>,
    /// The kernel's BTF as aya reads it, for tp_btf programs; parsed on first use.
    pub vmlinux: Option<Result<aya::Btf, String>>,
}

impl Tracepoints<'_> {
    pub fn attach(&mut self, spec: &ProbeSpec) -> ProbeResult {
        let name = format!("{}:{}", spec.category, spec.event);
        let mut result = ProbeResult::new(name, "tracepoint", spec.role);
        if !self
            .tracefs
            .join("events")
            .join(spec.category)
            .join(spec.event)
            .is_dir()
        {
            result.reason = Some("tracepoint not in this kernel".into());
            return result;
        }
        if let Some((typed, group)) = spec.typed.filter(|_| self.prefer_raw) {
            let needs = match group {
                BtfGroup::Net => &self.found.net,
                BtfGroup::Sched => &self.found.sched,
            };
            let r = match needs {
                Ok(()) => attach_typed(self.ebpf, &mut self.vmlinux, spec, typed),
                Err(e) => Err(anyhow::anyhow!("kernel BTF: {e}")),
            };
            match r {
                Ok(()) => {
                    result.kind = "tp_btf";
                    result.program = Some(typed);
                    result.attached = true;
                    return result;
                }
                Err(e) => result.fallback = Some(format!("tp_btf: {}", load_error(&e))),
            }
        }
        if let Some((raw_prog, needs)) = spec.raw.filter(|_| self.prefer_raw) {
            match attach_raw(
                self.ebpf,
                &mut self.loaded,
                self.tracefs,
                spec,
                raw_prog,
                needs,
                &self.found.net,
            ) {
                Ok(()) => {
                    result.kind = "raw_tracepoint";
                    result.program = Some(raw_prog);
                    result.attached = true;
                    return result;
                }
                Err(e) => {
                    let e = format!("raw_tracepoint: {}", load_error(&e));
                    result.fallback = Some(match result.fallback.take() {
                        Some(first) => format!("{first}; {e}"),
                        None => e,
                    })
                }
            }
        }
        if let Some((_, why)) = self.bad.iter().find(|(p, _)| *p == spec.program) {
            result.reason = Some(why.clone());
            return result;
        }
        match self.attach_classic(spec) {
            Ok(()) => {
                result.attached = true;
                result.program = Some(spec.program);
            }
            Err(e) => result.reason = Some(load_error(&e)),
        }
        result
    }

    fn attach_classic(&mut self, spec: &ProbeSpec) -> Result<()> {
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(spec.program)
            .with_context(|| format!("program {} missing", spec.program))?
            .try_into()?;
        if !self.loaded.contains(&spec.program) {
            prog.load()
                .with_context(|| format!("verifier rejected {}", spec.program))?;
            self.loaded.push(spec.program);
        }
        prog.attach(spec.category, spec.event)?;
        Ok(())
    }
}

/// Load `program` and attach it to the kernel function `function`; record the outcome.
pub(super) fn attach_kprobe(
    ebpf: &mut Ebpf,
    r: &mut ProbeResult,
    program: &'static str,
    function: &str,
) {
    let res: Result<()> = (|| {
        let prog: &mut KProbe = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} missing"))?
            .try_into()?;
        prog.load()?;
        prog.attach(function, 0)
            .with_context(|| format!("{function} is not probe-able here (inlined?)"))?;
        Ok(())
    })();
    match res {
        Ok(()) => {
            r.attached = true;
            r.program = Some(program);
        }
        Err(e) => r.reason = Some(load_error(&e)),
    }
}

/// Where csd:csd_function_entry is missing (F5: before ~6.4), see the RPS IPI arrive through a
/// kprobe on rps_trigger_softirq — when the kernel has kprobes.
pub(super) fn rps_kprobe(
    ebpf: &mut Ebpf,
    kprobes: bool,
    results: &[ProbeResult],
    addr: u64,
) -> ProbeResult {
    let mut r = ProbeResult::new("rps_trigger_softirq", "kprobe", Role::Event);
    if results
        .iter()
        .any(|p| p.name == "csd:csd_function_entry" && p.attached)
    {
        r.reason = Some("not needed: csd:csd_function_entry records the RPS IPI".into());
        return r;
    }
    if !kprobes {
        r.reason = Some("kernel has no kprobes (CONFIG_KPROBES off)".into());
        return r;
    }
    if addr == 0 {
        r.reason = Some("rps_trigger_softirq not in /proc/kallsyms".into());
        return r;
    }
    attach_kprobe(
        ebpf,
        &mut r,
        "rps_trigger_softirq_kprobe",
        "rps_trigger_softirq",
    );
    r
}

/// Attach the raw-tracepoint variant, after checking that it will read what the classic
/// tracepoint records: the record's fields (which mirror TP_PROTO) are the arguments the
/// program reads, in order; or the kernel's BTF gave every offset it follows.
fn attach_raw(
    ebpf: &mut Ebpf,
    loaded: &mut Vec<&'static str>,
    tracefs: &Path,
    spec: &ProbeSpec,
    program: &'static str,
    needs: RawNeeds,
    net_offsets: &Result<(), String>,
) -> Result<()> {
    let fields = match needs {
        RawNeeds::Fields(fields) => fields,
        RawNeeds::Btf => match net_offsets {
            Ok(()) => &[],
            Err(e) => anyhow::bail!("kernel BTF: {e}"),
        },
    };
    if !fields.is_empty() {
        let f = tracefs::event_fields(tracefs, spec.category, spec.event)?;
        let mut order: Vec<(&u32, &str)> = f
            .iter()
            .filter(|(n, _)| !n.starts_with("common_"))
            .map(|(n, fl)| (&fl.offset, n.as_str()))
            .collect();
        order.sort();
        let names: Vec<&str> = order.into_iter().map(|(_, n)| n).collect();
        if names != fields {
            anyhow::bail!(
                "record fields {names:?} differ from the raw arguments napiscope reads {fields:?}"
            );
        }
    }
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing"))?
        .try_into()?;
    if !loaded.contains(&program) {
        prog.load()
            .with_context(|| format!("verifier rejected {program}"))?;
        loaded.push(program);
    }
    prog.attach(spec.event)?;
    Ok(())
}

/// Load and attach the tp_btf variant of a probe (`RawNeeds::Btf`).
fn attach_typed(
    ebpf: &mut Ebpf,
    vmlinux: &mut Option<Result<aya::Btf, String>>,
    spec: &ProbeSpec,
    program: &'static str,
) -> Result<()> {
    let btf = vmlinux
        .get_or_insert_with(|| aya::Btf::from_sys_fs().map_err(|e| format!("{e}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("kernel BTF: {e}"))?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing"))?
        .try_into()?;
    prog.load(spec.event, btf)
        .with_context(|| format!("verifier rejected {program}"))?;
    prog.attach()?;
    Ok(())
}

/// A load or attach error in one readable piece: a refused program's verifier log can run to
/// thousands of lines. Its verdict is the last line that is not a statistic ("processed N
/// insns", "stack depth", "verification time"); that line, the two before it and the
/// instruction count are kept (NAPISCOPE_VERIFIER_LOG=1 keeps all of it).
pub(super) fn load_error(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let Some((head, log)) = text.split_once("Verifier output:") else {
        return text;
    };
    if std::env::var_os("NAPISCOPE_VERIFIER_LOG").is_some() {
        return text;
    }
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim().trim_end_matches(':').trim())
        .filter(|l| !l.is_empty())
        .collect();
    let is_stat = |l: &str| {
        [
            "verification time",
            "stack depth",
            "processed ",
            "mark_read",
        ]
        .iter()
        .any(|p| l.starts_with(p))
            || l.contains("(os error")
    };
    let verdict = lines.iter().rposition(|l| !is_stat(l));
    let mut kept: Vec<&str> = match verdict {
        Some(v) => lines[v.saturating_sub(2)..=v].to_vec(),
        None => Vec::new(),
    };
    kept.extend(lines.iter().find(|l| l.starts_with("processed ")));
    format!(
        "{head}verifier log, verdict: {} (NAPISCOPE_VERIFIER_LOG=1 for all of it)",
        kept.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::load_error;

    #[test]
    fn a_verifier_log_is_cut_to_its_verdict() {
        let log: String = (0..5000).map(|i| format!("{i}: (bf) r6 = r1\n")).collect();
        let e = anyhow::anyhow!(
            "verifier rejected p: E2BIG. Verifier output: {log}BPF program is too large. \
             Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000)\n"
        );
        let short = load_error(&e);
        assert!(short.len() < 400, "{short}");
        assert!(short.starts_with("verifier rejected p: E2BIG."), "{short}");
        assert!(short.contains("(limit 1000000)"), "{short}");
        assert!(short.contains("BPF program is too large"), "{short}");
        // 6.1's layout: the verdict, then statistics and the syscall's error.
        let e = anyhow::anyhow!(
            "verifier rejected q: EACCES. Verifier output: {log}R1 invalid mem access 'scalar'\n\
             verification time 15267 usec\nstack depth 232+0\nprocessed 1110 insns (limit \
             1000000) max_states_per_insn 4\n: Permission denied (os error 13)\n"
        );
        let short = load_error(&e);
        assert!(short.contains("R1 invalid mem access 'scalar'"), "{short}");
        assert!(short.contains("processed 1110 insns"), "{short}");
        assert!(!short.contains("stack depth"), "{short}");
        assert_eq!(load_error(&anyhow::anyhow!("plain")), "plain");
    }
}
