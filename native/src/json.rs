//! A JSON tree that borrows its strings from the request body.
//!
//! Request bodies are read once and dropped, so most strings (those without escapes) never need
//! copying; objects keep their members in body order as a vector, which is all the inspector
//! and the cache key need (lookups are over a handful of keys).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Arrays and objects nest at most this deep (serde_json's limit): the parser recurses, and a
/// body of ten thousand `[` must be refused, not overflow the stack.
const MAX_DEPTH: usize = 128;

/// A JSON number as the parser saw it; integers stay exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Unsigned(v) => v as f64,
            Number::Signed(v) => v as f64,
            Number::Float(v) => v,
        }
    }

    /// The integer value, if the literal was an integer (`5`, not `5.0`).
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Unsigned(v) => i64::try_from(v).ok(),
            Number::Signed(v) => Some(v),
            Number::Float(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Why a body is not JSON, and where: sonic-rs's text up to its excerpt of the body. The
/// excerpt would quote the client's prompt into error answers, and from there into logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(String);

impl From<sonic_rs::Error> for SyntaxError {
    fn from(err: sonic_rs::Error) -> Self {
        let text = err.to_string();
        let reason = text.split('\n').next().unwrap_or_default().trim_end();
        SyntaxError(reason.to_owned())
    }
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> Json<'a> {
    /// Parse `body` with sonic-rs (SIMD; its error text names line and column).
    pub fn parse(body: &'a [u8]) -> Result<Self, SyntaxError> {
        let mut deserializer = sonic_rs::Deserializer::from_slice(body);
        let json = JsonSeed { depth: 0 }.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(json)
    }

    /// The member `key` of an object (the last one, as JSON parsers that keep one do).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// A value `depth` arrays or objects deep.
#[derive(Clone, Copy)]
struct JsonSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for JsonSeed {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(JsonVisitor { depth: self.depth })
    }
}

struct JsonVisitor {
    depth: usize,
}

impl JsonVisitor {
    fn inner<E: de::Error>(&self) -> Result<JsonSeed, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(JsonSeed {
            depth: self.depth + 1,
        })
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(Number::Signed(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(Number::Unsigned(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Number(Number::Float(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let seed = self.inner()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(seed)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let seed = self.inner()?;
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value_seed(seed)?));
        }
        Ok(Json::Object(members))
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        JsonSeed { depth: 0 }.deserialize(deserializer)
    }
}

/// An object key that borrows from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v)))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let body = br#"{"a": "plain", "b": "esc\"aped", "c": [1, -2, 2.5, null, true]}"#;
        let json = Json::parse(body).unwrap();
        assert!(matches!(
            json.get("a"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(json.get("b"), Some(Json::String(Cow::Owned(s))) if s == "esc\"aped"));
        let Some(Json::Array(items)) = json.get("c") else {
            panic!("array")
        };
        assert_eq!(items[1], Json::Number(Number::Signed(-2)));
        assert_eq!(items[2], Json::Number(Number::Float(2.5)));
    }

    #[test]
    fn duplicate_keys_resolve_to_the_last() {
        let json = Json::parse(br#"{"k": 1, "k": 2}"#).unwrap();
        assert_eq!(json.get("k"), Some(&Json::Number(Number::Unsigned(2))));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [&b"{"[..], b"[1,]", b"{\"a\":1} x", b"", b"\xff"] {
            assert!(Json::parse(body).is_err());
        }
    }

    #[test]
    fn syntax_errors_say_where_but_quote_nothing_of_the_body() {
        let body = br#"{"messages": [{"content": "card 4111-1111 PROMPT-SECRET \q tail"}]}"#;
        let text = Json::parse(body).unwrap_err().to_string();
        assert!(text.contains("line 1 column"), "{text}");
        for quoted in ["SECRET", "4111", "tail", "\n"] {
            assert!(!text.contains(quoted), "{text}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        // Unoptimised builds use ~16 KB of stack per level (optimised ones ~1.5 KB), more than
        // a test thread's default 2 MB at the limit.
        let parse_on_a_large_stack = |body: String| {
            std::thread::Builder::new()
                .stack_size(32 << 20)
                .spawn(move || Json::parse(body.as_bytes()).is_ok())
                .map(|thread| thread.join().unwrap_or(false))
                .unwrap_or(false)
        };
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse_on_a_large_stack(nested(MAX_DEPTH)));
        assert!(!parse_on_a_large_stack(nested(MAX_DEPTH + 1)));
        assert!(!parse_on_a_large_stack("[".repeat(100_000)));
        assert!(!parse_on_a_large_stack("{\"a\":".repeat(100_000)));
    }
}
