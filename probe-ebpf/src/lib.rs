//! Nothing to see on the host: this crate's real product is the `napiscope-probes` BPF object
//! (src/main.rs), built by `probe-cli/build.rs`. The empty library lets `probe-cli` declare a
//! build-dependency so cargo rebuilds the probes when they change.
#![no_std]
