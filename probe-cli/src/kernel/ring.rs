//! A BPF ring-buffer reader that publishes its position once per batch. aya's `RingBuf`
//! stores the consumer position after every record; the eBPF side reads that position on
//! every reservation, so under a flood the cache line bounced between the draining CPU and
//! each producing CPU once per event. Here the kernel sees the new position when a drain
//! ends (at most `max` records later) — the ring just has to be big enough for one batch.
//!
//! Layout (kernel/bpf/ringbuf.c, as libbpf maps it): page 0 holds the consumer position
//! (read-write); from page 1, read-only, the producer position, then at one page further
//! the data area mapped twice in a row, so a record that wraps is contiguous.

use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use anyhow::{bail, Result};
use aya::maps::{MapData, RingBuf};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

pub struct RingReader {
    /// Keeps the map (and its fd) alive.
    ring: RingBuf<MapData>,
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: usize,
    pos: usize,
}

struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn map(fd: i32, len: usize, prot: i32, offset: usize) -> Result<Mapping> {
    // SAFETY: a fresh shared mapping of the ring's fd; checked below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            offset as i64,
        )
    };
    if ptr == libc::MAP_FAILED {
        bail!(
            "mmap of the event ring: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(Mapping { ptr, len })
}

/// What waits at one position of the data area.
#[derive(Debug, PartialEq)]
enum Slot {
    /// Reserved, not yet submitted: stop here.
    Busy,
    /// Discarded by the producer: skip `len` bytes of data.
    Discard(usize),
    /// A record: `len` bytes after the header.
    Data(usize),
}

fn slot(header: u32) -> Slot {
    let len = (header & !(BUSY | DISCARD)) as usize;
    if header & BUSY != 0 {
        Slot::Busy
    } else if header & DISCARD != 0 {
        Slot::Discard(len)
    } else {
        Slot::Data(len)
    }
}

/// Bytes a record of `len` takes in the ring: header plus data, 8-byte aligned.
fn advance(len: usize) -> usize {
    (HDR + len).next_multiple_of(8)
}

impl RingReader {
    /// `size`: the ring's byte size (its max_entries, a power of two).
    pub fn new(ring: RingBuf<MapData>, size: usize) -> Result<RingReader> {
        // SAFETY: no arguments.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let fd = ring.as_raw_fd();
        let consumer = map(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = map(fd, page + 2 * size, libc::PROT_READ, page)?;
        // SAFETY: the consumer page starts with the kernel's consumer_pos.
        let pos = unsafe { &*(consumer.ptr as *const AtomicUsize) }.load(Ordering::Acquire);
        Ok(RingReader {
            ring,
            consumer,
            producer,
            page,
            mask: size - 1,
            pos,
        })
    }

    pub fn as_raw_fd(&self) -> i32 {
        self.ring.as_raw_fd()
    }

    /// Hand each record available now to `f`, at most `max` of them, then publish the
    /// consumer position once. Returns how many records were handed over.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<usize> {
        // SAFETY: the producer mapping starts with the kernel's producer_pos (written with
        // release semantics after each record's header); the data area follows one page on.
        let prod = unsafe { &*(self.producer.ptr as *const AtomicUsize) }.load(Ordering::Acquire);
        let data = unsafe { (self.producer.ptr as *const u8).add(self.page) };
        let mut n = 0;
        let start = self.pos;
        while self.pos != prod && n < max {
            let off = self.pos & self.mask;
            // SAFETY: off + HDR is inside the (doubly mapped) data area.
            let header = unsafe { &*(data.add(off) as *const AtomicU32) }.load(Ordering::Acquire);
            match slot(header) {
                Slot::Busy => break,
                Slot::Discard(len) => self.pos += advance(len),
                Slot::Data(len) => {
                    // SAFETY: a committed record; the double mapping keeps it contiguous.
                    let rec = unsafe { std::slice::from_raw_parts(data.add(off + HDR), len) };
                    let r = f(rec);
                    self.pos += advance(len);
                    n += 1;
                    r?;
                }
            }
        }
        if self.pos != start {
            // SAFETY: the consumer page starts with consumer_pos; the kernel reads it with
            // acquire before reusing the space.
            unsafe { &*(self.consumer.ptr as *const AtomicUsize) }
                .store(self.pos, Ordering::Release);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decode_to_busy_discard_and_data() {
        assert_eq!(slot(96), Slot::Data(96));
        assert_eq!(slot(BUSY | 96), Slot::Busy);
        assert_eq!(slot(DISCARD | 96), Slot::Discard(96));
        // Busy wins: a reserved record may carry the discard bit only once committed.
        assert_eq!(slot(BUSY | DISCARD | 96), Slot::Busy);
        assert_eq!(advance(96), 104);
        assert_eq!(advance(5), 16);
    }
}
