//! The signed-in user's claims as a session record holds them (JSON text), read in place: a
//! route's rules and step-up look at a few claims on every call, without building the others.
//!
//! A check compares JSON *text*: a claim's value as the record holds it with the expected value
//! as `serde_json` writes it. Records are only ever written by `serde_json`, which writes one
//! text for one value (strings escaped the same way, integers in digits, floats shortest), so
//! equal text is equal value, and nothing is unescaped or copied on the request path.

use serde_json::value::RawValue;

/// A session's claims, undecoded: one copy of their JSON text, checked to be JSON as it is read
/// from the record.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct RawClaims(Box<RawValue>);

/// Where a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The claim's value itself.
    Value,
    /// An element of an array claim.
    Element,
}

impl RawClaims {
    /// The claims' JSON text, as the record holds it.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    #[cfg(test)]
    pub fn of(value: &serde_json::Value) -> Self {
        Self::text(&value.to_string())
    }

    #[cfg(test)]
    pub fn text(json: &str) -> Self {
        RawClaims(RawValue::from_string(json.to_string()).expect("JSON"))
    }

    /// Calls `each(index, json, found)` with the JSON text of every string, number or boolean of
    /// every claim that `wanted` names (by an index of the caller's; it is given the name as
    /// the record spells it, between its quotes): the claim's value, or each element of an
    /// array claim. Objects, nested arrays and nulls hold nothing a check reads. Allocates
    /// nothing. `false` when the text is not a JSON object: a check then admits nothing.
    pub fn scan<W, E>(&self, wanted: W, mut each: E) -> bool
    where
        W: Fn(&str) -> Option<usize>,
        E: FnMut(usize, &str, Found),
    {
        members(self.0.get(), |name, value| {
            let Some(index) = wanted(name) else { return true };
            match value.as_bytes().first() {
                Some(b'[') => elements(value, |element| {
                    if !matches!(element.as_bytes().first(), Some(b'[' | b'{' | b'n')) {
                        each(index, element, Found::Element);
                    }
                }),
                Some(b'{' | b'n') => true,
                _ => {
                    each(index, value, Found::Value);
                    true
                }
            }
        })
    }
}

// A reader of JSON text that is already known to be JSON (serde_json checked it when the record
// was read): it finds where members and elements begin and end, and nothing more. It still
// refuses what it does not expect, rather than guess, and never indexes out of bounds.

/// Calls `member(name, value)` for each member of the object `text`, name without its quotes,
/// value as its JSON text, while `member` says go on. `false` if `text` is not an object.
fn members<'a>(text: &'a str, mut member: impl FnMut(&'a str, &'a str) -> bool) -> bool {
    items(text, b'{', b'}', |json| {
        let Some(name) = json.string().and_then(|quoted| quoted.get(1..quoted.len() - 1)) else { return false };
        let Some(value) = json.eat(b':').then(|| json.value()).flatten() else { return false };
        member(name, value)
    })
}

/// Calls `element(json)` for each element of the array `text`. `false` if it is not one.
fn elements<'a>(text: &'a str, mut element: impl FnMut(&'a str)) -> bool {
    items(text, b'[', b']', |json| json.value().map(&mut element).is_some())
}

/// The items of the container `text` (`open` … `close`, comma-separated), each read by `item`
/// from the cursor, while it says go on. `false` if `text` is not such a container.
fn items<'a>(text: &'a str, open: u8, close: u8, mut item: impl FnMut(&mut Cursor<'a>) -> bool) -> bool {
    let mut json = Cursor { text, at: 0 };
    if !json.eat(open) {
        return false;
    }
    if json.eat(close) {
        return json.end();
    }
    loop {
        if !item(&mut json) {
            return false;
        }
        if json.eat(close) {
            return json.end();
        }
        if !json.eat(b',') {
            return false;
        }
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&mut self) -> Option<u8> {
        let rest = self.text.as_bytes().get(self.at..)?;
        self.at += rest.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')).count();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips whitespace and then `byte`, if that is what comes next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        self.at += usize::from(next);
        next
    }

    fn end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// The next value's text: a string, a container (however deep), or a literal.
    fn value(&mut self) -> Option<&'a str> {
        let first = self.peek()?;
        let start = self.at;
        match first {
            b'"' => self.string(),
            b'[' | b'{' => {
                let mut depth = 0usize;
                loop {
                    match self.text.as_bytes().get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    self.at += 1;
                    if depth == 0 {
                        return self.text.get(start..self.at);
                    }
                }
            }
            _ => {
                let rest = self.text.as_bytes().get(self.at..)?;
                let len =
                    rest.iter().take_while(|b| !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')).count();
                self.at += len;
                (len > 0).then(|| self.text.get(start..self.at)).flatten()
            }
        }
    }

    /// The string starting here, quotes included (escapes left as they are).
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at;
        self.at += 1;
        loop {
            match self.text.as_bytes().get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.text.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(claims: &serde_json::Value, names: &[&str]) -> Vec<(usize, String, Found)> {
        let mut seen = Vec::new();
        let ok = RawClaims::of(claims).scan(
            |name| names.iter().position(|n| *n == name),
            |i, json, found| seen.push((i, json.to_string(), found)),
        );
        assert!(ok);
        seen.sort_by_key(|(i, _, _)| *i);
        seen
    }

    #[test]
    fn reads_only_the_wanted_claims_scalars_and_array_elements() {
        let claims = json!({
            "groups": ["a", 2, true, ["nested"], {"x": 1}, null],
            "skip": {"groups": "not this one"},
            "n": -3, "f": 1.5, "b": false, "s": "x\"y\\z", "o": {"a": 1}, "z": null
        });
        let names = ["groups", "n", "f", "b", "s", "o", "z"];
        let el = Found::Element;
        let expected: Vec<(usize, String, Found)> = vec![
            (0, "\"a\"".into(), el),
            (0, "2".into(), el),
            (0, "true".into(), el),
            (1, "-3".into(), Found::Value),
            (2, "1.5".into(), Found::Value),
            (3, "false".into(), Found::Value),
            (4, r#""x\"y\\z""#.into(), Found::Value),
        ];
        assert_eq!(seen(&claims, &names), expected);
    }

    #[test]
    fn a_value_reads_as_the_text_serde_json_writes_for_it() {
        for value in [json!("x\"y\\z\n\u{e9}\u{1}"), json!(3), json!(-3), json!(3.0), json!(1e300), json!(true)] {
            let claims = json!({ "c": [value.clone()], "d": value.clone() });
            let texts: Vec<String> = seen(&claims, &["c", "d"]).into_iter().map(|(_, t, _)| t).collect();
            assert_eq!(texts, [value.to_string(), value.to_string()]);
        }
    }

    #[test]
    fn names_as_the_record_spells_them_and_not_an_object_is_refused() {
        // serde_json escapes only `"`, `\` and control characters; claim names with those are
        // refused by the configuration, so the spelling of a wanted name is the name.
        let raw = RawClaims::text(r#"{"gr\u006fups": "a", "groups": "b"}"#);
        let mut hits = Vec::new();
        assert!(raw.scan(|name| (name == "groups").then_some(0), |_, json, _| hits.push(json.to_string())));
        assert_eq!(hits, ["\"b\""]);
        for text in ["[1]", "\"x\"", "null", "1", "{}x"] {
            assert!(!members(text, |_, _| true), "{text}");
        }
        assert!(members(" { } ", |_, _| true));
        assert!(!members(r#"{"a": 1 "b": 2}"#, |_, _| true));
        assert!(!elements("[1 2]", |_| {}) && !elements("[1,]x", |_| {}) && elements(" [ ] ", |_| {}));
    }

    /// The reader against serde_json itself, on every shape a claim can take, nested, spaced
    /// or not: it sees exactly the members and elements serde_json sees, as serde_json writes them.
    #[test]
    fn reads_what_serde_json_reads() {
        let leaves = [
            json!("plain"),
            json!("q\"uo\\te\n\u{1}\u{e9}\u{1F600}"),
            json!(""),
            json!("]},\"{["),
            json!(0),
            json!(-12),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(-12.5),
            json!(true),
            json!(false),
            json!(null),
        ];
        let mut values: Vec<serde_json::Value> = leaves.to_vec();
        values.push(json!(leaves.to_vec()));
        values.push(json!({"in": leaves.to_vec(), "deeper": [[[{"x": [1, {"y": "]"}]}]]]}));
        values.push(json!([[], {}, [[]], [{}], {"a": {}}]));
        for (i, value) in values.iter().enumerate() {
            let object = json!({ "k": value, "other": values, format!("k{i}"): value });
            for text in [object.to_string(), serde_json::to_string_pretty(&object).unwrap()] {
                let mut seen = Vec::new();
                assert!(members(&text, |name, json| {
                    seen.push((name.to_string(), json.to_string()));
                    true
                }));
                let reference = object.as_object().unwrap();
                assert_eq!(seen.len(), reference.len(), "{text}");
                for (name, json) in &seen {
                    let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
                    assert_eq!(&parsed, &reference[name.as_str()], "{text}");
                    if let serde_json::Value::Array(items) = &parsed {
                        let mut read = Vec::new();
                        assert!(elements(json, |e| read.push(serde_json::from_str::<serde_json::Value>(e).unwrap())));
                        assert_eq!(&read, items);
                    } else if !parsed.is_object() && !text.contains('\n') {
                        assert_eq!(json, &parsed.to_string(), "a scalar reads as serde_json writes it");
                    }
                }
            }
        }
    }
}
