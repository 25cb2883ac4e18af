//! The checker's form of a trace: one vector per column the rules read (a `Sparse` one for
//! each nullable column), strings interned to small ids (`Sym`), event kind and context as
//! enums. `check::index::Index` sorts it by time and the rules read rows through `E`, a
//! copyable (columns, row) handle whose accessors mirror `Event`'s fields. Reading a Parquet
//! trace straight into this form (`trace::read_columns`) skips the per-row `Event` with its
//! owned strings. Which columns, and their types here: `schema::columns!`.

use std::collections::HashMap;

use super::{
    event::{Ctx, Event, EventKind, BACKLOG_DEV},
    schema::columns,
    seqscan::SeqFacts,
    sparse::Sparse,
};

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

/// The checked columns of `schema::columns!` sorted into those every row has (a `Vec`) and
/// the nullable ones (a `Sparse`), as `(field event_field type kind [checker type] narrow|same)`,
/// then `cols_struct!`. seq, which the page reader scans instead of keeping, is written out
/// by hand.
macro_rules! cols_munch {
    (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
     nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
        cols_munch!(@ [] []; $(req $r $rt $rc $rk;)* $(opt $o $ot $oc $ok;)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*];) => {
        cols_struct!(dense [$($d)*] sparse [$($s)*]);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; $q:ident $n:ident $t:tt $c:ident -; $($rest:tt)*) => {
        cols_munch!(@ [$($d)*] [$($s)*]; $($rest)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; req $n:ident $t:tt $c:ident ($f:ident: $k:ty, scanned);
     $($rest:tt)*) => {
        cols_munch!(@ [$($d)*] [$($s)*]; $($rest)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; req $n:ident $t:tt $c:ident ($f:ident: $k:ty, $msg:literal);
     $($rest:tt)*) => {
        cols_munch!(@ [$($d)* ($f $n $t $c [$k] narrow)] [$($s)*]; $($rest)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; req $n:ident $t:tt $c:ident ($f:ident: $k:ty); $($rest:tt)*) => {
        cols_munch!(@ [$($d)* ($f $n $t $c [$k] same)] [$($s)*]; $($rest)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; opt $n:ident $t:tt $c:ident ($f:ident: $k:ty, $msg:literal);
     $($rest:tt)*) => {
        cols_munch!(@ [$($d)*] [$($s)* ($f $n $t $c [$k] narrow)]; $($rest)*);
    };
    (@ [$($d:tt)*] [$($s:tt)*]; opt $n:ident $t:tt $c:ident ($f:ident: $k:ty); $($rest:tt)*) => {
        cols_munch!(@ [$($d)*] [$($s)* ($f $n $t $c [$k] same)]; $($rest)*);
    };
}

macro_rules! cols_struct {
    (dense [$(($df:ident $dn:ident $dt:tt $dc:ident [$dk:ty] $dw:ident))*]
     sparse [$(($sf:ident $sn:ident $st:tt $sc:ident [$sk:ty] $sw:ident))*]) => {
        /// The columns the rules read (see `schema::columns!`): the ones every row has as
        /// plain vectors, the nullable ones sparse (values of present rows only).
        #[derive(Debug, Default)]
        pub struct Cols {
            $(pub $df: Vec<$dk>,)*
            /// Read only by `Index::build` (order, loss windows), which then empties it.
            /// Empty from the start when a reader scanned it as it went (`seq_facts`).
            pub seq: Vec<u64>,
            $(pub $sf: Sparse<$sk>,)*
            pub strs: Strings,
            /// What `seqscan` found in the seq column, when the reader scanned it instead of
            /// keeping it: only ever complete (rows in time order, every CPU's gaps exact), as
            /// anything else needs the column.
            pub seq_facts: Option<SeqFacts>,
        }

        impl Cols {
            pub fn with_capacity(n: usize) -> Cols {
                Cols {
                    $($df: Vec::with_capacity(n),)*
                    seq: Vec::with_capacity(n),
                    $($sf: Sparse::with_capacity(n),)*
                    strs: Strings::default(),
                    seq_facts: None,
                }
            }

            /// `consistent`, seq aside (a reader that scans seq checks it itself).
            pub fn consistent_but_seq(&self) -> bool {
                let n = self.len();
                true $(&& self.$df.len() == n)* $(&& self.$sf.len() == n && self.$sf.consistent())*
            }

            /// The model's events as columns (a handful of CPUs, vectors under 10: a number
            /// too large for its column is cut to the largest that fits).
            pub fn from_events(events: &[Event]) -> Cols {
                let mut c = Cols::with_capacity(events.len());
                for e in events {
                    c.seq.push(e.seq);
                    $(c.$df.push(from_event!(dense $dc $dw c, e.$dn, $dk));)*
                    $(c.$sf.push(from_event!(sparse $sc $sw c, e.$sn, $sk));)*
                }
                c
            }

            /// The rows in `order` (a permutation of the rows), strings kept. Column by
            /// column, each old one freed once gathered: the peak is one column over the
            /// trace, not two copies of it (a DuckDB-written trace comes out of time order).
            pub fn permute(self, order: &[u32]) -> Cols {
                fn gather<T: Copy>(v: Vec<T>, order: &[u32]) -> Vec<T> {
                    order.iter().map(|i| v[*i as usize]).collect()
                }
                let Cols { $($df,)* $($sf,)* seq, strs, seq_facts: _ } = self;
                $(let $df = gather($df, order);)*
                $(let $sf = $sf.permute(order);)*
                // Only a trace out of time order is permuted, and those keep their seq.
                let seq = if seq.is_empty() { seq } else { gather(seq, order) };
                Cols { $($df,)* $($sf,)* seq, strs, seq_facts: None }
            }
        }

        impl<'a> E<'a> {
            $(accessor!(dense $dc $dw $df $dn $dt);)*
            $(accessor!(sparse $sc $sw $sf $sn $st);)*
        }
    };
}

/// An `Event`'s value as the checker keeps it.
macro_rules! from_event {
    (dense text $w:ident $c:ident, $v:expr, $k:ty) => {
        $c.strs.intern(&$v)
    };
    (sparse text $w:ident $c:ident, $v:expr, $k:ty) => {
        $v.as_deref().map(|s| $c.strs.intern(s))
    };
    (dense $cl:ident narrow $c:ident, $v:expr, $k:ty) => {
        <$k>::try_from($v).unwrap_or(<$k>::MAX)
    };
    (sparse $cl:ident narrow $c:ident, $v:expr, $k:ty) => {
        $v.map(|v| <$k>::try_from(v).unwrap_or(<$k>::MAX))
    };
    ($ds:ident $cl:ident same $c:ident, $v:expr, $k:ty) => {
        $v
    };
}

/// Row `i`'s value of a column, as `Event` has it (strings borrowed).
macro_rules! accessor {
    (dense text $w:ident $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> &'a str {
            self.c.strs.get(self.c.$f[self.i])
        }
    };
    (sparse text $w:ident $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> Option<&'a str> {
            self.c.$f.get(self.i).map(|s| self.c.strs.get(s))
        }
    };
    (dense $c:ident narrow $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> $t {
            <$t>::from(self.c.$f[self.i])
        }
    };
    (sparse $c:ident narrow $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> Option<$t> {
            self.c.$f.get(self.i).map(<$t>::from)
        }
    };
    (dense $c:ident same $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> $t {
            self.c.$f[self.i]
        }
    };
    (sparse $c:ident same $f:ident $n:ident $t:tt) => {
        #[inline]
        pub fn $n(self) -> Option<$t> {
            self.c.$f.get(self.i)
        }
    };
}

columns!(cols_munch);

impl Cols {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Do all columns have `len()` rows (seq: or none, when scanned), and do the sparse
    /// ones' values match their presence bits? (A damaged file can break either.)
    pub fn consistent(&self) -> bool {
        let n = self.len();
        (self.seq.len() == n || (self.seq.is_empty() && self.seq_facts.is_some()))
            && self.consistent_but_seq()
    }

    pub fn row(&self, i: usize) -> E<'_> {
        E { c: self, i }
    }
}

/// Row `i` of the columns: the accessors (made from `schema::columns!`) mirror `Event`'s
/// fields; `check` gives it a `Debug` (its one-line description).
#[derive(Clone, Copy)]
pub struct E<'a> {
    pub c: &'a Cols,
    pub i: usize,
}

impl<'a> E<'a> {
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
