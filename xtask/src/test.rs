//! `cargo xtask test`: formatting and lints, the whole test suite, then the QEMU kernels that
//! this host cannot show (modes A and C).

use std::process::Command;

use anyhow::{bail, Result};

use crate::{
    setup::{build_tracer, ensure_spark},
    util::{is_root, run, step},
    vm,
};

pub fn test(no_lint: bool, no_vm: bool) -> Result<()> {
    ensure_spark()?;
    cargo_tests(no_lint)?;
    if no_vm {
        return Ok(());
    }
    if !is_root() {
        bail!("the QEMU kernel test needs root (apt-get); use --no-vm to skip it knowingly");
    }
    // Mode C exists only on kernels this host does not run, and so does mode A (6.1,
    // before the patch; also the oldest kernel napiscope supports, where mremap and
    // the tracepoints differ): prove both on every run.
    step("booting Debian 6.12 with thread_backlog_napi (mode C) and 6.1 (mode A) under QEMU");
    let bin = build_tracer()?;
    vm::vm_test(
        &["6.12-threads".to_string(), "6.1".to_string()],
        false,
        false,
        &bin,
    )
}

fn cargo_tests(no_lint: bool) -> Result<()> {
    if !no_lint {
        step("cargo fmt --check");
        run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
        step("cargo clippy -D warnings");
        run(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    }
    if !is_root() {
        eprintln!(
            "xtask: not root — the real-kernel integration tests will fail; run as root, or set \
             NAPISCOPE_SKIP_KERNEL_TESTS=1 to skip them knowingly"
        );
    }
    step("cargo test (unit, property and real-kernel integration tests)");
    run(Command::new("cargo").args(["test", "--", "--test-threads=2"]))
}
