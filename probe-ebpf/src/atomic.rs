//! BPF atomics and the bounds the verifier needs, in inline assembly: core's AtomicU64 has no
//! read-modify-write on this target, and LLVM drops masks it can prove redundant.

/// `*v += 1`, atomically; returns the old value (BPF_ATOMIC | BPF_FETCH, kernel ≥ 5.12).
#[inline(always)]
pub fn fetch_inc(v: &mut u64) -> u64 {
    let mut n: u64 = 1;
    // SAFETY: v points into a map value that lives as long as the program.
    unsafe {
        core::arch::asm!(
            "{0} = atomic_fetch_add((u64 *)({1} + 0), {0})",
            inout(reg) n,
            in(reg) v as *mut u64,
        );
    }
    n
}

#[inline(always)]
pub fn atomic_inc(v: &mut u64) {
    atomic_add(v, 1)
}

#[inline(always)]
pub fn atomic_add(v: &mut u64, n: u64) {
    // BPF_ATOMIC add without fetch (BPF v1 XADD): core's AtomicU64 has no RMW on this target.
    // SAFETY: v points into a map value that lives as long as the program.
    unsafe {
        core::arch::asm!("lock *(u64 *)({0} + 0) += {1}", in(reg) v as *mut u64, in(reg) n);
    }
}

/// `x & mask` in a way the verifier sees on every kernel (see `config::cpu_selected`).
#[inline(always)]
pub fn bounded(mut x: usize, mask: usize) -> usize {
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) x) };
    x & mask
}
