//! `cargo xtask vm-test`: boot Debian kernels under QEMU with an initramfs that carries
//! napiscope, run `napiscope status --json` and `napiscope verify --json` inside, and collect
//! a kernel × mode × probes × verdict matrix (docs/kernel-matrix.md).
//!
//! `builder` fetches the kernels and builds the initramfs, `boot` boots one and reads its
//! serial log, `matrix` turns what the guests said into rows and matrix.md.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::util::{apt_install, have_command, run, step, utc_now};

mod boot;
mod builder;
mod markdown;
mod matrix;
mod modules;
mod nic;
mod whatif;

pub struct KernelSpec {
    pub name: &'static str,
    /// Debian suite the package comes from.
    pub suite: &'static str,
    /// A meta package whose dependency names the current ABI (linux-image-amd64), or an
    /// image package by its exact name (linux-image-7.3.4+deb13-amd64) to pin a version.
    pub package: &'static str,
    pub cmdline: &'static str,
    /// The mode this kernel should be in (from its patch and configuration). The guest does
    /// not get it: it verifies in the mode its own evidence shows, and the row compares.
    pub expect: &'static str,
}

pub const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "6.1",
        suite: "bookworm",
        package: "linux-image-amd64",
        cmdline: "",
        expect: "A",
    },
    KernelSpec {
        name: "6.1-rt",
        suite: "bookworm",
        package: "linux-image-rt-amd64",
        cmdline: "",
        expect: "A",
    },
    KernelSpec {
        name: "6.12",
        suite: "trixie",
        package: "linux-image-amd64",
        cmdline: "",
        expect: "B",
    },
    KernelSpec {
        name: "6.12-threads",
        suite: "trixie",
        package: "linux-image-amd64",
        cmdline: "thread_backlog_napi",
        expect: "C",
    },
    KernelSpec {
        name: "6.12-rt",
        suite: "trixie",
        package: "linux-image-rt-amd64",
        cmdline: "",
        expect: "C",
    },
    // trixie-backports, pinned: the patch is in, threads off unless PREEMPT_RT.
    KernelSpec {
        name: "6.18",
        suite: "trixie-backports",
        package: "linux-image-6.18.15+deb13-amd64",
        cmdline: "",
        expect: "B",
    },
    // From 6.19 linux-image-<abi> is a metapackage over linux-binary/-modules/-base.
    KernelSpec {
        name: "7.3",
        suite: "trixie-backports",
        package: "linux-image-7.3.4+deb13-amd64",
        cmdline: "",
        expect: "B",
    },
    KernelSpec {
        name: "7.3-rt",
        suite: "trixie-backports",
        package: "linux-image-7.3.4+deb13-rt-amd64",
        cmdline: "",
        expect: "C",
    },
];

/// `--whatif`: record loopback-rps in 6.12 and 6.12-threads, predict each mode from the
/// other's recording, and compare (target/vm-test/whatif.md).
pub fn vm_whatif(napiscope: &Path) -> Result<()> {
    let (dir, initrd) = prepare(napiscope)?;
    whatif::run(&dir, &initrd)
}

/// QEMU and busybox installed, target/vm-test made, the shared initramfs built: the
/// directory and the initramfs.
fn prepare(napiscope: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let napiscope = &std::fs::canonicalize(napiscope)?;
    let missing: Vec<&str> = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("busybox", "busybox-static"),
    ]
    .into_iter()
    .filter(|(b, _)| !have_command(b))
    .map(|(_, p)| p)
    .collect();
    if !missing.is_empty() {
        step(&format!("installing {}", missing.join(" ")));
        run(&mut apt_install(&missing))?;
    }
    std::fs::create_dir_all("target/vm-test")?;
    let dir = std::fs::canonicalize("target/vm-test")?;
    let initrd = dir.join("initramfs.cpio.gz");
    step("building the initramfs (busybox, ip, napiscope)");
    builder::build_initramfs(napiscope, &initrd)?;
    Ok((dir, initrd))
}

pub fn vm_test(selected: &[String], all: bool, host: bool, napiscope: &Path) -> Result<()> {
    let kernels = select(selected, all);
    if kernels.is_empty() && !host {
        let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
        bail!("unknown kernel(s) {selected:?}; choose from {names:?} or --all");
    }
    let (dir, initrd) = prepare(napiscope)?;
    let napiscope = &std::fs::canonicalize(napiscope)?;
    let mut rows = Vec::new();
    if host {
        rows.push(host_row(napiscope)?);
    }
    for k in kernels {
        // One kernel that cannot be fetched or booted (a full disk, a package gone from the
        // archive) is a failing row; the other kernels' rows are still written.
        rows.push(kernel_row(k, &initrd, &dir).unwrap_or_else(|e| {
            eprintln!("xtask: {}: {e:#}", k.name);
            error_row(k, &format!("{e:#}"))
        }));
    }
    let date = utc_now()?;
    for r in &mut rows {
        r["date"] = json!(date);
        r["command"] = json!(command(selected, all));
    }
    std::fs::write(
        dir.join("matrix.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    let md = matrix::markdown(&rows, &date, &command(selected, all));
    std::fs::write(dir.join("matrix.md"), &md)?;
    std::fs::write(dir.join("readme-table.md"), matrix::readme_table(&rows))?;
    print!("{md}");
    if rows.iter().any(|r| r["passed"] != true) {
        bail!("some kernels did not pass (see target/vm-test/matrix.md and the serial logs)");
    }
    Ok(())
}

/// matrix.md and readme-table.md again, beside `json` (a matrix.json), from its rows.
pub fn render(json: &Path) -> Result<()> {
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(json)?)?;
    let dir = json.parent().unwrap_or(Path::new("."));
    let date = rows
        .iter()
        .find_map(|r| r["date"].as_str())
        .map_or_else(utc_now, |d| Ok(d.to_string()))?;
    let cmd = rows
        .iter()
        .find_map(|r| r["command"].as_str())
        .unwrap_or("cargo xtask vm-test")
        .to_string();
    std::fs::write(dir.join("matrix.md"), matrix::markdown(&rows, &date, &cmd))?;
    std::fs::write(dir.join("readme-table.md"), matrix::readme_table(&rows))?;
    step(&format!(
        "wrote matrix.md and readme-table.md in {}",
        dir.display()
    ));
    Ok(())
}

/// The kernels `--kernel NAME…` names, in the table's order (all of them with `--all`); names
/// that are not in the table are passed over.
fn select(selected: &[String], all: bool) -> Vec<&'static KernelSpec> {
    KERNELS
        .iter()
        .filter(|k| all || selected.iter().any(|s| s == k.name))
        .collect()
}

/// The command line matrix.md says it came from.
fn command(selected: &[String], all: bool) -> String {
    if all {
        "cargo xtask vm-test --all".to_string()
    } else {
        format!(
            "cargo xtask vm-test --kernel {}",
            selected.join(" --kernel ")
        )
    }
}

/// The host kernel's row: `status` and `verify` run here, expecting mode B.
fn host_row(napiscope: &Path) -> Result<Value> {
    step("host kernel (waiting for the machine's kernel-test lock)");
    // verify's recordings see the whole machine: take the lock napiscope's real-kernel tests
    // hold, so another run's traffic does not land in these traces (released on return).
    let _lock = machine_lock()?;
    let t = Instant::now();
    let st: Value = serde_json::from_slice(
        &Command::new(napiscope)
            .args(["status", "--json"])
            .output()?
            .stdout,
    )?;
    let out = Command::new(napiscope)
        .args(["verify", "--json", "--seconds", "1", "--expect-mode", "B"])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(matrix::row(
        "host",
        "",
        "B",
        &st,
        &v,
        out.status.code(),
        t.elapsed().as_secs_f64(),
        &Value::Null,
        &Value::Null,
    ))
}

/// The flock on /tmp/napiscope-kernel-tests.lock that probe-cli's kernel tests share.
fn machine_lock() -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/napiscope-kernel-tests.lock")?;
    // SAFETY: flock on a descriptor this function owns; released when the File closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("flock /tmp/napiscope-kernel-tests.lock failed");
    }
    Ok(f)
}

// long: fetch, boot, retry on a guest panic and the row are one sequence whose early
// returns each become a failing row; split, every step would re-thread the same five values.
/// Fetch `k`, boot it (once more if the guest kernel panicked) and make its row.
fn kernel_row(k: &KernelSpec, initrd: &Path, dir: &Path) -> Result<Value> {
    let fetched = builder::fetch_kernel(k, dir)?;
    let vmlinuz = &fetched.vmlinuz;
    let kinitrd = dir.join(format!("initramfs-{}.cpio.gz", k.name));
    builder::kernel_initrd(initrd, &fetched, &kinitrd)?;
    let initrd = &kinitrd;
    step(&format!(
        "booting {} ({}, {} layout: {}) {}",
        k.name,
        vmlinuz.display(),
        if fetched.packages.split() {
            "split"
        } else {
            "one-package"
        },
        fetched.packages.parts.join(" "),
        k.cmdline
    ));
    let (mut res, mut secs) = boot::boot(k, vmlinuz, initrd, dir)?;
    let mut guest_panics = Vec::new();
    if let Some(p) = res["panic"].as_str() {
        step(&format!(
            "{}: the guest kernel panicked ({p}); booting once more",
            k.name
        ));
        let _ = std::fs::rename(
            dir.join(format!("{}.log", k.name)),
            dir.join(format!("{}.panic.log", k.name)),
        );
        guest_panics.push(p.to_string());
        (res, secs) = boot::boot(k, vmlinuz, initrd, dir)?;
    }
    if res["status"].is_null() {
        eprintln!(
            "xtask: {}: no status from the guest; serial log: {}",
            k.name, res["log"]
        );
    }
    let mut r = matrix::row(
        k.name,
        k.cmdline,
        k.expect,
        &res["status"],
        &res["verify"],
        res["verify_rc"].as_i64().map(|v| v as i32),
        secs,
        &res["flood"],
        &res["top"],
    );
    // CPU 1 went offline and came back during traffic; the kernel lived, the recording
    // is valid, and the checker did not call §8.2's unspecified window a divergence.
    let hp = &res["hotplug"];
    r["hotplug"] = hp.clone();
    let mut why: Vec<Value> = r["failed_because"].as_array().cloned().unwrap_or_default();
    if !hotplug_ok(hp) {
        why.push(json!(format!(
            "hotplug: record exit {}, check exit {} {}{}",
            hp["record_rc"],
            hp["check_rc"],
            hp["verdict"].as_str().unwrap_or("?"),
            hp["scenario"]["error"]
                .as_str()
                .map(|e| format!(", scenario: {e}"))
                .unwrap_or_default()
        )));
    }
    // The virtio-net pair: eth1's queues polled at their interrupts' exit, per NAPI row.
    r["nic"] = res["nic"].clone();
    if nic::nic_ok(&res["nic"]) == Some(false) {
        why.push(json!(format!(
            "nic: eth1's receive queue was not polled at the exit of eth1's own input interrupt (top exit {}, {})",
            res["nic"]["rc"],
            res["nic"]["devices"]
                .as_str()
                .map_or("see the serial log".to_string(), |d| format!(
                    "interfaces: {d}"
                ))
        )));
    }
    // A second panic fails the row: one retry only.
    if let Some(p) = res["panic"].as_str() {
        guest_panics.push(p.to_string());
        why.push(json!("the guest kernel panicked twice"));
    }
    r["passed"] = json!(why.is_empty());
    r["failed_because"] = json!(why);
    r["guest_panics"] = json!(guest_panics);
    r["packages"] = json!(fetched
        .versions
        .iter()
        .map(|(p, v)| format!("{p} {v}"))
        .collect::<Vec<_>>());
    r["package_layout"] = json!(if fetched.packages.split() {
        "split (linux-image metapackage; vmlinuz in linux-binary)"
    } else {
        "one package (linux-image)"
    });
    let l = &fetched.located;
    r["kernel_files"] = json!({
        "abi": l.abi,
        "vmlinuz": format!("{} {}", l.vmlinuz.0, l.vmlinuz.1),
        "config": l.config.as_ref().map(|(p, f)| format!("{p} {f}")),
        "modules": l.modules.iter().map(|(m, p, f)| format!("{m}: {p} {f}")).collect::<Vec<_>>(),
    });
    r["guest_modules"] = res["modules"].clone();
    step(&format!(
        "{}: mode {} (expected {}), {} in {:.0}s",
        k.name,
        r["mode"],
        k.expect,
        if r["passed"] == true {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", r["failed_because"])
        },
        secs
    ));
    Ok(r)
}

/// The row of a kernel that did not get as far as a guest.
fn error_row(k: &KernelSpec, error: &str) -> Value {
    let mut r = matrix::row(
        k.name,
        k.cmdline,
        k.expect,
        &Value::Null,
        &Value::Null,
        None,
        0.0,
        &Value::Null,
        &Value::Null,
    );
    r["passed"] = json!(false);
    r["failed_because"] = json!([format!("not booted: {error}")]);
    r
}

/// Whether the hotplug run passed: the scenario took CPU 1 offline and back without an
/// error, and `record` and `check` both exited 0 — or 3, "incomplete": the kernel skipped
/// some of napiscope's programs (its recursion guard; `record` has exited 3 for that since
/// the kernel-counter check) and nothing diverged, which is verify's rule for exit 3 too.
/// The matrix's hotplug table names the skipped programs, so such a pass stays visible.
fn hotplug_ok(hp: &Value) -> bool {
    let rc_ok = |k: &str| hp[k] == 0 || hp[k] == 3;
    hp["scenario"]["error"].is_null()
        && hp["scenario"]["online_at"].is_number()
        && rc_ok("record_rc")
        && rc_ok("check_rc")
        && hp["verdict"] != "FAIL"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ks: &[&KernelSpec]) -> Vec<&'static str> {
        ks.iter().map(|k| k.name).collect()
    }

    #[test]
    fn kernels_are_selected_by_name_in_table_order() {
        let sel = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&select(&sel(&["6.12-threads", "6.1"]), false)),
            ["6.1", "6.12-threads"]
        );
        assert_eq!(names(&select(&sel(&["6.1", "7.0"]), false)), ["6.1"]);
        assert!(select(&sel(&["7.0"]), false).is_empty());
        assert_eq!(select(&[], true).len(), KERNELS.len());
        assert_eq!(
            command(&sel(&["6.1", "6.12-rt"]), false),
            "cargo xtask vm-test --kernel 6.1 --kernel 6.12-rt"
        );
        assert_eq!(command(&[], true), "cargo xtask vm-test --all");
    }

    #[test]
    fn each_kernel_expects_the_mode_of_its_patch() {
        let expect = |n: &str| KERNELS.iter().find(|k| k.name == n).map(|k| k.expect);
        assert_eq!(expect("6.1"), Some("A"));
        assert_eq!(expect("6.12"), Some("B"));
        assert_eq!(expect("6.12-threads"), Some("C"));
        assert_eq!(expect("6.18"), Some("B"));
        assert_eq!(expect("7.3"), Some("B"));
        assert_eq!(
            expect("7.3-rt"),
            Some("C"),
            "PREEMPT_RT turns the threads on"
        );
        let threads = KERNELS.iter().find(|k| k.name == "6.12-threads").unwrap();
        assert_eq!(threads.cmdline, "thread_backlog_napi");
        assert_eq!(KERNELS.len(), 8);
        // Backports move on: their kernels are pinned by exact package name.
        for k in KERNELS.iter().filter(|k| k.suite == "trixie-backports") {
            let v = k.name.trim_end_matches("-rt");
            assert!(
                k.package.starts_with(&format!("linux-image-{v}."))
                    && k.package.ends_with(if k.name.ends_with("-rt") {
                        "-rt-amd64"
                    } else {
                        "+deb13-amd64"
                    }),
                "{} → {}",
                k.name,
                k.package
            );
        }
    }

    #[test]
    fn a_kernel_that_did_not_boot_is_a_failing_row_that_says_why() {
        let k = KERNELS.iter().find(|k| k.name == "7.3-rt").unwrap();
        let r = error_row(k, "apt-cache: No space left on device");
        assert_eq!(r["kernel"], "7.3-rt");
        assert_eq!(r["passed"], false);
        assert_eq!(
            r["failed_because"],
            json!(["not booted: apt-cache: No space left on device"])
        );
    }

    #[test]
    fn hotplug_passes_only_when_cpu_1_came_back_and_both_commands_exited_0() {
        let ok = json!({"scenario": {"online_at": 2.0}, "record_rc": 0, "check_rc": 0});
        assert!(hotplug_ok(&ok));
        let mut failed = ok.clone();
        failed["scenario"]["error"] = json!("EBUSY");
        assert!(!hotplug_ok(&failed));
        let mut check_failed = ok.clone();
        check_failed["check_rc"] = json!(1);
        assert!(!hotplug_ok(&check_failed));
        let mut incomplete = ok.clone();
        incomplete["record_rc"] = json!(3);
        incomplete["check_rc"] = json!(3);
        incomplete["verdict"] = json!("PASS");
        assert!(hotplug_ok(&incomplete), "incomplete, nothing diverged");
        incomplete["verdict"] = json!("FAIL");
        assert!(!hotplug_ok(&incomplete), "incomplete and diverged");
        let mut crashed = ok.clone();
        crashed["record_rc"] = json!(2);
        assert!(!hotplug_ok(&crashed));
        assert!(!hotplug_ok(&Value::Null));
    }
}
