//! `cargo xtask`: set up the eBPF toolchain, run napiscope, run the tests.
//!
//! Every command does its own set-up first, so both README commands work from a fresh clone
//! on a fresh Debian 12 machine (as root, with network access to the package registries).
//!
//! This file is the command line and its dispatch; each task lives in its own module:
//! `setup`, `run`, `test`, `bench`, `vm`, and `util` for what they share.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench;
mod run;
mod setup;
mod test;
mod util;
mod vm;

use setup::{build_napiscope_full, build_tracer, setup};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "napiscope's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the eBPF programs needs (idempotent): Debian packages, nightly
    /// rust-src, bpf-linker; mount tracefs if it is missing
    Setup,
    /// Set up, build, show `napiscope status`, then `napiscope top` while a veth+RPS scenario
    /// runs (q quits; three tables when not on a terminal), then record 5 s of it, print the
    /// recording's summary and check it against the model
    Run {
        /// Where to write the recording
        #[arg(short, long, default_value = "target/napiscope-demo.parquet")]
        output: PathBuf,
        /// Recording length in seconds
        #[arg(short, long, default_value_t = 5)]
        duration: u64,
    },
    /// Boot Debian kernels under QEMU and run `napiscope status` and `verify` inside; writes
    /// target/vm-test/matrix.{json,md}
    VmTest {
        /// Kernels to boot: 6.1, 6.1-rt, 6.12, 6.12-threads, 6.12-rt, 6.18, 7.3, 7.3-rt
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Every kernel, plus the host
        #[arg(long)]
        all: bool,
        /// Boot nothing: write matrix.md and readme-table.md again from a matrix.json
        #[arg(long, value_name = "MATRIX.json", conflicts_with_all = ["kernels", "all"])]
        render: Option<PathBuf>,
        /// Validate `napiscope whatif`: record loopback-rps in 6.12 (mode B) and
        /// 6.12-threads (mode C), predict each from the other; writes target/vm-test/whatif.md
        #[arg(long, conflicts_with_all = ["kernels", "all", "render"])]
        whatif: bool,
    },
    /// Measure napiscope's throughput and cost on this machine; writes BENCHMARKS.md
    Bench {
        /// Largest trace for the checker benchmark: 1M, 10M or 50M events
        #[arg(long, default_value = "50M", value_parser = ["1M", "10M", "50M"])]
        check_max: String,
        /// Run one part and keep the other sections of BENCHMARKS.md
        #[arg(long, value_parser = ["check", "record", "overhead", "completeness"])]
        only: Option<String>,
        /// Only `napiscope report` on 1M/10M/50M events (BENCH_REPORT_MAX=10M stops early)
        #[arg(long)]
        report: bool,
    },
    /// Set up, then run formatting and lint checks and the whole test suite (unit, property
    /// and real-kernel integration tests; the latter need root)
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`
        #[arg(long)]
        no_lint: bool,
        /// Skip booting the mode C kernel (6.12 + thread_backlog_napi) under QEMU
        #[arg(long)]
        no_vm: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Run { output, duration } => {
            setup()?;
            run::run_demo(&output, duration)
        }
        Cmd::VmTest {
            kernels,
            all,
            render,
            whatif,
        } => {
            if let Some(json) = render {
                return vm::render(&json);
            }
            setup()?;
            let bin = build_tracer()?;
            if whatif {
                return vm::vm_whatif(&bin);
            }
            vm::vm_test(&kernels, all, all, &bin)
        }
        Cmd::Bench {
            check_max,
            only,
            report,
        } => {
            setup()?;
            if report {
                return bench::report::run(&build_napiscope_full()?);
            }
            bench::bench(&check_max, only.as_deref())
        }
        Cmd::Test { no_lint, no_vm } => {
            setup()?;
            test::test(no_lint, no_vm)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
