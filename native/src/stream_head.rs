//! The head of an event stream relayed to the client, made in one pass from the upstream's
//! answer head: the status line, the upstream's headers the client keeps
//! (`header_rules::returned_block`), the gateway's own lines, then the date and framing the
//! server writes. It goes out from the upstream connection's callback, before the first event,
//! so what it costs is added to every stream's first byte.

use crate::header_rules::{returned_block, Header};

/// What the gateway says of itself on a relayed stream's head.
pub struct StreamStamp<'a> {
    pub request_id: &'a [u8],
    /// `hit` or `miss`.
    pub cache: &'a [u8],
    /// Time spent inside the gateway so far; a negative figure is written as zero.
    pub overhead_seconds: f64,
    /// More `name: value\r\n` lines (the limits' `x-ratelimit-*`), written as they are.
    pub lines: &'a [u8],
}

/// Whether the answer's (first) `Content-Type` names an event stream.
pub fn is_event_stream(headers: &[Header<'_>]) -> bool {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"content-type"))
        .is_some_and(|(_, value)| value.starts_with(b"text/event-stream"))
}

/// `status_line`, the headers the client keeps, no caching, the gateway's stamp, then `tail`
/// (the date line and the framing, with the blank line that ends the head); None when the
/// answer is no event stream.
pub fn event_stream_head(
    headers: &[Header<'_>],
    status_line: &[u8],
    stamp: &StreamStamp<'_>,
    tail: &[u8],
) -> Option<Vec<u8>> {
    if !is_event_stream(headers) {
        return None;
    }
    let mut own = Vec::with_capacity(128 + stamp.request_id.len() + stamp.lines.len());
    own.extend_from_slice(b"Cache-Control: no-cache\r\nx-request-id: ");
    own.extend_from_slice(stamp.request_id);
    own.extend_from_slice(b"\r\nx-cache: ");
    own.extend_from_slice(stamp.cache);
    // In microseconds, written as ms with 3 decimals: integer formatting (an exact float
    // formatter costs as much as the rest of the head).
    let micros = if stamp.overhead_seconds > 0.0 {
        (stamp.overhead_seconds * 1e6).round() as u64
    } else {
        0
    };
    own.extend_from_slice(b"\r\nx-sidegate-overhead-ms: ");
    push_decimal(&mut own, micros / 1000);
    let fraction = micros % 1000;
    own.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
    own.extend_from_slice(b"\r\n");
    own.extend_from_slice(stamp.lines);
    let block = returned_block(headers, &own);
    let mut head = Vec::with_capacity(status_line.len() + block.len() + tail.len());
    head.extend_from_slice(status_line);
    head.extend_from_slice(&block);
    head.extend_from_slice(tail);
    Some(head)
}

/// `value` in decimal digits (by hand: `write!` costs a fifth of the head).
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests;
