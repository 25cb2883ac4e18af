//! Real kernel (issue 19): RPS steered from a device's NAPI poll. The `veth-gro-rps` scenario
//! turns GRO on on the receiving veth, so veth_xmit queues to its NAPI instead of
//! `__netif_rx`; veth_poll on the sender's CPU 0 hands each skb to napi_gro_receive, and RPS
//! steers it to CPU 1. No netif_rx: the deliveries on CPU 1 have only the device-side entry
//! (napi_gro_receive_entry on CPU 0) as initiator, and each remote batch's IPI is counted by
//! the kernel in /proc/net/softnet_stat (received_rps, column 10).

use std::process::Command;

use analysis::{paths, EventKind};

mod common;
use common::{kernel_lock, kernel_tests_enabled, napiscope, start_record_args, tmp};

/// softnet_stat's received_rps of `cpu` (the row of the cpu-th online CPU: both are online).
fn received_rps(cpu: usize) -> u64 {
    let t = std::fs::read_to_string("/proc/net/softnet_stat").unwrap();
    let row = t.lines().nth(cpu).expect("a softnet_stat row per CPU");
    let col = row.split_whitespace().nth(9).expect("received_rps column");
    u64::from_str_radix(col, 16).unwrap()
}

/// With the tp_btf programs (the default here) and with the classic tracepoints.
#[test]
fn deliveries_steered_from_a_device_poll_are_paired_with_its_entry() {
    let _g = kernel_lock();
    if !kernel_tests_enabled() {
        return;
    }
    for extra in [None, Some("--classic-tracepoints")] {
        eprintln!("[device pairing] record {extra:?}");
        steered_from_the_veth_poll(extra);
    }
}

fn steered_from_the_veth_poll(extra: Option<&str>) {
    let out = tmp("device-pairing.parquet");
    let mut args = vec!["-o".into(), out.display().to_string(), "--force".into()];
    args.extend(extra.map(String::from));
    let rec = start_record_args(&args);
    let before = received_rps(1);
    let sc = Command::new(common::BIN)
        .args([
            "scenario",
            "veth-gro-rps",
            "--sender-cpu",
            "0",
            "--rx-cpu",
            "1",
        ])
        .args(["-d", "2s", "--rate", "2000"])
        .output()
        .unwrap();
    let ipis = received_rps(1) - before;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let o = rec.wait_with_output().unwrap();
    assert!(
        sc.status.success(),
        "scenario: {}",
        String::from_utf8_lossy(&sc.stderr)
    );
    assert!(
        matches!(o.status.code(), Some(0) | Some(3)),
        "record: {o:?}"
    );

    let t = analysis::read_trace(&out).unwrap();
    let on_nsc1 = |e: &&analysis::Event| e.dev.as_deref() == Some("nsc1");
    let gro: Vec<_> = t
        .events
        .iter()
        .filter(|e| e.event == EventKind::NapiGroReceiveEntry)
        .filter(on_nsc1)
        .collect();
    let netif_rx = t.events.iter().filter(|e| e.event == EventKind::NetifRx);
    let netif_rx = netif_rx.filter(on_nsc1).count();
    // GRO is on: veth polls its NAPI on the sender's CPU instead of calling netif_rx.
    assert!(
        gro.len() >= 3000,
        "{} napi_gro_receive_entry on nsc1",
        gro.len()
    );
    assert!(netif_rx * 100 <= gro.len(), "{netif_rx} netif_rx on nsc1");
    let gro_on0 = gro.iter().filter(|e| e.cpu == 0).count();
    assert!(
        gro_on0 * 100 >= gro.len() * 99,
        "{gro_on0} of {} on CPU 0",
        gro.len()
    );

    let received = t
        .events
        .iter()
        .filter(|e| e.event == EventKind::NetifReceiveSkb && e.cpu == 1)
        .filter(on_nsc1)
        .count() as u64;
    let d = paths::deliveries(&t.events);
    let steered = d
        .iter()
        .filter(|d| d.via == paths::Via::Device && d.enqueue_cpu == 0 && d.cpu == 1)
        .count() as u64;
    assert!(received >= 3000, "{received} received on CPU 1");
    assert!(
        steered * 100 >= received * 95,
        "{steered} of {received} deliveries on CPU 1 paired with a device entry on CPU 0"
    );
    same_len_as_the_delivery(&t);

    checker_agrees(&out, received, ipis);
    let _ = std::fs::remove_file(&out);
}

/// The entry read skb->len as the delivery does (no GRO merge for a UDP socket without
/// UDP_GRO: the same skb, its Ethernet header pulled).
fn same_len_as_the_delivery(t: &analysis::Trace) {
    let on_nsc1 = |e: &&analysis::Event| e.dev.as_deref() == Some("nsc1");
    let common_len = |kind: EventKind| {
        let mut n = std::collections::BTreeMap::<u32, usize>::new();
        let rows = t.events.iter().filter(|e| e.event == kind).filter(on_nsc1);
        for e in rows {
            *n.entry(e.len.unwrap_or(0)).or_default() += 1;
        }
        n.into_iter().max_by_key(|(_, c)| *c).map(|(l, _)| l)
    };
    let len = common_len(EventKind::NapiGroReceiveEntry);
    assert!(len.is_some_and(|l| l > 64), "{len:?}");
    assert_eq!(len, common_len(EventKind::NetifReceiveSkb));
}

/// The checker pairs the same way, and each remote batch it sees had the IPI the kernel
/// counted (modes A/B); in mode C the backlog thread runs them and no IPI is sent.
fn checker_agrees(out: &std::path::Path, received: u64, ipis: u64) {
    let c = napiscope(&["check", "--json", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    let n = |m: &str, k: &str| v[m][k].as_u64().unwrap_or(0);
    if v["mode"] == "C" {
        assert_eq!(ipis, 0, "mode C: received_rps grew by {ipis}");
        let remote = n("batch_paths", "device, remote → backlog thread");
        assert!(
            remote * 100 >= received * 50,
            "{remote} remote batches: {v:#}"
        );
    } else {
        let paired = n("paths", "device_remote_softirq");
        assert!(
            paired * 100 >= received * 95,
            "{paired} of {received}: {v:#}"
        );
        let remote = n("batch_paths", "device, remote → softirq");
        // Blind windows can hide an IPI's batch; background IPIs during the recording but
        // outside the scenario's window are few.
        assert!(ipis >= 3000, "received_rps on CPU 1 grew by {ipis}");
        assert!(
            remote * 100 >= ipis * 95 && remote <= ipis + 50,
            "{remote} device-initiated remote batches, received_rps +{ipis}"
        );
    }
}
