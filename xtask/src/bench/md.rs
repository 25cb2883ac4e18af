//! BENCHMARKS.md as named sections between HTML-comment markers, so one part of the
//! benchmark can be re-run without losing the others.

pub fn marker(name: &str, begin: bool) -> String {
    format!(
        "<!-- bench-{name}: {} -->",
        if begin { "begin" } else { "end" }
    )
}

/// The section `name`, markers included, with a trailing newline.
pub fn get(md: &str, name: &str) -> Option<String> {
    let (b, e) = (marker(name, true), marker(name, false));
    let a = md.find(&b)?;
    let z = md[a..].find(&e)? + a + e.len();
    Some(format!("{}\n", &md[a..z]))
}

/// `md` with section `name` set to `body` (appended if it was not there).
pub fn put(md: &str, name: &str, body: &str) -> String {
    let section = format!(
        "{}\n{}\n{}\n",
        marker(name, true),
        body.trim_end(),
        marker(name, false)
    );
    match get(md, name) {
        Some(old) => md.replacen(&old, &section, 1),
        None => format!("{md}{section}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_one_section_and_keeps_the_others() {
        let md = put(&put("", "a", "first A"), "b", "first B");
        let md = put(&md, "a", "second A");
        assert_eq!(get(&md, "a").unwrap().matches("second A").count(), 1);
        assert!(!md.contains("first A"));
        assert!(get(&md, "b").unwrap().contains("first B"));
        assert_eq!(get(&md, "c"), None);
    }
}
