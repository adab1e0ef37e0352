//! Logging: `tracing` with a level filter, and the one access-log line per request; and, with
//! `[traces]`, OpenTelemetry spans ([`otlp`], [`trace_context`]).
//!
//! Nothing secret can reach a log line by accident: tokens, tickets and keys are types whose
//! `Debug`/`Display` redact ([`crate::secret::Secret`], `openidconnect` token types,
//! `session::SessionTicket`, `crypto::seal::MasterKey`), the access log
//! records the path without its query (a callback's query holds the authorization code), and
//! no header is ever logged whole.
//!
//! Nor can a request forge a log line: the text format escapes every control character in
//! every field ([`EscapedFields`]), so a CR/LF or an ESC a client put in a callback parameter, a
//! path or a header arrives in the log as `\r\n` / `\u{1b}`; the JSON format escapes them as
//! JSON does.

mod otlp;
pub mod trace_context;

pub use otlp::{TARGET as TRACES, TraceExport};

use std::fmt;
use std::str::FromStr;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::prelude::*;

/// `"info"`, or a filter like `"info,cloakroom=debug"`.
pub fn parse_filter(level: &str) -> Result<Targets, tracing_subscriber::filter::ParseError> {
    Targets::from_str(level.trim())
}

/// Installs the global subscriber once; later calls (tests) keep the first.
/// `json`: one JSON object per line, for log shippers. With `traces`, spans go to an OTLP
/// collector too; that needs a tokio runtime (the export runs on it).
pub fn init(level: &str, json: bool, traces: Option<&TraceExport>) -> Result<Telemetry, TelemetryError> {
    // The spans meant for OpenTelemetry stay out of the log, whatever its filter names.
    let filter = parse_filter(level)
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
        .with_target(TRACES, tracing::level_filters::LevelFilter::OFF);
    let log = if json {
        tracing_subscriber::fmt::layer().json().with_target(true).boxed()
    } else {
        // Colour only on a terminal: a file or a pipe gets plain text, not escape codes.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt::layer().fmt_fields(EscapedFields::default()).with_target(true).with_ansi(ansi).boxed()
    };
    let provider = traces.map(otlp::provider).transpose().map_err(|e| TelemetryError(e.to_string()))?;
    let spans = provider.as_ref().map(otlp::layer);
    let _ = tracing_subscriber::registry().with(log.with_filter(filter)).with(spans).try_init();
    Ok(Telemetry { provider })
}

/// The running telemetry; [`Telemetry::shutdown`] sends what is still queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the queued spans (within `traces.export_timeout`) and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK waits on a channel without yielding: off the runtime's worker threads.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// The OTLP exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("traces: {0}")]
pub struct TelemetryError(String);

/// A named step of a request (a proxied call's phase, a sign-in's step) as its trace span.
pub fn step(name: &'static str) -> tracing::Span {
    tracing::info_span!(target: TRACES, "step", otel.name = name)
}

/// An error and its sources on one line, for logs ("connect failed: tcp connect error: refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The default field layout of the text log, with every control character (and every Unicode
/// bidirectional override) in a field written as an escape: no field can end a log line, start
/// a forged one, or send escape sequences to a terminal, whoever chose its bytes.
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        self.0.format_fields(Writer::new(&mut escaping), fields)
    }
}

struct Escaping<'a, W>(&'a mut W);

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !text.chars().any(needs_escape) {
            return self.0.write_str(text);
        }
        for c in text.chars() {
            if needs_escape(c) {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The caller's `X-Request-Id` when it is a sane token (up to 128 of `A-Z a-z 0-9 . _ -`), so a
/// load balancer's id follows the request through; otherwise a fresh one. Anything else is
/// dropped rather than echoed into logs and headers.
pub fn request_id_from(incoming: Option<&http::HeaderValue>) -> http::HeaderValue {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b)) =>
        {
            id.clone()
        }
        _ => request_id(),
    }
}

/// A per-request id: a random per-process prefix and a counter (`1f3a9c0e-2b`), cheap and
/// unique enough to correlate log lines. Written as hex on the stack: it is made on every call.
pub fn request_id() -> http::HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let prefix = *PREFIX.get_or_init(|| u32::from_ne_bytes(crate::crypto::random_bytes()));
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 8 digits of prefix, a dash, at most 16 digits of count.
    let mut id = [0u8; 25];
    for (i, digit) in id[..8].iter_mut().enumerate() {
        *digit = HEX[(prefix >> (28 - 4 * i)) as usize & 0xf];
    }
    id[8] = b'-';
    let digits = (64 - count.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in id[9..9 + digits].iter_mut().enumerate() {
        *digit = HEX[(count >> (4 * (digits - 1 - i))) as usize & 0xf];
    }
    http::HeaderValue::from_bytes(&id[..9 + digits]).unwrap_or(http::HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_request_ids_are_kept_only_when_sane() {
        let keep = http::HeaderValue::from_static("lb-4f2a.9_x-1");
        assert_eq!(request_id_from(Some(&keep)), "lb-4f2a.9_x-1");
        for bad in ["", "has space", "semi;colon", "quote\"", &"a".repeat(129)] {
            let value = http::HeaderValue::try_from(bad).unwrap();
            assert_ne!(request_id_from(Some(&value)), bad, "{bad:?} kept");
        }
        assert_ne!(request_id_from(None), request_id_from(None));
    }

    #[test]
    fn made_request_ids_are_a_hex_prefix_a_dash_and_the_hex_count() {
        let first = request_id();
        let (prefix, count) = first.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(prefix.len(), 8);
        assert!(u32::from_str_radix(prefix, 16).is_ok(), "{first:?}");
        let count = u64::from_str_radix(count, 16).unwrap();
        let next = request_id();
        let (next_prefix, next_count) = next.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(next_prefix, prefix);
        assert!(u64::from_str_radix(next_count, 16).unwrap() > count, "{first:?} then {next:?}");
        assert!(!next_count.starts_with('0') || next_count == "0", "no leading zeros: {next:?}");
    }

    #[test]
    fn no_field_can_forge_a_line_or_reach_the_terminal() {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields::default())
            .with_ansi(false)
            .with_writer(move || SinkWriter(sink.clone()))
            .finish();
        let hostile = "denied\r\n2026-01-01T00:00:00Z  INFO forged: admin signed in \u{1b}[2J\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(error = %hostile, quoted = hostile, "refused {hostile}");
            tracing::info_span!("request", id = %hostile).in_scope(|| tracing::info!("inside"));
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202e}'), "{text}");
        assert!(text.contains("denied\\r\\n2026"), "{text}");
    }

    struct SinkWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
