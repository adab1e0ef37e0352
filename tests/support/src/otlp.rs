//! An OTLP/HTTP trace receiver, as a collector is: it decodes what arrives with the protocol's
//! own protobuf messages (`opentelemetry-proto`) and keeps every span, flattened for assertions
//! and for the "nothing secret in a span" scan. Or one that never answers (a hung collector).

use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    /// Hex, as `traceparent` writes them.
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    /// `SPAN_KIND_SERVER` = 2, `SPAN_KIND_CLIENT` = 3, internal = 1.
    pub kind: i32,
    pub attributes: Vec<(String, String)>,
    /// Each event's name and attributes.
    pub events: Vec<(String, Vec<(String, String)>)>,
    /// 2: error.
    pub status_code: i32,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Every export request's raw body, for a scan of the bytes as sent.
    raw: Arc<Mutex<Vec<u8>>>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl OtlpReceiver {
    /// A collector that accepts and decodes every export.
    pub async fn start() -> OtlpReceiver {
        Self::start_answering(true).await
    }

    /// A collector that takes the connection and the request and never answers.
    pub async fn start_hung() -> OtlpReceiver {
        Self::start_answering(false).await
    }

    async fn start_answering(answer: bool) -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = OtlpReceiver {
            addr: listener.local_addr().unwrap(),
            spans: Arc::default(),
            raw: Arc::default(),
            requests: Arc::default(),
        };
        let state = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            state.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if !answer {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(state.receive(request).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn receive(&self, request: Request<Incoming>) -> Response<Body> {
        let is_protobuf = request.headers().get(CONTENT_TYPE).is_some_and(|v| v == "application/x-protobuf");
        let path_ok = request.uri().path() == "/v1/traces" && request.method() == Method::POST;
        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let Ok(export) = ExportTraceServiceRequest::decode(body.as_ref()) else {
            return status(StatusCode::BAD_REQUEST);
        };
        if !is_protobuf || !path_ok {
            return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        self.raw.lock().unwrap().extend_from_slice(&body);
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            let service = flatten(&resource).into_iter().find(|(k, _)| k == "service.name").map(|(_, v)| v);
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone().unwrap_or_default(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        attributes: flatten(&span.attributes),
                        events: span.events.iter().map(|e| (e.name.clone(), flatten(&e.attributes))).collect(),
                        status_code: span.status.map_or(0, |s| s.code),
                    });
                }
            }
        }
        let mut response = Response::new(full(ExportTraceServiceResponse::default().encode_to_vec()));
        response.headers_mut().insert(CONTENT_TYPE, "application/x-protobuf".parse().unwrap());
        response
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Every byte every export carried, lossily as text (for the secret scan).
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    /// Waits (up to 15 s) until a span matching `found` has arrived, and returns it.
    pub async fn wait_for(&self, what: &str, found: impl Fn(&ReceivedSpan) -> bool) -> ReceivedSpan {
        for _ in 0..300 {
            if let Some(span) = self.spans().into_iter().find(&found) {
                return span;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no span {what} arrived; received: {:#?}", self.spans().iter().map(|s| &s.name).collect::<Vec<_>>());
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = code;
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
