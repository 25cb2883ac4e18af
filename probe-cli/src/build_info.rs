//! What this binary is: its version and the commit it was built from (build.rs sets
//! `NAPISCOPE_GIT`), for `--version`, `status` and every recording's metadata.

/// `0.1.0 (git 0123456789ab)`, `0.1.0 (git 0123456789ab+dirty)` or `0.1.0 (not from git)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NAPISCOPE_GIT"), ")");
