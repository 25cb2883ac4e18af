//! The trace file: Parquet, one row per event, key/value metadata in the footer. Schema
//! documented in docs/schema.md and declared once in `schema` (`SCHEMA_VERSION` changes
//! when a column changes).
//!
//! The ground floor of the crate: `model`, `check`, `paths` and `report` stand on it, and
//! nothing here imports them (`layers_point_down` checks). By job:
//! - `schema`: the column table and the ring-record table, `schema()`, `Named`.
//! - `event`: `Event`, the typed row; `row`: the writer's `Row` and its column builders.
//! - `writer`, `encoder`, `failure`, `output`: `TraceWriter`, the Parquet encoder and its
//!   checkpoints, write errors and what they keep, the files on disk.
//! - `reader`, `arrow_cols`, `direct` (with `codec`): reading rows back as `Event`s, or
//!   straight into the checker's columns.
//! - `cols`, `sparse`, `seqscan`, `fastmap`: the column store the readers fill.

use std::collections::BTreeMap;

mod arrow_cols;
mod chunks;
mod codec;
pub mod cols;
mod direct;
mod encoder;
pub mod event;
mod failure;
pub mod fastmap;
mod groups;
pub mod output;
mod reader;
mod row;
pub mod schema;
pub mod seqscan;
pub mod sparse;
mod writer;

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;

pub use cols::Sym;
pub use failure::{Kept, WriteFailed, WriterError};
pub use reader::{read_columns, read_trace, Trace};
pub use row::Row;
pub use schema::{may_be_absent, schema, META_PREFIX, SCHEMA_VERSION};
pub use writer::{write_trace, TraceWriter, WriterThread, CHECKPOINT_EVERY};

/// Rows per batch when reading.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 4 * BATCH_ROWS;
/// Rows buffered before they go to the Parquet writer; small enough that the progress
/// line's size estimate moves.
const WRITE_ROWS: usize = 8_192;
/// With a writer thread: rows per batch sent to it.
const THREAD_BATCH_ROWS: usize = 16_384;
/// Memory a queued row takes until the writer thread encodes it (its `Columns` entry: 108
/// bytes of values, 14 validity flags), for sizing the queue from a byte budget.
pub const QUEUED_ROW_BYTES: usize = 122;

/// Recording metadata (kernel, mode, clock, losses ...), stored as Parquet key/value pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceMeta(pub BTreeMap<String, String>);

impl TraceMeta {
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// Lost events per CPU, as recorded (`lost_per_cpu`, a JSON array).
    pub fn lost_per_cpu(&self) -> Vec<u64> {
        self.get("lost_per_cpu")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
    /// What the kernel told of its NAPI instances while recording (`napi_instances`).
    pub fn napi_instances(&self) -> Vec<KernelNapi> {
        self.get(NAPI_INSTANCES_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

/// The metadata key of the `net.core` sysctls as recorded: a JSON object, name → value.
pub const NET_CORE_KEY: &str = "net_core";

/// The metadata key of `KernelNapi`s, a JSON array.
pub const NAPI_INSTANCES_KEY: &str = "napi_instances";

/// One NAPI instance as the kernel describes it (netdev genl napi-get; the `napi/<dev>-<id>`
/// threads in /proc), by its napi id: what a poll's row joins with.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelNapi {
    pub napi_id: u32,
    #[serde(default)]
    pub dev: Option<String>,
    #[serde(default)]
    pub irq: Option<u32>,
    /// The pid of its `napi/<dev>-<id>` thread (threaded NAPI).
    #[serde(default)]
    pub thread_pid: Option<u32>,
}
