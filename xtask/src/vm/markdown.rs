//! The kernel matrix as markdown: matrix.md (per-kernel tables: verify, rules, first
//! divergences, hotplug, flood, top) and the README's table, from the rows of `matrix::row`.

use serde_json::Value;

use super::matrix::*;

/// A row's kernel name and its cmdline cell ("–" when empty), the first two columns of
/// every table.
pub(super) fn kernel_cells(r: &Value) -> (&str, &str) {
    (
        r["kernel"].as_str().unwrap_or(""),
        r["cmdline"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or("–"),
    )
}

pub(super) fn hotplug_markdown(rows: &[Value]) -> String {
    let mut s = String::from(
        "\nCPU hotplug in the same guests: `napiscope record` runs while \
         `napiscope scenario loopback-rps --hotplug-cpu 1 -d 3s` takes CPU 1 (the RPS target) \
         offline for the middle second, then `napiscope check` (hotplug windows are \
         INCONCLUSIVE by model.md §8.2, never FAIL):\n\n\
         | kernel | cmdline | CPU 1 offline → online (s) | packets received | events recorded | cpuhp events | check |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r["hotplug"].is_object()) {
        let h = &r["hotplug"];
        let sc = &h["scenario"];
        let when = match (sc["offline_at"].as_f64(), sc["online_at"].as_f64()) {
            (Some(a), Some(b)) => format!("{a:.2} → {b:.2}"),
            _ => format!("failed: {}", sc["error"].as_str().unwrap_or("no report")),
        };
        let (kernel, cmdline) = kernel_cells(r);
        // What the kernel said it skipped of napiscope's programs (`record`'s missed_by_event).
        let missed = h["missed_by_event"]
            .as_object()
            .filter(|m| !m.is_empty())
            .map(|m| {
                let v: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
                format!(
                    "; recording incomplete, the kernel skipped programs: {}",
                    v.join(", ")
                )
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "| {kernel} | {cmdline} | {when} | {} | {} | {} | {} (exit {}{missed}) |\n",
            h["received"],
            h["events"],
            h["cpuhp_events"],
            h["verdict"].as_str().unwrap_or("?"),
            h["check_rc"],
        ));
    }
    s
}

/// The patch's own claims, as its users would check them: untraced floods, medians of 5.
pub(super) fn flood_markdown(rows: &[Value]) -> String {
    let mut s = String::from(
        "\nThe patch's claims, untraced (`napiscope scenario S --rate 0 -d 1s` five times each, \
         medians; packets received per second, and per packet sent the machine's context \
         switches (/proc/stat) and IPIs (/proc/interrupts CAL + RES); TCG, so compare kernels \
         and boots, not absolute numbers):\n\n\
         | kernel | cmdline | loopback pkt/s | ctx sw/pkt | IPIs/pkt | loopback-rps pkt/s | ctx sw/pkt | IPIs/pkt |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let get = |r: &Value, name: &str, key: &str| -> Option<f64> {
        r["flood"].as_array()?.iter().find(|x| {
            x["scenario"]
                .as_str()
                .is_some_and(|s| super::boot::same_scenario(s, name))
        })?[key]
            .as_f64()
    };
    let fmt = |v: Option<f64>, digits: usize| v.map_or("?".into(), |v| format!("{v:.digits$}"));
    for r in rows.iter().filter(|r| r["flood"].is_array()) {
        let (kernel, cmdline) = kernel_cells(r);
        s.push_str(&format!(
            "| {kernel} | {cmdline} | {} | {} | {} | {} | {} | {} |\n",
            fmt(get(r, "loopback", "received_pps"), 0),
            fmt(get(r, "loopback", "context_switches_per_packet"), 2),
            fmt(get(r, "loopback", "ipis_per_packet"), 3),
            fmt(get(r, "loopback-rps", "received_pps"), 0),
            fmt(get(r, "loopback-rps", "context_switches_per_packet"), 2),
            fmt(get(r, "loopback-rps", "ipis_per_packet"), 3),
        ));
    }
    // Threads off vs on on the same kernel build, same VM configuration.
    let by = |k: &str| rows.iter().find(|r| r["kernel"] == k);
    if let (Some(off), Some(on)) = (by("6.12"), by("6.12-threads")) {
        let ratio = |name: &str| match (
            get(on, name, "received_pps"),
            get(off, name, "received_pps"),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "?".into(),
        };
        s.push_str(&format!(
            "\n6.12 with thread_backlog_napi vs without: loopback throughput ×{} (the patch: \
             the local-CPU shortcut \"restores the loopback throughput\", so ≈ 1); loopback + RPS \
             ×{} (the patch: IPI and thread \"mostly the same\").\n",
            ratio("loopback"),
            ratio("loopback-rps"),
        ));
    }
    s
}

/// matrix.md: the verdicts, then top's counters, hotplug, the untraced floods, and the probes
/// that did not attach.
pub fn markdown(rows: &[Value], date: &str, command: &str) -> String {
    let mut s = format!(
        "# napiscope kernel matrix\n\n`{command}`, {date}. Debian kernels booted under QEMU (TCG, 2 vCPUs); \
         inside: `napiscope status --json`, then `napiscope verify --json --expect-mode M` with M the mode that status found.\n\n\
         The expected mode is this table's; the found one is what the guest's own evidence \
         shows (`status`), and verify, top and check run in it.\n\n\
         | kernel | release | cmdline | expected | found | evidence | event probes | scenarios (verdict; negative control) | result | time |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let sc: Vec<String> = r["scenarios"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(scenario_cell)
            .collect();
        let probes_cell = format!(
            "{} ({})",
            r["event_probes_attached"],
            r["event_probe_kinds"].as_str().unwrap_or("")
        );
        let (kernel, cmdline) = kernel_cells(r);
        let found = r["mode"].as_str().unwrap_or("?");
        let found = if found == r["expected_mode"] {
            found.to_string()
        } else {
            format!("**{found} (MISMATCH)**")
        };
        s.push_str(&format!(
            "| {kernel} | {} | {cmdline} | {} | {found} | {} | {} | {} | {} | {} s |\n",
            r["release"].as_str().unwrap_or("?"),
            r["expected_mode"].as_str().unwrap_or(""),
            evidence_cell(&r["mode_evidence"]),
            probes_cell,
            sc.join("<br>"),
            result_cell(r),
            r["seconds"]
        ));
    }
    s.push_str(&rules_markdown(rows));
    s.push_str(&divergences_markdown(rows));
    s.push_str(&top_markdown(rows));
    s.push_str(&nic_markdown(rows));
    s.push_str(&hotplug_markdown(rows));
    s.push_str(&flood_markdown(rows));
    s.push_str("\nNot attached per kernel (reason):\n\n");
    for r in rows {
        let m = strs(&r["not_attached"]);
        if !m.is_empty() {
            s.push_str(&format!(
                "- {}: {}\n",
                r["kernel"].as_str().unwrap_or(""),
                m.join("; ")
            ));
        }
    }
    s
}

/// The README's matrix: per kernel, the Debian packages' layout, the mode expected and the one
/// the guest's evidence shows, verify's verdict per scenario, the negative control, what the
/// recordings lacked, and the boot's time.
pub fn readme_table(rows: &[Value]) -> String {
    let mut s = String::from(
        "| kernel | release | packages | expected → found (evidence) | verify per scenario | negative control (other mode's rules) | incomplete | result | time |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (kernel, cmdline) = kernel_cells(r);
        let name = if cmdline == "–" {
            kernel.to_string()
        } else {
            format!("{kernel} ({cmdline})")
        };
        let layout = match r["package_layout"].as_str() {
            Some(l) if l.starts_with("split") => "linux-binary + linux-modules + linux-base",
            Some(_) => "linux-image",
            None => "–",
        };
        let found = r["mode"].as_str().unwrap_or("?");
        let mark = if found == r["expected_mode"] {
            ""
        } else {
            " **MISMATCH**"
        };
        let scs: Vec<&Value> = r["scenarios"].as_array().into_iter().flatten().collect();
        let verdicts: Vec<String> = scs
            .iter()
            .map(|x| {
                let v = x["verdict"].as_str().unwrap_or("?");
                let failed = strs(&x["failed_rules"]);
                let v = if v == "FAIL" {
                    format!("**FAIL** {}", failed.join(" "))
                } else {
                    v.to_string()
                };
                format!("{} {v}", x["scenario"].as_str().unwrap_or("?"))
            })
            .collect();
        let controls: Vec<String> = scs
            .iter()
            .filter_map(|x| Some((x["scenario"].as_str()?, x["negative_control"].as_object()?)))
            .map(|(sc, n)| {
                let as_ = n["checked_as"].as_str().unwrap_or("?");
                if n["diverged"] == true {
                    format!("{sc} as {as_}: FAIL {}", strs(&n["failed_rules"]).join(" "))
                } else {
                    format!("{sc} as {as_}: **passed (blind)**")
                }
            })
            .collect();
        let short: Vec<String> = scs
            .iter()
            .filter_map(|x| {
                let sh = x["short"].as_str().filter(|s| !s.is_empty())?;
                Some(format!("{}: {sh}", x["scenario"].as_str().unwrap_or("?")))
            })
            .collect();
        s.push_str(&format!(
            "| {name} | {} | {layout} | {} → {found}{mark} ({}) | {} | {} | {} | {} | {} s |\n",
            r["release"].as_str().unwrap_or("?"),
            r["expected_mode"].as_str().unwrap_or("?"),
            evidence_cell(&r["mode_evidence"]),
            verdicts.join(", "),
            if controls.is_empty() {
                "–".to_string()
            } else {
                controls.join("; ")
            },
            if short.is_empty() {
                "–".to_string()
            } else {
                short.join("; ")
            },
            result_cell(r),
            r["seconds"],
        ));
    }
    s
}

/// "PASS", or "**FAIL** (verify exit 1; hotplug …)" with the row's reasons.
pub(super) fn result_cell(r: &Value) -> String {
    if r["passed"] == true {
        return "PASS".into();
    }
    let why = strs(&r["failed_because"]);
    if why.is_empty() {
        "**FAIL**".into()
    } else {
        format!("**FAIL** ({})", why.join("; "))
    }
}

/// "loopback-rps PASS; as B diverges: C1 C2": one scenario's verdict, its negative control,
/// and what its recording lacked.
pub(super) fn scenario_cell(x: &Value) -> String {
    let nc = match x["negative_control"].as_object() {
        Some(n) if n["diverged"] == true => format!(
            "; as {} diverges: {}",
            n["checked_as"].as_str().unwrap_or("?"),
            strs(&n["failed_rules"]).join(" ")
        ),
        Some(_) => "; negative control did NOT diverge".into(),
        None => String::new(),
    };
    let short = x["short"].as_str().filter(|s| !s.is_empty());
    format!(
        "{} {}{nc}{}",
        x["scenario"].as_str().unwrap_or("?"),
        x["verdict"].as_str().unwrap_or("?"),
        short
            .map(|s| format!("; incomplete: short of the kernel's {s}"))
            .unwrap_or_default()
    )
}

/// Per kernel and scenario: packets, the paths they took, each rule's verdict in the found
/// mode, the negative control's, and what the recording lacked against the kernel's counters.
pub(super) fn rules_markdown(rows: &[Value]) -> String {
    let mut s = String::from(
        "\nPer rule, in the found mode (`verify --json`; WARN/FAIL with their instance counts), \
         and the negative control (the same trace checked as the other mode; it must diverge):\n\n\
         | kernel | scenario | sent / received | paths | rules | negative control | incomplete |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        for x in r["scenarios"].as_array().into_iter().flatten() {
            let paths = x["paths"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let nc = match x["negative_control"].as_object() {
                Some(n) if n["diverged"] == true => format!(
                    "as {}: diverges ({})",
                    n["checked_as"].as_str().unwrap_or("?"),
                    strs(&n["failed_rules"]).join(" ")
                ),
                Some(n) => format!(
                    "as {}: **did NOT diverge**",
                    n["checked_as"].as_str().unwrap_or("?")
                ),
                None => "–".into(),
            };
            let short = x["short"].as_str().filter(|s| !s.is_empty()).unwrap_or("–");
            s.push_str(&format!(
                "| {} | {} | {} / {} | {paths} | {} | {nc} | {short} |\n",
                r["kernel"].as_str().unwrap_or(""),
                x["scenario"].as_str().unwrap_or("?"),
                x["sent"],
                x["received"],
                rules_cell(&x["rules"]),
            ));
        }
    }
    s
}

/// The first divergence of every failed rule, with its events: what a FAIL row rests on.
pub(super) fn divergences_markdown(rows: &[Value]) -> String {
    let mut s = String::new();
    for r in rows {
        for x in r["scenarios"].as_array().into_iter().flatten() {
            for d in x["divergences"].as_array().into_iter().flatten() {
                if s.is_empty() {
                    s.push_str("\nDivergences (the first of each failed rule, as `verify --json` reported it):\n\n");
                }
                s.push_str(&format!(
                    "- {} {}: **{}** {} — expected: {}\n",
                    r["kernel"].as_str().unwrap_or(""),
                    x["scenario"].as_str().unwrap_or("?"),
                    d["rule"].as_str().unwrap_or("?"),
                    d["message"].as_str().unwrap_or(""),
                    d["expected"].as_str().unwrap_or(""),
                ));
                for e in strs(&d["events"]) {
                    s.push_str(&format!("  - `{e}`\n"));
                }
            }
        }
    }
    s
}

pub(super) fn top_markdown(rows: &[Value]) -> String {
    let mut s = String::from(
        "\n`napiscope top --json -n 5 --expect-mode M` in the same guests while loopback-rps sends \
         3 s from CPU 0 to CPU 1 (in-kernel counters; packets and IPIs on CPU 1 over the 5 s):\n\n\
         | kernel | cmdline | top exit | remote softirq | backlog thread | ksoftirqd | RPS IPIs received | backlog_napi wake-ups | diverged |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r["top"].is_object()) {
        let t = &r["top"];
        let n = |k: &str| {
            t["cpu1"][k]
                .as_f64()
                .map_or("–".into(), |v| format!("{v:.0}"))
        };
        let failed = strs(&t["failed_rules"]);
        let (kernel, cmdline) = kernel_cells(r);
        s.push_str(&format!(
            "| {kernel} | {cmdline} | {} | {} | {} | {} | {} | {} | {} |\n",
            t["rc"],
            n("remote_softirq"),
            n("backlog_thread"),
            n("ksoftirqd"),
            n("rps_ipi_received"),
            n("backlog_woken"),
            if failed.is_empty() {
                "–".to_string()
            } else {
                failed.join(" ")
            },
        ));
    }
    s
}

/// The virtio-net pair: top's per-NAPI rows of the receiving NIC, one line per instance.
pub(super) fn nic_markdown(rows: &[Value]) -> String {
    let mut s = String::from(
        "\nA real driver: two virtio-net NICs on QEMU's internal hub, `ping -A` for 4 s from eth0 \
         (in a netns) to eth1, and `napiscope top --json -n 3` meanwhile; eth1's NAPI instances \
         (its queues) summed over the 3 s:\n\n\
         | kernel | cmdline | instance | napi->irq | polls | packets | polled at IRQ exit / by its thread | that IRQ | where (polls) | ping |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r["nic"].is_object()) {
        let (kernel, cmdline) = kernel_cells(r);
        let n = &r["nic"];
        let ping = n["ping"].as_str().unwrap_or("–");
        let inst = n["instances"].as_array().cloned().unwrap_or_default();
        if inst.is_empty() {
            let why = n["devices"]
                .as_str()
                .map_or("no eth1 instance polled".to_string(), |d| {
                    format!("no NIC pair (interfaces: {d})")
                });
            s.push_str(&format!(
                "| {kernel} | {cmdline} | {why} | | | | | | | {ping} |\n"
            ));
        }
        for i in inst {
            let wh: Vec<String> = (i["where"].as_object().into_iter().flatten())
                .filter(|(_, v)| v.as_f64().unwrap_or(0.0) >= 0.5)
                .map(|(k, v)| format!("{k} {:.0}", v.as_f64().unwrap_or(0.0)))
                .collect();
            let irq = &i["last_irq"];
            let started = format!(
                "{} / {}",
                i["irq_polls"].as_u64().unwrap_or(0),
                i["irq_thread_polls"].as_u64().unwrap_or(0)
            );
            s.push_str(&format!(
                "| {kernel} | {cmdline} | {} | {} | {} | {} | {} | {} | {} | {ping} |\n",
                i["name"].as_str().unwrap_or("?"),
                if i["irq"].is_null() {
                    "–".to_string()
                } else {
                    i["irq"].to_string()
                },
                i["polls"],
                i["packets"],
                started,
                irq["name"]
                    .as_str()
                    .map_or("–".to_string(), |n| format!("{} ({})", irq["irq"], n)),
                wh.join(", "),
            ));
        }
    }
    s
}
