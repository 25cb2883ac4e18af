//! The code that talks to the kernel: loading and attaching the eBPF programs (`probes`), the
//! kernel's BTF and tracefs, the event rings and their decoder, kallsyms, the kernel's own
//! receive counters, and the facts of this system. Nothing here imports a command.

pub mod btf;
pub mod counters;
pub mod decode;
pub mod env;
pub mod features;
pub mod huge_alloc;
pub mod napi_info;
pub mod probes;
pub mod ring;
pub mod symbols;
pub mod system;
pub mod tracefs;
