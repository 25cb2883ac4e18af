//! Per-NAPI rows: the NAPI map's per-CPU counters (one entry per `napi_struct` that was
//! polled, device queues and the CPUs' backlogs alike) turned into one row per instance and
//! interval — polls, packets, budget exhaustion, where the polls ran, the device interrupt
//! they followed, the task that polled outside softirq.

use std::collections::BTreeMap;

use analysis::event::{is_backlog_napi, napi_label};
use probe_common::{where_, NapiCounters};
use serde_json::{json, Value};

use super::rates::round;
use crate::kernel::napi_info::NapiInfo;

/// The NAPI map at one instant: napi_struct address → that instance's counters per CPU
/// (index = CPU).
pub type NapiSnapshot = BTreeMap<u64, Vec<NapiCounters>>;

/// One NAPI instance over one interval; counts are per second unless named otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NapiRates {
    /// The napi_struct's address: the instance's identity while it lives.
    pub key: u64,
    pub dev: String,
    /// napi->napi_id (0: the kernel gave it none, as for the backlogs).
    pub napi_id: u32,
    /// napi->irq (netif_napi_set_irq, v6.8+), None where unset or unreadable.
    pub irq: Option<i32>,
    /// CPUs it was polled on in the interval.
    pub cpus: Vec<u32>,
    pub polls: f64,
    pub packets: f64,
    pub budget_exhausted: f64,
    /// Polls by where they ran (`where_::NAMES`).
    pub polls_where: [f64; where_::COUNT],
    pub packets_where: [f64; where_::COUNT],
    /// Polls in the NET_RX softirq that a device interrupt's exit started (count, not rate).
    pub irq_polls: u64,
    /// Polls its interrupt's handler thread ran (`irq/<N>-…`: PREEMPT_RT) at BH enable
    /// (count, not rate).
    pub irq_thread_polls: u64,
    /// Mean time from that interrupt's handler entry to the end of the poll, ns.
    pub irq_to_poll_ns: Option<f64>,
    /// The device interrupt those polls followed, and its name in /proc/interrupts.
    pub last_irq: Option<i32>,
    pub last_irq_name: Option<String>,
    /// The task that polled it outside softirq (a `napi/<dev>-<id>` thread, a backlog
    /// thread or a busy-polling task): pid and comm.
    pub task: Option<(u32, String)>,
    /// Its `napi/<dev>-<id>` thread as the kernel tells (netlink napi-get, /proc).
    pub thread_pid: Option<u32>,
}

impl NapiRates {
    /// A CPU's backlog (`softnet_data.backlog`), not a device queue: no napi id, no device.
    pub fn is_backlog(&self) -> bool {
        is_backlog_napi(&self.dev, self.napi_id)
    }

    /// The row's name: `veth1:8193`, `backlog/1`.
    pub fn label(&self) -> String {
        napi_label(&self.dev, self.napi_id, self.cpus.first().copied())
    }

    /// Where most of its polls ran in the interval.
    pub fn mostly_where(&self) -> Option<&'static str> {
        let (i, n) = self
            .polls_where
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        (*n > 0.0).then_some(where_::NAMES[i])
    }

    /// Threaded NAPI: it has its own `napi/<dev>-<id>` thread, or was polled by one.
    pub fn threaded(&self) -> bool {
        self.thread_pid.is_some() || self.polls_where[where_::NAPI_THREAD] > 0.0
    }

    pub fn to_json(&self) -> Value {
        let by = |v: &[f64]| -> Value {
            Value::Object(
                where_::NAMES
                    .iter()
                    .zip(v)
                    .map(|(n, x)| (n.to_string(), json!(round(*x))))
                    .collect(),
            )
        };
        json!({
            "name": self.label(),
            "dev": self.dev,
            "napi_id": self.napi_id,
            "kind": if self.is_backlog() { "backlog" } else { "device" },
            "irq": self.irq,
            "cpus": self.cpus,
            "polls": round(self.polls),
            "packets": round(self.packets),
            "budget_exhausted": round(self.budget_exhausted),
            "polls_by_where": by(&self.polls_where),
            "packets_by_where": by(&self.packets_where),
            "threaded": self.threaded(),
            "thread_pid": self.thread_pid,
            "irq_polls": self.irq_polls,
            "irq_thread_polls": self.irq_thread_polls,
            "irq_to_poll_mean_ns": self.irq_to_poll_ns.map(round),
            "last_irq": self.last_irq,
            "last_irq_name": self.last_irq_name,
            "task": self.task.as_ref().map(|(pid, comm)| json!({"pid": pid, "comm": comm})),
        })
    }
}

/// The instances polled between two snapshots, busiest (by packets) first.
pub fn between(
    prev: &NapiSnapshot,
    cur: &NapiSnapshot,
    secs: f64,
    info: &BTreeMap<u32, NapiInfo>,
) -> Vec<NapiRates> {
    let mut rows: Vec<NapiRates> = cur
        .iter()
        .filter_map(|(&key, now)| instance(key, prev.get(&key), now, secs))
        .collect();
    for r in rows.iter_mut().filter(|r| r.napi_id != 0) {
        if let Some(k) = info.get(&r.napi_id) {
            r.thread_pid = k.thread_pid;
            r.irq = r.irq.or(k.irq.map(|i| i as i32));
        }
    }
    rows.sort_by(|a, b| b.packets.total_cmp(&a.packets).then(a.key.cmp(&b.key)));
    rows
}

/// One instance's row, None if it was not polled in the interval.
fn instance(
    key: u64,
    before: Option<&Vec<NapiCounters>>,
    now: &[NapiCounters],
    secs: f64,
) -> Option<NapiRates> {
    let zero = NapiCounters::zeroed();
    let mut r = NapiRates {
        key,
        ..NapiRates::default()
    };
    let (mut irq_ns, mut busiest, mut irq_busiest) = (0u64, 0u64, 0u64);
    for (cpu, c) in now.iter().enumerate() {
        let p = before.and_then(|b| b.get(cpu)).unwrap_or(&zero);
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let polls = d(p.polls, c.polls);
        if polls == 0 {
            continue;
        }
        r.cpus.push(cpu as u32);
        r.polls += polls as f64;
        r.packets += d(p.packets, c.packets) as f64;
        r.budget_exhausted += d(p.budget_exhausted, c.budget_exhausted) as f64;
        for w in 0..where_::COUNT {
            r.polls_where[w] += d(p.polls_where[w], c.polls_where[w]) as f64;
            r.packets_where[w] += d(p.packets_where[w], c.packets_where[w]) as f64;
        }
        let thread_polls = d(p.irq_thread_polls, c.irq_thread_polls);
        r.irq_thread_polls += thread_polls;
        let irq_polls = d(p.irq_polls, c.irq_polls);
        r.irq_polls += irq_polls;
        irq_ns += d(p.irq_to_poll_ns, c.irq_to_poll_ns);
        // Identity from the CPU that polled it most; the interrupt from the one whose
        // interrupts started most polls; the task from whichever CPU polled in task context.
        if polls > busiest {
            busiest = polls;
            r.dev = name(&c.dev);
            r.napi_id = c.napi_id;
            r.irq = (c.irq >= 0).then_some(c.irq);
        }
        if irq_polls + thread_polls > irq_busiest && c.last_irq >= 0 {
            irq_busiest = irq_polls + thread_polls;
            r.last_irq = Some(c.last_irq);
        }
        let in_task =
            (where_::BACKLOG_THREAD..where_::COUNT).any(|w| c.polls_where[w] > p.polls_where[w]);
        if in_task && c.task_pid != 0 {
            r.task = Some((c.task_pid, name(&c.task_comm)));
        }
    }
    if r.polls == 0.0 {
        return None;
    }
    r.irq_to_poll_ns = (r.irq_polls > 0).then(|| irq_ns as f64 / r.irq_polls as f64);
    let per_s = |x: &mut f64| *x /= secs;
    per_s(&mut r.polls);
    per_s(&mut r.packets);
    per_s(&mut r.budget_exhausted);
    r.polls_where.iter_mut().for_each(per_s);
    r.packets_where.iter_mut().for_each(per_s);
    Some(r)
}

fn name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(dev: &str, id: u32, polls: u64, w: usize) -> NapiCounters {
        let mut c = NapiCounters::zeroed();
        c.dev[..dev.len()].copy_from_slice(dev.as_bytes());
        c.napi_id = id;
        c.polls = polls;
        c.packets = polls * 4;
        c.polls_where[w] = polls;
        c.packets_where[w] = polls * 4;
        c
    }

    #[test]
    fn a_device_instance_moving_to_its_thread_shows_both_places_and_the_task() {
        let before = counters("veth1", 8193, 100, where_::IRQ_EXIT);
        let mut after = before;
        after.polls = 300;
        after.packets = 1200;
        after.polls_where[where_::NAPI_THREAD] = 200;
        after.packets_where[where_::NAPI_THREAD] = 800;
        after.task_pid = 42;
        after.task_comm[..14].copy_from_slice(b"napi/veth1-819");
        let prev: NapiSnapshot = [(7, vec![NapiCounters::zeroed(), before])].into();
        let cur: NapiSnapshot = [(7, vec![NapiCounters::zeroed(), after])].into();
        let rows = between(&prev, &cur, 2.0, &BTreeMap::new());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.label(), "veth1:8193");
        assert_eq!(r.cpus, vec![1]);
        assert_eq!(r.polls, 100.0);
        assert_eq!(r.packets, 400.0);
        assert_eq!(r.polls_where[where_::NAPI_THREAD], 100.0);
        assert_eq!(r.polls_where[where_::IRQ_EXIT], 0.0);
        assert!(r.threaded());
        assert_eq!(r.mostly_where(), Some("napi_thread"));
        assert_eq!(r.task, Some((42, "napi/veth1-819".into())));
        let j = r.to_json();
        assert_eq!(j["kind"], "device");
        assert_eq!(j["polls_by_where"]["napi_thread"], 100.0);
        assert_eq!(j["threaded"], true);
    }

    #[test]
    fn idle_instances_have_no_row_and_busy_ones_come_first() {
        let idle = counters("eth0", 9, 5, where_::IRQ_EXIT);
        let backlog = counters("(no_device)", 0, 10, where_::IRQ_EXIT);
        let mut busy = counters("eth1", 10, 50, where_::IRQ_EXIT);
        busy.irq_polls = 50;
        busy.irq_to_poll_ns = 50 * 3000;
        busy.last_irq = 33;
        busy.irq = 33;
        let zero = NapiCounters::zeroed();
        let prev: NapiSnapshot = [(1, vec![idle]), (2, vec![zero]), (3, vec![zero])].into();
        let cur: NapiSnapshot = [(1, vec![idle]), (2, vec![backlog]), (3, vec![busy])].into();
        let info = [(
            10,
            NapiInfo {
                napi_id: 10,
                thread_pid: Some(77),
                ..NapiInfo::default()
            },
        )];
        let rows = between(&prev, &cur, 1.0, &info.into());
        let names: Vec<String> = rows.iter().map(NapiRates::label).collect();
        assert_eq!(names, ["eth1:10", "backlog/0"]);
        assert_eq!(rows[0].irq, Some(33));
        assert_eq!(rows[0].last_irq, Some(33));
        assert_eq!(rows[0].irq_to_poll_ns, Some(3000.0));
        assert!(rows[1].is_backlog() && !rows[1].threaded());
        assert!(rows[0].threaded(), "the kernel names its thread");
        assert_eq!(rows[0].thread_pid, Some(77));
        assert_eq!(rows[1].irq, None);
    }
}
