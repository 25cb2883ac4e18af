//! napiscope's kernel side: one small program per tracepoint. Each copies a few fields into a
//! `RawEvent` and stops; filtering by CPU, softirq vector and kernel-thread name is the only
//! policy here. Context tracking (hardirq / softirq) is per CPU, from entry/exit tracepoints
//! (softirq: per task across switches on PREEMPT_RT, see `softirq::switch_softirq`).
//!
//! Shared machinery: `config` (what userspace patches in before loading), `maps`, `emit`
//! (one event into a ring), `read` (getting values out of records and kernel memory),
//! `counters` (`top`'s in-kernel counting), `threads`, `atomic`, and `program!` (one body,
//! its tracepoint / raw / tp_btf / kprobe variants). The programs, by job: `hardirq`,
//! `softirq`, `rx`, `ipi`, `sched`, `hotplug`, `kprobes`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod program;

#[cfg(target_arch = "bpf")]
mod atomic;
#[cfg(target_arch = "bpf")]
mod config;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod read;
#[cfg(target_arch = "bpf")]
mod threads;

#[cfg(target_arch = "bpf")]
mod hardirq;
#[cfg(target_arch = "bpf")]
mod hotplug;
#[cfg(target_arch = "bpf")]
mod inflight;
#[cfg(target_arch = "bpf")]
mod ipi;
#[cfg(target_arch = "bpf")]
mod kprobes;
#[cfg(target_arch = "bpf")]
mod poll;
#[cfg(target_arch = "bpf")]
mod rx;
#[cfg(target_arch = "bpf")]
mod sched;
#[cfg(target_arch = "bpf")]
mod softirq;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
