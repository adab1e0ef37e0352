//! The browser: a cookie jar, redirects off, and a record of everything it received.

use super::*;

#[derive(Debug, Clone)]
struct JarCookie {
    name: String,
    value: String,
    path: String,
}

#[derive(Default)]
pub struct Browser {
    jar: Vec<JarCookie>,
    /// Sent as `User-Agent` on every request when set.
    pub user_agent: Option<String>,
    /// Every header and body this browser received, for token scans.
    pub received: Vec<u8>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.iter().find(|c| c.name == name).map(|c| c.value.clone())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.retain(|c| c.name != name);
        self.jar.push(JarCookie { name: name.into(), value: value.into(), path: "/".into() });
    }

    /// Leaves a cookie out of the jar: what a browser does for a `SameSite=Strict` cookie on a
    /// cross-site request (the provider's redirect back, where the provider is on another site).
    pub fn forget(&mut self, name: &str) {
        self.jar.retain(|c| c.name != name);
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.jar.iter().map(|c| c.name.clone()).collect()
    }

    fn cookie_header(&self, path: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .jar
            .iter()
            .filter(|c| {
                path == c.path || path.starts_with(&format!("{}/", c.path.trim_end_matches('/'))) || c.path == "/"
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store(&mut self, reply: &Reply) {
        for header in reply.set_cookies() {
            let Ok(parsed) = cookie::Cookie::parse(header.clone()) else {
                continue;
            };
            let path = parsed.path().unwrap_or("/").to_string();
            let name = parsed.name().to_string();
            self.jar.retain(|c| !(c.name == name && c.path == path));
            let expired = parsed.max_age().is_some_and(|age| age.is_zero() || age.is_negative())
                || matches!(parsed.expires(), Some(cookie::Expiration::DateTime(t)) if t < cookie::time::OffsetDateTime::now_utc());
            if !expired {
                self.jar.push(JarCookie { name, value: parsed.value().to_string(), path });
            }
        }
        for (name, value) in &reply.headers {
            self.received.extend_from_slice(name.as_str().as_bytes());
            self.received.extend_from_slice(b": ");
            self.received.extend_from_slice(value.as_bytes());
            self.received.push(b'\n');
        }
        self.received.extend_from_slice(&reply.body);
    }

    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = url::Url::parse(url).unwrap().path().to_string();
        let mut all: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(cookies) = self.cookie_header(&path) {
            all.push((COOKIE.as_str(), cookies));
        }
        if let Some(agent) = &self.user_agent {
            all.push(("user-agent", agent.clone()));
        }
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = http_call(method, url, body, &refs).await;
        self.store(&reply);
        reply
    }

    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(Method::GET, url, None, headers).await
    }

    /// Follows redirects with GET until `stop(url)` says so (returning that URL unvisited) or a
    /// non-redirect answer arrives (returning its URL and reply).
    pub async fn follow(&mut self, start: &str, stop: impl Fn(&str) -> bool) -> (String, Reply) {
        let mut url = start.to_string();
        for _ in 0..20 {
            let reply = self.get(&url, &[]).await;
            match reply.location() {
                Some(location) if (300..400).contains(&reply.status) => {
                    url = url::Url::parse(&url).unwrap().join(location).unwrap().to_string();
                    if stop(&url) {
                        return (url, reply);
                    }
                }
                _ => return (url, reply),
            }
        }
        panic!("redirect loop from {start}");
    }
}
