//! A callback whose `state` cloakroom no longer has: the back button onto the provider's page,
//! a second tab, a double submit, a bookmarked sign-in page. None of them is the browser's
//! fault, and none may sign anyone in (the code is never exchanged). What the person wanted is
//! the app:
//!
//! 1. The provider sent an error (`access_denied`, `login_required`): say so, with its code,
//!    and a link to sign in again; never a new sign-in by itself (a silent one would loop).
//! 2. The browser has a live session: on to the app (the pending login's return path when its
//!    login cookie is still here, `/` otherwise).
//! 3. The provider's redirect here is cross-site, so a `SameSite=Strict` session cookie was
//!    not sent: once, a tiny same-origin page comes back here (`resume=1`), and that request
//!    carries it.
//! 4. Still no session: one fresh sign-in, whose `state` is marked; a stale callback of a
//!    marked sign-in gets the readable page instead. At most one new sign-in per navigation,
//!    never a loop.

use super::{query_param, redirect};
use crate::app::App;
use crate::error::LoginError;
use crate::respond::sign_in_href;
use crate::respond::{Body, continue_page};
use crate::session::Lookup;
use http::{HeaderMap, Response};

/// The end of a marked sign-in's `state` (the fresh sign-in a stale callback started). Plain
/// states are 43 base64url characters with no such ending (but by a 2^-48 chance).
pub(crate) const RESTART_MARK: &str = "_restart";

/// Whether this callback is the same-origin second look (3. above).
pub(super) fn is_resume(query: Option<&str>) -> bool {
    query_param(query, "resume").is_ok_and(|v| v.as_deref() == Some("1"))
}

pub(super) async fn answer(
    app: &App,
    headers: &HeaderMap,
    state: Option<&str>,
    provider_error: Option<String>,
    resumed: bool,
) -> Response<Body> {
    let pending = state.and_then(|s| app.sessions.peek_login(s, headers));
    let return_to = pending.as_ref().map_or_else(|| "/".to_string(), |p| p.return_to.clone());
    let provider = pending.and_then(|p| p.provider);
    let again = sign_in_href(&return_to, provider.as_deref());
    if let Some(error) = provider_error {
        tracing::info!("a stale sign-in came back with the provider's error");
        return LoginError::ProviderDenied { error }.answer(&again, headers);
    }
    match app.sessions.lookup_whole(headers, false).await {
        Ok(Lookup::Found(..)) => {
            tracing::info!("a stale sign-in from a browser with a session: on to the app");
            return redirect(&return_to);
        }
        Ok(Lookup::None | Lookup::Stale) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot look up the session of a stale sign-in");
            return LoginError::StoreUnavailable.answer(&again, headers);
        }
    }
    if !resumed {
        return look_again(state);
    }
    if state.is_some_and(|s| s.ends_with(RESTART_MARK)) {
        tracing::info!("the fresh sign-in came back stale too: a page, not another sign-in");
        return LoginError::UnknownState.answer(&again, headers);
    }
    tracing::info!("a stale sign-in without a session: one fresh sign-in");
    redirect(&format!("{again}&restart=1"))
}

/// A same-origin page that comes back here: from it, the browser sends its `SameSite=Strict`
/// session cookie, which the provider's cross-site redirect did not carry.
fn look_again(state: Option<&str>) -> Response<Body> {
    let encoded: String = url::form_urlencoded::byte_serialize(state.unwrap_or_default().as_bytes()).collect();
    let target = format!("/bff/callback?resume=1&state={encoded}");
    continue_page("Continuing", "This sign-in page was already used.", &target)
}
