//! `[csrf]`: the anti-CSRF header.

use super::*;

/// `[csrf]`.
pub(in crate::config) fn csrf(check: &mut Check, raw: &RawCsrf) -> CsrfConfig {
    let csrf_header = match HeaderName::from_bytes(raw.header.trim().as_bytes()) {
        Ok(name) => name,
        Err(_) => {
            check.fail("csrf.header", format!("{:?} is not a valid header name", raw.header));
            HeaderName::from_static("x-csrf")
        }
    };

    CsrfConfig { header: csrf_header }
}
