//! What a guest boots: the Debian kernel image, fetched with apt without touching the host's
//! apt configuration, and an initramfs carrying napiscope whose /init (`init.sh`) runs the
//! tests and prints their results between `@@` tags on the serial console.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::KernelSpec;
use crate::util::step;

const TRIXIE_LIST: &str = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main\n";

pub fn sh(cmd: &str, cwd: &Path) -> Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .output()
        .with_context(|| format!("running `{cmd}`"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// apt options that keep a suite's lists and cache under `dir`, leaving the system's apt
/// configuration untouched (bookworm uses the system's own lists).
fn apt_opts(suite: &str, dir: &Path) -> Result<String> {
    if suite == "bookworm" {
        return Ok(String::new());
    }
    let d = dir.join(suite);
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(d.join(sub))?;
    }
    let list = d.join("sources.list");
    std::fs::write(&list, TRIXIE_LIST)?;
    let opts = format!(
        "-o Dir::Etc::SourceList={} -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists={} -o Dir::Cache={}",
        list.display(),
        d.join("lists").display(),
        d.join("cache").display()
    );
    if !d.join("lists").join("lock").exists() || std::fs::read_dir(d.join("lists"))?.count() < 3 {
        sh(&format!("apt-get {opts} update -qq"), dir)?;
    }
    Ok(opts)
}

/// Download (once) and unpack the kernel image; returns the vmlinuz path.
pub fn fetch_kernel(k: &KernelSpec, dir: &Path) -> Result<PathBuf> {
    let opts = apt_opts(k.suite, dir)?;
    let deps = sh(&format!("apt-cache {opts} depends {}", k.meta), dir)?;
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("no kernel image behind {} in {}", k.meta, k.suite))?
        .trim()
        .to_string();
    let kdir = dir.join("kernels").join(&pkg);
    if let Some(v) = find_vmlinuz(&kdir) {
        return Ok(v);
    }
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    if !std::fs::read_dir(&debs)?.flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{pkg}_"))
    }) {
        step(&format!("downloading {pkg} ({})", k.suite));
        sh(&format!("apt-get {opts} download {pkg} 2>&1"), &debs)?;
    }
    std::fs::create_dir_all(&kdir)?;
    sh(
        &format!(
            "dpkg-deb --fsys-tarfile {pkg}_*.deb | tar -x -C {} --wildcards './boot/vmlinuz-*'",
            kdir.display()
        ),
        &debs,
    )?;
    find_vmlinuz(&kdir).context("vmlinuz missing from the package")
}

fn find_vmlinuz(kdir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(kdir.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// The guest's /init: every test, its output between `@@` tags (read by `boot`), then poweroff.
const INIT: &str = include_str!("init.sh");

fn ldd_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = sh(&format!("ldd {}", bin.display()), Path::new("/"))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = l
                .split("=>")
                .nth(1)
                .unwrap_or(l)
                .split_whitespace()
                .next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect())
}

/// busybox + napiscope + ip (with their shared libraries at the same paths) + /init.
pub fn build_initramfs(napiscope: &Path, out: &Path) -> Result<()> {
    let root = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&root);
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).context("busybox-static missing")?;
    let ip = ["/usr/bin/ip", "/bin/ip", "/sbin/ip", "/usr/sbin/ip"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("ip (iproute2) not found")?;
    let mut files = vec![(ip.clone(), PathBuf::from("usr/sbin/ip"))];
    files.push((
        napiscope.to_path_buf(),
        PathBuf::from("usr/local/bin/napiscope"),
    ));
    for bin in [&ip, &napiscope.to_path_buf()] {
        for lib in ldd_libs(bin)? {
            let rel = lib.strip_prefix("/").unwrap().to_path_buf();
            files.push((lib, rel));
        }
    }
    for (src, rel) in files {
        let dst = root.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
    }
    let init = root.join("init");
    std::fs::write(&init, INIT)?;
    sh(&format!("chmod +x {}", init.display()), Path::new("/"))?;
    sh(
        &format!(
            "find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > {}",
            std::fs::canonicalize(out.parent().unwrap())?
                .join(out.file_name().unwrap())
                .display()
        ),
        &root,
    )?;
    Ok(())
}
