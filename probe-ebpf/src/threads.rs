//! The kernel threads whose scheduling the model needs: ksoftirqd/N and backlog_napi/N,
//! told apart by comm in the kernel so that nothing else is recorded.

use probe_common::COMM_LEN;

pub const NOT_INTERESTING: u8 = 0;
pub const KSOFTIRQD: u8 = 1;
pub const BACKLOG_NAPI: u8 = 2;

/// The kernel threads whose scheduling the model needs: ksoftirqd/N and backlog_napi/N.
#[inline(always)]
pub fn thread_kind(comm: &[u8; COMM_LEN]) -> u8 {
    const K: &[u8; 10] = b"ksoftirqd/";
    const B: &[u8; 13] = b"backlog_napi/";
    let mut k = true;
    let mut i = 0;
    while i < K.len() {
        if comm[i] != K[i] {
            k = false;
        }
        i += 1;
    }
    if k {
        return KSOFTIRQD;
    }
    let mut i = 0;
    while i < B.len() {
        if comm[i] != B[i] {
            return NOT_INTERESTING;
        }
        i += 1;
    }
    BACKLOG_NAPI
}

#[inline(always)]
pub fn interesting_thread(comm: &[u8; COMM_LEN]) -> bool {
    thread_kind(comm) != NOT_INTERESTING
}
