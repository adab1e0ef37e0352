//! `GET /bff/sessions` lists the signed-in user's sessions; `DELETE /bff/sessions/{id}` ends one
//! of them. Both need the anti-CSRF header. Ids are listing ids, never ticket material, and only
//! the user's own sessions can be named: another user's id is a 404 like any unknown one.

use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    app.csrf.check(request.headers())?;
    let id = request.uri().path().strip_prefix("/bff/sessions").unwrap_or("").trim_start_matches('/').to_string();
    let (ticket, session) = super::signed_in(app, request.headers()).await?;
    match (request.method(), id.is_empty()) {
        (&Method::GET, true) => {
            let listed = app.sessions.list(&session, &ticket).await?;
            let sessions: Vec<_> = listed
                .iter()
                .map(|s| {
                    json!({
                        "id": s.listing.listing_id,
                        "created_at": s.listing.created_at,
                        "last_seen": s.last_seen,
                        "device": s.listing.device,
                        "ip": s.listing.ip,
                        "current": s.current,
                    })
                })
                .collect();
            Ok(json(StatusCode::OK, &json!({ "sessions": sessions })))
        }
        (&Method::DELETE, false) => {
            let ended = app.sessions.end_listed(&session, &id).await?.ok_or(ApiError::NotFound)?;
            app.metrics.logouts(1);
            let response = json(StatusCode::OK, &json!({ "ended": id }));
            Ok(if ended == ticket.store_key() { app.sessions.cookies().cleared(response) } else { response })
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use crate::bff::describe_device;

    #[test]
    fn names_common_browsers_and_systems() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox on Linux"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Version/17.1 Mobile Safari/604.1",
                "Safari on iOS",
            ),
            ("curl/8.5.0", "curl"),
            ("something else", "Unknown device"),
        ];
        for (ua, expected) in cases {
            assert_eq!(describe_device(Some(ua)), expected, "{ua}");
        }
        assert_eq!(describe_device(None), "Unknown device");
    }
}
