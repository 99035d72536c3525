//! The cache key of a request body: a 128-bit xxh3 of a canonical form.
//!
//! Two bodies that mean the same get the same key: member order, whitespace, escapes and number
//! spelling (`1`, `1.0`, `1e0`) do not matter, and top-level members that are `null` count as
//! absent. Members that cannot change the answer (`user`, `metadata`, `stream`,
//! `stream_options`, `store`) and `model` stay out; the caller prefixes the resolved model and
//! the tenant, so one tenant never reads another's answers. Every other member is in the key.

use xxhash_rust::xxh3::xxh3_128;

use crate::json::{Json, Number};

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
    let mut out = Vec::with_capacity(1024);
    write_str(endpoint, &mut out);
    match body {
        Json::Object(members) => {
            let kept = members
                .iter()
                .filter(|(key, value)| !NOT_IN_KEY.contains(&key.as_ref()) && *value != Json::Null);
            write_object(kept, &mut out);
        }
        other => write_value(other, &mut out),
    }
    xxh3_128(&out)
}

/// Lower-case hex of a key, as `body_hash` carries it.
pub fn to_hex(key: u128) -> String {
    format!("{key:032x}")
}

// The canonical form is a tagged, length-prefixed byte string, so no two different values
// can share an encoding (no escaping needed).
fn write_value(value: &Json<'_>, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.push(b'n'),
        Json::Bool(true) => out.push(b't'),
        Json::Bool(false) => out.push(b'f'),
        Json::Number(number) => write_number(*number, out),
        Json::String(text) => write_str(text, out),
        Json::Array(items) => {
            out.push(b'[');
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(item, out);
            }
        }
        Json::Object(members) => write_object(members.iter(), out),
    }
}

fn write_str(text: &str, out: &mut Vec<u8>) {
    out.push(b's');
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn write_object<'b, 'a: 'b, I>(members: I, out: &mut Vec<u8>)
where
    I: Iterator<Item = &'b (std::borrow::Cow<'a, str>, Json<'a>)>,
{
    let mut sorted: Vec<&(std::borrow::Cow<'a, str>, Json<'a>)> = members.collect();
    // Stable sort, then keep the last of equal keys: the member a JSON parser would keep.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique = Vec::with_capacity(sorted.len());
    for (index, member) in sorted.iter().enumerate() {
        if sorted.get(index + 1).is_none_or(|next| next.0 != member.0) {
            unique.push(*member);
        }
    }
    out.push(b'{');
    out.extend_from_slice(&(unique.len() as u64).to_le_bytes());
    for (key, value) in unique {
        write_str(key, out);
        write_value(value, out);
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
