//! The two things the gateway reads in an SSE stream it relays: where a `"usage": {` object
//! starts, and whether a `data: [DONE]` line ended it; and `complete_events`, which finds the
//! events a relayed piece completes and reads both in them, in one call per piece.
//!
//! Both were searches of every relayed byte in Python (bytes.find scans at ~0.5 ns a byte, and
//! a regex confirmed each candidate); here the candidates come from a vectorised substring
//! search and are confirmed by hand. The answers are the Python ones, to the byte.

use std::sync::LazyLock;

use memchr::memmem;

const USAGE_KEY: &[u8] = b"\"usage\"";
const DONE: &[u8] = b"[DONE]";

// Built once: building a searcher costs more than searching one event's few hundred bytes,
// and this runs on every relayed piece.
static USAGE_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(USAGE_KEY));

/// Python's `re` `\s` in bytes mode.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// The span of the first `"usage"\s*:\s*\{` in `data` at or after `start`.
pub fn usage_at(data: &[u8], start: usize) -> Option<(usize, usize)> {
    let from = start.min(data.len());
    for found in USAGE_FINDER.find_iter(&data[from..]) {
        let at = from + found;
        let mut position = at + USAGE_KEY.len();
        while data.get(position).copied().is_some_and(is_space) {
            position += 1;
        }
        if data.get(position) != Some(&b':') {
            continue;
        }
        position += 1;
        while data.get(position).copied().is_some_and(is_space) {
            position += 1;
        }
        if data.get(position) == Some(&b'{') {
            return Some((at, position + 1));
        }
    }
    None
}

/// Whether a line of `data` is `data: [DONE]` (spaces after the colon and a trailing `\r`
/// allowed); `[DONE]` inside a delta's text is on a `data: {...}` line and does not count.
/// Searched from the end, where the marker stands, from each `[` (a vectorised byte search; a
/// chunk holds one or two, and a reverse substring search goes byte by byte).
pub fn has_done_marker(data: &[u8]) -> bool {
    memchr::memrchr_iter(b'[', data).any(|at| data[at..].starts_with(DONE) && is_done_line(data, at))
}

/// Whether the `[DONE]` at `at` stands alone on a `data:` line.
fn is_done_line(data: &[u8], at: usize) -> bool {
    let start = memchr::memrchr(b'\n', &data[..at]).map_or(0, |newline| newline + 1);
    let end = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |offset| at + offset);
    let mut line = &data[start..end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    line.strip_prefix(b"data:").is_some_and(|rest| {
        let spaces = rest.iter().take_while(|&&byte| byte == b' ').count();
        &rest[spaces..] == DONE
    })
}

/// The events complete at the start of a relayed stream's unsent bytes (`complete_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    /// Where the last complete event ends (after its blank line).
    pub end: usize,
    /// Events end in CRLF CRLF, not LF LF.
    pub crlf: bool,
    /// `done`, or a `data: [DONE]` line among these events.
    pub done: bool,
    /// The first `"usage": {` in these events (`usage_at`).
    pub usage: Option<(usize, usize)>,
}

/// The complete events in `data`, or None while no event has ended. `crlf` is how events
/// end once one has (None before: then a CR anywhere in `data` means CRLF); `done` whether
/// `[DONE]` came already (then it is not searched for again).
pub fn complete_events(data: &[u8], crlf: Option<bool>, done: bool) -> Option<Complete> {
    let crlf = crlf.unwrap_or_else(|| memchr::memchr(b'\r', data).is_some());
    let delimiter: &[u8] = if crlf { b"\r\n\r\n" } else { b"\n\n" };
    let end = memmem::rfind(data, delimiter)? + delimiter.len();
    let events = &data[..end];
    Some(Complete {
        end,
        crlf,
        done: done || has_done_marker(events),
        usage: usage_at(events, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_objects_are_found_with_json_whitespace() {
        let data = b"data: {\"usage\": null}\n\ndata: {\"choices\":[],\"usage\" :\n {\"a\":1}}\n\n";
        let (at, end) = usage_at(data, 0).unwrap_or_default();
        assert_eq!(&data[at..end], b"\"usage\" :\n {");
        assert_eq!(usage_at(data, end), None);
        assert_eq!(usage_at(b"\"usage\":", 0), None);
        assert_eq!(usage_at(b"x", 10), None);
    }

    #[test]
    fn only_a_done_line_ends_a_stream() {
        assert!(has_done_marker(b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(has_done_marker(b"data:[DONE]\r\n\r\n"));
        assert!(has_done_marker(b"data:   [DONE]"));
        assert!(!has_done_marker(b"data: {\"content\":\"[DONE]\"}\n\n"));
        assert!(!has_done_marker(b"data: [DONE] later\n\n"));
        assert!(!has_done_marker(b"event: [DONE]\n\n"));
        assert!(!has_done_marker(b"data:\t[DONE]\n\n"));
    }

    #[test]
    fn complete_events_end_at_the_last_blank_line() {
        let data = b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"par";
        let found = complete_events(data, None, false).unwrap_or_else(|| panic!("none"));
        assert_eq!(&data[..found.end], b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert!(!found.crlf && found.done && found.usage.is_none());
        assert_eq!(complete_events(b"data: {\"par", None, false), None);
        assert_eq!(complete_events(b"", Some(false), false), None);
    }

    #[test]
    fn a_cr_anywhere_means_crlf_until_the_ending_is_known() {
        let data = b"data: 1\r\n\r\ndata: 2\n\n";
        let first = complete_events(data, None, false).unwrap_or_else(|| panic!("none"));
        assert!(first.crlf && first.end == 11);
        // Once known, the ending is the caller's: LF then finds the later event.
        let known = complete_events(data, Some(false), false).unwrap_or_else(|| panic!("none"));
        assert!(!known.crlf && known.end == data.len());
        assert_eq!(complete_events(b"data: 1\n\n", Some(true), false), None);
    }

    #[test]
    fn usage_and_done_are_read_only_in_complete_events() {
        let data = b"data: {\"usage\": {\"x\":1}}\n\ndata: [DONE]";
        let found = complete_events(data, None, false).unwrap_or_else(|| panic!("none"));
        assert_eq!(found.usage, Some((7, 17)));
        assert!(!found.done);
        let done = complete_events(b"data: 1\n\n", Some(false), true);
        assert!(done.is_some_and(|found| found.done));
    }
}
