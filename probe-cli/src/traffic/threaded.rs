//! `veth-gro-threaded`: halfway through the run, switch the receiving veth's NAPI to
//! threaded (`/sys/class/net/nsc1/threaded` = 1, dev_set_threaded → napi_kthread_create), so
//! the same instance is polled first in the NET_RX softirq and then by its own
//! `napi/nsc1-<napi id>` kernel thread (____napi_schedule: NAPI_STATE_THREADED wakes the
//! thread instead of raising NET_RX; 29863d41bb6e, v5.12).

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

/// What the switch did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Threaded {
    pub dev: String,
    /// Seconds into the run when `threaded` was set to 1 (None: it could not be).
    pub switched_at_s: Option<f64>,
    /// The device's NAPI threads after the switch: `napi/<dev>-<id>` (pid).
    pub threads: Vec<(String, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// At half of `duration`, set `dev`'s `threaded` in netns `ns` (unless stopped first).
pub fn switch_halfway(
    ns: String,
    dev: &'static str,
    start: Instant,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Threaded> {
    thread::spawn(move || {
        let mut t = Threaded {
            dev: dev.to_string(),
            ..Threaded::default()
        };
        let at = start + duration / 2;
        while Instant::now() < at {
            if stop.load(Ordering::SeqCst) {
                return t;
            }
            thread::sleep(Duration::from_millis(20));
        }
        match set_threaded(&ns, dev, true) {
            Ok(()) => {
                t.switched_at_s = Some(start.elapsed().as_secs_f64());
                // The kthread exists once the write returns; its comm is set at creation.
                t.threads = napi_threads(dev);
            }
            Err(e) => t.error = Some(e),
        }
        t
    })
}

/// `echo 0|1 > /sys/class/net/<dev>/threaded` inside `ns` (`ip netns exec` mounts that
/// namespace's sysfs). Needs GRO on for veth first: until veth has its NAPI the write fails
/// with EIO.
pub fn set_threaded(ns: &str, dev: &str, on: bool) -> Result<(), String> {
    let path = format!("/sys/class/net/{dev}/threaded");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("echo {} > {path}", on as u8))
        .output()
        .map_err(|e| format!("running `ip netns exec`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "writing {} to {path} in netns {ns}: {}",
            on as u8,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `dev`'s `napi/<dev>-<id>` threads: (comm, pid).
fn napi_threads(dev: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = crate::kernel::napi_info::napi_threads()
        .into_iter()
        .filter(|(d, _, _)| d == dev)
        .map(|(d, id, pid)| (format!("napi/{d}-{id}"), pid))
        .collect();
    out.sort();
    out
}
