//! W3C trace context (`traceparent`, `tracestate`): continued from a trusted proxy, sent on to
//! upstreams and the provider. Without `[traces]` the spans are disabled and nothing here runs:
//! the headers pass through untouched, as any end-to-end header does.

use http::HeaderMap;
use http::header::HeaderName;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Makes `span` continue the trace a trusted proxy's request carries (its sampling decision
/// included). Call it only for a request from `server.trusted_proxies`: a client's would let
/// it choose what is sampled and which trace its calls join.
pub fn continue_from(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key(TRACEPARENT) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Extract(headers));
    let _ = span.set_parent(parent);
}

/// Writes `span`'s context into an outgoing request, replacing whatever the client sent. A
/// span OpenTelemetry does not know (no `[traces]`, whatever else records it) changes nothing.
pub fn send_on(span: &tracing::Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    TraceContextPropagator::new().inject_context(&context, &mut Inject(headers));
}

struct Extract<'a>(&'a HeaderMap);

impl Extractor for Extract<'_> {
    /// One value: a repeated `traceparent` is not a trace context (the propagator then finds none).
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct Inject<'a>(&'a mut HeaderMap);

impl Injector for Inject<'_> {
    /// An empty `tracestate` (the propagator writes one) is left out.
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}
