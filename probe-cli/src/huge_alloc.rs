//! The process allocator: the system's, except that big blocks (the checker's columns and
//! indexes, tens of MB each) are mapped directly and advised for transparent huge pages.
//! Filling fresh memory 4 KiB page by page costs a page fault each; on a 2.4M-event trace
//! that was a quarter of `napiscope check`'s time. Hosts with THP off ignore the advice.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct HugeAlloc;

/// Blocks from this size on get their own mapping (several 2 MiB huge pages).
const BIG: usize = 4 << 20;

fn big(l: &Layout) -> bool {
    l.size() >= BIG && l.align() <= 4096
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = libc::mmap(
        std::ptr::null_mut(),
        size,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    libc::madvise(p, size, libc::MADV_HUGEPAGE);
    p as *mut u8
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
            libc::munmap(p as *mut libc::c_void, l.size());
        } else {
            System.dealloc(p, l)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, l.align());
        match (big(&l), big(&new)) {
            (false, false) => System.realloc(p, l, new_size),
            (true, true) => {
                let q = libc::mremap(
                    p as *mut libc::c_void,
                    l.size(),
                    new_size,
                    libc::MREMAP_MAYMOVE,
                );
                if q == libc::MAP_FAILED {
                    return std::ptr::null_mut();
                }
                libc::madvise(q, new_size, libc::MADV_HUGEPAGE);
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
