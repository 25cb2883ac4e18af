//! Builds the eBPF object (`probe-ebpf`, bin `napiscope-probes`) for bpfel-unknown-none with
//! the nightly toolchain and bpf-linker, and drops it in OUT_DIR for `include_bytes!`.
//! `cargo xtask setup` installs what this needs; the error below says so when it is missing.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../probe-common/src");
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
