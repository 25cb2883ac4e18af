//! The guest's virtio-net pair (two NICs on QEMU's internal hub): `napiscope top --json` while
//! ping runs from eth0 (in a netns) to eth1, summed per NAPI instance of eth1 — the queues of
//! a real driver, polled at the exit of their MSI-X interrupts.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::boot::{between, json_objects, tagged};

/// What the guest printed between @@NIC-BEGIN and @@NIC-END, per instance of the receiving
/// NIC: polls and IRQ-started polls over the run (rates × interval), its napi_id, and the
/// interrupt top attributed its polls to, with the name top read for it in the guest's
/// /proc/interrupts. Null when the guest had no pair.
pub(super) fn nic_summary(text: &str) -> Value {
    let Some(section) = between(text, "@@NIC-BEGIN", "@@NIC-END") else {
        return Value::Null;
    };
    if let Some(found) = tagged(section, "@@NIC-NONE") {
        return json!({ "devices": found.trim(), "instances": [] });
    }
    let mut rows: BTreeMap<String, Value> = BTreeMap::new();
    for line in json_objects(section) {
        let dt = line["overall"]["interval_s"].as_f64().unwrap_or(0.0);
        for n in line["napi"].as_array().into_iter().flatten() {
            if n["kind"] != "device" || n["dev"] != "eth1" {
                continue;
            }
            let name = n["name"].as_str().unwrap_or("?").to_string();
            let r = rows.entry(name.clone()).or_insert_with(|| {
                json!({ "name": name, "napi_id": n["napi_id"], "polls": 0.0, "packets": 0.0,
                        "irq_polls": 0, "irq_thread_polls": 0, "irq": n["irq"],
                        "last_irq": null, "where": {} })
            });
            add(&mut r["polls"], n["polls"].as_f64().unwrap_or(0.0) * dt);
            add(&mut r["packets"], n["packets"].as_f64().unwrap_or(0.0) * dt);
            let irq_polls =
                r["irq_polls"].as_u64().unwrap_or(0) + n["irq_polls"].as_u64().unwrap_or(0);
            r["irq_polls"] = json!(irq_polls);
            let thread_polls = r["irq_thread_polls"].as_u64().unwrap_or(0)
                + n["irq_thread_polls"].as_u64().unwrap_or(0);
            r["irq_thread_polls"] = json!(thread_polls);
            if let Some(irq) = n["last_irq"].as_i64() {
                r["last_irq"] = json!({ "irq": irq, "name": n["last_irq_name"] });
            }
            if !n["irq"].is_null() {
                r["irq"] = n["irq"].clone();
            }
            for (w, v) in n["polls_by_where"].as_object().into_iter().flatten() {
                let slot = &mut r["where"][w.as_str()];
                if slot.is_null() {
                    *slot = json!(0.0);
                }
                add(slot, v.as_f64().unwrap_or(0.0) * dt);
            }
        }
    }
    let instances: Vec<Value> = rows
        .into_values()
        .map(|mut r| {
            for k in ["polls", "packets"] {
                r[k] = json!(r[k].as_f64().unwrap_or(0.0).round());
            }
            r
        })
        .collect();
    let ping = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("@@NIC-PING "))
        .find(|l| l.contains("transmitted"))
        .map(str::to_string);
    // `@@NIC-DEV eth1 virtio1`: whose interrupts are eth1's own.
    let eth1 = section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("@@NIC-DEV eth1 "))
        .map(|d| d.trim().to_string())
        .next();
    json!({
        "rc": tagged(section, "@@NIC-RC ").and_then(|s| s.trim().parse::<i64>().ok()),
        "eth1_device": eth1,
        "ping": ping,
        "instances": instances,
    })
}

fn add(slot: &mut Value, x: f64) {
    *slot = json!(slot.as_f64().unwrap_or(0.0) + x);
}

/// The pair worked: eth1's receive queue (the instance with packets) was polled at the exit
/// of eth1's own input interrupt (`virtioN-input.Q`, N eth1's virtio device), or by that
/// interrupt's handler thread (PREEMPT_RT), as top attributes it. None when there is no
/// section (nothing to judge).
pub(super) fn nic_ok(nic: &Value) -> Option<bool> {
    let rows = nic["instances"].as_array()?;
    let Some(dev) = nic["eth1_device"].as_str() else {
        return Some(false);
    };
    let input = format!("{dev}-input.");
    let rx_attributed = |r: &Value| {
        r["packets"].as_f64().unwrap_or(0.0) > 0.0
            && r["irq_polls"].as_u64().unwrap_or(0) + r["irq_thread_polls"].as_u64().unwrap_or(0)
                > 0
            && r["last_irq"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&input))
    };
    Some(nic["rc"] == 0 && rows.iter().any(rx_attributed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "@@NIC-BEGIN\r\n\
@@NIC-DEV eth0 virtio0\n@@NIC-DEV eth1 virtio1\n\
[   3.1] random kernel line\n\
{\"overall\": {\"interval_s\": 1.0}, \"napi\": [\
{\"name\": \"eth1:8193\", \"dev\": \"eth1\", \"kind\": \"device\", \"napi_id\": 8193, \"irq\": null, \"polls\": 300, \"packets\": 290, \"irq_polls\": 280, \"last_irq\": 25, \"last_irq_name\": \"virtio1-input.0\", \"polls_by_where\": {\"irq-exit\": 280, \"bh-enable\": 20}},\
{\"name\": \"backlog/0\", \"dev\": \"(no_device)\", \"kind\": \"backlog\", \"polls\": 9}]}\n\
{\"overall\": {\"interval_s\": 2.0}, \"napi\": [\
{\"name\": \"eth1:8193\", \"dev\": \"eth1\", \"kind\": \"device\", \"napi_id\": 8193, \"irq\": 25, \"polls\": 100, \"packets\": 100, \"irq_polls\": 150, \"last_irq\": 25, \"last_irq_name\": \"virtio1-input.0\", \"polls_by_where\": {\"irq-exit\": 75}}]}\n\
@@NIC-PING 1500 packets transmitted, 1500 packets received, 0% packet loss\n\
@@NIC-RC 0\n@@NIC-END\n";

    #[test]
    fn the_receiving_nics_instances_are_summed_and_their_irqs_named() {
        let s = nic_summary(LOG);
        let rows = s["instances"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{s:#}");
        let r = &rows[0];
        assert_eq!(
            (r["polls"].as_f64(), r["irq_polls"].as_u64()),
            (Some(500.0), Some(430))
        );
        assert_eq!(r["where"]["irq-exit"].as_f64(), Some(430.0));
        assert_eq!(r["last_irq"]["name"], "virtio1-input.0");
        assert_eq!(r["irq"], 25);
        assert!(s["ping"]
            .as_str()
            .unwrap()
            .contains("1500 packets received"));
        assert_eq!(nic_ok(&s), Some(true));
        // No pair: nothing to judge; a pair whose polls no interrupt started: not ok.
        assert_eq!(
            nic_ok(&nic_summary("@@NIC-BEGIN\n@@NIC-NONE lo\n@@NIC-END\n")),
            Some(false)
        );
        assert_eq!(nic_ok(&nic_summary("no section")), None);
        // Attributed to the other NIC's interrupt, or to eth1's output one: not ok.
        let other = LOG.replace("@@NIC-DEV eth1 virtio1", "@@NIC-DEV eth1 virtio2");
        assert_eq!(nic_ok(&nic_summary(&other)), Some(false));
        let output = LOG.replace("virtio1-input.0", "virtio1-output.0");
        assert_eq!(nic_ok(&nic_summary(&output)), Some(false));
        // Polls no interrupt started: not ok.
        let unattributed = LOG
            .replace("\"irq_polls\": 280", "\"irq_polls\": 0")
            .replace("\"irq_polls\": 150", "\"irq_polls\": 0");
        assert_eq!(nic_ok(&nic_summary(&unattributed)), Some(false));
        // PREEMPT_RT: the polls ran in the interrupt's handler thread, not at its exit.
        let threaded = unattributed.replace(
            "\"irq_polls\": 0, \"last_irq\": 25",
            "\"irq_polls\": 0, \"irq_thread_polls\": 70, \"last_irq\": 25",
        );
        let s = nic_summary(&threaded);
        assert_eq!(
            s["instances"][0]["irq_thread_polls"].as_u64(),
            Some(140),
            "{s:#}"
        );
        assert_eq!(nic_ok(&s), Some(true));
    }
}
