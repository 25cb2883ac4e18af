//! `program!`: one body, every program that runs it.
//!
//! An event can be caught several ways: a classic tracepoint (fields at offsets in the record
//! the kernel fills, from tracefs), a raw tracepoint (the TP_PROTO arguments as u64s), a
//! BTF-typed tracepoint (typed arguments, loads checked by the verifier) or a kprobe stand-in.
//! What the program does with the values is the same for all of them, so it is written once,
//! as the *body*; each *variant* says only how it gets the body's arguments:
//!
//! ```ignore
//! program! {
//!     /// What the body does.
//!     fn thing_event(ptr: u64, n: i32, name: impl FnOnce(&mut [u8; COMM_LEN])) -> u32 { … }
//!
//!     tracepoint thing(ctx) { ptr = read(&ctx, off!(thing_ptr)), n = …, name = … }
//!     /// thing(struct foo *ptr, int n)
//!     raw_tracepoint thing_raw(ctx) { ptr = ctx.arg::<u64>(0), n = ctx.arg::<u64>(1) as i32, … }
//!     btf_tracepoint("thing") thing_btf(ctx) { p: u64 = ctx.arg(0), ptr = p, … }
//!     kprobe thing_kprobe(ctx) { ptr: u64 = ctx.arg(0).unwrap_or(0), … }
//! }
//! ```
//!
//! The body becomes an `#[inline(always)]` function; each variant becomes the program
//! `pub fn thing(ctx: TracePointContext) -> u32 { let ptr = …; let n = …; …; thing_event(ptr, n, …) }`
//! under the aya attribute of its kind (so the same section and attach type as written by hand).
//! The bindings run in the order written — the order the reads happen in — and may include
//! extra names that later ones use; every body parameter must be bound by name (a missing
//! one does not compile). Arguments that must be read lazily (only on the path that keeps
//! the event) are closures. Each program is still one BPF function the verifier walks whole.
//! A program attached to several tracepoints (the hardirq trackers) is one variant of its
//! body; several programs of one body differ by the arguments they bind (e.g. the softirq
//! `kind`).

macro_rules! program {
    (
        $(#[$bm:meta])*
        fn $body:ident ( $($p:ident : $pt:ty),* $(,)? ) -> u32 $block:block
        $($variants:tt)*
    ) => {
        $(#[$bm])*
        #[inline(always)]
        fn $body($($p: $pt),*) -> u32 $block

        $crate::program::program!(@variants $body ($($p),*) $($variants)*);
    };

    // One variant at a time, so the body's parameter list can be repeated in each.
    (@variants $body:ident $params:tt) => {};
    (@variants $body:ident $params:tt
        $(#[$m:meta])*
        $kind:ident $(($func:tt))? $prog:ident ($ctx:ident)
            { $($a:ident $(: $at:ty)? = $e:expr),* $(,)? }
        $($rest:tt)*
    ) => {
        $crate::program::program!(@variant $kind $(($func))? [$(#[$m])*] $prog $ctx
            [$($a $(: $at)? = $e;)*] $body $params);
        $crate::program::program!(@variants $body $params $($rest)*);
    };

    (@variant tracepoint [$($m:tt)*] $prog:ident $ctx:ident [$($bind:tt)*] $body:ident ($($p:ident),*)) => {
        $($m)*
        #[aya_ebpf::macros::tracepoint]
        pub fn $prog($ctx: aya_ebpf::programs::TracePointContext) -> u32 {
            $crate::program::program!(@bind [$($bind)*] $body($($p),*))
        }
    };
    (@variant raw_tracepoint [$($m:tt)*] $prog:ident $ctx:ident [$($bind:tt)*] $body:ident ($($p:ident),*)) => {
        $($m)*
        #[aya_ebpf::macros::raw_tracepoint]
        pub fn $prog($ctx: aya_ebpf::programs::RawTracePointContext) -> u32 {
            $crate::program::program!(@bind [$($bind)*] $body($($p),*))
        }
    };
    (@variant btf_tracepoint ($func:tt) [$($m:tt)*] $prog:ident $ctx:ident [$($bind:tt)*] $body:ident ($($p:ident),*)) => {
        $($m)*
        #[aya_ebpf::macros::btf_tracepoint(function = $func)]
        pub fn $prog($ctx: aya_ebpf::programs::BtfTracePointContext) -> u32 {
            $crate::program::program!(@bind [$($bind)*] $body($($p),*))
        }
    };
    (@variant kprobe [$($m:tt)*] $prog:ident $ctx:ident [$($bind:tt)*] $body:ident ($($p:ident),*)) => {
        $($m)*
        #[aya_ebpf::macros::kprobe]
        pub fn $prog($ctx: aya_ebpf::programs::ProbeContext) -> u32 {
            $crate::program::program!(@bind [$($bind)*] $body($($p),*))
        }
    };

    // `let` each binding in order, then call the body with its parameters.
    (@bind [$($a:ident $(: $at:ty)? = $e:expr;)*] $call:expr) => {{
        $(let $a $(: $at)? = $e;)*
        $call
    }};
}

pub(crate) use program;
