//! Mode classification from a live system's facts (model.md §12.1).
//!
//! A: no backlog-NAPI patch. B: patch, threads off. C: threads on (`thread_backlog_napi` or
//! PREEMPT_RT). Never from the version number alone: 6.1.y/6.6.y backports carry the patch.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    A,
    B,
    C,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Some(Mode::A),
            "B" => Some(Mode::B),
            "C" => Some(Mode::C),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::A => "A",
            Mode::B => "B",
            Mode::C => "C",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Mode::A => "no backlog-NAPI patch: remote RPS work goes by IPI to the NET_RX softirq",
            Mode::B => "patch present, threads off: same paths as A (RPS IPI, NET_RX softirq)",
            Mode::C => {
                "backlog_napi/N threads on: remote enqueues wake backlog_napi/<cpu>, no RPS IPI"
            }
        }
    }
}

/// What the live system shows; gathered by the CLI, classified here.
#[derive(Clone, Debug, Default)]
pub struct LiveFacts {
    pub release: String,
    /// `uname -v`
    pub version: String,
    pub cmdline: String,
    /// Patch symbols found in /proc/kallsyms (`backlog_napi_should_run`, `run_backlog_napi`).
    pub patch_symbols: Vec<String>,
    /// Whether /proc/kallsyms could be read at all.
    pub kallsyms_readable: bool,
    /// Patch functions found in the kernel's BTF (None: no BTF); asked when kallsyms is not.
    pub btf_patch_funcs: Option<Vec<String>>,
    /// comms of running `backlog_napi/N` threads.
    pub backlog_threads: Vec<String>,
    /// CONFIG_PREEMPT_RT=y from the kernel config, when a config was found.
    pub config_preempt_rt: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModeVerdict {
    pub mode: Mode,
    pub evidence: Vec<String>,
    pub anomalies: Vec<String>,
}

/// The `thread_backlog_napi` boot token; its handler ignores the value, so `=0` enables too.
pub fn cmdline_has_thread_token(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        // Everything after "--" is for init, not the kernel.
        .take_while(|t| *t != "--")
        .any(|t| t == "thread_backlog_napi" || t.starts_with("thread_backlog_napi="))
}

pub fn is_preempt_rt(f: &LiveFacts) -> bool {
    f.config_preempt_rt
        .unwrap_or_else(|| f.version.split_whitespace().any(|w| w == "PREEMPT_RT"))
}

/// Parse a version like "6.18.44-fc" into (6, 18).
pub fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the backlog-NAPI patch is in: kallsyms, else BTF, else (said so) the version.
fn patch_present(f: &LiveFacts, threads: bool, evidence: &mut Vec<String>) -> bool {
    if !f.patch_symbols.is_empty() {
        evidence.push(format!(
            "patch present: /proc/kallsyms has {}",
            f.patch_symbols.join(", ")
        ));
        true
    } else if threads {
        evidence.push("patch present: backlog_napi threads exist".into());
        true
    } else if let (false, Some(funcs)) = (f.kallsyms_readable, &f.btf_patch_funcs) {
        if funcs.is_empty() {
            evidence.push(
                "patch absent: the kernel's BTF has neither backlog_napi_should_run nor \
                 run_backlog_napi (/proc/kallsyms unreadable)"
                    .into(),
            );
        } else {
            evidence.push(format!(
                "patch present: the kernel's BTF has {} (/proc/kallsyms unreadable)",
                funcs.join(", ")
            ));
        }
        !funcs.is_empty()
    } else if f.kallsyms_readable {
        evidence.push(
            "patch absent: /proc/kallsyms has neither backlog_napi_should_run nor run_backlog_napi"
                .into(),
        );
        false
    } else {
        // Fall back to the version, and say so: backports make this a guess.
        let v = major_minor(&f.release);
        let present = v.is_some_and(|v| v >= (6, 10));
        evidence.push(format!(
            "/proc/kallsyms unreadable; guessing from release {} (mainline ≥ 6.10 has the \
             patch; backports can make this wrong)",
            f.release
        ));
        present
    }
}

pub fn classify_live(f: &LiveFacts) -> ModeVerdict {
    let mut evidence = Vec::new();
    let mut anomalies = Vec::new();
    let token = cmdline_has_thread_token(&f.cmdline);
    let rt = is_preempt_rt(f);
    let threads = !f.backlog_threads.is_empty();
    let patch = patch_present(f, threads, &mut evidence);
    if threads {
        evidence.push(format!(
            "{} backlog_napi thread(s) running: {}",
            f.backlog_threads.len(),
            summarize(&f.backlog_threads)
        ));
    } else {
        evidence.push("no backlog_napi/N threads".into());
    }
    if token {
        evidence.push("cmdline has thread_backlog_napi".into());
    }
    if rt {
        evidence.push("kernel is PREEMPT_RT".into());
    }
    let mode = match (patch, threads) {
        (false, _) => Mode::A,
        (true, false) => Mode::B,
        (true, true) => Mode::C,
    };
    if threads && !token && !rt {
        anomalies.push(
            "backlog_napi threads run, but neither thread_backlog_napi nor PREEMPT_RT explains them"
                .into(),
        );
    }
    if patch && !threads && (token || rt) {
        anomalies.push(
            "threads should be on (thread_backlog_napi or PREEMPT_RT) but no backlog_napi thread \
             exists (smpboot registration failure?)"
                .into(),
        );
    }
    if !patch && token {
        evidence.push("thread_backlog_napi is ignored: this kernel does not know it".into());
    }
    ModeVerdict {
        mode,
        evidence,
        anomalies,
    }
}

fn summarize(names: &[String]) -> String {
    if names.len() <= 4 {
        names.join(" ")
    } else {
        format!("{} ... {}", names[..2].join(" "), names[names.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> LiveFacts {
        LiveFacts {
            release: "6.12.118+deb13-amd64".into(),
            version: "#1 SMP PREEMPT_DYNAMIC Debian".into(),
            cmdline: "console=ttyS0 quiet".into(),
            patch_symbols: vec!["backlog_napi_should_run".into()],
            kallsyms_readable: true,
            btf_patch_funcs: None,
            backlog_threads: vec![],
            config_preempt_rt: None,
        }
    }

    #[test]
    fn patched_without_threads_is_b() {
        assert_eq!(classify_live(&facts()).mode, Mode::B);
    }

    #[test]
    fn threads_make_c_and_token_explains_them() {
        let mut f = facts();
        f.cmdline = "console=ttyS0 thread_backlog_napi=0".into();
        f.backlog_threads = vec!["backlog_napi/0".into(), "backlog_napi/1".into()];
        let v = classify_live(&f);
        assert_eq!(v.mode, Mode::C);
        assert!(v.anomalies.is_empty(), "{:?}", v.anomalies);
    }

    #[test]
    fn unexplained_threads_are_an_anomaly() {
        let mut f = facts();
        f.backlog_threads = vec!["backlog_napi/0".into()];
        let v = classify_live(&f);
        assert_eq!(v.mode, Mode::C);
        assert_eq!(v.anomalies.len(), 1);
    }

    #[test]
    fn no_symbols_is_a_even_on_a_new_version_string() {
        let mut f = facts();
        f.patch_symbols.clear();
        f.release = "6.12.0".into();
        assert_eq!(classify_live(&f).mode, Mode::A);
    }

    #[test]
    fn unreadable_kallsyms_falls_back_to_version_and_says_so() {
        let mut f = facts();
        f.patch_symbols.clear();
        f.kallsyms_readable = false;
        f.release = "6.1.0-56-amd64".into();
        let v = classify_live(&f);
        assert_eq!(v.mode, Mode::A);
        assert!(v.evidence.iter().any(|e| e.contains("guessing")));
    }

    #[test]
    fn unreadable_kallsyms_asks_btf_before_the_version() {
        let mut f = facts();
        f.patch_symbols.clear();
        f.kallsyms_readable = false;
        // A 6.1 backport: the version would say A, the BTF shows the patch.
        f.release = "6.1.0-56-amd64".into();
        f.btf_patch_funcs = Some(vec!["backlog_napi_should_run".into()]);
        let v = classify_live(&f);
        assert_eq!(v.mode, Mode::B);
        assert!(v.evidence[0].contains("BTF"), "{:?}", v.evidence);
        // And a 6.12 string with a BTF that lacks them is A.
        f.release = "6.12.0".into();
        f.btf_patch_funcs = Some(vec![]);
        assert_eq!(classify_live(&f).mode, Mode::A);
    }

    #[test]
    fn token_after_double_dash_is_for_init() {
        assert!(!cmdline_has_thread_token("quiet -- thread_backlog_napi"));
        assert!(cmdline_has_thread_token("thread_backlog_napi quiet"));
        assert!(!cmdline_has_thread_token("thread_backlog_napix"));
    }

    #[test]
    fn rt_from_uname() {
        let mut f = facts();
        f.version = "#1 SMP PREEMPT_RT Debian".into();
        f.backlog_threads = vec!["backlog_napi/0".into()];
        let v = classify_live(&f);
        assert_eq!(v.mode, Mode::C);
        assert!(v.anomalies.is_empty());
    }
}
