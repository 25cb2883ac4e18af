//! The kernel threads whose scheduling the model needs: ksoftirqd/N, backlog_napi/N and
//! threaded device NAPIs' `napi/<dev>-<napi id>` (napi_kthread_create: "napi/%s-%d"), told
//! apart by comm in the kernel so that nothing else is recorded.

use probe_common::COMM_LEN;

pub const NOT_INTERESTING: u8 = 0;
pub const KSOFTIRQD: u8 = 1;
pub const BACKLOG_NAPI: u8 = 2;
pub const NAPI_THREAD: u8 = 3;

/// Which of the kernel threads the model follows `comm` is, if any.
///
/// Compared as two little-endian words under a prefix mask, not byte by byte: a byte loop
/// with a flag forks the verifier's state at every byte, and inlined into
/// netif_receive_skb's program that pushed it past the 1M-instruction limit (E2BIG).
#[inline(always)]
pub fn thread_kind(comm: &[u8; COMM_LEN]) -> u8 {
    const NAPI: Prefix = prefix(b"napi/");
    const KSOFTIRQD_: Prefix = prefix(b"ksoftirqd/");
    const BACKLOG: Prefix = prefix(b"backlog_napi/");
    let w = words(comm);
    if matches(w, &NAPI) {
        NAPI_THREAD
    } else if matches(w, &KSOFTIRQD_) {
        KSOFTIRQD
    } else if matches(w, &BACKLOG) {
        BACKLOG_NAPI
    } else {
        NOT_INTERESTING
    }
}

/// A comm prefix as (value, mask) for each of the name's two 8-byte words.
struct Prefix([(u64, u64); 2]);

const fn prefix(p: &[u8]) -> Prefix {
    let mut out = [(0u64, 0u64); 2];
    let mut i = 0;
    while i < p.len() {
        let (w, shift) = (i / 8, (i % 8) * 8);
        out[w].0 |= (p[i] as u64) << shift;
        out[w].1 |= 0xff << shift;
        i += 1;
    }
    Prefix(out)
}

#[inline(always)]
fn words(comm: &[u8; COMM_LEN]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&comm[..8]);
    hi.copy_from_slice(&comm[8..16]);
    [u64::from_le_bytes(lo), u64::from_le_bytes(hi)]
}

#[inline(always)]
fn matches(w: [u64; 2], p: &Prefix) -> bool {
    (w[0] & p.0[0].1) == p.0[0].0 && (w[1] & p.0[1].1) == p.0[1].0
}

/// The interrupt whose handler thread `comm` is: `irq/<N>-<action name>` (irq_thread's
/// kthread name; every device interrupt is one on PREEMPT_RT, where handlers are force
/// threaded, and a `request_threaded_irq` thread elsewhere). Up to 4 digits (IRQ < 10000):
/// the digits and the dash must lie in the name's first 8 bytes, read as one word, so the
/// verifier sees four early exits rather than a loop over the name.
#[inline(always)]
pub fn irq_thread_number(comm: &[u8; COMM_LEN]) -> Option<i32> {
    let w = words(comm)[0];
    if w & 0xffff_ffff != u32::from_le_bytes(*b"irq/") as u64 {
        return None;
    }
    let mut n = 0i32;
    for k in 4..8 {
        let b = ((w >> (8 * k)) & 0xff) as u8;
        if b == b'-' {
            return (k > 4).then_some(n);
        }
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as i32;
    }
    None
}

#[inline(always)]
pub fn interesting_thread(comm: &[u8; COMM_LEN]) -> bool {
    thread_kind(comm) != NOT_INTERESTING
}
