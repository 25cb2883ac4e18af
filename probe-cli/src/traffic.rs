//! Built-in traffic scenarios: the receive paths the model distinguishes, driven in network
//! namespaces this process creates and always removes. Traffic never leaves them.
//!
//! * `veth-rps`: netns A (sender pinned to CPU S) → veth → netns B, whose rx queue steers to
//!   CPU T by RPS. veth delivers with `__netif_rx` on S, so this is the remote backlog path.
//! * `veth-gro-rps`: the same with GRO on the receiving veth (and TSO off on the sending
//!   one, so every skb is eligible: veth_skb_is_eligible_for_gro): veth_xmit then queues to
//!   the peer's NAPI instead of `__netif_rx`, veth_poll on S hands each skb to
//!   napi_gro_receive, and RPS steers from that device poll (no netif_rx at all).
//! * `veth-gro-threaded`: veth-gro-rps with the receiving veth's NAPI switched to threaded
//!   halfway through (`threaded`), so its polls move from the NET_RX softirq to its
//!   `napi/nsc1-<id>` thread.
//! * `veth-gro-busy-poll`: veth-gro-rps with a receiver on CPU T that busy polls the veth's
//!   NAPI from its own task (SO_BUSY_POLL, `busy_poll`).
//! * `loopback`: UDP to 127.0.0.1 inside one netns, RPS off: the local backlog path on S.
//! * `loopback-rps`: the same with lo's RPS set to CPU T (the patch's own loopback test).

use std::{
    fs::File,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

pub mod busy_poll;
mod ethtool;
mod system_delta;
pub use system_delta::SystemDelta;
pub mod threaded;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    VethRps,
    VethGroRps,
    VethGroThreaded,
    VethGroBusyPoll,
    Loopback,
    LoopbackRps,
}

impl Kind {
    /// The one name a scenario goes by: the command line's (`veth-rps`), also in JSON, in
    /// verify's file names and in the matrix.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .expect("no scenario is hidden from the command line")
            .get_name()
            .to_string()
    }
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub kind: Kind,
    pub sender_cpu: u32,
    pub rx_cpu: u32,
    pub duration: Duration,
    /// Packets per second; 0 = as fast as possible (a flood).
    pub rate: u64,
    /// Take this CPU offline during the middle third of the run, then online again
    /// (model.md §8.2: dev_cpu_dead re-injects its backlog on a surviving CPU).
    pub hotplug_cpu: Option<u32>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    /// What the whole machine did while the scenario sent (from /proc, no tracing): the cost
    /// per packet the backlog-NAPI patch talks about.
    pub system: SystemDelta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotplug: Option<Hotplug>,
    /// veth-gro-threaded: when the receiving device went threaded, and its NAPI threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threaded: Option<threaded::Threaded>,
    /// veth-gro-busy-poll: the busy-polling receiver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_poll: Option<busy_poll::BusyPoll>,
}

/// What `--hotplug-cpu` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hotplug {
    pub cpu: u32,
    /// Seconds after the first packet.
    pub offline_at: Option<f64>,
    pub online_at: Option<f64>,
    pub error: Option<String>,
}

fn cpu_online_path(cpu: u32) -> String {
    format!("/sys/devices/system/cpu/cpu{cpu}/online")
}

fn set_online(cpu: u32, on: bool) -> Result<()> {
    std::fs::write(cpu_online_path(cpu), if on { "1" } else { "0" })
        .with_context(|| format!("writing {} to {}", on as u8, cpu_online_path(cpu)))
}

/// Brings the CPU back online however the scenario ends.
struct OnlineGuard(u32);

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        let _ = set_online(self.0, true);
    }
}

/// Can `cpu` be taken offline here (root, a hotplug file, not the only CPU left)?
pub fn check_hotplug(cpu: u32, sender_cpu: u32) -> Result<()> {
    if cpu == sender_cpu {
        bail!(
            "--hotplug-cpu {cpu} is the sender's CPU; take the RPS target or another CPU offline"
        );
    }
    if !std::path::Path::new(&cpu_online_path(cpu)).exists() {
        bail!(
            "CPU {cpu} cannot be taken offline here ({} does not exist)",
            cpu_online_path(cpu)
        );
    }
    Ok(())
}

/// A network namespace, deleted when dropped (also when a test panics).
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Write a sysfs file as seen from inside the namespace (`ip netns exec` remounts /sys).
    pub fn write_sysfs(&self, path: &str, value: &str) -> Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c"])
            .arg(format!("echo {value} > {path}"))
            .output()
            .context("running `ip netns exec`")?;
        if !out.status.success() {
            bail!(
                "writing {value} to {path} in netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// Move the calling thread into the named network namespace.
fn enter_netns(name: &str) -> Result<()> {
    let f = File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening netns {name}"))?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns({name}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Run `f` on a thread inside the named network namespace.
fn in_netns(name: &str, f: impl FnOnce() -> Result<()> + Send) -> Result<()> {
    thread::scope(|s| {
        s.spawn(|| {
            enter_netns(name)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Can this kernel create a veth pair (CONFIG_VETH, module loaded or loadable)?
pub fn veth_available() -> Result<(), String> {
    let ns = Netns::create(&format!("napiscope-{}-probe", std::process::id()))
        .map_err(|e| format!("{e:#}"))?;
    ns.ip(&[
        "link", "add", "nsp0", "type", "veth", "peer", "name", "nsp1",
    ])
    .map_err(|e| format!("no veth support: {e:#}"))
}

/// Remove namespaces left by napiscope processes that no longer exist (killed with -9).
pub fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("napiscope-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn pin_to(cpu: u32) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) pins the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn mask(cpu: u32) -> String {
    // rps_cpus takes a hex bitmap in 32-bit comma-separated words; CPUs < 32 need one word.
    format!("{:x}", 1u64 << cpu)
}

/// Run the scenario: its namespaces, a receiver, the sender (and the CPU hotplug), then the
/// namespaces removed.
pub fn run(opts: &Opts, stop: Arc<AtomicBool>) -> Result<Report> {
    remove_stale();
    let pid = std::process::id();
    let port = 9000 + (pid % 1000) as u16;
    let (_guards, tx_ns, rx_ns, src, dst) = namespaces(opts, pid, port)?;
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let busy = (opts.kind == Kind::VethGroBusyPoll).then_some(opts.rx_cpu);
    let rx_thread = receiver(rx_ns.clone(), dst, busy, received.clone(), done.clone())?;

    let start = Instant::now();
    let before = SystemDelta::read();
    let hotplug = opts
        .hotplug_cpu
        .map(|cpu| hotplug(cpu, start, opts.duration, stop.clone()));
    let threaded = (opts.kind == Kind::VethGroThreaded).then(|| {
        threaded::switch_halfway(rx_ns.clone(), "nsc1", start, opts.duration, stop.clone())
    });
    let sent = {
        let opts = opts.clone();
        let stop = stop.clone();
        let h = thread::spawn(move || send(&opts, &tx_ns, src, dst, &stop));
        h.join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))??
    };
    // Let the last packets arrive before the receiver stops.
    thread::sleep(Duration::from_millis(100));
    let system = SystemDelta::read().since(before);
    let hotplug = hotplug.map(|h| h.join().unwrap_or_default());
    let threaded = threaded.map(|h| h.join().unwrap_or_default());
    done.store(true, Ordering::SeqCst);
    let busy_poll = rx_thread
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok(Report {
        scenario: opts.kind.name(),
        sent,
        received: received.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        system,
        hotplug,
        threaded,
        busy_poll,
    })
}

/// The scenario's namespaces (removed when the guards drop): the sender's and the
/// receiver's namespace names and addresses.
fn namespaces(
    opts: &Opts,
    pid: u32,
    port: u16,
) -> Result<(Vec<Netns>, String, String, SocketAddr, SocketAddr)> {
    Ok(match opts.kind {
        Kind::VethRps | Kind::VethGroRps | Kind::VethGroThreaded | Kind::VethGroBusyPoll => {
            let a = Netns::create(&format!("napiscope-{pid}-a"))?;
            let b = Netns::create(&format!("napiscope-{pid}-b"))?;
            a.ip(&[
                "link", "add", "nsc0", "type", "veth", "peer", "name", "nsc1", "netns", &b.name,
            ])?;
            a.ip(&["addr", "add", "10.213.0.1/30", "dev", "nsc0"])?;
            b.ip(&["addr", "add", "10.213.0.2/30", "dev", "nsc1"])?;
            a.ip(&["link", "set", "nsc0", "up"])?;
            b.ip(&["link", "set", "nsc1", "up"])?;
            b.write_sysfs(
                "/sys/class/net/nsc1/queues/rx-0/rps_cpus",
                &mask(opts.rx_cpu),
            )?;
            if opts.kind != Kind::VethRps {
                in_netns(&a.name, || {
                    ethtool::set_feature("nsc0", ethtool::ETHTOOL_STSO, false)
                })?;
                in_netns(&b.name, || {
                    ethtool::set_feature("nsc1", ethtool::ETHTOOL_SGRO, true)
                })?;
            }
            let src: SocketAddr = "10.213.0.1:0".parse()?;
            let dst: SocketAddr = format!("10.213.0.2:{port}").parse()?;
            let (an, bn) = (a.name.clone(), b.name.clone());
            (vec![a, b], an, bn, src, dst)
        }
        Kind::Loopback | Kind::LoopbackRps => {
            let a = Netns::create(&format!("napiscope-{pid}-lo"))?;
            let m = if opts.kind == Kind::LoopbackRps {
                mask(opts.rx_cpu)
            } else {
                "0".into()
            };
            a.write_sysfs("/sys/class/net/lo/queues/rx-0/rps_cpus", &m)?;
            let src: SocketAddr = "127.0.0.1:0".parse()?;
            let dst: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let an = a.name.clone();
            (vec![a], an.clone(), an, src, dst)
        }
    })
}

/// The receiver thread, counting into `received` until `done`; with `busy` (a CPU) it is
/// pinned there and busy polls (`busy_poll`). Returns once it is bound, before the first
/// packet, so nothing is answered with ICMP.
fn receiver(
    rx_ns: String,
    dst: SocketAddr,
    busy: Option<u32>,
    received: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<Result<Option<busy_poll::BusyPoll>>>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let name = if busy.is_some() {
        busy_poll::THREAD_NAME
    } else {
        "napiscope-rx"
    };
    let body = move || -> Result<Option<busy_poll::BusyPoll>> {
        let r = (|| {
            enter_netns(&rx_ns)?;
            let sock = UdpSocket::bind(dst).with_context(|| format!("binding {dst}"))?;
            match busy {
                Some(cpu) => {
                    pin_to(cpu)?;
                    busy_poll::prepare(&sock)?;
                }
                None => sock.set_read_timeout(Some(Duration::from_millis(50)))?,
            }
            Ok(sock)
        })();
        let sock = match r {
            Ok(s) => {
                let _ = ready_tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return Ok(None);
            }
        };
        if busy.is_some() {
            return busy_poll::receive(&sock, &received, &done).map(Some);
        }
        let mut buf = [0u8; 2048];
        while !done.load(Ordering::SeqCst) {
            if sock.recv(&mut buf).is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(None)
    };
    let rx_thread = thread::Builder::new().name(name.into()).spawn(body)?;
    ready_rx.recv().context("receiver thread died")??;
    Ok(rx_thread)
}

/// `--hotplug-cpu`: `cpu` offline for the middle third of `d` after `start`, then online
/// again (also when this thread ends early: `OnlineGuard`).
fn hotplug(
    cpu: u32,
    start: Instant,
    d: Duration,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Hotplug> {
    thread::spawn(move || {
        let _guard = OnlineGuard(cpu);
        let mut h = Hotplug {
            cpu,
            ..Hotplug::default()
        };
        let wait_until = |t: Duration| {
            while start.elapsed() < t && !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
        };
        wait_until(d / 3);
        if let Err(e) = set_online(cpu, false) {
            h.error = Some(format!("{e:#}"));
            return h;
        }
        h.offline_at = Some(start.elapsed().as_secs_f64());
        wait_until(d * 2 / 3);
        match set_online(cpu, true) {
            Ok(()) => h.online_at = Some(start.elapsed().as_secs_f64()),
            Err(e) => h.error = Some(format!("{e:#}")),
        }
        h
    })
}

/// The sender (on its own thread, which it pins and moves into `tx_ns`): UDP to `dst` at
/// `opts.rate` for `opts.duration`; returns how many packets the stack accepted.
fn send(
    opts: &Opts,
    tx_ns: &str,
    src: SocketAddr,
    dst: SocketAddr,
    stop: &AtomicBool,
) -> Result<u64> {
    enter_netns(tx_ns)?;
    pin_to(opts.sender_cpu)?;
    let sock = UdpSocket::bind(src)?;
    let payload = [0x5au8; 64];
    let gap = (opts.rate > 0).then(|| Duration::from_secs_f64(1.0 / opts.rate as f64));
    let mut sent = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < opts.duration && !stop.load(Ordering::SeqCst) {
        // ENOBUFS under a flood is expected: count only what the stack accepted.
        if sock.send_to(&payload, dst).is_ok() {
            sent += 1;
        }
        if let Some(g) = gap {
            let due = t0 + g.mul_f64(sent as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::system_delta::row_sum;
    use super::*;

    #[test]
    fn proc_rows_sum_per_cpu_columns() {
        let irqs = "           CPU0       CPU1\n  0:         30          0   IO-APIC   2-edge      timer\n\
                    RES:        120         80   Rescheduling interrupts\n\
                    CAL:       5000       4000   Function call interrupts\n";
        assert_eq!(row_sum(irqs, "CAL:"), 9000);
        assert_eq!(row_sum(irqs, "RES:"), 200);
        assert_eq!(row_sum(irqs, "TLB:"), 0);
        let a = SystemDelta {
            context_switches: 10,
            call_ipis: 5,
            resched_ipis: 1,
            net_rx_softirqs: 7,
        };
        let b = SystemDelta {
            context_switches: 25,
            call_ipis: 9,
            resched_ipis: 1,
            net_rx_softirqs: 17,
        };
        assert_eq!(b.since(a).context_switches, 15);
        assert_eq!(a.since(b).call_ipis, 0, "counters never go negative");
        let live = SystemDelta::read();
        assert!(live.context_switches > 0, "/proc/stat has ctxt");
    }
}
