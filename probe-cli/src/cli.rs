//! What every command shares about talking to its caller: the error that carries an exit
//! code, the exit codes themselves, and the argument parsers more than one command uses.

use std::{path::PathBuf, time::Duration};

use analysis::mode::Mode;

use crate::kernel::{env::Environment, system};

/// Exit codes: 0 success, 1 failure / divergence, 2 unusable input or missing rights,
/// 3 (`INCOMPLETE`) inconclusive: the recording misses events (the kernel's counters say so,
/// or the ring lost some) and nothing diverged.
pub const INCOMPLETE: u8 = 3;

#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub msg: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            msg: msg.into(),
        }
    }
    pub fn rights(r: &system::Rights) -> CliError {
        CliError::usage(format!(
            "missing {} (euid {}): tracing loads eBPF programs. {SETCAP_ADVICE}",
            r.missing().join(" and "),
            r.euid
        ))
    }
}

/// How to trace without root, as measured on Debian 12 (6.18): CAP_BPF + CAP_PERFMON load and
/// attach the programs, but tracefs (mode 0700, root's) stays shut without
/// CAP_DAC_READ_SEARCH; `verify` and `scenario` create network namespaces and need root.
pub const SETCAP_ADVICE: &str = "Run as root (sudo napiscope ...), or let the binary trace \
     without root: sudo setcap cap_bpf,cap_perfmon,cap_dac_read_search+ep $(which napiscope) \
     (CAP_DAC_READ_SEARCH because tracefs is root's; verify and scenario still need root)";

/// What a command that loads probes starts from: the caller may trace (else exit 2 saying
/// which rights are missing), this machine's environment, and where tracefs is.
pub fn tracing_env() -> Result<(Environment, PathBuf), CliError> {
    let rights = system::Rights::current();
    if !rights.can_trace() {
        return Err(CliError::rights(&rights));
    }
    let env = Environment::gather();
    let Some(tracefs) = env.tracefs_path() else {
        return Err(CliError::usage(format!(
            "tracefs unavailable: {}",
            env.tracefs.state
        )));
    };
    Ok((env, tracefs))
}

/// The longest duration a flag takes: a year. Longer ones are typing mistakes, and deadlines
/// (`Instant + d`) would overflow and panic far below `Duration::MAX`.
const MAX_DURATION_SECS: f64 = 365.0 * 86_400.0;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 10, 10s, 500ms, 2m"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration must be positive, got `{s}`"));
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!("`{s}` is longer than a year; use at most 8760h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A `-C` CPU list (`0,2-3`) of online CPUs, or a usage error naming the online ones.
pub fn parse_cpus(s: &str) -> Result<Vec<u32>, CliError> {
    let online = system::online_cpus();
    let cpus = system::parse_cpu_list(s)
        .ok_or_else(|| CliError::usage(format!("`{s}` is not a CPU list; use e.g. 0,2-3")))?;
    if cpus.is_empty() {
        return Err(CliError::usage("the CPU list is empty"));
    }
    if let Some(c) = cpus.iter().find(|c| !online.contains(c)) {
        return Err(unknown_cpu(*c, &online));
    }
    Ok(cpus)
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode `{s}`: use A, B or C"))
}

/// A CPU that is not online, as a usage error naming the online ones.
pub fn unknown_cpu(c: u32, online: &[u32]) -> CliError {
    CliError::usage(format!(
        "unknown CPU {c}: online CPUs are {}",
        crate::output::fmt_cpus(online)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        // Once a panic ("cannot convert float seconds to Duration"), then an Instant overflow.
        assert!(parse_duration("99999999999999999999")
            .unwrap_err()
            .contains("longer than a year"));
        assert!(parse_duration("1e400").is_err());
        assert_eq!(
            parse_duration("8760h").unwrap(),
            Duration::from_secs(31_536_000)
        );
        assert!(parse_duration("8761h").is_err());
    }
}
