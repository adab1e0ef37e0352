//! The API proxy's reading of a session record: the few fields every call needs, found in the
//! record's JSON text in place, without decoding (or even reaching) the rest.
//!
//! A record is JSON written by `serde_json` from [`Session`](super::Session), whose fields are
//! declared hot first ([`ORDER`]): `ea`, `ate`, `at`, `rt`, `rs` (what every call needs), then
//! `sc`, `c` (what routes with rules add), then the rest. A record that opens with `ea` is in
//! that order, so the reading stops at the first known field past the last one its view needs
//! (a field it does not know, from a later version, is stepped over). A record in another
//! order (written before the fields were ordered) is read to its end. The record was
//! authenticated by its seal before it gets here, so its tail, unread, is exactly what
//! cloakroom wrote.
//!
//! Whatever this reading does not expect (an escape in a token or a key, a number it does not
//! read, a shape it does not know) makes it give up, and the caller decodes the record with
//! `serde_json` as a whole: the fast reading decides nothing on its own that the full decoding
//! would decide otherwise (`fuzz_targets/record` checks the two agree).

use super::{ResourceToken, SessionTokens};
use openidconnect::AccessToken;
use std::collections::BTreeMap;

/// A part of a session record that a view may or may not want ([`SessionTokens`]' `C` and `S`).
pub trait Part: serde::de::DeserializeOwned {
    /// Whether the view decodes it; when not, its value is skipped, and in an ordered record
    /// the reading stops before it.
    const WANTED: bool;
}

impl Part for serde::de::IgnoredAny {
    const WANTED: bool = false;
}

impl Part for super::claims::RawClaims {
    const WANTED: bool = true;
}

impl Part for String {
    const WANTED: bool = true;
}

/// The fields of a record as [`Session`](super::Session) writes them, in that order: an ordered
/// record's fields come by rising rank. (Test: `the_ranks_are_the_order_a_session_is_written_in`.)
pub const ORDER: [&str; 15] =
    ["ea", "ate", "at", "rt", "rs", "dk", "sc", "c", "sub", "sid", "it", "ca", "li", "ui", "pv"];

fn rank(key: &[u8]) -> Option<usize> {
    ORDER.iter().position(|name| name.as_bytes() == key)
}

/// `name`'s place in [`ORDER`], at compile time (a name not there does not compile).
const fn rank_of(name: &str) -> usize {
    let mut i = 0;
    while i < ORDER.len() {
        let known = ORDER[i].as_bytes();
        if known.len() == name.len() {
            let mut j = 0;
            while j < known.len() && known[j] == name.as_bytes()[j] {
                j += 1;
            }
            if j == known.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("a field not in ORDER")
}

/// The view's fields read in place; `None`: the caller decodes the whole record instead.
pub fn tokens<C: Part, S: Part>(text: &[u8]) -> Option<SessionTokens<C, S>> {
    // The last field the view reads, by rank: `dk` (every view: a DPoP route needs the key,
    // and a record without one has `sc` or `c` next), or `sc`, or `c`.
    const DK_RANK: usize = rank_of("dk");
    const SC_RANK: usize = rank_of("sc");
    const C_RANK: usize = rank_of("c");
    let last_wanted = if C::WANTED {
        C_RANK
    } else if S::WANTED {
        SC_RANK
    } else {
        DK_RANK
    };
    let mut cursor = Cursor { bytes: text, at: 0 };
    cursor.eat(b'{')?;
    let (mut expires_at, mut access_token, mut access_token_expires_at) = (None, None, None);
    let (mut refresh_token, mut resource_tokens, mut scope, mut claims) = (None, None, None, None);
    let mut dpop_key = None;
    // `Some(rank of the last field)` in an ordered record.
    let mut ordered: Option<usize> = None;
    let mut first = true;
    loop {
        let key = cursor.plain_string()?;
        cursor.eat(b':')?;
        let rank = rank(key);
        if std::mem::take(&mut first) && rank == Some(0) {
            ordered = Some(0);
        }
        if let (Some(last), Some(rank)) = (ordered, rank) {
            if rank < last {
                return None; // out of order: not a record as cloakroom writes them
            }
            if rank > last_wanted {
                break;
            }
            ordered = Some(rank);
        }
        let (value, escaped) = cursor.value()?;
        match key {
            b"ea" | b"expires_at" => expires_at = Some(integer(value)?),
            b"ate" | b"access_token_expires_at" => access_token_expires_at = Some(optional(value, integer)?),
            b"at" | b"access_token" if !escaped => access_token = Some(std::str::from_utf8(unquoted(value)?).ok()?),
            b"at" | b"access_token" => return None,
            b"rt" | b"refresh_token" => refresh_token = Some(value != b"null"),
            b"rs" | b"resource_tokens" => {
                resource_tokens = Some(serde_json::from_slice::<BTreeMap<String, ResourceToken>>(value).ok()?);
            }
            b"dk" if !escaped => {
                dpop_key = Some(optional(value, |v: &[u8]| String::from_utf8(unquoted(v)?.to_vec()).ok())?)
            }
            b"dk" => return None,
            b"sc" if S::WANTED => scope = Some(optional(value, |v| serde_json::from_slice::<S>(v).ok())?),
            b"c" | b"claims" if C::WANTED => claims = Some(optional(value, |v| serde_json::from_slice::<C>(v).ok())?),
            _ => {}
        }
        match cursor.next()? {
            b',' => continue,
            b'}' if text[cursor.at..].trim_ascii().is_empty() => break,
            _ => return None,
        }
    }
    Some(SessionTokens {
        claims: claims.flatten(),
        scope: scope.flatten(),
        access_token: AccessToken::new(access_token?.to_string()),
        access_token_expires_at: access_token_expires_at.flatten(),
        refresh_token: refresh_token.unwrap_or(false).then_some(serde::de::IgnoredAny),
        resource_tokens: resource_tokens.unwrap_or_default(),
        dpop_key: dpop_key.flatten().map(crate::secret::Secret::new),
        expires_at: expires_at?,
    })
}

/// `null` as `None`, anything else read by `read`.
fn optional<T>(value: &[u8], read: impl FnOnce(&[u8]) -> Option<T>) -> Option<Option<T>> {
    if value == b"null" { Some(None) } else { read(value).map(Some) }
}

/// A non-negative integer in plain digits (what `serde_json` writes for a `u64`).
fn integer(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || (value.len() > 1 && value[0] == b'0') {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A string value's text between its quotes.
fn unquoted(value: &[u8]) -> Option<&[u8]> {
    value.strip_prefix(b"\"")?.strip_suffix(b"\"")
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    /// A string without escapes (a key), its text between the quotes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.skip_whitespace();
        match self.string()? {
            (text, false) => Some(&text[1..text.len() - 1]),
            (_, true) => None,
        }
    }

    /// A string at the cursor, quotes included, and whether it has an escape (stepped over,
    /// not read).
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.at;
        (self.bytes.get(self.at) == Some(&b'"')).then_some(())?;
        let mut at = self.at + 1;
        let mut escaped = false;
        loop {
            at += memchr::memchr2(b'"', b'\\', self.bytes.get(at..)?)?;
            if self.bytes[at] == b'\\' {
                escaped = true;
                at += 2;
            } else {
                self.at = at + 1;
                return Some((self.bytes.get(start..self.at)?, escaped));
            }
        }
    }

    /// Any value's text: a string, an object or array (to its matching end, strings stepped
    /// over), or a scalar (to the next `,`, `}` or `]`); and whether it is a string with an escape.
    fn value(&mut self) -> Option<(&'a [u8], bool)> {
        self.skip_whitespace();
        let start = self.at;
        match *self.bytes.get(self.at)? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.bytes.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some((self.bytes.get(start..self.at)?, false));
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                let rest = self.bytes.get(self.at..)?;
                let len = rest.iter().position(|b| matches!(b, b',' | b'}' | b']')).unwrap_or(rest.len());
                self.at += len;
                Some((self.bytes.get(start..self.at)?.trim_ascii_end(), false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::claims::RawClaims;

    #[test]
    fn the_ranks_are_the_order_a_session_is_written_in() {
        let mut session: crate::session::Session = serde_json::from_value(serde_json::json!({
            "ea": 1, "ate": 1, "at": "a", "rt": "r", "rs": {"x": {"at": "t"}}, "dk": "k", "sc": "s", "c": {},
            "sub": "u", "sid": "s", "it": "i", "ca": 1, "li": "l", "ui": 1, "pv": "p",
        }))
        .unwrap();
        session.claims.insert("k".into(), 1.into());
        let text = serde_json::to_string(&session).unwrap();
        let mut positions: Vec<usize> = ORDER.iter().map(|k| text.find(&format!("\"{k}\":")).expect(k)).collect();
        let written = positions.clone();
        positions.sort_unstable();
        assert_eq!(positions, written, "{text}");
    }

    #[test]
    fn a_field_of_a_later_version_is_stepped_over() {
        let text = br#"{"ea":2000,"at":"tok","new":{"a":[1]},"rt":"r","sc":"s"}"#;
        let tokens: SessionTokens = tokens(text).expect("read");
        assert!(tokens.can_refresh());
    }

    #[test]
    fn integers_are_plain_digits_that_fit() {
        assert_eq!(integer(b"0"), Some(0));
        assert_eq!(integer(b"18446744073709551615"), Some(u64::MAX));
        for refused in [&b""[..], b"-1", b"1.5", b"1e3", b"01", b"18446744073709551616", b"\"1\"", b"null"] {
            assert_eq!(integer(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn an_ordered_record_is_read_only_as_far_as_the_view_needs() {
        // What follows the view's fields is not even looked at (here: not JSON at all).
        let text = br#"{"ea":2000,"ate":1800,"at":"tok","rt":"r","sc":"a b",!!!"#;
        let tokens: SessionTokens = tokens(text).expect("read");
        assert_eq!((tokens.access_token.secret().as_str(), tokens.expires_at), ("tok", 2000));
        assert_eq!(tokens.access_token_expires_at, Some(1800));
        assert!(tokens.can_refresh() && tokens.resource_tokens.is_empty());
        // A view that wants the scope and claims reads on, and needs them whole.
        assert!(super::tokens::<RawClaims, String>(text).is_none());
        let text = br#"{"ea":2000,"at":"tok","sc":"a b","c":{"g":["x"]},"sub":!!!"#;
        let ruled = super::tokens::<RawClaims, String>(text).expect("read");
        assert_eq!(ruled.scope.as_deref(), Some("a b"));
        assert!(ruled.claims.is_some() && !ruled.can_refresh() && ruled.access_token_expires_at.is_none());
    }

    #[test]
    fn what_it_does_not_expect_is_left_to_the_whole_decoding() {
        for text in [
            &br#"{"ea":2000,"at":"to\u006bn"}"#[..], // an escape in the token
            br#"{"e\u0061":2000,"at":"tok"}"#,       // an escape in a key
            br#"{"ea":2e3,"at":"tok"}"#,             // a number it does not read
            br#"{"ea":2000}"#,                       // no token
            br#"{"at":"tok"}"#,                      // no expiry
            br#"{"ea":2000,"at":"tok"} x"#,          // trailing bytes
            br#"{"sub":"a","ea":2000,"at":"tok""#,   // unordered and cut short
            br#"{"ea":2000,"rt":"r","at":"tok"}"#,   // ordered, then out of order
            b"{}",
            b"",
            b"[1]",
        ] {
            assert!(tokens::<serde::de::IgnoredAny, serde::de::IgnoredAny>(text).is_none(), "{text:?}");
        }
    }
}
