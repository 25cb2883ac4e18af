//! What the writer takes a row as, and the columns it builds a batch in: `Row` (numbers, and
//! strings as ids the writer interned), `StrTable` (those strings), `Columns` (one growing
//! vector per column, made into an Arrow `RecordBatch` once per batch). All three follow
//! `schema::columns!`.

use std::{collections::HashMap, sync::Arc};

use anyhow::Result;
use arrow::{
    array::{ArrayRef, PrimitiveArray, RecordBatch, StringBuilder},
    buffer::{NullBuffer, ScalarBuffer},
    datatypes::{ArrowNativeType, ArrowPrimitiveType},
};
use probe_common::COMM_LEN;

use super::{
    cols::Sym,
    event::{Ctx, Event, EventKind},
    fastmap::FastMap,
    schema::{arrow_primitive, columns, schema, Named},
};

/// A column's type in `Row`: strings as ids.
macro_rules! interned {
    (text $t:tt) => {
        Sym
    };
    ($c:ident $t:ty) => {
        $t
    };
}

macro_rules! row_struct {
    (required { $($(#[$rm:meta])* $r:ident: $rt:tt, $ra:ident, $rc:ident, $rk:tt;)* }
     nullable { $($(#[$om:meta])* $o:ident: $ot:tt, $oa:ident, $oc:ident, $ok:tt;)* }) => {
        /// One row as the writer takes it: numbers, and strings as ids from
        /// `TraceWriter::intern` (or `intern_bytes`). Plain data, so a recorder builds it on
        /// the stack per event.
        #[derive(Clone, Copy, Debug)]
        pub struct Row {
            $($(#[$rm])* pub $r: interned!($rc $rt),)*
            $($(#[$om])* pub $o: Option<interned!($oc $ot)>,)*
        }

        impl Row {
            /// The required columns given, every nullable one null.
            #[allow(clippy::too_many_arguments)]
            pub fn with_required($($r: interned!($rc $rt)),*) -> Row {
                Row {
                    $($r,)*
                    $($o: None,)*
                }
            }

            /// An `Event`'s row, its strings interned into `strs` (in column order).
            pub(super) fn of_event(e: &Event, strs: &mut StrTable) -> Row {
                Row {
                    $($r: to_row!(req $rc strs, e.$r),)*
                    $($o: to_row!(opt $oc strs, e.$o),)*
                }
            }
        }

        /// The batch being built: a column per column of the schema.
        #[derive(Default)]
        pub(super) struct Columns {
            $($r: Col<key!($rc $rt)>,)*
            $($o: Col<key!($oc $ot)>,)*
            pub(super) rows: usize,
        }

        impl Columns {
            #[inline]
            pub(super) fn push(&mut self, e: &Row) {
                $(self.$r.push(to_key!($rc e.$r));)*
                $(self.$o.push_opt(e.$o.map(|v| to_key!($oc v)));)*
                self.rows += 1;
            }

            /// The rows as an Arrow batch (the columns emptied); `strs` are the strings the
            /// string ids point into.
            pub(super) fn finish(&mut self, strs: &[Box<str>]) -> Result<RecordBatch> {
                let cols: Vec<ArrayRef> = vec![
                    $(finish!($rc $rt, $ra, self.$r, strs),)*
                    $(finish!($oc $ot, $oa, self.$o, strs),)*
                ];
                self.rows = 0;
                Ok(RecordBatch::try_new(schema(), cols)?)
            }
        }
    };
}

/// An `Event`'s value as a `Row`'s.
macro_rules! to_row {
    (req text $strs:ident, $v:expr) => {
        $strs.intern(&$v)
    };
    (opt text $strs:ident, $v:expr) => {
        $v.as_deref().map(|s| $strs.intern(s))
    };
    ($n:ident $c:ident $strs:ident, $v:expr) => {
        $v
    };
}

/// A column's value type in `Columns`: names as their key, strings as ids.
macro_rules! key {
    (num $t:ty) => {
        $t
    };
    (name $t:ty) => {
        u32
    };
    (text $t:ty) => {
        Sym
    };
}

macro_rules! to_key {
    (name $v:expr) => {
        Named::key($v)
    };
    ($c:ident $v:expr) => {
        $v
    };
}

/// A built column as an Arrow array.
macro_rules! finish {
    (num $t:tt, $a:ident, $col:expr, $strs:ident) => {
        $col.finish::<arrow_primitive!($a)>()
    };
    (name $t:tt, $a:ident, $col:expr, $strs:ident) => {{
        let names: Vec<&str> = <$t as Named>::ALL.iter().map(|k| k.name()).collect();
        $col.finish_strings(&names)
    }};
    (text $t:tt, $a:ident, $col:expr, $strs:ident) => {
        $col.finish_strings($strs)
    };
}

columns!(row_struct);

impl Row {
    /// A row with the columns every event has (pid 0), every nullable one null.
    pub fn new(ts_ns: u64, cpu: u32, seq: u64, event: EventKind, ctx: Ctx, comm: Sym) -> Row {
        Row::with_required(ts_ns, cpu, seq, event, ctx, comm, 0)
    }
}

/// The writer's strings: every distinct string gets an id once; rows carry ids, and a batch's
/// string columns are built from the ids when the batch is complete.
#[derive(Default)]
pub(super) struct StrTable {
    pub(super) strs: Vec<Box<str>>,
    by_str: HashMap<Box<str>, Sym>,
    by_bytes: FastMap<(u64, u64), Sym>,
    /// The last name interned by bytes (a task's comm repeats from event to event).
    last: Option<((u64, u64), Sym)>,
}

impl StrTable {
    pub(super) fn intern(&mut self, s: &str) -> Sym {
        if let Some(id) = self.by_str.get(s) {
            return *id;
        }
        let id = self.strs.len() as Sym;
        self.strs.push(s.into());
        self.by_str.insert(s.into(), id);
        id
    }
    /// A NUL-terminated kernel name (comm, device), interned by its raw bytes.
    #[inline]
    pub(super) fn intern_bytes(&mut self, b: &[u8; COMM_LEN]) -> Sym {
        let key = (
            u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(b[8..].try_into().unwrap_or_default()),
        );
        if let Some((k, id)) = self.last {
            if k == key {
                return id;
            }
        }
        let id = match self.by_bytes.get(&key) {
            Some(id) => *id,
            None => {
                let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                let id = self.intern(&String::from_utf8_lossy(&b[..end]));
                self.by_bytes.insert(key, id);
                id
            }
        };
        self.last = Some((key, id));
        id
    }
}

/// A column being built: values, and whether each row has one. Plain vectors: appending is
/// two stores, and the Arrow array (values buffer + validity bitmap) is made once per batch.
struct Col<T> {
    vals: Vec<T>,
    valid: Vec<bool>,
}

impl<T> Default for Col<T> {
    fn default() -> Self {
        Col {
            vals: Vec::new(),
            valid: Vec::new(),
        }
    }
}

impl<T: ArrowNativeType + Default> Col<T> {
    #[inline]
    fn push(&mut self, v: T) {
        self.vals.push(v);
        self.valid.push(true);
    }
    #[inline]
    fn push_opt(&mut self, v: Option<T>) {
        self.vals.push(v.unwrap_or_default());
        self.valid.push(v.is_some());
    }
    fn take_nulls(&mut self) -> Option<NullBuffer> {
        let valid = std::mem::take(&mut self.valid);
        if valid.iter().all(|v| *v) {
            None
        } else {
            Some(NullBuffer::from(valid))
        }
    }
    fn finish<A: ArrowPrimitiveType<Native = T>>(&mut self) -> ArrayRef {
        let nulls = self.take_nulls();
        let vals = std::mem::take(&mut self.vals);
        Arc::new(PrimitiveArray::<A>::new(ScalarBuffer::from(vals), nulls))
    }
    /// A string column from ids (`T` = `Sym`) into `strs`.
    fn finish_strings<S: AsRef<str>>(&mut self, strs: &[S]) -> ArrayRef
    where
        T: Into<u32>,
    {
        let nulls = self.take_nulls();
        let keys = std::mem::take(&mut self.vals);
        let valid = |i: usize| nulls.as_ref().is_none_or(|n| n.is_valid(i));
        let bytes: usize = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| valid(*i))
            .map(|(_, k)| strs[(*k).into() as usize].as_ref().len())
            .sum();
        let mut b = StringBuilder::with_capacity(keys.len(), bytes);
        for (i, k) in keys.iter().enumerate() {
            if valid(i) {
                b.append_value(strs[(*k).into() as usize].as_ref());
            } else {
                b.append_null();
            }
        }
        Arc::new(b.finish())
    }
}
