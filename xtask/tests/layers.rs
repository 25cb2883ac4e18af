//! Layers only point down: a module may use modules of its own floor or the floors below it,
//! never one above; and the rooms of a floor marked "apart" (the subcommands) never use each
//! other. The floors are declared once, in `FLOORS` below; this test reads every `crate::` and
//! `super::` path in the workspace's sources and fails on an arrow that runs up or sideways.
//!
//! Crates point down by construction (Cargo refuses cycles): probe-cli → analysis →
//! probe-common. This test is about the modules inside a crate.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// One floor of one crate: the module paths on it (a path covers its submodules too).
struct Floor {
    level: u32,
    modules: &'static [&'static str],
    /// Each module here is a room of its own: none may use another (commands that share
    /// something move it down a floor).
    apart: bool,
}

/// The house plan: per crate, its floors from the ground up.
const FLOORS: &[(&str, &[Floor])] = &[
    (
        "analysis",
        &[
            Floor {
                level: 0,
                modules: &["trace", "event"],
                apart: false,
            },
            Floor {
                level: 1,
                modules: &["mode", "kcounters"],
                apart: false,
            },
            Floor {
                level: 2,
                modules: &["model", "paths"],
                apart: false,
            },
            Floor {
                level: 3,
                modules: &["check"],
                apart: false,
            },
            Floor {
                level: 4,
                modules: &["report", "whatif"],
                apart: false,
            },
            Floor {
                level: 5,
                modules: &[""],
                apart: false,
            },
        ],
    ),
    (
        "probe-cli",
        &[
            Floor {
                level: 0,
                modules: &["kernel", "build_info"],
                apart: false,
            },
            Floor {
                level: 1,
                modules: &["cli", "output", "signals"],
                apart: false,
            },
            Floor {
                level: 2,
                modules: &["recorder", "traffic", "bench", "live"],
                apart: false,
            },
            Floor {
                level: 3,
                modules: &[
                    "cmd::status",
                    "cmd::top",
                    "cmd::record",
                    "cmd::report",
                    "cmd::scenario",
                    "cmd::simulate",
                    "cmd::recover",
                    "cmd::check",
                    "cmd::verify",
                    "cmd::serve",
                ],
                apart: true,
            },
            Floor {
                level: 4,
                modules: &["cmd", ""],
                apart: false,
            },
        ],
    ),
];

/// Where a module stands: (floor level, the room it belongs to when its floor is apart).
fn place(floors: &[Floor], module: &str) -> Option<(u32, Option<&'static str>)> {
    let covers = |m: &str| {
        m.is_empty() && module.is_empty()
            || !m.is_empty() && (module == m || module.starts_with(&format!("{m}::")))
    };
    // The longest matching module path wins ("cmd::top" before "cmd").
    floors
        .iter()
        .flat_map(|f| f.modules.iter().map(move |m| (f, *m)))
        .filter(|(_, m)| covers(m))
        .max_by_key(|(_, m)| m.len())
        .map(|(f, m)| (f.level, f.apart.then_some(m)))
}

/// The module path of a source file: src/check/rules/mod.rs → check::rules.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code without comments, strings and `#[cfg(test)] mod tests { .. }` (tests may reach
/// anywhere to set a case up).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Drop string literals: a path inside a message is not an import.
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first two segments of every `crate::` / `super::` path in `code`, as module paths of
/// this crate (`self`, `super`, `crate` resolved against `here`).
fn uses(code: &str, here: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, anchor) in [("crate::", ""), ("super::", "super")] {
        let mut rest = code;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i + start.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let base: Vec<&str> = if anchor == "super" {
                let mut b: Vec<&str> = here.split("::").filter(|s| !s.is_empty()).collect();
                b.pop();
                // super::super::x
                let mut r = rest;
                while let Some(t) = r.strip_prefix("super::") {
                    b.pop();
                    r = t;
                }
                rest = r;
                b
            } else {
                Vec::new()
            };
            for head in heads(rest) {
                let mut path = base.clone();
                path.extend(head.iter().map(String::as_str));
                found.insert(path.join("::"));
            }
        }
    }
    found
}

/// The leading path segments after `crate::`: `check::cols::Cols` → [check, cols];
/// `{trace::x, check::{y, z}}` → [trace, x], [check, y], [check, z].
fn heads(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 1;
        let mut end = inner.len();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        return split_top(&inner[..end])
            .iter()
            .flat_map(|p| heads(p))
            .collect();
    }
    let first = ident_at(s);
    if first.is_empty() {
        return Vec::new();
    }
    let after = &s[first.len()..];
    match after.strip_prefix("::") {
        Some(more) if more.trim_start().starts_with('{') => heads(more)
            .into_iter()
            .map(|mut h| {
                h.insert(0, first.to_string());
                h
            })
            .collect(),
        Some(more) if !ident_at(more).is_empty() => {
            vec![vec![first.to_string(), ident_at(more).to_string()]]
        }
        _ => vec![vec![first.to_string()]],
    }
}

fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[from..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "self")
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every arrow of a crate that runs up a floor or between two rooms of an apart floor.
fn violations(src: &Path, floors: &[Floor]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let here = module_of(src, &file);
        let Some((level, room)) = place(floors, &here) else {
            bad.push(format!(
                "{}: module `{here}` is on no floor of the plan",
                file.display()
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for used in uses(&code, &here) {
            if used == here || used.starts_with(&format!("{here}::")) {
                continue;
            }
            let Some((to_level, to_room)) = place(floors, &used) else {
                continue;
            };
            if to_level > level {
                bad.push(format!(
                    "{}: `{here}` (floor {level}) uses `{used}` (floor {to_level}), above it",
                    file.display()
                ));
            } else if to_level == level && room.is_some() && to_room.is_some() && room != to_room {
                bad.push(format!(
                    "{}: `{here}` uses `{used}`: rooms of an apart floor use no other room",
                    file.display()
                ));
            }
        }
    }
    bad
}

#[test]
fn layers_only_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut bad = Vec::new();
    for (krate, floors) in FLOORS {
        bad.extend(violations(&root.join(krate).join("src"), floors));
    }
    assert!(
        bad.is_empty(),
        "arrows that run up or sideways:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn the_lint_sees_an_upward_import_a_sideways_one_and_a_module_off_the_plan() {
    let dir = std::env::temp_dir().join(format!("napiscope-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = |p: &str, s: &str| {
        let p = dir.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    const PLAN: &[Floor] = &[
        Floor {
            level: 0,
            modules: &["trace"],
            apart: false,
        },
        Floor {
            level: 1,
            modules: &["cmd::a", "cmd::b"],
            apart: true,
        },
        Floor {
            level: 2,
            modules: &["", "cmd"],
            apart: false,
        },
    ];
    w("lib.rs", "mod trace; mod cmd;\nuse crate::trace::x;\n");
    w(
        "trace/mod.rs",
        "use crate::{cmd::{a::X, b}, trace::y};\n// crate::cmd::z\n",
    );
    w(
        "cmd/a.rs",
        "use super::b::Y; // fine? no: sideways\nfn f() { crate::trace::g(); }\n",
    );
    w("cmd/b.rs", "fn f() { let _ = \"crate::cmd::a\"; }\n");
    w("stray.rs", "");
    let got = violations(&dir, PLAN);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].contains("`cmd::a` uses `cmd::b"), "{}", got[0]);
    assert!(got[1].contains("`stray` is on no floor"), "{}", got[1]);
    assert!(
        got[2].contains("`trace` (floor 0) uses `cmd::a"),
        "{}",
        got[2]
    );
    assert!(
        got[3].contains("`trace` (floor 0) uses `cmd::b"),
        "{}",
        got[3]
    );
}

/// Longest function and file the house accepts without a reason written beside it.
const MAX_FN_LINES: usize = 80;
const MAX_FILE_LINES: usize = 500;
/// The reason marker: a `// long: why` comment among the lines just above a function (with
/// its docs and attributes), or in a file's first lines.
const LONG: &str = "// long:";

/// Functions longer than MAX_FN_LINES without a `// long:` reason: (name, first line, lines).
fn long_functions(text: &str) -> Vec<(String, usize, usize)> {
    let code: Vec<String> = code_of(text)
        .lines()
        .map(|l| l.replace("'{'", "").replace("'}'", ""))
        .collect();
    let raw: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in code.iter().enumerate() {
        let t = line.trim_start();
        let Some(pos) = t.find("fn ") else { continue };
        let head = &t[..pos];
        if !head.split_whitespace().all(|w| {
            matches!(
                w,
                "pub" | "pub(crate)" | "pub(super)" | "async" | "const" | "unsafe" | "extern"
            )
        }) || t[pos + 3..].trim_start().starts_with('(')
        {
            continue;
        }
        let name = ident_at(t[pos + 3..].trim_start()).to_string();
        // Find the body's end by brace depth; a declaration without a body ends at `;`.
        let (mut depth, mut opened, mut end) = (0i32, false, None);
        'scan: for (j, l) in code.iter().enumerate().skip(i) {
            for c in l.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(j);
                            break 'scan;
                        }
                    }
                    ';' if !opened => break 'scan,
                    _ => {}
                }
            }
        }
        let Some(end) = end else { continue };
        let lines = end - i + 1;
        let mut k = i;
        let mut reason = false;
        while k > 0 {
            k -= 1;
            let above = raw[k].trim_start();
            if above.starts_with(LONG) {
                reason = true;
            }
            if !(above.starts_with("//") || above.starts_with("#[")) {
                break;
            }
        }
        if lines > MAX_FN_LINES && !reason {
            out.push((name, i + 1, lines));
        }
    }
    out
}

#[test]
fn no_function_over_80_lines_and_no_file_over_500_without_a_reason() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut bad = Vec::new();
    for krate in [
        "probe-common",
        "probe-ebpf",
        "probe-cli",
        "analysis",
        "xtask",
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let rel = file.strip_prefix(root).unwrap().display().to_string();
            let name = file.file_name().unwrap().to_string_lossy();
            if name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let body = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text,
            };
            let n = body.lines().count();
            let head_reason = body
                .lines()
                .take(12)
                .any(|l| l.trim_start().starts_with(LONG));
            if n > MAX_FILE_LINES && !head_reason {
                bad.push(format!("{rel}: {n} lines (tests apart)"));
            }
            for (f, at, lines) in long_functions(body) {
                bad.push(format!("{rel}:{at}: fn {f} is {lines} lines"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "over the limits ({MAX_FN_LINES} lines a function, {MAX_FILE_LINES} a file) with no \
         `{LONG} why` beside them:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn the_size_lint_counts_a_long_function_and_accepts_a_reason() {
    let body =
        |name: &str, n: usize| format!("fn {name}() {{\n{}}}\n", "    let x = '{';\n".repeat(n));
    let text = format!(
        "{}\n// long: one match over every event kind\n{}\n{}",
        body("long_one", 90),
        body("excused", 90),
        body("short", 10)
    );
    let got = long_functions(&text);
    assert_eq!(got, vec![("long_one".to_string(), 1, 92)]);
}
