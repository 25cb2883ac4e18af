use super::*;

#[test]
fn every_id_is_once_in_the_table_in_model_order() {
    let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    let mut want: Vec<String> = (1..=7).map(|n| format!("G{n}")).collect();
    want.extend((1..=8).map(|n| format!("A-{n}")));
    want.extend((1..=11).map(|n| format!("C-{n}")));
    want.extend((1..=3).map(|n| format!("N-{n}")));
    assert_eq!(ids, want);
    for r in RULES {
        let group = match r.modes {
            Modes::All => "G",
            Modes::AB => "A-",
            Modes::C => "C-",
            Modes::Device => "N-",
        };
        assert!(r.id.starts_with(group), "{} is not in {:?}", r.id, r.modes);
    }
}

#[test]
fn the_help_summary_names_each_group() {
    assert_eq!(
        summary(),
        "G1-G7 (all modes), A-1..A-8 (modes A/B), C-1..C-11 (mode C), N-1..N-3 (device NAPI, all modes)"
    );
}

fn repo_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
}

/// docs/rules.md is `markdown()`; `NAPISCOPE_BLESS=1` rewrites it after the table changed.
#[test]
fn rules_doc_is_the_table() {
    let path = repo_file("docs/rules.md");
    let want = markdown();
    if std::env::var_os("NAPISCOPE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/rules.md differs from the rule table: NAPISCOPE_BLESS=1 cargo test -p analysis rules_doc"
    );
}

/// The README's rule summary names the table's groups and points at docs/rules.md.
#[test]
fn readme_rule_groups_are_the_table() {
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    for m in Modes::GROUPS {
        let range = format!("| {} |", id_range(m, "–", "…"));
        assert!(readme.contains(&range), "README.md lacks the row {range}");
    }
    assert!(
        readme.contains("docs/rules.md"),
        "README.md does not link docs/rules.md"
    );
}
