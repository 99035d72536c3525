use super::{request_bytes, spliced_body, BodyEdit, WANT_USAGE};

const BODY: &[u8] = br#"{"model":"alias","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

fn span_of(body: &[u8], name: &[u8]) -> Option<(usize, usize)> {
    let start = memchr::memmem::find(body, name)?;
    Some((start, start + name.len()))
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn renames_the_model_in_place() {
    let edit = BodyEdit {
        model_span: span_of(BODY, b"alias"),
        model: Some(b"gpt-4o-mini"),
        add_usage: false,
    };
    let body = spliced_body(BODY, &edit).unwrap();
    assert_eq!(
        text(&body),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#
    );
}

#[test]
fn asks_for_usage_first_in_the_object_and_renames_after_it() {
    let body = br#"  {"messages":[],"model":"alias","stream":true}"#;
    let edit = BodyEdit {
        model_span: span_of(body, b"alias"),
        model: Some(b"real"),
        add_usage: true,
    };
    let spliced = spliced_body(body, &edit).unwrap();
    let expected = format!(r#"  {{{}"messages":[],"model":"real","stream":true}}"#, text(WANT_USAGE));
    assert_eq!(text(&spliced), expected);
}

#[test]
fn asks_for_usage_and_keeps_the_clients_model() {
    let edit = BodyEdit {
        model_span: span_of(BODY, b"alias"),
        model: None,
        add_usage: true,
    };
    let spliced = spliced_body(BODY, &edit).unwrap();
    assert!(spliced.starts_with(b"{\"stream_options\":{\"include_usage\":true},\"model\":\"alias\""));
    assert_eq!(spliced.len(), BODY.len() + WANT_USAGE.len());
}

#[test]
fn an_edit_that_changes_nothing_keeps_the_body() {
    let edit = BodyEdit { model_span: None, model: None, add_usage: false };
    assert_eq!(spliced_body(BODY, &edit).unwrap(), BODY);
}

#[test]
fn declines_what_only_a_parse_can_edit() {
    let no_span = BodyEdit { model_span: None, model: Some(b"x"), add_usage: false };
    assert!(spliced_body(BODY, &no_span).is_none());
    let options = br#"{"model":"alias","stream_options":{"include_usage":false}}"#;
    let usage = |body: &[u8]| BodyEdit {
        model_span: span_of(body, b"alias"),
        model: None,
        add_usage: true,
    };
    assert!(spliced_body(options, &usage(options)).is_none());
    // `\u0073tream_options` is `stream_options` to a JSON reader.
    let escaped = br#"{"model":"alias","\u0073tream_options":{}}"#;
    assert!(spliced_body(escaped, &usage(escaped)).is_none());
    let outside = BodyEdit { model_span: Some((5, 999)), model: Some(b"x"), add_usage: false };
    assert!(spliced_body(BODY, &outside).is_none());
}

#[test]
fn an_escape_matters_only_when_usage_is_added() {
    let body = br#"{"model":"alias","messages":[{"content":"caf\u00e9"}]}"#;
    let edit = BodyEdit { model_span: span_of(body, b"alias"), model: Some(b"m"), add_usage: false };
    let spliced = spliced_body(body, &edit).unwrap();
    assert_eq!(text(&spliced), r#"{"model":"m","messages":[{"content":"caf\u00e9"}]}"#);
}

#[test]
fn frames_the_request_around_the_forwarded_headers() {
    let headers: [(&[u8], &[u8]); 4] = [
        (b"Host", b"gateway:8080"),
        (b"Authorization", b"Bearer sk-client"),
        (b"Content-Type", b"application/json"),
        (b"X-Trace", b"abc"),
    ];
    let start = b"POST /v1/chat/completions HTTP/1.1\r\nHost: upstream:8000\r\n";
    let own = b"Authorization: Bearer sk-upstream\r\nAccept-Encoding: identity\r\n";
    let request = request_bytes(start, &headers, own, b"{}", true);
    assert_eq!(
        text(&request),
        "POST /v1/chat/completions HTTP/1.1\r\nHost: upstream:8000\r\n\
         Content-Type: application/json\r\nX-Trace: abc\r\n\
         Authorization: Bearer sk-upstream\r\nAccept-Encoding: identity\r\n\
         Content-Length: 2\r\n\r\n{}"
    );
    let head = request_bytes(start, &headers, own, b"{}", false);
    assert_eq!(head, &request[..request.len() - 2]);
}
