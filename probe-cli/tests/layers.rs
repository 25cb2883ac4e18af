//! The layers of probe-cli point only down (see main.rs): `kernel` imports nothing above it,
//! the shared modules no command, and no command another. Read from the sources; no kernel.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `needle` that a file below `dir` (or the file `dir`) names: "file: needle".
fn uses(dir: &Path, needles: &[&str]) -> Vec<String> {
    let files = if dir.is_dir() {
        sources(dir)
    } else {
        vec![dir.to_path_buf()]
    };
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for n in needles {
            if text.contains(n) {
                found.push(format!("{}: {n}", f.display()));
            }
        }
    }
    found
}

#[test]
fn kernel_imports_nothing_above_it() {
    let above = [
        "crate::cmd",
        "crate::recorder",
        "crate::traffic",
        "crate::cli",
        "crate::output",
        "crate::signals",
    ];
    assert_eq!(uses(&src().join("kernel"), &above), Vec::<String>::new());
}

#[test]
fn shared_modules_import_no_command() {
    for m in [
        "recorder",
        "traffic.rs",
        "cli.rs",
        "output.rs",
        "signals.rs",
    ] {
        assert_eq!(uses(&src().join(m), &["crate::cmd"]), Vec::<String>::new());
    }
}

#[test]
fn no_command_imports_another() {
    let cmd = src().join("cmd");
    assert_eq!(uses(&cmd, &["crate::cmd"]), Vec::<String>::new());
    // Nor through `super::` (from a command's own file, `super` is `cmd`).
    let mod_rs = std::fs::read_to_string(cmd.join("mod.rs")).unwrap();
    let siblings: Vec<String> = mod_rs
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| format!("super::{}", m.trim_end_matches(';')))
        .collect();
    assert!(siblings.len() >= 9, "{siblings:?}");
    let needles: Vec<&str> = siblings.iter().map(String::as_str).collect();
    for e in std::fs::read_dir(&cmd).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            assert_eq!(uses(&p, &needles), Vec::<String>::new());
        }
    }
}
