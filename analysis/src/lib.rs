//! napiscope's analysis library: the trace format, and (growing) the reference model of the
//! backlog-NAPI scheduling logic and the conformance checker. Pure: no kernel access here.
pub mod check;
pub mod kcounters;
pub mod mode;
pub mod model;
pub mod paths;
#[cfg(feature = "report")]
pub mod report;
pub mod trace;
pub mod whatif;

/// `Event` lives with the file format it is a row of; `crate::event` is its old address.
pub use trace::event;

pub use event::{Ctx, Event, EventKind};
pub use trace::{read_trace, write_trace, Trace, TraceMeta, TraceWriter};
