//! `[traces]`: OpenTelemetry traces exported over OTLP/HTTP; off (and free) without an endpoint.

use super::*;
use crate::telemetry::TraceExport;

/// `[traces]`.
pub(in crate::config) fn traces(check: &mut Check, raw: &RawTraces) -> Option<TraceExport> {
    if raw.endpoint.trim().is_empty() {
        return None;
    }
    let endpoint = check.url("traces.endpoint", &raw.endpoint);
    if let Some(url) = &endpoint {
        if url.scheme() == "http" && !is_loopback(url) {
            check.warn(format!(
                "traces.endpoint {url} is plain http off this machine: spans (paths, routes, client addresses) \
                 cross the network unencrypted; use https or a collector on loopback"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            check.fail("traces.endpoint", "must not carry credentials or a query");
        }
    }
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        check.fail("traces.sample_ratio", format!("{} is not between 0.0 and 1.0", raw.sample_ratio));
    }
    if raw.service_name.trim().is_empty() {
        check.fail("traces.service_name", "must not be empty");
    }
    let queue_size = match usize::try_from(raw.queue_size) {
        Ok(size @ 1..=1_000_000) => size,
        _ => {
            check.fail("traces.queue_size", format!("{} is not between 1 and 1000000", raw.queue_size));
            1
        }
    };
    let export_timeout = check.duration("traces.export_timeout", &raw.export_timeout);
    let export_interval = check.duration("traces.export_interval", &raw.export_interval);
    let (tls, _) = check.client_tls("traces", raw.ca_file.as_deref(), None, None);
    Some(TraceExport {
        endpoint: endpoint?,
        sample_ratio: raw.sample_ratio,
        service_name: raw.service_name.trim().to_string(),
        queue_size,
        export_timeout,
        export_interval,
        tls,
    })
}
