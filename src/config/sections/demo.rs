//! `[demo]`: the development issuer and API (a `demo` build only).

use super::*;

/// `[demo]`: development only, loopback only, and only in a build that has it.
pub(in crate::config) fn demo(check: &mut Check, raw: &RawDemo, oidc: &RawOidc) -> DemoConfig {
    let mut demo = DemoConfig::default();
    for (key, text, slot) in [
        ("demo.issuer_listen", &raw.issuer_listen, &mut demo.issuer_listen),
        ("demo.api_listen", &raw.api_listen, &mut demo.api_listen),
    ] {
        let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { continue };
        if !cfg!(feature = "demo") {
            check.fail(
                key,
                "the demo (development only) is not in this build; run with: cargo run --release --features demo",
            );
            continue;
        }
        let addr = check.socket_addr(key, text);
        if !addr.ip().is_loopback() {
            check.fail(key, "development only: must be a loopback address such as 127.0.0.1:9400");
            continue;
        }
        *slot = Some(addr);
    }
    if let Some(addr) = demo.issuer_listen {
        let expected = format!("http://{addr}");
        if oidc.issuer.trim() != expected {
            check.fail(
                "oidc.issuer",
                format!("must be {expected:?} to use the development issuer on demo.issuer_listen"),
            );
        }
        if !matches!(oidc.client_auth, ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost) {
            check.fail("oidc.client_auth", "the development issuer on demo.issuer_listen only knows client secrets");
        }
        check.warn(format!("DEVELOPMENT ISSUER on http://{addr}: development only, never in production"));
    }
    if let Some(addr) = demo.api_listen {
        check.warn(format!("DEMO API on http://{addr}: development only"));
    }

    demo
}
