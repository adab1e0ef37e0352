//! Every log line of this test process, captured (at trace level) for "no token in logs" checks.

use super::*;

pub fn test_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

/// Captures every log line (at trace level) of this test process, for "no token in logs" checks.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOG_BUFFER.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOG_BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buffer = LOG_BUFFER.get_or_init(Default::default).clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .fmt_fields(cloakroom::telemetry::EscapedFields::default())
            .with_writer(move || BufferWriter(buffer.clone()))
            .try_init();
    });
}

/// Substrings shaped like a JWS (three base64url parts, the first a JSON header).
pub fn received_jwts(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .filter(|part| part.starts_with("eyJ") && part.split('.').count() == 3)
        .map(String::from)
        .collect()
}
