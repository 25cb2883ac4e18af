//! How commands print what they share: counts, CPU lists, a check's packet paths.

use analysis::check::CheckReport;

/// "k=v k=v …" (each key after `prefix`), or "none" — the one way counts are printed.
pub fn fmt_counts<K: std::fmt::Display, V: std::fmt::Display>(
    items: impl IntoIterator<Item = (K, V)>,
    prefix: &str,
) -> String {
    let parts: Vec<String> = items
        .into_iter()
        .map(|(k, v)| format!("{prefix}{k}={v}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

pub fn fmt_cpus(c: &[u32]) -> String {
    c.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Packets and backlog batches by path (`simulate` and `check`).
pub fn print_paths(r: &CheckReport) {
    println!("packets by path: {}", fmt_counts(&r.paths, ""));
    let b: Vec<String> = r
        .batch_paths
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "batches: {}",
        if b.is_empty() {
            "none".into()
        } else {
            b.join(", ")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_format() {
        assert_eq!(fmt_counts([(0, 3), (1, 0)], "cpu"), "cpu0=3 cpu1=0");
        assert_eq!(fmt_counts(Vec::<(u32, u64)>::new(), ""), "none");
    }
}
