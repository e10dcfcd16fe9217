//! `[alerts] provider = "log"`: the engine's alerts as log lines, de-duplicated and rate
//! limited by orch-core's [`Deduped`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::alerts::{Alert, Alerts, Deduped, Severity};
use orch_core::clock::Clock;
use orch_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Settings of `[alerts] provider = "log"`.
///
/// ```toml
/// [alerts]
/// provider = "log"
/// window = "10m"
/// max_per_window = 20
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogAlertsConfig {
    /// An alert key is logged at most once per window, and at most `max_per_window` alerts
    /// in all (default `10m`, 1s–1d).
    #[serde(with = "orch_core::duration")]
    pub(crate) window: Duration,
    /// Most alerts logged per window (default 20, 1–10000).
    pub(crate) max_per_window: usize,
}

impl Default for LogAlertsConfig {
    fn default() -> Self {
        LogAlertsConfig { window: Duration::from_secs(600), max_per_window: 20 }
    }
}

impl LogAlertsConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.window) {
            return Err(Error::invalid_input("alerts.window", "use a value from \"1s\" to \"1d\""));
        }
        if !(1..=10_000).contains(&self.max_per_window) {
            return Err(Error::invalid_input(
                "alerts.max_per_window",
                format!("{} is out of range: use 1 to 10000", self.max_per_window),
            ));
        }
        Ok(())
    }

    /// The sink: log lines behind the de-duplicating decorator.
    pub(crate) fn open(&self, clock: Arc<dyn Clock>) -> Arc<dyn Alerts> {
        Arc::new(Deduped::new(LogAlerts, clock, self.window, self.max_per_window))
    }
}

/// Writes each alert as one structured log line: `warn` for info and warnings, `error` for
/// critical ones.
#[derive(Debug, Clone, Copy)]
struct LogAlerts;

#[async_trait]
impl Alerts for LogAlerts {
    async fn send(&self, alert: Alert) -> Result<()> {
        let Alert { severity, key, summary, details } = alert;
        match severity {
            Severity::Critical => {
                tracing::error!(target: "orch::alerts", severity = ?severity, key = %key, details = %details, "{summary}")
            }
            Severity::Info | Severity::Warning => {
                tracing::warn!(target: "orch::alerts", severity = ?severity, key = %key, details = %details, "{summary}")
            }
        }
        Ok(())
    }
}
