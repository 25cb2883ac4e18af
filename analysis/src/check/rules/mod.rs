//! The rules of the reference model, one entry each in `RULES`: its id (docs/model.md §11),
//! the modes it holds in, its title, the kernel code it stands on, and its check. The checks
//! are in `global.rs` (all modes), `mode_ab.rs` and `mode_c.rs`; each counts instances as
//! passed, failed, warned or inconclusive, and explains every failure with what the model
//! expected instead. `check`'s report, `verify`, `check --help`, docs/rules.md and `top`'s
//! pane all read their rule lists from this table.
//!
//! "§N" cites docs/model.md; "@@ -N" a hunk of the seed patch (docs/seed/, upstream
//! dad6b9770263 "net: Allow to use SMP threads for backlog NAPI."); a bare hash an upstream
//! commit (model.md §2.2, §9).

mod device;
mod global;
mod mode_ab;
mod mode_c;

use super::{
    describe,
    index::{Batch, Delivery, Finder, Index},
    RuleResult,
};
use crate::{
    event::{EventKind, RPS_IPI_FUNC},
    mode::Mode,
    model::Features,
    trace::{
        cols::{Sym, E},
        TraceMeta,
    },
};
use probe_common::NET_RX_SOFTIRQ;
use Modes::{All, Device, AB, C};

#[rustfmt::skip]
pub static RULES: &[Rule] = &[
//  id      modes check             title                                                                stands on
    rule("G1",   All, global::g1,  "a backlog NAPI is polled only on its own CPU",                       "§1.2, §8.2; rps_trigger_softirq on T (§2.1); C: run_backlog_napi @@ -11659"),
    rule("G2",   All, global::g2,  "backlog poll bounds: 0 ≤ work ≤ budget",                             "§1.2, §2.1: process_backlog returns at most its quota"),
    rule("G3",   All, global::g3,  "all polls of one batch run in one class (softirq or thread)",        "§4; SCHED cleared only when the queue is drained: process_backlog @@ -5985"),
    rule("G4",   All, global::g4,  "a backlog-delivered skb is received on its RPS target CPU",          "§2.1: enqueue_to_backlog(skb, cpu) queues on cpu's backlog"),
    rule("G5",   All, global::g5,  "FIFO per (enqueue CPU, target CPU)",                                 "§2.1: input_pkt_queue / process_queue are FIFO"),
    rule("G6",   All, global::g6,  "a dropped skb is never received",                                    "§2.1, §8.1: enqueue_to_backlog frees a dropped skb, NET_RX_DROP"),
    rule("G7",   All, global::g7,  "every backlog batch has a cause",                                    "§4 initiator (SCHED 0→1); §8.3 defer kicks (80d2eefcb4c8)"),
    rule("A-1",  AB,  mode_ab::a1, "no backlog_napi/* task ever appears",                                "§3, §5.1: threads only if use_backlog_threads() @@ -216, @@ -11711").live("no backlog_napi thread work"),
    rule("A-2",  AB,  mode_ab::a2, "every backlog poll runs in softirq context",                         "§5.1 A6–A8: net_rx_action polls the backlog").live("backlog polled in softirq"),
    rule("A-3",  AB,  mode_ab::a3, "a remote batch is started by an RPS IPI",                            "§5.1 A3–A5: napi_schedule_rps → rps_ipi_list → rps_trigger_softirq @@ -4703").live("remote work follows an RPS IPI"),
    rule("A-4",  AB,  mode_ab::a4, "RPS IPIs and backlog batches alternate on the target",               "§5.1 A4–A8: SCHED held until work < budget, process_backlog @@ -5985"),
    rule("A-5",  AB,  mode_ab::a5, "a local batch has no RPS IPI",                                       "§5.1 A2: a local enqueue is ____napi_schedule + NET_RX raise"),
    rule("A-6",  AB,  mode_ab::a6, "RPS IPIs are sent from NET_RX, a napi thread or hotplug",            "§5.1 A4: net_rps_action_and_irq_enable @@ -5926; F2 87eff2ec57b6; §8.2"),
    rule("A-7",  AB,  mode_ab::a7, "a remote-initiating enqueue raises NET_RX on the sender (soft)",     "§5.1 A3; §2.2 F2 8fcb76b934da: no raise from inside NET_RX"),
    rule("A-8",  AB,  mode_ab::a8, "no backlog-thread wake-ups; received_rps grows with RPS traffic",    "§2.1: rps_trigger_softirq counts received_rps; no threads @@ -11711"),
    rule("C-1",  C,   mode_c::c1,  "one backlog_napi/N per online CPU, running only on CPU N",           "§7.1: smpboot backlog_napi/%u bound to N @@ -11659, @@ -11711").live("one backlog_napi thread per CPU"),
    rule("C-2",  C,   mode_c::c2,  "no RPS IPI (csd rps_trigger_softirq) at all",                        "§7.2: no IPI @@ -4703, @@ -5926, @@ -5941; F6 80d2eefcb4c8").live("no RPS IPIs"),
    rule("C-3",  C,   mode_c::c3,  "a remote batch runs in the target's backlog thread",                 "§7.2 C3: napi_schedule_rps @@ -4703 → ____napi_schedule wakes it @@ -4452").live("remote work in backlog_napi"),
    rule("C-4",  C,   mode_c::c4,  "a local batch runs in the local softirq",                            "§7.2 C2: ____napi_schedule goto use_local_napi @@ -4452"),
    rule("C-5",  C,   mode_c::c5,  "backlog-thread wake-ups come from other CPUs",                       "§7.2 C2/C3 @@ -4452; cpuhp wakers (§8.2); kick_defer_list_purge race"),
    rule("C-6",  C,   mode_c::c6,  "a remote batch is announced by a wake-up (or the thread was awake)", "§7.2 C3: wake_up_process(backlog_napi/T) @@ -4452; 56364c910691"),
    rule("C-7",  C,   mode_c::c7,  "no NET_RX raise on the sender for a remote enqueue",                 "§7.2 C3: napi_schedule_rps returns before the raise @@ -4703"),
    rule("C-8",  C,   mode_c::c8,  "a backlog-thread run polls its backlog",                             "§7.2 C4–C6: smpboot runs it while backlog_napi_should_run @@ -11659"),
    rule("C-9",  C,   mode_c::c9,  "a backlog thread polls only its own backlog",                        "§7.2 C5: run_backlog_napi polls only sd[cpu].backlog @@ -11659"),
    rule("C-10", C,   mode_c::c10, "no RPS-attributable ksoftirqd wake-ups (soft)",                      "§7.4: no IPI raises NET_RX for RPS, so no ksoftirqd wake-up"),
    rule("C-11", C,   mode_c::c11, "received_rps never grows",                                           "§2.1: only rps_trigger_softirq counts it; never sent @@ -5926, @@ -5941"),
    rule("N-1",  Device, device::n1, "a device NAPI's place (NET_RX or its thread) changes only between schedulings", "§8.5: SCHED held while work = budget (net_rx_action repoll, napi_threaded_poll_loop); THREADED read in ____napi_schedule"),
    rule("N-2",  Device, device::n2, "a napi/<dev>-<id> thread polls only its own instance",             "§8.5: napi_threaded_poll(data = its napi_struct), 29863d41bb6e"),
    rule("N-3",  Device, device::n3, "a napi/ thread that slept polls only after a wake-up",             "§8.5: ____napi_schedule sets SCHED_THREADED and wake_up_process(napi->thread), 29863d41bb6e"),
];

/// One rule of the model.
pub struct Rule {
    /// Its docs/model.md §11 id.
    pub id: &'static str,
    pub modes: Modes,
    pub title: &'static str,
    /// What it stands on: docs/model.md sections, seed-patch hunks, upstream commits.
    pub kernel: &'static str,
    /// What `top`'s pane shows for the rule's per-interval counter version, if it has one
    /// (the pane's check functions are in probe-cli's `top/checks.rs`).
    pub live: Option<&'static str>,
    /// Decides the rule on a trace, into the result `run` made from `id` and `title`.
    pub check: fn(&Ctx, RuleResult) -> RuleResult,
}

const fn rule(
    id: &'static str,
    modes: Modes,
    check: fn(&Ctx, RuleResult) -> RuleResult,
    title: &'static str,
    kernel: &'static str,
) -> Rule {
    Rule {
        id,
        modes,
        title,
        kernel,
        live: None,
        check,
    }
}

impl Rule {
    const fn live(mut self, says: &'static str) -> Rule {
        self.live = Some(says);
        self
    }
}

/// The modes a rule holds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modes {
    All,
    AB,
    C,
    /// Every mode: the device NAPI rules (N-*), a group of their own.
    Device,
}

impl Modes {
    /// The groups in the table's order.
    pub const GROUPS: [Modes; 4] = [All, AB, C, Device];

    pub fn covers(self, mode: Option<Mode>) -> bool {
        match self {
            All | Device => true,
            AB => matches!(mode, Some(Mode::A | Mode::B)),
            C => mode == Some(Mode::C),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            All => "all modes",
            AB => "modes A/B",
            C => "mode C",
            Device => "device NAPI, all modes",
        }
    }
}

/// The rule with this id.
pub fn rule_of(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Every rule that holds in `mode` (only the common ones when it is unknown), in table order.
pub fn run(c: &Ctx) -> Vec<RuleResult> {
    RULES
        .iter()
        .filter(|r| r.modes.covers(c.mode))
        .map(|r| (r.check)(c, RuleResult::new(r.id, r.title)))
        .collect()
}

/// The first and last id of a group, as a range: "G1-G7" (ids without a dash), "A-1..A-8"
/// ("A-1-A-8" would not read as a range).
pub fn id_range(m: Modes, dash: &str, dots: &str) -> String {
    let mut ids = RULES.iter().filter(|r| r.modes == m).map(|r| r.id);
    let first = ids.next().unwrap_or("");
    let last = ids.next_back().unwrap_or(first);
    let sep = if first.contains('-') { dots } else { dash };
    format!("{first}{sep}{last}")
}

/// "G1-G7 (all modes), A-1..A-8 (modes A/B), C-1..C-11 (mode C)": `check --help`'s list.
pub fn summary() -> String {
    Modes::GROUPS
        .iter()
        .map(|m| format!("{} ({})", id_range(*m, "-", ".."), m.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// docs/rules.md: the table for readers (a test keeps the file equal to it).
pub fn markdown() -> String {
    let mut s = String::from(
        "<!-- Generated from analysis/src/check/rules/mod.rs (RULES); \
         `NAPISCOPE_BLESS=1 cargo test -p analysis rules_doc` rewrites it. -->\n\n\
         # The checker's rules\n\n\
         The invariants of docs/model.md §11, as `napiscope check` and `verify` decide them. \
         \"§N\" cites docs/model.md; \"@@ -N\" a hunk of the seed patch (docs/seed/, upstream \
         dad6b9770263); a bare hash an upstream commit. Rules marked *live* are also decided \
         per interval from counters by `napiscope top` (its words in parentheses).\n\n\
         | id | modes | rule | stands on |\n|---|---|---|---|\n",
    );
    for r in RULES {
        let live = r.live.map_or(String::new(), |l| format!(" — *live* ({l})"));
        s.push_str(&format!(
            "| {} | {} | {}{live} | {} |\n",
            r.id,
            r.modes.name(),
            r.title,
            r.kernel
        ));
    }
    s
}

pub struct Ctx<'b> {
    pub ix: &'b Index,
    pub meta: &'b TraceMeta,
    pub mode: Option<Mode>,
    pub features: Features,
    /// csd:csd_queue_cpu was recorded (F5 and attached).
    pub csd_queue_traced: bool,
    /// The RPS IPI's arrival was recorded: csd:csd_function_entry, or a kprobe on
    /// rps_trigger_softirq where the csd tracepoints do not exist (6.1).
    pub csd_entry_traced: bool,
    /// The IPI's arrival comes from a kprobe on a kernel that does not count kprobe
    /// recursion misses (< 6.7): a missing arrival may be a silent miss.
    pub entry_misses_uncounted: bool,
    /// The interned `RPS_IPI_FUNC`, if the trace has it.
    rps_sym: Option<Sym>,
}

impl<'b> Ctx<'b> {
    pub fn new(ix: &'b Index, meta: &'b TraceMeta, mode: Option<Mode>) -> Ctx<'b> {
        // Recorded features (evidence), else the release string (old recordings).
        let features = Features::from_meta(meta);
        let probes = meta
            .get("probes")
            .and_then(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).ok());
        let attached = |name: &str| -> Option<bool> {
            probes.as_ref().map(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name && p["attached"] == true)
            })
        };
        // Without probe metadata (simulated traces) the version features decide.
        let f5 = features.f5_csd_tracepoints;
        let csd_queue_traced = attached("csd:csd_queue_cpu").unwrap_or(f5);
        let csd_entry_traced = attached("csd:csd_function_entry").unwrap_or(f5)
            || attached("rps_trigger_softirq").unwrap_or(false);
        let via_kprobe = !attached("csd:csd_function_entry").unwrap_or(f5)
            && attached("rps_trigger_softirq").unwrap_or(false);
        let old = meta
            .get("kernel_release")
            .and_then(crate::mode::major_minor)
            .is_some_and(|v| v < (6, 7));
        Ctx {
            ix,
            meta,
            mode,
            features,
            csd_queue_traced,
            csd_entry_traced,
            entry_misses_uncounted: via_kprobe && old,
            rps_sym: ix.c.strs.lookup(RPS_IPI_FUNC),
        }
    }

    fn secs(ts: u64) -> String {
        format!("{:.6} s", ts as f64 / 1e9)
    }

    fn mode_name(&self) -> &'static str {
        self.mode.map_or("?", Mode::as_str)
    }

    /// The batch's initiating delivery, when the enqueue is in the trace.
    fn init<'c>(&'c self, b: &Batch) -> Option<&'c Delivery> {
        b.init.get().map(|i| &self.ix.deliveries[i as usize])
    }

    fn batch_events(&self, b: &Batch) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(d) = self.init(b) {
            v.push(describe(self.ix.ev(d.enq)));
            v.push(describe(self.ix.ev(d.rcv)));
        }
        for p in self.ix.batch_polls(b).iter().take(3) {
            v.push(describe(self.ix.ev(self.ix.polls[*p as usize].ev)));
        }
        v
    }

    /// The kernel skipped (recursion guard) some receive or poll events, which carry no
    /// time or CPU: a batch's first delivery may be missing, and a later skb then stands as
    /// its initiator. What such an initiator seems to lack (its IPI, raise or wake-up came
    /// before its own enqueue) is then INCONCLUSIVE, not a divergence.
    fn initiator_unsure(&self) -> bool {
        self.ix.missed(EventKind::NetifReceiveSkb)
            || self.ix.missed(EventKind::NapiPoll)
            || self.ix.missed(EventKind::NetifRx)
    }

    /// Complete batches with a traced initiator, split by origin.
    fn initiated(&self) -> impl Iterator<Item = (&Batch, &Delivery)> {
        self.ix
            .batches
            .iter()
            .filter(|b| b.complete)
            .filter_map(|b| self.init(b).map(|d| (b, d)))
    }

    /// Is the event's function the RPS IPI's? Compared by interned id: the rules ask
    /// this of every csd event they walk.
    fn is_rps(&self, e: E) -> bool {
        self.rps_sym.is_some() && e.func_sym() == self.rps_sym
    }
}

/// What A-7 and C-7 look up around an enqueue: netif_rx_exit and softirq_raise events.
struct EnqueueCalls<'a> {
    exits: Finder<'a>,
    raises: Finder<'a>,
}

impl<'a> EnqueueCalls<'a> {
    fn new(c: &Ctx<'a>) -> EnqueueCalls<'a> {
        EnqueueCalls {
            exits: c.ix.finder(EventKind::NetifRxExit),
            raises: c.ix.finder(EventKind::SoftirqRaise),
        }
    }

    /// The netif_rx_exit that closes an enqueue (same CPU and task).
    fn end(&mut self, c: &Ctx, enq: u32) -> u64 {
        let e = c.ix.ev(enq);
        self.exits
            .find(e.cpu(), e.ts_ns(), e.ts_ns() + 1_000_000)
            .find(|x| x.pid() == e.pid())
            .map_or(e.ts_ns() + 100_000, |x| x.ts_ns())
    }

    fn raised(&mut self, cpu: u32, t0: u64, t1: u64) -> bool {
        self.raises
            .find(cpu, t0, t1)
            .any(|e| e.vec() == Some(NET_RX_SOFTIRQ))
    }
}

#[cfg(test)]
mod tests;
