//! `[traces]`: the OpenTelemetry pipeline. Spans made with `target: "cloakroom::traces"` (and
//! cloakroom's warnings and errors, as their events) become OTLP spans, batched on the runtime
//! and sent over HTTP (protobuf) with hyper, the client cloakroom already has.
//!
//! A dead or slow collector never slows a call or grows memory: a finished span is handed to a
//! bounded queue with `try_send` (full: the span is dropped and counted by the SDK), export runs
//! on its own task, one batch at a time, each bounded by `export_timeout`. Unsampled spans are
//! never queued.

use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use std::sync::Arc;
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The target of every span meant for OpenTelemetry. The log leaves it out, and without
/// `[traces]` nothing takes it: such a span then costs one cached check.
pub const TARGET: &str = "cloakroom::traces";

/// `[traces]` as validated: where and how spans are exported.
#[derive(Debug, Clone)]
pub struct TraceExport {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: url::Url,
    /// Share of new traces recorded (0.0 to 1.0); a trusted proxy's decision is followed.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Spans waiting for export at most; beyond it new spans are dropped, never waited for.
    pub queue_size: usize,
    /// One export's deadline (connect included).
    pub export_timeout: Duration,
    /// How often queued spans are sent.
    pub export_interval: Duration,
    /// TLS to an https collector (`ca_file`, or the system's roots).
    pub tls: Arc<rustls::ClientConfig>,
}

/// The exporting end: flushed and stopped with [`super::Telemetry::shutdown`].
pub(super) fn provider(export: &TraceExport) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(export.export_timeout));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(export.tls.clone()))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = opentelemetry_http::hyper::HyperClient::new(connector, export.export_timeout, None);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(export.endpoint.as_str())
        .with_timeout(export.export_timeout)
        .build()?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(export.queue_size)
        .with_max_export_batch_size(export.queue_size.min(512))
        .with_max_concurrent_exports(1)
        .with_scheduled_delay(export.export_interval)
        .with_max_export_timeout(export.export_timeout)
        .build();
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).with_batch_config(batch).build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(export.sample_ratio)));
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(export.service_name.clone()).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}

/// The `tracing` layer feeding `provider`: only [`TARGET`] spans, and cloakroom's warnings and
/// errors as events of the span they happen in. No source locations, thread names or busy/idle
/// timings: attributes cost per span, and those say nothing an operator needs.
pub(super) fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let filter =
        Targets::new().with_target(TARGET, tracing::Level::TRACE).with_target("cloakroom", tracing::Level::WARN);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cloakroom"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter)
}
