//! `veth-gro-busy-poll`: veth-gro-rps with a receiver that busy polls the veth's NAPI from
//! its own task (SO_BUSY_POLL, net/core/dev.c napi_busy_loop). The socket learns the
//! instance from the first skb (sk_mark_napi_id_once: skb->napi_id, set by
//! napi_gro_receive), then each non-blocking recv runs one busy-poll round: one poll while it
//! holds NAPI_STATE_SCHED | NAPI_STATE_IN_BUSY_POLL, and one more in busy_poll_stop — both
//! `napi:napi_poll` in task context, by this thread. A packet the sender queues while the
//! round holds the instance is polled by the receiver (the sender's napi_schedule finds SCHED
//! set and only marks MISSED); the others are polled in the sender CPU's NET_RX as in
//! veth-gro-rps.
//!
//! Non-blocking rounds, not a blocking recv with a busy-poll time: every round of the busy
//! loop is a traced poll (most with no work), so a receiver spinning for the whole
//! SO_BUSY_POLL time would emit millions of events per second. A round per `PAUSE` keeps
//! the trace small and the share of packets the receiver polls itself measurable.

use std::{
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Result};
use serde::Serialize;

/// The receiving thread's name: its `comm` in the trace.
pub const THREAD_NAME: &str = "napiscope-busy";
/// SO_BUSY_POLL, µs: non-zero makes recv busy poll (sk_can_busy_loop); with MSG_DONTWAIT
/// the time does not matter (one round, no loop_end).
const BUSY_POLL_US: libc::c_int = 50;
/// Between two rounds.
const PAUSE: Duration = Duration::from_micros(20);

/// Who busy polled, and which instance the socket polled.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BusyPoll {
    /// The receiving thread's tid (`pid` in the trace) and name.
    pub tid: u32,
    pub comm: String,
    /// SO_INCOMING_NAPI_ID at the end: the instance the socket's busy polls went to.
    pub napi_id: Option<u32>,
    /// Non-blocking recv rounds run.
    pub rounds: u64,
}

fn setsockopt_int(sock: &UdpSocket, opt: libc::c_int, v: libc::c_int) -> Result<()> {
    // SAFETY: a valid fd and a c_int option value of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("{}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn incoming_napi_id(sock: &UdpSocket) -> Option<u32> {
    let mut v: libc::c_uint = 0;
    let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
    // SAFETY: a valid fd; v and len are the output buffer and its size.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_NAPI_ID,
            (&mut v as *mut libc::c_uint).cast(),
            &mut len,
        )
    };
    (r == 0 && v != 0).then_some(v)
}

/// Can this kernel busy poll? (CONFIG_NET_RX_BUSY_POLL: off in Debian's PREEMPT_RT kernels,
/// where SO_BUSY_POLL is "Protocol not available".)
pub fn available() -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("a UDP socket: {e}"))?;
    setsockopt_int(&sock, libc::SO_BUSY_POLL, BUSY_POLL_US).map_err(|e| {
        format!(
            "this kernel has no busy polling (CONFIG_NET_RX_BUSY_POLL off: SO_BUSY_POLL: {e:#})"
        )
    })
}

/// Make `sock` busy poll on every recv, and non-blocking.
pub fn prepare(sock: &UdpSocket) -> Result<()> {
    setsockopt_int(sock, libc::SO_BUSY_POLL, BUSY_POLL_US)
        .map_err(|e| anyhow::anyhow!("setsockopt(SO_BUSY_POLL): {e:#}"))?;
    sock.set_nonblocking(true)?;
    Ok(())
}

/// Receive until `done`, one busy-poll round per recv, counting into `received`.
pub fn receive(sock: &UdpSocket, received: &AtomicU64, done: &Arc<AtomicBool>) -> Result<BusyPoll> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    let mut buf = [0u8; 2048];
    let mut rounds = 0u64;
    while !done.load(Ordering::SeqCst) {
        rounds += 1;
        match sock.recv(&mut buf) {
            Ok(_) => {
                received.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(PAUSE),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(BusyPoll {
        tid,
        comm: THREAD_NAME.into(),
        napi_id: incoming_napi_id(sock),
        rounds,
    })
}
