//! The access log's line: one JSON object per proxied request, written in one pass.
//!
//! It is the line the Python `JsonFormatter` writes for the same fields (the same keys in the
//! same order, the same values once parsed): `timestamp` as `datetime.isoformat` writes it to
//! the millisecond, numbers rounded as Python's `round` rounds them. Building a dict and
//! serialising it cost more per request than the request's own accounting.

use crate::utc_text;

/// What one line says; strings are the request's own (client text is escaped, never trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessFields<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub tenant: &'a str,
    pub key_id: Option<&'a str>,
    pub model: &'a str,
    pub upstream: &'a str,
    pub status: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub cache: &'a str,
    pub attempts: i64,
}

/// Appends the line (with its newline) for a request logged at `created` (Unix seconds).
/// `warning` is the level of a 5xx answer; every other answer is `info`.
pub fn write_line(out: &mut Vec<u8>, created: f64, warning: bool, fields: &AccessFields<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    utc_text::write_iso_millis(out, created);
    out.extend_from_slice(if warning {
        b"\",\"level\":\"warning\""
    } else {
        b"\",\"level\":\"info\""
    });
    out.extend_from_slice(b",\"logger\":\"sidegate.access\",\"message\":\"request\"");
    text(out, "request_id", Some(fields.request_id));
    text(out, "trace_id", fields.trace_id);
    text(out, "span_id", fields.span_id);
    text(out, "tenant", Some(fields.tenant));
    text(out, "key_id", fields.key_id);
    text(out, "model", Some(fields.model));
    text(out, "upstream", Some(fields.upstream));
    integer(out, "status", fields.status);
    integer(out, "input_tokens", fields.input_tokens);
    integer(out, "output_tokens", fields.output_tokens);
    float(out, "cost_usd", round_to(fields.cost_usd, 8));
    float(out, "latency_ms", round_to(fields.latency_ms, 3));
    text(out, "cache", Some(fields.cache));
    integer(out, "attempts", fields.attempts);
    out.extend_from_slice(b"}\n");
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn text(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    key(out, name);
    match value {
        Some(value) if !value.bytes().any(needs_escape) => {
            out.push(b'"');
            out.extend_from_slice(value.as_bytes());
            out.push(b'"');
        }
        // Writing into a Vec cannot fail; serde_json escapes as orjson does.
        Some(value) => {
            if serde_json::to_writer(&mut *out, value).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

fn integer(out: &mut Vec<u8>, name: &str, value: i64) {
    key(out, name);
    if value < 0 {
        out.push(b'-');
    }
    utc_text::write_digits(out, value.unsigned_abs(), 1);
}

fn float(out: &mut Vec<u8>, name: &str, value: f64) {
    key(out, name);
    if value.is_finite() {
        // The shortest text that reads back as the same double (orjson writes the same).
        if serde_json::to_writer(&mut *out, &value).is_ok() {
            return;
        }
    }
    out.extend_from_slice(b"null"); // as orjson writes NaN and infinities
}

/// Python's `round(value, digits)`: the decimal correctly rounded (ties to even on the exact
/// binary value), read back as a double.
///
/// `value * 10^digits` rounded to an integer `n` gives it as `n / 10^digits` (both exact,
/// the division correctly rounded) unless the product landed within its own rounding error
/// of a tie, where only the exact decimal expansion can tell: then the text is formatted.
pub fn round_to(value: f64, digits: usize) -> f64 {
    const POWERS: [f64; 9] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];
    if !value.is_finite() {
        return value;
    }
    if let Some(&power) = POWERS.get(digits) {
        let scaled = value * power;
        let fraction = (scaled - scaled.trunc()).abs();
        let slack = scaled.abs() * 4.0 * f64::EPSILON;
        if scaled.abs() < 4.5e15 && (fraction - 0.5).abs() > slack {
            return scaled.round() / power;
        }
    }
    format!("{value:.digits$}").parse().unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> AccessFields<'static> {
        AccessFields {
            request_id: "req_1",
            trace_id: None,
            span_id: Some("00f067aa0ba902b7"),
            tenant: "acme",
            key_id: Some("a1b2c3"),
            model: "gpt-4o \"mini\"\n",
            upstream: "openai",
            status: 200,
            input_tokens: 12,
            output_tokens: 9,
            cost_usd: 0.000_007_200_000_1,
            latency_ms: 0.412_49,
            cache: "miss",
            attempts: 1,
        }
    }

    fn line(created: f64, warning: bool) -> String {
        let mut out = Vec::new();
        write_line(&mut out, created, warning, &fields());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn the_line_is_one_json_object_with_the_contract_fields_in_order() {
        let text = line(1_764_756_000.123_456, false);
        assert!(text.ends_with("}\n"));
        assert_eq!(
            text,
            "{\"timestamp\":\"2025-12-03T10:00:00.123+00:00\",\"level\":\"info\",\
             \"logger\":\"sidegate.access\",\"message\":\"request\",\"request_id\":\"req_1\",\
             \"trace_id\":null,\"span_id\":\"00f067aa0ba902b7\",\"tenant\":\"acme\",\
             \"key_id\":\"a1b2c3\",\"model\":\"gpt-4o \\\"mini\\\"\\n\",\"upstream\":\"openai\",\
             \"status\":200,\"input_tokens\":12,\"output_tokens\":9,\"cost_usd\":7.2e-6,\
             \"latency_ms\":0.412,\"cache\":\"miss\",\"attempts\":1}\n"
        );
        assert!(line(0.0, true).contains("\"level\":\"warning\""));
        let mut out = Vec::new();
        integer(&mut out, "n", -1200);
        integer(&mut out, "z", 0);
        assert_eq!(out, b",\"n\":-1200,\"z\":0");
    }

    #[test]
    fn rounding_is_pythons() {
        assert_eq!(round_to(0.125, 2), 0.12);
        assert_eq!(round_to(-0.125, 2), -0.12);
        assert_eq!(round_to(1e300, 3), 1e300);
        assert_eq!(round_to(0.375, 2), 0.38);
        assert_eq!(round_to(2.675, 2), 2.67); // 2.67499999... in binary
        assert!(round_to(f64::NAN, 3).is_nan());
    }
}
