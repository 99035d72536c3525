//! The cache key of a request body: a 128-bit xxh3 of a canonical form.
//!
//! Two bodies that mean the same get the same key: member order, whitespace, escapes and number
//! spelling (`1`, `1.0`, `1e0`) do not matter, and top-level members that are `null` count as
//! absent. Members that cannot change the answer (`user`, `metadata`, `stream`,
//! `stream_options`, `store`) and `model` stay out; the caller prefixes the resolved model and
//! the tenant, so one tenant never reads another's answers. Every other member is in the key.

use std::borrow::Cow;

use xxhash_rust::xxh3::xxh3_128;

use crate::json::{Json, Number};
use crate::CoreError;

/// Top-level members left out of the key.
pub const NOT_IN_KEY: [&str; 6] = [
    "model",
    "user",
    "metadata",
    "stream",
    "stream_options",
    "store",
];

/// The key of a parsed request `body` (an object) for `endpoint` (e.g. `chat`).
pub fn cache_key(endpoint: &str, body: &Json<'_>) -> u128 {
    let mut canon = Canon {
        out: Vec::with_capacity(4096),
        stack: Vec::with_capacity(32),
    };
    canon.write_str(endpoint);
    match body {
        Json::Object(members) => {
            let kept = members
                .iter()
                .filter(|(key, value)| !NOT_IN_KEY.contains(&key.as_ref()) && *value != Json::Null);
            canon.write_object(kept);
        }
        other => canon.write_value(other),
    }
    xxh3_128(&canon.out)
}

/// The key of a raw body; an error when it is not JSON.
pub fn cache_key_of_body(endpoint: &str, body: &[u8]) -> Result<u128, CoreError> {
    let json = Json::parse(body).map_err(|err| CoreError::InvalidBody {
        message: format!("Request body is not valid JSON: {err}"),
        param: None,
    })?;
    Ok(cache_key(endpoint, &json))
}

/// Lower-case hex of a key, as `body_hash` carries it.
pub fn to_hex(key: u128) -> String {
    format!("{key:032x}")
}

type Member<'a> = (Cow<'a, str>, Json<'a>);

// The canonical form is a tagged, length-prefixed byte string, so no two different values
// can share an encoding (no escaping needed).
struct Canon<'b, 'a> {
    out: Vec<u8>,
    /// Members of the objects being written, sorted in place; one allocation for all levels.
    stack: Vec<&'b Member<'a>>,
}

impl<'b, 'a: 'b> Canon<'b, 'a> {
    fn write_value(&mut self, value: &'b Json<'a>) {
        match value {
            Json::Null => self.out.push(b'n'),
            Json::Bool(true) => self.out.push(b't'),
            Json::Bool(false) => self.out.push(b'f'),
            Json::Number(number) => write_number(*number, &mut self.out),
            Json::String(text) => self.write_str(text),
            Json::Array(items) => {
                self.out.push(b'[');
                self.out
                    .extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    self.write_value(item);
                }
            }
            Json::Object(members) => self.write_object(members.iter()),
        }
    }

    fn write_str(&mut self, text: &str) {
        self.out.push(b's');
        self.out
            .extend_from_slice(&(text.len() as u64).to_le_bytes());
        self.out.extend_from_slice(text.as_bytes());
    }

    fn write_object(&mut self, members: impl Iterator<Item = &'b Member<'a>>) {
        let base = self.stack.len();
        self.stack.extend(members);
        let end = self.stack.len();
        if let Some(level) = self.stack.get_mut(base..) {
            // Stable, so of equal keys the last stays last: the member a JSON parser keeps.
            level.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let is_kept = |stack: &[&Member<'_>], i: usize| match (stack.get(i), stack.get(i + 1)) {
            (Some(this), Some(next)) if i + 1 < end => next.0 != this.0,
            _ => true,
        };
        let unique = (base..end).filter(|&i| is_kept(&self.stack, i)).count();
        self.out.push(b'{');
        self.out.extend_from_slice(&(unique as u64).to_le_bytes());
        for i in base..end {
            if !is_kept(&self.stack, i) {
                continue;
            }
            let Some(&member) = self.stack.get(i) else {
                continue;
            };
            self.write_str(&member.0);
            self.write_value(&member.1);
        }
        self.stack.truncate(base);
    }
}

/// Integers (and floats with an integral value that f64 holds exactly) are written as integers,
/// other floats in their shortest round-trip form.
fn write_number(number: Number, out: &mut Vec<u8>) {
    use std::io::Write;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    out.push(b'#');
    // Writing into a Vec cannot fail.
    let _ = match number {
        Number::Unsigned(v) => write!(out, "{v}"),
        Number::Signed(v) => write!(out, "{v}"),
        Number::Float(v) if v.fract() == 0.0 && v.abs() < EXACT => write!(out, "{}", v as i64),
        Number::Float(v) => write!(out, "{v:?}"),
    };
    out.push(b';');
}

#[cfg(test)]
mod tests;
