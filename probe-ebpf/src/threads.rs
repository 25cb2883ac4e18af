//! The kernel threads whose scheduling the model needs: ksoftirqd/N, backlog_napi/N and
//! threaded device NAPIs' `napi/<dev>-<napi id>` (napi_kthread_create: "napi/%s-%d"), told
//! apart by comm in the kernel so that nothing else is recorded.

use probe_common::COMM_LEN;

pub const NOT_INTERESTING: u8 = 0;
pub const KSOFTIRQD: u8 = 1;
pub const BACKLOG_NAPI: u8 = 2;
pub const NAPI_THREAD: u8 = 3;

/// Which of the kernel threads the model follows `comm` is, if any.
#[inline(always)]
pub fn thread_kind(comm: &[u8; COMM_LEN]) -> u8 {
    const K: &[u8; 10] = b"ksoftirqd/";
    const B: &[u8; 13] = b"backlog_napi/";
    const N: &[u8; 5] = b"napi/";
    if comm[0] == N[0] && comm[1] == N[1] && comm[2] == N[2] && comm[3] == N[3] && comm[4] == N[4] {
        return NAPI_THREAD;
    }
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
