//! What a guest boots: the Debian kernel image, fetched with apt without touching the host's
//! apt configuration, and an initramfs carrying napiscope whose /init (`init.sh`) runs the
//! tests and prints their results between `@@` tags on the serial console.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::modules::{module_depends, GUEST_MODULES};
use super::KernelSpec;
use crate::util::step;

/// Debian's archive, for the suites that do not come from the system's own lists.
const ARCHIVE: &str =
    "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian";
const SECURITY: &str =
    "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security";

/// The sources.list of a private apt configuration for `suite` (trixie, trixie-backports).
fn sources_list(suite: &str) -> String {
    match suite.strip_suffix("-backports") {
        // Backports' kernels are fetched by exact package name: the suite alone is enough.
        Some(_) => format!("deb {ARCHIVE} {suite} main\n"),
        None => format!("deb {ARCHIVE} {suite} main\ndeb {SECURITY} {suite}-security main\n"),
    }
}

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
    std::fs::write(&list, sources_list(suite))?;
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

/// The packages `Depends:` names in `apt-cache depends` output, real ones only (`<virtual>`
/// ones are provided by the package itself).
fn depends(apt_cache_depends: &str) -> Vec<&str> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
        .map(str::trim)
        .filter(|p| !p.starts_with('<'))
        .collect()
}

/// The Debian packages that hold one kernel. Up to 6.18, `linux-image-<abi>` holds everything
/// (`/boot/vmlinuz-<abi>`, `/boot/config-<abi>`, the modules); from 6.19 it is a metapackage
/// that depends on `linux-binary-<abi>` (`/usr/lib/modules/<abi>/vmlinuz`),
/// `linux-modules-<abi>` (the .ko files) and `linux-base-<abi>` (config, System.map).
#[derive(Debug, PartialEq)]
pub struct Packages {
    pub image: String,
    /// The packages to download: the image itself, or the parts it depends on.
    pub parts: Vec<String>,
}

impl Packages {
    /// From `apt-cache depends IMAGE`.
    fn of(image: &str, image_depends: &str) -> Packages {
        let deps = depends(image_depends);
        let split: Vec<String> = ["linux-binary-", "linux-modules-", "linux-base-"]
            .iter()
            .filter_map(|prefix| deps.iter().find(|d| d.starts_with(prefix)))
            .map(|d| d.to_string())
            .collect();
        let parts = if split.iter().any(|p| p.starts_with("linux-binary-")) {
            split
        } else {
            vec![image.to_string()]
        };
        Packages {
            image: image.to_string(),
            parts,
        }
    }

    pub fn split(&self) -> bool {
        self.parts.iter().any(|p| p.starts_with("linux-binary-"))
    }
}

/// Where a kernel's files are, as (package, path in its data.tar) — whichever layout.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Located {
    pub abi: String,
    pub vmlinuz: (String, String),
    pub config: Option<(String, String)>,
    /// Module name → where its .ko(.xz/.zst) is; a module the packages lack is absent.
    pub modules: Vec<(String, String, String)>,
    /// The modules looked for (a cached result for another list is looked up again).
    pub wanted: Vec<String>,
}

/// The path column of `dpkg-deb -c` output (`./boot/vmlinuz-6.1.0-57-amd64`).
fn paths(dpkg_c: &str) -> Vec<&str> {
    dpkg_c
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect()
}

/// Find the kernel image, its config and the `wanted` modules in the file lists (`dpkg-deb
/// -c`) of a kernel's packages: `./boot/vmlinuz-<abi>` (up to 6.18) or
/// `./usr/lib/modules/<abi>/vmlinuz` (linux-binary-<abi>, from 6.19).
pub fn locate(lists: &[(String, String)], wanted: &[&str]) -> Option<Located> {
    let all: Vec<(&str, &str)> = lists
        .iter()
        .flat_map(|(pkg, list)| paths(list).into_iter().map(move |p| (pkg.as_str(), p)))
        .collect();
    let (vpkg, vpath, abi) = all.iter().find_map(|(pkg, p)| {
        let abi = p.strip_prefix("./boot/vmlinuz-").or_else(|| {
            p.strip_prefix("./usr/lib/modules/")?
                .strip_suffix("/vmlinuz")
                .filter(|a| !a.contains('/'))
        })?;
        Some((*pkg, *p, abi.to_string()))
    })?;
    let config = all
        .iter()
        .find(|(_, p)| {
            *p == format!("./boot/config-{abi}") || *p == format!("./usr/lib/modules/{abi}/config")
        })
        .map(|(pkg, p)| (pkg.to_string(), p.to_string()));
    let modules = wanted
        .iter()
        .filter_map(|m| {
            all.iter()
                .find(|(_, p)| {
                    // bookworm's packages keep /lib/modules, trixie's /usr/lib/modules.
                    (p.starts_with(&format!("./usr/lib/modules/{abi}/kernel/"))
                        || p.starts_with(&format!("./lib/modules/{abi}/kernel/")))
                        && module_name(p).is_some_and(|n| n == normalise(m))
                })
                .map(|(pkg, p)| (m.to_string(), pkg.to_string(), p.to_string()))
        })
        .collect();
    Some(Located {
        abi,
        vmlinuz: (vpkg.to_string(), vpath.to_string()),
        config,
        modules,
        wanted: wanted.iter().map(|m| m.to_string()).collect(),
    })
}

/// A module's name from its file (`.../veth.ko.xz` → `veth`), `-` as `_` as the kernel does.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|s| file.strip_suffix(s))?;
    Some(normalise(stem))
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// One kernel, ready to boot: its image, and the cpio that the guest gets on top of the
/// shared initramfs (`/boot/config-<abi>` and the modules in `/lib/napiscope-modules`).
pub struct Fetched {
    pub vmlinuz: PathBuf,
    pub extra_cpio: PathBuf,
    pub packages: Packages,
    /// package → version, as downloaded.
    pub versions: Vec<(String, String)>,
    pub located: Located,
}

fn downloaded(debs: &Path, pkg: &str) -> Option<PathBuf> {
    std::fs::read_dir(debs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
        })
}

/// `linux-image-6.12.118+deb13-amd64_6.12.118-1_amd64.deb` → `6.12.118-1`.
fn deb_version(deb: &Path) -> String {
    deb.file_name()
        .map(|n| {
            n.to_string_lossy()
                .split('_')
                .nth(1)
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_default()
        .replace("%3a", ":")
}

// long: the two package layouts (image up to 6.18, binary/modules/base from 6.19) are
// handled in one pass over the downloaded packages, read top to bottom.
/// Download (once) and unpack a kernel: image, config and the guest's modules, from the
/// packages that hold them in either layout.
pub fn fetch_kernel(k: &KernelSpec, dir: &Path) -> Result<Fetched> {
    let opts = apt_opts(k.suite, dir)?;
    let meta = sh(&format!("apt-cache {opts} depends {}", k.package), dir)?;
    // A meta package (linux-image-amd64) names the current ABI's image; an exact name is it.
    let image = depends(&meta)
        .into_iter()
        .find(|p| p.starts_with("linux-image-"))
        .unwrap_or(k.package)
        .to_string();
    let packages = Packages::of(
        &image,
        &sh(&format!("apt-cache {opts} depends {image}"), dir)?,
    );
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let mut files = Vec::new();
    for pkg in &packages.parts {
        let deb = match downloaded(&debs, pkg) {
            Some(d) => d,
            None => {
                step(&format!("downloading {pkg} ({})", k.suite));
                sh(&format!("apt-get {opts} download {pkg} 2>&1"), &debs)?;
                downloaded(&debs, pkg).with_context(|| format!("{pkg}: no .deb after download"))?
            }
        };
        files.push((pkg.clone(), deb));
    }
    let versions = files
        .iter()
        .map(|(p, d)| (p.clone(), deb_version(d)))
        .collect();
    let kdir = dir.join("kernels").join(&image);
    let cached = kdir.join("located.json");
    let located: Option<Located> = std::fs::read(&cached)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let located = match located.filter(|l: &Located| l.wanted == GUEST_MODULES) {
        Some(l) => l,
        None => {
            let _ = std::fs::remove_dir_all(&kdir);
            std::fs::create_dir_all(&kdir)?;
            let mut lists = Vec::new();
            for (pkg, deb) in &files {
                lists.push((
                    pkg.clone(),
                    sh(&format!("dpkg-deb -c '{}'", deb.display()), dir)?,
                ));
            }
            let l = locate(&lists, GUEST_MODULES).with_context(|| {
                format!(
                    "no vmlinuz in {} (neither ./boot/vmlinuz-ABI nor ./usr/lib/modules/ABI/vmlinuz)",
                    packages.parts.join(", ")
                )
            })?;
            for (pkg, deb) in &files {
                let mut want: Vec<&str> = vec![];
                if l.vmlinuz.0 == *pkg {
                    want.push(&l.vmlinuz.1);
                }
                if let Some((p, path)) = &l.config {
                    if p == pkg {
                        want.push(path);
                    }
                }
                for (_, p, path) in &l.modules {
                    if p == pkg {
                        want.push(path);
                    }
                }
                if !want.is_empty() {
                    sh(
                        &format!(
                            "dpkg-deb --fsys-tarfile '{}' | tar -x -C {} {}",
                            deb.display(),
                            kdir.display(),
                            want.join(" ")
                        ),
                        dir,
                    )?;
                }
            }
            std::fs::write(&cached, serde_json::to_vec_pretty(&l)?)?;
            l
        }
    };
    let extra_cpio = guest_extras(&kdir, &located)?;
    Ok(Fetched {
        vmlinuz: kdir.join(located.vmlinuz.1.trim_start_matches("./")),
        extra_cpio,
        packages,
        versions,
        located,
    })
}

/// The kernel's own part of the guest's initramfs: `/boot/config-<abi>` (status reads
/// CONFIG_PREEMPT_RT there) and the modules, uncompressed, in `/lib/napiscope-modules`
/// with `order` listing them dependencies first.
fn guest_extras(kdir: &Path, l: &Located) -> Result<PathBuf> {
    let root = kdir.join("extra");
    let _ = std::fs::remove_dir_all(&root);
    let mods = root.join("lib/napiscope-modules");
    std::fs::create_dir_all(&mods)?;
    std::fs::create_dir_all(root.join("boot"))?;
    if let Some((_, path)) = &l.config {
        std::fs::copy(
            kdir.join(path.trim_start_matches("./")),
            root.join(format!("boot/config-{}", l.abi)),
        )?;
    }
    let mut order = Vec::new();
    for (name, _, path) in &l.modules {
        let src = kdir.join(path.trim_start_matches("./"));
        let dst = mods.join(format!("{}.ko", normalise(name)));
        let decompress = if path.ends_with(".xz") {
            "xz -dc"
        } else if path.ends_with(".zst") {
            "zstd -dc"
        } else if path.ends_with(".gz") {
            "gzip -dc"
        } else {
            "cat"
        };
        sh(
            &format!("{decompress} '{}' > '{}'", src.display(), dst.display()),
            kdir,
        )?;
        // Each dependency loads first (depends= names modules only, never built-in code).
        let deps = module_depends(&std::fs::read(&dst)?);
        let packaged = |d: &String| l.modules.iter().any(|(m, _, _)| normalise(m) == *d);
        if let Some(d) = deps.iter().find(|d| packaged(d) && !order.contains(*d)) {
            bail!("module {name} depends on {d}: list it before {name} in GUEST_MODULES");
        }
        if let Some(d) = deps.iter().find(|d| !packaged(d)) {
            bail!("module {name} depends on {d}, which GUEST_MODULES lacks: add it before {name}");
        }
        order.push(normalise(name));
    }
    std::fs::write(mods.join("order"), order.join("\n") + "\n")?;
    let out = kdir.join("extra.cpio.gz");
    sh(
        &format!(
            "find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > '{}'",
            out.display()
        ),
        &root,
    )?;
    Ok(out)
}

/// The initramfs one kernel boots: the shared one with the kernel's extras appended (the
/// kernel unpacks concatenated cpio archives in order).
pub fn kernel_initrd(shared: &Path, f: &Fetched, out: &Path) -> Result<()> {
    let mut bytes = std::fs::read(shared)?;
    bytes.extend(std::fs::read(&f.extra_cpio)?);
    std::fs::write(out, bytes)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `dpkg-deb -c` lines as Debian writes them (permissions, owner, size, date, time, path).
    fn list(paths: &[&str]) -> String {
        paths
            .iter()
            .map(|p| format!("-rw-r--r-- root/root 1234 2026-11-15 22:30 {p}\n"))
            .collect()
    }

    #[test]
    fn up_to_6_18_the_image_package_holds_everything() {
        let image = "linux-image-6.18.15+deb13-amd64";
        let depends = "linux-image-6.18.15+deb13-amd64\n  PreDepends: linux-base\n \
            |Depends: <dracut>\n  Depends: <linux-initramfs-tool>\n  Depends: <kmod>\n  \
            Depends: <linux-base-6.18.15+deb13-amd64>\n  Suggests: <linux-doc-6.18>\n";
        let p = Packages::of(image, depends);
        assert_eq!(p.parts, [image]);
        assert!(!p.split());
        let files = list(&[
            "./",
            "./boot/System.map-6.18.15+deb13-amd64",
            "./boot/config-6.18.15+deb13-amd64",
            "./boot/vmlinuz-6.18.15+deb13-amd64",
            "./usr/lib/modules/6.18.15+deb13-amd64/modules.order",
            "./usr/lib/modules/6.18.15+deb13-amd64/kernel/drivers/net/veth.ko.xz",
            "./usr/lib/modules/6.18.15+deb13-amd64/kernel/drivers/net/vxlan/vxlan.ko.xz",
        ]);
        let l = locate(&[(image.into(), files)], &["veth", "nope"]).unwrap();
        assert_eq!(l.abi, "6.18.15+deb13-amd64");
        assert_eq!(
            l.vmlinuz,
            (image.into(), "./boot/vmlinuz-6.18.15+deb13-amd64".into())
        );
        assert_eq!(
            l.config,
            Some((image.into(), "./boot/config-6.18.15+deb13-amd64".into()))
        );
        assert_eq!(
            l.modules,
            [(
                "veth".to_string(),
                image.to_string(),
                "./usr/lib/modules/6.18.15+deb13-amd64/kernel/drivers/net/veth.ko.xz".to_string()
            )],
            "a module the packages lack is left out, not invented"
        );
    }

    #[test]
    fn bookworm_keeps_its_modules_in_lib() {
        let image = "linux-image-6.1.0-57-amd64";
        let files = list(&[
            "./boot/vmlinuz-6.1.0-57-amd64",
            "./boot/config-6.1.0-57-amd64",
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/net/veth.ko",
            "./lib/modules/6.1.0-58-amd64/kernel/drivers/net/veth.ko",
        ]);
        let l = locate(&[(image.into(), files)], GUEST_MODULES).unwrap();
        assert_eq!(l.abi, "6.1.0-57-amd64");
        assert_eq!(
            l.modules[0].2,
            "./lib/modules/6.1.0-57-amd64/kernel/drivers/net/veth.ko"
        );
    }

    #[test]
    fn from_6_19_the_image_is_a_metapackage_over_binary_modules_and_base() {
        let image = "linux-image-7.3.4+deb13-amd64";
        let depends = "linux-image-7.3.4+deb13-amd64\n  PreDepends: linux-base\n \
            |Depends: <dracut>\n  Depends: <linux-initramfs-tool>\n  \
            Depends: linux-base-7.3.4+deb13-amd64\n  Depends: linux-binary-7.3.4+deb13-amd64\n  \
            Depends: linux-modules-7.3.4+deb13-amd64\n  Suggests: linux-doc-7.3\n";
        let p = Packages::of(image, depends);
        assert!(p.split());
        assert_eq!(
            p.parts,
            [
                "linux-binary-7.3.4+deb13-amd64",
                "linux-modules-7.3.4+deb13-amd64",
                "linux-base-7.3.4+deb13-amd64"
            ]
        );
        let abi = "7.3.4+deb13-amd64";
        let lists = [
            (
                "linux-binary-7.3.4+deb13-amd64".to_string(),
                list(&[
                    "./usr/lib/modules/",
                    &format!("./usr/lib/modules/{abi}/"),
                    &format!("./usr/lib/modules/{abi}/vmlinuz"),
                    "./usr/share/doc/linux-binary-7.3.4+deb13-amd64",
                ]),
            ),
            (
                "linux-modules-7.3.4+deb13-amd64".to_string(),
                list(&[
                    &format!("./usr/lib/modules/{abi}/kernel/drivers/net/veth.ko.xz"),
                    &format!("./usr/lib/modules/{abi}/kernel/fs/configfs/configfs.ko.xz"),
                ]),
            ),
            (
                "linux-base-7.3.4+deb13-amd64".to_string(),
                list(&[
                    &format!("./usr/lib/modules/{abi}/System.map"),
                    &format!("./usr/lib/modules/{abi}/config"),
                ]),
            ),
        ];
        let l = locate(&lists, GUEST_MODULES).unwrap();
        assert_eq!(l.abi, abi);
        assert_eq!(l.vmlinuz.0, "linux-binary-7.3.4+deb13-amd64");
        assert_eq!(l.vmlinuz.1, format!("./usr/lib/modules/{abi}/vmlinuz"));
        assert_eq!(
            l.config.as_ref().map(|c| c.0.as_str()),
            Some("linux-base-7.3.4+deb13-amd64")
        );
        assert_eq!(l.modules.len(), 1);
        assert_eq!(l.modules[0].1, "linux-modules-7.3.4+deb13-amd64");
        // Neither layout's image: nothing to boot.
        assert!(locate(&lists[1..], GUEST_MODULES).is_none());
    }

    #[test]
    fn module_names_and_dependencies() {
        assert_eq!(
            module_name("./a/kernel/net/veth.ko.xz").as_deref(),
            Some("veth")
        );
        assert_eq!(
            module_name("./a/snd-acp-config.ko.zst").as_deref(),
            Some("snd_acp_config")
        );
        assert_eq!(module_name("./a/modules.order"), None);
        let ko = b"\x7fELF..license=GPL\0depends=\0retpoline=Y\0";
        assert!(module_depends(ko).is_empty());
        let ko = b"\x7fELF..depends=udp_tunnel,ip6_udp_tunnel\0name=vxlan\0";
        assert_eq!(module_depends(ko), ["udp_tunnel", "ip6_udp_tunnel"]);
    }

    #[test]
    fn backports_get_their_own_suite_only() {
        assert_eq!(
            sources_list("trixie-backports").lines().collect::<Vec<_>>(),
            [format!("deb {ARCHIVE} trixie-backports main")]
        );
        let trixie = sources_list("trixie");
        assert!(trixie.contains(&format!("deb {SECURITY} trixie-security main")));
        assert_eq!(
            deb_version(Path::new(
                "x/linux-binary-7.3.4+deb13-amd64_7.3.4-1~bpo13+1_amd64.deb"
            )),
            "7.3.4-1~bpo13+1"
        );
    }
}
