//! The process allocator: the system's, except that big blocks (the checker's columns and
//! indexes, 2 MiB and up) are mapped directly, on 2 MiB boundaries, and advised for
//! transparent huge pages.
//! Filling fresh memory 4 KiB page by page costs a page fault each; on a 2.4M-event trace
//! that was a quarter of `napiscope check`'s time. Hosts with THP off ignore the advice.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct HugeAlloc;

/// Blocks from this size on get their own mapping, of 2 MiB huge pages.
const BIG: usize = 2 << 20;
const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;

fn big(l: &Layout) -> bool {
    l.size() >= BIG && l.align() <= PAGE
}

/// The length of a big block's mapping: whole huge pages. A huge page backs only a whole
/// 2 MiB of a mapping, so an 8 MB column in an 8 MB mapping got three and faulted its last
/// 1.6 MiB 4 KiB at a time: ~400 faults, each dearer on this kind of VM than zeroing a
/// whole huge page.
fn span(size: usize) -> usize {
    size.next_multiple_of(HUGE)
}

/// A mapping of `size` bytes that starts on a huge-page boundary: mmap's own address is
/// only page-aligned, and a huge page can back only a 2 MiB-aligned 2 MiB of it (a 4 MiB
/// block at a random address got one huge page, the rest faulted 4 KiB at a time).
unsafe fn map(size: usize) -> *mut u8 {
    let size = span(size);
    let Some(len) = size.checked_add(HUGE) else {
        return std::ptr::null_mut();
    };
    let p = libc::mmap(
        std::ptr::null_mut(),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let p = p as usize;
    let start = p.next_multiple_of(HUGE);
    // The unaligned head and the tail past `size` go back.
    if start > p {
        libc::munmap(p as *mut libc::c_void, start - p);
    }
    let tail = p + len - (start + size);
    if tail > 0 {
        libc::munmap((start + size) as *mut libc::c_void, tail);
    }
    libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
    start as *mut u8
}

/// How far glibc's heap grows at a time, and the part of it advised for huge pages.
const HEAP_STEP: usize = 64 << 20;

/// Sets glibc's heap (the blocks under 2 MiB) up for a command that builds large data in
/// memory, as `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` would, which a program cannot set for
/// itself: freed memory stays in the heap for reuse (no trim, no per-block mappings: blocks
/// of 2 MiB and up are ours anyway), and the heap's first `HEAP_STEP` is grown at once and
/// advised for transparent huge pages. A mode C check of 1M events faulted 4,700 pages,
/// 3,000 of them in the heap, each dearer on a VM than zeroing a huge page. Growth past
/// `HEAP_STEP` goes on in 4 KiB pages, which is correct, only slower.
pub fn tune_heap() {
    // SAFETY: mallopt only changes glibc's thresholds. The malloc'd block is freed right
    // away and never touched; madvise covers pages inside the heap mapping (from that
    // block to the break), so it changes no data, only how missing pages are backed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, BIG as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, (1usize << 30) as libc::c_int);
        libc::mallopt(libc::M_TOP_PAD, HEAP_STEP as libc::c_int);
        // A block larger than the heap's free top: glibc grows the heap by it plus the pad.
        let p = libc::malloc(1 << 20);
        if p.is_null() {
            return;
        }
        let end = libc::sbrk(0) as usize;
        let start = (p as usize).next_multiple_of(HUGE);
        libc::free(p);
        if end > start {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if big(&l) {
            map(l.size())
        } else {
            System.alloc(l)
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if big(&l) {
            map(l.size()) // anonymous mappings are zeroed
        } else {
            System.alloc_zeroed(l)
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if big(&l) {
            libc::munmap(p as *mut libc::c_void, span(l.size()));
        } else {
            System.dealloc(p, l)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        match (big(&l), big(&new)) {
            (false, false) => System.realloc(p, l, new_size),
            (true, true) if new_size <= l.size() => {
                // Shrinking: the tail's pages go back, the block stays where it is.
                let (keep, old) = (span(new_size), span(l.size()));
                if old > keep {
                    libc::munmap(p.add(keep) as *mut libc::c_void, old - keep);
                }
                p
            }
            (true, true) if span(new_size) == span(l.size()) => p,
            (true, true) => {
                // Growing: the kernel moves or extends the mapping (no copy). Its new start
                // may not be 2 MiB-aligned; a partial huge-page fit beats a copy. (Moving the
                // pages into a fresh aligned mapping with MREMAP_FIXED broke on 6.1: when
                // the old range spans two VMAs, mremap there unmaps the target, then fails.)
                let q = libc::mremap(
                    p as *mut libc::c_void,
                    span(l.size()),
                    span(new_size),
                    libc::MREMAP_MAYMOVE,
                );
                if q == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                libc::madvise(q, span(new_size), libc::MADV_HUGEPAGE);
                q as *mut u8
            }
            _ => {
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                    self.dealloc(p, l);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuned_heap_keeps_blocks_under_2_mib_out_of_their_own_mappings() {
        tune_heap();
        // SAFETY: one block, freed once; mallinfo2 only reads glibc's counters.
        unsafe {
            let before = libc::mallinfo2().hblks;
            let p = libc::malloc(3 << 19); // 1.5 MiB: mmapped by glibc's default threshold
            assert!(!p.is_null());
            assert_eq!(
                libc::mallinfo2().hblks,
                before,
                "glibc mapped a 1.5 MiB block"
            );
            libc::free(p);
        }
    }

    #[test]
    fn big_blocks_start_on_huge_pages_and_keep_their_bytes_through_realloc() {
        let a = HugeAlloc;
        let l = Layout::from_size_align(BIG + 123, 8).unwrap();
        // SAFETY: each block is used within its layout and freed once with it.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0);
            for i in 0..l.size() {
                *p.add(i) = (i % 251) as u8;
            }
            // Growing keeps the bytes (the kernel may move the mapping).
            let q = a.realloc(p, l, 3 * BIG + 5);
            assert!((0..l.size()).all(|i| *q.add(i) == (i % 251) as u8));
            // Twice: the grown block is one mapping again.
            let l3 = Layout::from_size_align(3 * BIG + 5, 8).unwrap();
            let q = a.realloc(q, l3, 5 * BIG);
            assert!((0..l.size()).all(|i| *q.add(i) == (i % 251) as u8));
            let q = a.realloc(q, Layout::from_size_align(5 * BIG, 8).unwrap(), 3 * BIG + 5);
            *q.add(3 * BIG + 4) = 7;
            // Shrinking (still big) keeps the block in place.
            let big3 = Layout::from_size_align(3 * BIG + 5, 8).unwrap();
            let r = a.realloc(q, big3, BIG + 1);
            assert_eq!(r, q);
            assert_eq!(*r.add(BIG), (BIG % 251) as u8);
            // Below the threshold: back to the system allocator, bytes copied.
            let big1 = Layout::from_size_align(BIG + 1, 8).unwrap();
            let s = a.realloc(r, big1, 100);
            assert!((0..100).all(|i| *s.add(i) == (i % 251) as u8));
            a.dealloc(s, Layout::from_size_align(100, 8).unwrap());
        }
    }
}
