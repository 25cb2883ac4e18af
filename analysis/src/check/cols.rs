//! The checker's form of a trace: one vector per column the rules read (a `Sparse` one for
//! each nullable column), strings interned to small ids (`Sym`), event kind and context as
//! enums. `Index` sorts it by time and the rules
//! read rows through `E`, a copyable (columns, row) handle whose accessors mirror `Event`'s
//! fields. Reading a Parquet trace straight into this form (`trace::read_columns`) skips the
//! per-row `Event` with its owned strings.

use std::collections::HashMap;

use super::{seqscan::SeqFacts, sparse::Sparse};
use crate::event::{Ctx, Event, EventKind, BACKLOG_DEV};

/// An interned string.
pub type Sym = u32;
/// A null string column.
pub const NO_SYM: Sym = u32::MAX;

/// Interned strings, with the facts the rules ask about each one computed once.
#[derive(Debug, Default)]
pub struct Strings {
    strs: Vec<Box<str>>,
    ids: HashMap<Box<str>, Sym>,
    /// `backlog_napi/N` → N (as `str::parse` reads N).
    thread: Vec<Option<u32>>,
    /// Starts with `backlog_napi/`.
    backlog_prefix: Vec<bool>,
}

impl Strings {
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strs.len() as Sym;
        self.strs.push(s.into());
        self.ids.insert(s.into(), id);
        let rest = s.strip_prefix("backlog_napi/");
        self.thread.push(rest.and_then(|n| n.parse().ok()));
        self.backlog_prefix.push(rest.is_some());
        id
    }
    pub fn get(&self, s: Sym) -> &str {
        &self.strs[s as usize]
    }
    /// `backlog_napi/N` → N.
    #[inline]
    pub fn thread(&self, s: Sym) -> Option<u32> {
        self.thread[s as usize]
    }
    pub fn lookup(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }
    pub fn len(&self) -> usize {
        self.strs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.strs.is_empty()
    }
}

/// The columns the rules read (`len`, `csd` and `target_pid` are not among them): the ones
/// every row has as plain vectors, the nullable ones sparse (values of present rows only).
#[derive(Debug, Default)]
pub struct Cols {
    pub ts: Vec<u64>,
    /// CPU numbers fit 16 bits (Linux's NR_CPUS is at most 8192); the readers refuse a
    /// trace with a larger one. Half the bytes of a u32, on every row.
    pub cpu: Vec<u16>,
    /// Read only by `Index::build` (order, loss windows), which then empties it. Empty
    /// from the start when a reader scanned it as it went (`seq_facts`).
    pub seq: Vec<u64>,
    pub kind: Vec<EventKind>,
    pub ctx: Vec<Ctx>,
    pub comm: Vec<Sym>,
    pub pid: Vec<i32>,
    /// Softirq vector numbers (under 10): a byte.
    pub vec: Sparse<u8>,
    pub napi: Sparse<u64>,
    pub skb: Sparse<u64>,
    pub work: Sparse<i32>,
    pub budget: Sparse<i32>,
    pub ret: Sparse<i32>,
    pub target_cpu: Sparse<i32>,
    pub dev: Sparse<Sym>,
    pub target_comm: Sparse<Sym>,
    pub prev_state: Sparse<Sym>,
    pub func: Sparse<Sym>,
    pub strs: Strings,
    /// What `seqscan` found in the seq column, when the reader scanned it instead of keeping
    /// it: only ever complete (rows in time order, every CPU's gaps exact), as anything else
    /// needs the column.
    pub seq_facts: Option<SeqFacts>,
}

/// One row, for building `Cols` a row at a time.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub ts: u64,
    pub cpu: u16,
    pub seq: u64,
    pub kind: EventKind,
    pub ctx: Ctx,
    pub comm: Sym,
    pub pid: i32,
    pub vec: Option<u8>,
    pub napi: Option<u64>,
    pub skb: Option<u64>,
    pub work: Option<i32>,
    pub budget: Option<i32>,
    pub ret: Option<i32>,
    pub target_cpu: Option<i32>,
    pub dev: Option<Sym>,
    pub target_comm: Option<Sym>,
    pub prev_state: Option<Sym>,
    pub func: Option<Sym>,
}

macro_rules! each_col {
    ($m:ident, $($args:tt)*) => {
        $m!($($args)*; ts cpu kind ctx comm pid; vec napi skb work budget ret target_cpu
            dev target_comm prev_state func)
    };
}

impl Cols {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn with_capacity(n: usize) -> Cols {
        macro_rules! cap {
            (; $($d:ident)*; $($s:ident)*) => {
                Cols {
                    $($d: Vec::with_capacity(n),)*
                    $($s: Sparse::with_capacity(n),)*
                    seq: Vec::with_capacity(n),
                    strs: Strings::default(),
                    seq_facts: None,
                }
            };
        }
        each_col!(cap,)
    }

    pub fn push(&mut self, r: &Row) {
        macro_rules! push {
            ($c:ident $r:ident; $($f:ident)*; $($s:ident)*) => {
                $($c.$f.push($r.$f);)*
                $($c.$s.push($r.$s);)*
            };
        }
        let c = self;
        c.seq.push(r.seq);
        each_col!(push, c r);
    }

    /// Do all columns have `len()` rows (seq: or none, when scanned), and do the sparse
    /// ones' values match their presence bits? (A damaged file can break either.)
    pub fn consistent(&self) -> bool {
        let n = self.len();
        (self.seq.len() == n || (self.seq.is_empty() && self.seq_facts.is_some()))
            && self.consistent_but_seq()
    }

    /// `consistent`, seq aside (a reader that scans seq checks it itself).
    pub fn consistent_but_seq(&self) -> bool {
        let n = self.len();
        macro_rules! all {
            ($c:ident; $($d:ident)*; $($s:ident)*) => {
                true $(&& $c.$d.len() == n)* $(&& $c.$s.len() == n && $c.$s.consistent())*
            };
        }
        let c = self;
        each_col!(all, c)
    }

    pub fn from_events(events: &[Event]) -> Cols {
        let mut c = Cols::with_capacity(events.len());
        for e in events {
            let row = Row {
                ts: e.ts_ns,
                // The model's events: a handful of CPUs, vectors under 10.
                cpu: e.cpu.min(u16::MAX as u32) as u16,
                seq: e.seq,
                kind: e.event,
                ctx: e.ctx,
                comm: c.strs.intern(&e.comm),
                pid: e.pid,
                vec: e.vec.map(|v| v.min(u8::MAX as u32) as u8),
                napi: e.napi,
                skb: e.skb,
                work: e.work,
                budget: e.budget,
                ret: e.ret,
                target_cpu: e.target_cpu,
                dev: e.dev.as_deref().map(|s| c.strs.intern(s)),
                target_comm: e.target_comm.as_deref().map(|s| c.strs.intern(s)),
                prev_state: e.prev_state.as_deref().map(|s| c.strs.intern(s)),
                func: e.func.as_deref().map(|s| c.strs.intern(s)),
            };
            c.push(&row);
        }
        c
    }

    /// The rows in `order` (a permutation of the rows), strings kept. Column by column,
    /// each old one freed once gathered: the peak is one column over the trace, not two
    /// copies of it (a DuckDB-written trace comes out of time order).
    pub fn permute(self, order: &[u32]) -> Cols {
        fn gather<T: Copy>(v: Vec<T>, order: &[u32]) -> Vec<T> {
            order.iter().map(|i| v[*i as usize]).collect()
        }
        macro_rules! gather {
            ($c:ident; $($d:ident)*; $($s:ident)*) => {{
                let Cols { $($d,)* $($s,)* seq, strs, seq_facts: _ } = $c;
                $(let $d = gather($d, order);)*
                $(let $s = $s.permute(order);)*
                // Only a trace out of time order is permuted, and those keep their seq.
                let seq = if seq.is_empty() { seq } else { gather(seq, order) };
                Cols { $($d,)* $($s,)* seq, strs, seq_facts: None }
            }};
        }
        let c = self;
        each_col!(gather, c)
    }

    pub fn row(&self, i: usize) -> E<'_> {
        E { c: self, i }
    }
}

/// Row `i` of the columns: the accessors mirror `Event`'s fields.
#[derive(Clone, Copy)]
pub struct E<'a> {
    pub c: &'a Cols,
    pub i: usize,
}

impl std::fmt::Debug for E<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::describe(*self))
    }
}

impl<'a> E<'a> {
    #[inline]
    fn s(self, s: Option<Sym>) -> Option<&'a str> {
        s.map(|s| self.c.strs.get(s))
    }
    #[inline]
    pub fn ts_ns(self) -> u64 {
        self.c.ts[self.i]
    }
    #[inline]
    pub fn cpu(self) -> u32 {
        self.c.cpu[self.i] as u32
    }
    #[inline]
    pub fn event(self) -> EventKind {
        self.c.kind[self.i]
    }
    #[inline]
    pub fn ctx(self) -> Ctx {
        self.c.ctx[self.i]
    }
    #[inline]
    pub fn pid(self) -> i32 {
        self.c.pid[self.i]
    }
    pub fn comm(self) -> &'a str {
        self.c.strs.get(self.c.comm[self.i])
    }
    #[inline]
    pub fn vec(self) -> Option<u32> {
        self.c.vec.get(self.i).map(u32::from)
    }
    #[inline]
    pub fn napi(self) -> Option<u64> {
        self.c.napi.get(self.i)
    }
    #[inline]
    pub fn skb(self) -> Option<u64> {
        self.c.skb.get(self.i)
    }
    #[inline]
    pub fn work(self) -> Option<i32> {
        self.c.work.get(self.i)
    }
    #[inline]
    pub fn budget(self) -> Option<i32> {
        self.c.budget.get(self.i)
    }
    #[inline]
    pub fn ret(self) -> Option<i32> {
        self.c.ret.get(self.i)
    }
    #[inline]
    pub fn target_cpu(self) -> Option<i32> {
        self.c.target_cpu.get(self.i)
    }
    pub fn dev(self) -> Option<&'a str> {
        self.s(self.c.dev.get(self.i))
    }
    pub fn target_comm(self) -> Option<&'a str> {
        self.s(self.c.target_comm.get(self.i))
    }
    pub fn prev_state(self) -> Option<&'a str> {
        self.s(self.c.prev_state.get(self.i))
    }
    pub fn func(self) -> Option<&'a str> {
        self.s(self.c.func.get(self.i))
    }
    // Interned ids: the rules compare these, not text (one id per distinct string).
    #[inline]
    pub fn func_sym(self) -> Option<Sym> {
        self.c.func.get(self.i)
    }
    #[inline]
    pub fn comm_sym(self) -> Sym {
        self.c.comm[self.i]
    }
    #[inline]
    pub fn target_comm_sym(self) -> Option<Sym> {
        self.c.target_comm.get(self.i)
    }
    #[inline]
    pub fn prev_state_sym(self) -> Option<Sym> {
        self.c.prev_state.get(self.i)
    }
    /// `backlog_napi/N` is the current task: N.
    #[inline]
    pub fn comm_thread(self) -> Option<u32> {
        self.c.strs.thread[self.c.comm[self.i] as usize]
    }
    /// The current task's name starts with `backlog_napi/`.
    #[inline]
    pub fn comm_is_backlog(self) -> bool {
        self.c.strs.backlog_prefix[self.c.comm[self.i] as usize]
    }
    /// `backlog_napi/N` is the other task (woken, switched to): N.
    #[inline]
    pub fn target_thread(self) -> Option<u32> {
        self.c
            .target_comm
            .get(self.i)
            .and_then(|s| self.c.strs.thread[s as usize])
    }
    /// A poll of a CPU's backlog NAPI (`Event::is_backlog_poll`).
    pub fn is_backlog_poll(self) -> bool {
        self.event() == EventKind::NapiPoll && self.dev() == Some(BACKLOG_DEV)
    }
}

/// A quick hasher for the checker's integer keys (skb/napi hashes or raw addresses, CPUs,
/// pids): a multiply folded over 128 bits, so aligned raw addresses spread too.
#[derive(Clone, Copy, Default)]
pub struct FastHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl std::hash::Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let m = (self.0 as u128).wrapping_mul(K as u128);
        (m as u64) ^ ((m >> 64) as u64)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(23) ^ i).wrapping_mul(K);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.write_u64(i as u32 as u64)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
