//! Getting values out of the kernel: classic tracepoint records, kernel memory through
//! helpers (raw tracepoints, kprobes), BTF-typed loads (tp_btf), and the current task.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, generated},
    programs::TracePointContext,
    EbpfContext,
};
use probe_common::COMM_LEN;

use crate::config::koff;

/// A field of a classic tracepoint's record, at an offset from OFFSETS (`off!`); the
/// type's default if the read faults.
#[inline(always)]
pub fn read<T>(ctx: &TracePointContext, off: usize) -> T
where
    T: Default,
{
    unsafe { ctx.read_at::<T>(off) }.unwrap_or_default()
}

/// Read a `__data_loc char[]` field into `dst`, which must be zeroed: the helper copies up
/// to the NUL and leaves the rest as it was (all of it zeroed if the read faults).
#[inline(always)]
pub fn read_data_loc(ctx: &TracePointContext, off: usize, dst: &mut [u8; COMM_LEN]) {
    let loc: u32 = read(ctx, off);
    let data = (loc & 0xffff) as usize;
    let src = unsafe { (ctx.as_ptr() as *const u8).add(data) };
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), COMM_LEN as u32, src.cast())
    };
}

/// A fixed `char[16]` field (comm). The helper writes all 16 bytes, zeros if it faults, so
/// the buffer needs no zeroing first (`read::<[u8; 16]>` would memset it for the error path).
#[inline(always)]
pub fn read_comm(ctx: &TracePointContext, off: usize) -> [u8; COMM_LEN] {
    let mut comm = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    unsafe {
        let src = (ctx.as_ptr() as *const u8).add(off);
        generated::bpf_probe_read_kernel(comm.as_mut_ptr().cast(), COMM_LEN as u32, src.cast());
        comm.assume_init()
    }
}

/// A kernel pointer's target, read with bpf_probe_read_kernel; 0 if the read faults.
#[inline(always)]
pub fn kread_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
pub fn kread_u32(addr: u64) -> u32 {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0)
}

/// `dev->name` into `dst`, which must be zeroed; for a NULL `dev` the name the napi_poll
/// tracepoint gives the per-CPU backlog NAPI, `(no_device)`.
#[inline(always)]
pub fn netdev_name(dev: u64, dst: &mut [u8; COMM_LEN]) {
    if dev == 0 {
        // "(no_devi" "ce)" as two little-endian words (dst is 8-byte aligned).
        let w = dst.as_mut_ptr() as *mut u64;
        unsafe {
            core::ptr::write_volatile(w, u64::from_le_bytes(*b"(no_devi"));
            core::ptr::write_volatile(w.add(1), u64::from_le_bytes(*b"ce)\0\0\0\0\0"));
        }
        return;
    }
    let src = (dev + koff!(netdev_name)) as *const u8;
    unsafe {
        generated::bpf_probe_read_kernel_str(dst.as_mut_ptr().cast(), COMM_LEN as u32, src.cast())
    };
}

/// `*(T *)(base + off)` where `base` is a BTF-typed kernel pointer (a tp_btf argument or a
/// pointer loaded through one) and `off` a constant from KOFFSETS (read-only data the
/// verifier sees as known values): checked at load time, a plain load at run time.
#[inline(always)]
pub unsafe fn btf_load<T: Copy>(base: u64, off: u64) -> T {
    unsafe { core::ptr::read_volatile((base + off) as *const T) }
}

/// `dev->name` (char[16]) into `dst` with two word loads, for a BTF-typed `dev`;
/// `(no_device)` for NULL, as netdev_name.
#[inline(always)]
pub fn btf_netdev_name(dev: u64, dst: &mut [u8; COMM_LEN]) {
    if dev == 0 {
        return netdev_name(0, dst);
    }
    let w = dst.as_mut_ptr() as *mut u64;
    let off = koff!(netdev_name);
    unsafe {
        core::ptr::write_volatile(w, btf_load::<u64>(dev, off));
        core::ptr::write_volatile(w.add(1), btf_load::<u64>(dev, off + 8));
    }
}

/// A task's comm (char[16]) with two loads; `task` is BTF-typed.
#[inline(always)]
pub fn task_comm(task: u64) -> [u8; COMM_LEN] {
    let off = koff!(task_comm);
    let words: [u64; 2] = unsafe { [btf_load(task, off), btf_load(task, off + 8)] };
    unsafe { core::mem::transmute(words) }
}

#[inline(always)]
pub fn task_pid(task: u64) -> i32 {
    unsafe { btf_load(task, koff!(task_pid)) }
}

/// The current task's comm. The helper writes all 16 bytes (NUL-padded), so no zeroing.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    let mut comm = core::mem::MaybeUninit::<[u8; COMM_LEN]>::uninit();
    unsafe {
        generated::bpf_get_current_comm(comm.as_mut_ptr().cast(), COMM_LEN as u32);
        comm.assume_init()
    }
}

#[inline(always)]
pub fn write_current_comm(dst: &mut [u8; COMM_LEN]) {
    unsafe { generated::bpf_get_current_comm(dst.as_mut_ptr().cast(), COMM_LEN as u32) };
}
