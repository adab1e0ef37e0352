//! `[log]`: level and format.

use super::*;

/// `[log]`.
pub(in crate::config) fn log(check: &mut Check, raw: RawLog) -> LogConfig {
    if crate::telemetry::parse_filter(&raw.level).is_err() {
        check.fail(
            "log.level",
            format!(
                "{:?} is not a level (error, warn, info, debug, trace) or a filter like \"info,cloakroom=debug\"",
                raw.level
            ),
        );
    }

    let log_json = raw.format == LogFormat::Json;

    LogConfig { level: raw.level, json: log_json }
}
