//! What an ID token's `acr` and `auth_time` say about a sign-in, judged by one rule wherever it
//! is asked: at the callback (a sign-in that asked for `acr_values` or `max_age` must reach
//! them) and on every call to a route with a step-up requirement.

/// Whether `auth_time` (unix seconds) is at most `max_age` seconds before `now`. The provider's
/// clock may be `skew` seconds off ours either way: an `auth_time` up to `skew` ahead is now,
/// and up to `max_age + skew` behind is recent. Further ahead is refused (a provider's clock
/// cannot be that far off and still have its ID token's `iat` accepted); absent is refused.
pub fn recent_enough(auth_time: Option<u64>, max_age: u64, now: u64, skew: u64) -> bool {
    auth_time.is_some_and(|at| at <= now.saturating_add(skew) && now.saturating_sub(at) <= max_age.saturating_add(skew))
}

/// Whether the sign-in's `acr` is one of those asked for (exact comparison, as the values are
/// configured or validated). No `acr` meets no requirement.
pub fn acr_is_one_of<'a>(acr: Option<&str>, asked: impl IntoIterator<Item = &'a str>) -> bool {
    acr.is_some_and(|acr| asked.into_iter().any(|a| a == acr))
}

/// Where a sign-in fell short of what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// `max_age` was asked and `auth_time` is missing, older, or in the future.
    TooOld,
    /// `acr_values` was asked and the `acr` is none of them.
    TooWeak,
}

/// Whether a sign-in's ID-token claims meet what it asked the provider for: an `auth_time`
/// within `max_age` (by [`recent_enough`]) and an `acr` among the space-separated `acr_values`.
pub fn meets_request(
    claims: &serde_json::Map<String, serde_json::Value>,
    max_age: Option<u64>,
    acr_values: Option<&str>,
    now: u64,
    skew: u64,
) -> Result<(), Shortfall> {
    if let Some(max_age) = max_age {
        let auth_time = claims.get("auth_time").and_then(serde_json::Value::as_u64);
        if !recent_enough(auth_time, max_age, now, skew) {
            return Err(Shortfall::TooOld);
        }
    }
    if let Some(asked) = acr_values {
        let acr = claims.get("acr").and_then(serde_json::Value::as_str);
        if !acr_is_one_of(acr, asked.split(' ')) {
            return Err(Shortfall::TooWeak);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_time_is_recent_within_max_age_and_the_skew_either_way() {
        let now = 1_800_000_000;
        assert!(recent_enough(Some(now - 300), 300, now, 0));
        assert!(!recent_enough(Some(now - 301), 300, now, 0), "too old");
        assert!(recent_enough(Some(now - 360), 300, now, 60), "the provider's clock behind ours");
        assert!(recent_enough(Some(now + 60), 300, now, 60), "ahead, within the skew");
        // Issue 26, item 6: the callback let an auth_time any amount in the future pass.
        assert!(!recent_enough(Some(now + 61), 300, now, 60), "from the future, past the skew");
        assert!(!recent_enough(Some(u64::MAX), 300, now, 60), "from the far future");
        assert!(!recent_enough(None, 300, now, 60), "absent");
    }

    #[test]
    fn acr_must_be_one_that_was_asked_for() {
        assert!(acr_is_one_of(Some("mfa"), "mfa hwk".split(' ')));
        assert!(!acr_is_one_of(Some("pwd"), "mfa hwk".split(' ')));
        assert!(!acr_is_one_of(None, ["mfa"]));
        assert!(!acr_is_one_of(Some("mf"), ["mfa"]));
    }

    #[test]
    fn a_sign_in_meets_what_it_asked_for_or_says_where_it_fell_short() {
        let now = 1_800_000_000;
        let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
        let fresh_mfa = claims(serde_json::json!({"acr": "mfa", "auth_time": now - 10}));
        assert_eq!(meets_request(&fresh_mfa, Some(300), Some("mfa hwk"), now, 60), Ok(()));
        assert_eq!(meets_request(&fresh_mfa, None, None, now, 60), Ok(()), "nothing asked");
        let old_pwd = claims(serde_json::json!({"acr": "pwd", "auth_time": now - 1000}));
        assert_eq!(meets_request(&old_pwd, Some(300), None, now, 60), Err(Shortfall::TooOld));
        assert_eq!(meets_request(&old_pwd, None, Some("mfa"), now, 60), Err(Shortfall::TooWeak));
        let future = claims(serde_json::json!({"auth_time": now + 3600}));
        assert_eq!(meets_request(&future, Some(300), None, now, 60), Err(Shortfall::TooOld), "from the future");
    }
}
