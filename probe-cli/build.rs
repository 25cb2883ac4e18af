//! Builds the eBPF object (`probe-ebpf`, bin `napiscope-probes`) for bpfel-unknown-none with
//! the nightly toolchain and bpf-linker, and drops it in OUT_DIR for `include_bytes!`.
//! `cargo xtask setup` installs what this needs; the error below says so when it is missing.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../probe-common/src");
    git_commit();
    if which("bpf-linker").is_none() {
        anyhow::bail!(
            "bpf-linker not found in PATH: run `cargo xtask setup` (installs nightly rust-src, \
             LLVM 22 and bpf-linker), then build again"
        );
    }
    let package = aya_build::Package {
        name: "probe-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../probe-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// `NAPISCOPE_GIT` for `napiscope --version`: the commit this was built from ("+dirty" with
/// uncommitted changes at build time), or "not from git" (a source tarball, say). Rebuilt
/// when HEAD moves.
fn git_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("git {c}{}", if dirty { "+dirty" } else { "" })
        }
        None => "not from git".to_string(),
    };
    println!("cargo:rustc-env=NAPISCOPE_GIT={commit}");
    for p in [["--git-path", "HEAD"], ["--git-path", "refs/heads"]] {
        if let Some(path) = git(&["rev-parse", p[0], p[1]]) {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Some(path) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
