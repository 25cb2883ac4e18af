//! The evidence for each version feature (analysis::model::features::FEATURES) on the running
//! kernel: BTF members, kernel functions (kallsyms, else BTF), tracepoints (tracefs, else the
//! BTF `btf_trace_<event>` typedef), and the distribution's kernel changelog. The decision
//! itself is analysis's (`decide`); this only looks.

use std::{collections::HashSet, fs, path::Path, process::Command};

use analysis::model::features::{decide, Decided, Evidence, Proof, Seen, FEATURES};

use super::btf::Btf;

/// What the lookups read from; each `None` is a source that could not be read.
pub struct Sources<'a> {
    pub release: &'a str,
    pub btf: Option<&'a Btf>,
    /// Names in /proc/kallsyms.
    pub kallsyms: Option<&'a HashSet<String>>,
    pub tracefs: Option<&'a Path>,
    /// The distribution's kernel changelog, decompressed.
    pub changelog: Option<(String, String)>,
}

/// Every function name in /proc/kallsyms, or None when it cannot be read.
pub fn kallsyms_names() -> Option<HashSet<String>> {
    let text = fs::read_to_string("/proc/kallsyms").ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
            .collect(),
    )
}

/// Debian's changelog of this kernel package (it lists every stable patch taken): the path
/// and its text.
pub fn changelog(release: &str) -> Option<(String, String)> {
    let path = format!("/usr/share/doc/linux-image-{release}/changelog.Debian.gz");
    if !Path::new(&path).exists() {
        return None;
    }
    let out = Command::new("gzip").args(["-dc", &path]).output().ok()?;
    out.status
        .success()
        .then(|| (path, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn member(src: &Sources, strct: &str, m: &str) -> Seen {
    let Some(btf) = src.btf else {
        return Seen::Unknown(format!("no BTF to look for {strct}.{m}"));
    };
    match btf.member_path(strct, m) {
        Ok(_) => Seen::Present(format!("BTF: struct {strct} has {m}")),
        Err(e) if e.contains("has no member") => {
            Seen::Absent(format!("BTF: struct {strct} has no {m}"))
        }
        Err(e) => Seen::Unknown(format!("BTF: {e}")),
    }
}

fn func(src: &Sources, f: &str) -> Seen {
    if src.kallsyms.is_some_and(|k| k.contains(f)) {
        return Seen::Present(format!("/proc/kallsyms has {f}"));
    }
    if src.btf.is_some_and(|b| b.has_func(f)) {
        return Seen::Present(format!("BTF has function {f}"));
    }
    match (src.kallsyms.is_some(), src.btf.is_some()) {
        (false, false) => Seen::Unknown(format!("no kallsyms or BTF to look for {f}")),
        _ => Seen::Absent(format!("{f} is in neither /proc/kallsyms nor BTF")),
    }
}

fn tracepoint(src: &Sources, sys: &str, ev: &str) -> Seen {
    if let Some(t) = src.tracefs {
        if t.join("events").join(sys).join(ev).is_dir() {
            return Seen::Present(format!("tracefs has events/{sys}/{ev}"));
        }
    }
    if src
        .btf
        .is_some_and(|b| b.has_typedef(&format!("btf_trace_{ev}")))
    {
        return Seen::Present(format!("BTF has btf_trace_{ev}"));
    }
    match (src.tracefs.is_some(), src.btf.is_some()) {
        (false, false) => Seen::Unknown(format!("no tracefs or BTF to look for {sys}:{ev}")),
        _ => Seen::Absent(format!("no tracepoint {sys}:{ev} (tracefs, BTF)")),
    }
}

fn changelog_line(src: &Sources, line: &str) -> Seen {
    match &src.changelog {
        None => Seen::Unknown("no distribution kernel changelog".into()),
        Some((path, text)) if text.contains(line) => {
            Seen::Present(format!("{path} lists \"{line}\""))
        }
        Some((path, _)) => Seen::Absent(format!("{path} does not list it")),
    }
}

pub fn look(src: &Sources, p: &Proof) -> Seen {
    match *p {
        Proof::Member(s, m) => member(src, s, m),
        Proof::Func(f) => func(src, f),
        Proof::Tracepoint(s, e) => tracepoint(src, s, e),
        Proof::Changelog(l) => changelog_line(src, l),
    }
}

/// Every feature of the running kernel with its evidence.
pub fn gather(src: &Sources) -> Vec<Decided> {
    let mut ev = Evidence {
        release: src.release.to_string(),
        ..Evidence::default()
    };
    for p in FEATURES.iter().flat_map(|r| r.proofs) {
        ev.seen.insert(p.key(), look(src, p));
    }
    decide(&ev)
}
