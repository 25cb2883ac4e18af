//! In-kernel counting, shared by the commands that show it live (`top`, `serve`): the probes
//! loaded with counters on and the ring off (`source`), snapshots of the counters and the
//! rates between two (`rates`, per NAPI instance `napi`), the model's counter rules held against them (`checks`), and
//! the device / task filter applied in the kernel (`filter`).

pub mod checks;
pub mod filter;
pub mod napi;
pub mod rates;
pub mod source;
