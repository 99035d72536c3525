//! The request an upstream gets, in two single passes: the client's JSON body with the
//! gateway's edits spliced in (the upstream's own model name; usage asked for on a stream),
//! and the framing around it (request line, the client's headers that cross, the gateway's own,
//! `Content-Length`). Each used to be several Python steps, and every one of them runs before
//! the upstream has the request.

use std::sync::OnceLock;

use memchr::memmem::Finder;

use crate::header_rules::{push_forwarded, Header};

/// Asks a stream to end with a usage event; spliced in as the object's first member.
pub const WANT_USAGE: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// The gateway's edits to a client's JSON object body.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodyEdit<'a> {
    /// Where the body's one `model` value stands, between its quotes (as inspection found it);
    /// None when it may not be spliced (named twice, or written with escapes).
    pub model_span: Option<(usize, usize)>,
    /// The upstream's model name, JSON-escaped and without quotes; None keeps the client's.
    pub model: Option<&'a [u8]>,
    /// Ask for usage (`WANT_USAGE`), for a stream whose client did not.
    pub add_usage: bool,
}

/// Where a splice cuts the body, and what it puts in.
struct Splice<'a> {
    /// Just after the object's opening bracket, when usage is asked for.
    after_brace: Option<usize>,
    model_at: (usize, usize),
    model: &'a [u8],
}

impl<'a> BodyEdit<'a> {
    /// The splice, or None when the body must be parsed and written again instead: no span to
    /// splice at, or (usage asked for) a `stream_options` already there, or a `\u` escape
    /// anywhere, which could spell one.
    fn splice(&self, body: &'a [u8]) -> Option<Splice<'a>> {
        let (start, end) = self.model_span?;
        if start > end || end > body.len() {
            return None;
        }
        let after_brace = if self.add_usage {
            if finds(&STREAM_OPTIONS, br#""stream_options""#, body) || finds(&ESCAPE, br"\u", body) {
                return None;
            }
            let brace = memchr::memchr(b'{', body)?;
            if brace >= start {
                return None;
            }
            Some(brace + 1)
        } else {
            None
        };
        Some(Splice {
            after_brace,
            model_at: (start, end),
            model: self.model.unwrap_or(&body[start..end]),
        })
    }

    fn changes_anything(&self) -> bool {
        self.model.is_some() || self.add_usage
    }
}

impl Splice<'_> {
    fn len(&self, body: &[u8]) -> usize {
        let (start, end) = self.model_at;
        let usage = if self.after_brace.is_some() { WANT_USAGE.len() } else { 0 };
        body.len() - (end - start) + self.model.len() + usage
    }

    fn push(&self, out: &mut Vec<u8>, body: &[u8]) {
        let (start, end) = self.model_at;
        let mut from = 0;
        if let Some(after_brace) = self.after_brace {
            out.extend_from_slice(&body[..after_brace]);
            out.extend_from_slice(WANT_USAGE);
            from = after_brace;
        }
        out.extend_from_slice(&body[from..start]);
        out.extend_from_slice(self.model);
        out.extend_from_slice(&body[end..]);
    }
}

/// The body an upstream gets; None when `edit` cannot be spliced into it (see `BodyEdit`).
pub fn spliced_body(body: &[u8], edit: &BodyEdit<'_>) -> Option<Vec<u8>> {
    if !edit.changes_anything() {
        return Some(body.to_vec());
    }
    let splice = edit.splice(body)?;
    let mut out = Vec::with_capacity(splice.len(body));
    splice.push(&mut out, body);
    Some(out)
}

/// A request's bytes: `start` (its request line and `Host`, checked by the caller), the
/// client's `headers` that an upstream gets (`header_rules::forwarded_lines`), `own` (the
/// gateway's lines, checked by the caller), `Content-Length` for `body`, and `body` itself
/// unless `with_body` is false (a large one goes to the socket as it is, uncopied).
pub fn request_bytes(
    start: &[u8],
    headers: &[Header<'_>],
    own: &[u8],
    body: &[u8],
    with_body: bool,
) -> Vec<u8> {
    let lines: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let kept = if with_body { body.len() } else { 0 };
    let mut out = Vec::with_capacity(start.len() + lines + own.len() + 40 + kept);
    out.extend_from_slice(start);
    push_forwarded(&mut out, headers);
    out.extend_from_slice(own);
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

static STREAM_OPTIONS: OnceLock<Finder<'static>> = OnceLock::new();
static ESCAPE: OnceLock<Finder<'static>> = OnceLock::new();

/// Whether `needle` is in `haystack`, with a searcher built once (building one costs more
/// than searching a typical body).
fn finds(finder: &OnceLock<Finder<'static>>, needle: &'static [u8], haystack: &[u8]) -> bool {
    finder
        .get_or_init(|| Finder::new(needle))
        .find(haystack)
        .is_some()
}

#[cfg(test)]
mod tests;
