//! What `verify` found: per scenario, and for the run (`--json` prints these).

use analysis::{
    check::{CheckReport, Verdict},
    kcounters::Completeness,
    mode::Mode,
};
use serde::Serialize;

use super::device::DeviceNapi;

#[derive(Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    /// Against the kernel's counters; an incomplete recording is run again, up to
    /// `VERIFY_ATTEMPTS` times.
    pub completeness: Completeness,
    pub attempts: u32,
    pub sent: u64,
    pub received: u64,
    pub trace: String,
    pub verdict: Verdict,
    pub failed_rules: Vec<&'static str>,
    pub paths: std::collections::BTreeMap<String, u64>,
    /// The same trace checked against the wrong mode must diverge (remote scenarios only).
    pub negative_control: Option<NegativeControl>,
    /// Device scenarios: where the device's NAPI was polled, against the scenario's
    /// `threaded` setting.
    pub device_napi: Option<DeviceNapi>,
    pub report: CheckReport,
}

#[derive(Serialize)]
pub struct NegativeControl {
    pub checked_as: Mode,
    pub diverged: bool,
    pub failed_rules: Vec<&'static str>,
}

#[derive(Serialize)]
pub struct VerifyReport {
    pub kernel_release: String,
    pub live_mode: Mode,
    pub expected_mode: Option<Mode>,
    pub mode_ok: bool,
    pub checked_as: Mode,
    pub scenarios: Vec<ScenarioResult>,
    /// Scenarios this host cannot run, and why.
    pub skipped: Vec<String>,
    pub passed: bool,
    /// Some scenario's recording stayed incomplete after every attempt (exit 3).
    pub incomplete: bool,
}
