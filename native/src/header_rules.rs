//! Which headers cross the gateway, each way: the one list of rules, read by the Python side
//! too (`sidegate.upstream.headers`), so the native and the Python path agree.

/// RFC 9110 §7.6.1 hop-by-hop headers: they describe one connection, never the next.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client's credentials (the upstream's own key is added instead, and an OpenAI
/// organization or project of the client's would not match it) and what the gateway frames or
/// negotiates itself.
pub const CLIENT_ONLY: [&str; 11] = [
    "host",
    "content-length",
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "accept-encoding",
    "content-encoding",
    "expect",
    "openai-organization",
    "openai-project",
];

/// What only the upstream's own connection or answer means (the operator's OpenAI organization,
/// project and quota are not a tenant's business), and what the gateway writes itself (its own
/// `x-ratelimit-*` for the tenant's plan).
pub const UPSTREAM_ONLY: [&str; 14] = [
    "content-length",
    "content-encoding",
    "date",
    "server",
    "set-cookie",
    "x-request-id",
    "openai-organization",
    "openai-project",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// A header as it stands in a message: name and value.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// The upstream's answer headers the client gets, in the upstream's order, and the
/// upstream's own request id (the first non-empty `x-request-id`), which the client gets
/// as `x-upstream-request-id`. Headers named in `written` (`name: value\r\n` lines the
/// gateway writes on the answer itself, its `x-ratelimit-*`) are the gateway's, not the
/// upstream's.
pub fn returned_headers<'a>(
    headers: &[Header<'a>],
    written: &[u8],
) -> (Vec<Header<'a>>, Option<&'a [u8]>) {
    let named = connection_named(headers);
    let kept = headers
        .iter()
        .filter(|(name, _)| is_returned(name, &named, written))
        .copied()
        .collect();
    (kept, upstream_request_id(headers))
}

/// Whether the client gets the upstream's header `name`: not the upstream's own, nor
/// hop-by-hop, nor named by `Connection` (`named`), nor one the gateway writes (`written`).
fn is_returned(name: &[u8], named: &[&[u8]], written: &[u8]) -> bool {
    // `written` is read only for the few headers the rules keep.
    is_kept(name, &UPSTREAM_ONLY, named) && !has_line_named(written, name)
}

/// The upstream's own request id: the first non-empty `x-request-id`.
fn upstream_request_id<'a>(headers: &[Header<'a>]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"x-request-id"))
        .map(|(_, value)| *value)
        .filter(|value| !value.is_empty())
}

/// The header block a client gets for a relayed answer: `returned_headers`' lines, values
/// byte for byte, the upstream's request id as `x-upstream-request-id`, then `written` (the
/// gateway's own lines, which replace any upstream header of the same name) as they are.
/// The upstream's id replaces an `x-upstream-request-id` of its own (a gateway in front of
/// another), as it does in `returned`'s dict.
pub fn returned_block(headers: &[Header<'_>], written: &[u8]) -> Vec<u8> {
    // One pass, straight into the block: this runs on every relayed stream's head.
    let named = connection_named(headers);
    let upstream_id = upstream_request_id(headers);
    let mut block = Vec::with_capacity(256 + written.len());
    let mut push = |name: &[u8], value: &[u8]| {
        block.extend_from_slice(name);
        block.extend_from_slice(b": ");
        block.extend_from_slice(value);
        block.extend_from_slice(b"\r\n");
    };
    for &(name, value) in headers {
        let replaced_id =
            upstream_id.is_some() && name.eq_ignore_ascii_case(b"x-upstream-request-id");
        if !replaced_id && is_returned(name, &named, written) {
            push(name, value);
        }
    }
    if let Some(id) = upstream_id {
        push(b"x-upstream-request-id", id);
    }
    block.extend_from_slice(written);
    block
}

/// Whether one of `lines` (`name: value\r\n` lines) is named `name`, ASCII case aside: a line's
/// name is what comes before its first colon.
fn has_line_named(lines: &[u8], name: &[u8]) -> bool {
    let mut rest = lines;
    while !rest.is_empty() {
        if rest.get(name.len()) == Some(&b':') && rest[..name.len()].eq_ignore_ascii_case(name) {
            return true;
        }
        match memchr::memchr(b'\n', rest) {
            Some(at) => rest = &rest[at + 1..],
            None => return false,
        }
    }
    false
}

/// `(name, value)` of each `name: value\r\n` line, the value without its surrounding
/// spaces; a line without a colon is skipped (found with memchr: this runs on every answer).
pub fn line_pairs(lines: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = lines;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
            let (line, after) = rest.split_at(end);
            rest = after;
            if let Some(colon) = memchr::memchr(b':', line) {
                return Some((&line[..colon], line[colon + 1..].trim_ascii()));
            }
        }
        None
    })
}

/// `name: value\r\n` for each header an upstream gets, in the client's order: every header
/// but the hop-by-hop ones, the client-only ones and those a `Connection` header names.
/// Values are passed on byte for byte.
pub fn forwarded_lines(headers: &[Header<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum());
    push_forwarded(&mut out, headers);
    out
}

/// `forwarded_lines`, appended to `out`.
pub fn push_forwarded(out: &mut Vec<u8>, headers: &[Header<'_>]) {
    let named = connection_named(headers);
    for &(name, value) in headers {
        if is_kept(name, &CLIENT_ONLY, &named) {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Neither hop-by-hop, nor in this direction's `own` list, nor named by `Connection`.
fn is_kept(name: &[u8], own: &[&str], named: &[&[u8]]) -> bool {
    let listed = |rule: &&str| name.eq_ignore_ascii_case(rule.as_bytes());
    !(HOP_BY_HOP.iter().any(listed)
        || own.iter().any(listed)
        || named.iter().any(|token| name.eq_ignore_ascii_case(token)))
}

/// The header names every `Connection` header lists (RFC 9110 §7.6.1: hop-by-hop as well).
fn connection_named<'a>(headers: &[(&[u8], &'a [u8])]) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| value.split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{
        forwarded_lines, returned_block, returned_headers, CLIENT_ONLY, HOP_BY_HOP, UPSTREAM_ONLY,
    };

    fn lines(headers: &[(&str, &str)]) -> String {
        let raw: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        String::from_utf8(forwarded_lines(&raw)).unwrap()
    }

    #[test]
    fn keeps_what_the_upstream_may_see_in_the_clients_order() {
        let got = lines(&[
            ("Host", "gw"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer sk-client"),
            ("X-Stainless-Lang", "python"),
            ("Content-Length", "2"),
            ("User-Agent", "OpenAI/Python"),
        ]);
        assert_eq!(
            got,
            "Content-Type: application/json\r\nX-Stainless-Lang: python\r\nUser-Agent: OpenAI/Python\r\n"
        );
    }

    #[test]
    fn drops_credentials_and_hop_by_hop_headers_whatever_their_case() {
        let got = lines(&[
            ("API-KEY", "k"),
            ("x-Api-Key", "k"),
            ("COOKIE", "c"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"),
            ("Accept-Encoding", "gzip"),
            ("Accept", "*/*"),
        ]);
        assert_eq!(got, "Accept: */*\r\n");
    }

    #[test]
    fn drops_the_headers_any_connection_header_names() {
        let got = lines(&[
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("Connection", " x-other ,"),
            ("X-Other", "2"),
            ("X-Kept", "3"),
        ]);
        assert_eq!(got, "X-Kept: 3\r\n");
    }

    #[test]
    fn every_rule_drops_its_header_in_any_case() {
        let upper: Vec<String> = HOP_BY_HOP
            .iter()
            .chain(&CLIENT_ONLY)
            .map(|name| name.to_uppercase())
            .collect();
        let both: Vec<(&str, &str)> = upper.iter().map(|name| (name.as_str(), "v")).collect();
        assert_eq!(lines(&both), "");
        let answer: Vec<(&[u8], &[u8])> = HOP_BY_HOP
            .iter()
            .chain(&UPSTREAM_ONLY)
            .map(|name| (name.as_bytes(), &b"v"[..]))
            .collect();
        assert_eq!(returned_headers(&answer, b"").0, vec![]);
        // A name that only begins like a rule is no rule.
        assert_eq!(
            lines(&[("hostx", "1"), ("te-x", "2")]),
            "hostx: 1\r\nte-x: 2\r\n"
        );
    }

    #[test]
    fn the_operators_openai_account_stays_between_gateway_and_upstream() {
        let sent = lines(&[
            ("OpenAI-Organization", "org-client"),
            ("OpenAI-Project", "proj-client"),
            ("OpenAI-Beta", "assistants=v2"),
        ]);
        assert_eq!(sent, "OpenAI-Beta: assistants=v2\r\n");
        let answer: [(&[u8], &[u8]); 5] = [
            (b"openai-organization", b"org-operator"),
            (b"openai-project", b"proj-operator"),
            (b"x-ratelimit-remaining-requests", b"9999"),
            (b"openai-processing-ms", b"120"),
            (b"x-ratelimit-reset-tokens", b"6ms"),
        ];
        let kept: Vec<&[u8]> = returned_headers(&answer, b"")
            .0
            .iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(kept, vec![&b"openai-processing-ms"[..]]);
    }

    #[test]
    fn passes_values_on_byte_for_byte() {
        let raw: [(&[u8], &[u8]); 1] = [(b"X-Name", b"caf\xe9 \t")];
        assert_eq!(forwarded_lines(&raw), b"X-Name: caf\xe9 \t\r\n");
    }

    #[test]
    fn the_client_gets_the_answer_without_hops_framing_or_cookies() {
        let answer: [(&[u8], &[u8]); 8] = [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", b"12"),
            (b"Connection", b"close, X-Hop"),
            (b"x-hop", b"1"),
            (b"Set-Cookie", b"__cf=1"),
            (b"X-Request-Id", b"req-up-1"),
            (b"x-request-id", b"req-up-2"),
            (b"openai-processing-ms", b"40"),
        ];
        let (kept, upstream_id) = returned_headers(&answer, b"");
        assert_eq!(
            kept,
            vec![
                (&b"Content-Type"[..], &b"application/json"[..]),
                (b"openai-processing-ms", b"40")
            ]
        );
        assert_eq!(upstream_id, Some(&b"req-up-1"[..]));
        assert_eq!(returned_headers(&[(b"X-Request-Id", b"")], b"").1, None);
    }

    #[test]
    fn the_gateways_own_headers_replace_the_upstreams_of_the_same_name() {
        let answer: [(&[u8], &[u8]); 4] = [
            (b"X-Cache", b"HIT"),
            (b"x-sidegate-overhead-ms", b"9"),
            (b"x-cache-lookup", b"yes"),
            (b"Content-Type", b"application/json"),
        ];
        let written = b"x-cache: miss\r\nno colon here\r\nx-sidegate-overhead-ms: 0.1\r\n";
        let (kept, _) = returned_headers(&answer, written);
        assert_eq!(
            kept,
            vec![
                (&b"x-cache-lookup"[..], &b"yes"[..]),
                (b"Content-Type", b"application/json")
            ]
        );
    }

    #[test]
    fn only_a_whole_name_before_a_lines_colon_is_the_gateways() {
        let answer: [(&[u8], &[u8]); 4] = [
            (b"x-cache", b"upstream"),
            (b"X-Cache-Status", b"up"),
            (b"note", b"kept"),
            (b"x-trace", b"replaced"),
        ];
        // A name that begins another line's name, or sits in a value, is not that line's.
        let written = b"X-CACHE-status: gw\r\nx-other: note: x-cache\r\nX-Trace:gw\r\nx-cache";
        let (kept, _) = returned_headers(&answer, written);
        assert_eq!(
            kept,
            vec![(&b"x-cache"[..], &b"upstream"[..]), (b"note", b"kept")]
        );
        assert_eq!(
            returned_block(&answer, written),
            [&b"x-cache: upstream\r\nnote: kept\r\n"[..], &written[..]].concat()
        );
    }

    #[test]
    fn a_relayed_answers_block_is_the_upstreams_kept_lines_then_the_gateways() {
        let answer: [(&[u8], &[u8]); 6] = [
            (b"Content-Type", b"text/event-stream"),
            (b"X-Request-Id", b"req-up-1"),
            (b"X-Upstream-Request-Id", b"req-up-0"),
            (b"cache-control", b"no-store"),
            (b"Transfer-Encoding", b"chunked"),
            (b"x-note", b"caf\xe9"),
        ];
        let written = b"Cache-Control: no-cache\r\nx-request-id: req_1\r\n";
        let block = returned_block(&answer, written);
        assert_eq!(
            block,
            b"Content-Type: text/event-stream\r\nx-note: caf\xe9\r\n\
              x-upstream-request-id: req-up-1\r\n\
              Cache-Control: no-cache\r\nx-request-id: req_1\r\n"
        );
    }
}
