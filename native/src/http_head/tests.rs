use super::{chunked_response, plain_request, plain_response, PlainRequest, MAX_HEADERS};

const LIMIT: usize = 64 * 1024;

fn request(head: &str, body: &str) -> Vec<u8> {
    format!("{head}\r\n\r\n{body}").into_bytes()
}

fn sdk_head(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw:8080\r\nAccept: application/json\r\n\
         Authorization: Bearer sk-test\r\nX-Stainless-Lang: python\r\nContent-Length: {}",
        body.len()
    )
}

#[test]
fn reads_a_whole_sdk_request_and_its_length() {
    let body = r#"{"model":"m","messages":[]}"#;
    let data = request(&sdk_head(body), body);
    let plain = plain_request(&data, LIMIT).expect("a plain request");
    assert_eq!(plain.start, b"/v1/chat/completions");
    assert_eq!(plain.headers.len(), 5);
    assert_eq!(plain.headers[2], (&b"Authorization"[..], &b"Bearer sk-test"[..]));
    assert_eq!(plain.content_length, body.len());
    assert_eq!(plain.len(), data.len());
    assert_eq!(&data[plain.head_len..], body.as_bytes());
    assert!(plain.keep_alive);
}

#[test]
fn a_pipelined_request_after_it_is_left_for_the_next_call() {
    let body = "{}";
    let mut data = request(&sdk_head(body), body);
    let first = data.len();
    data.extend_from_slice(b"GET /health HTTP/1.1\r\n\r\n");
    let plain = plain_request(&data, LIMIT).map(|p| p.len());
    assert_eq!(plain, Some(first));
}

#[test]
fn a_body_still_on_its_way_is_declined() {
    let body = r#"{"model":"m"}"#;
    let data = request(&sdk_head(body), &body[..5]);
    assert_eq!(plain_request(&data, LIMIT), None);
    assert_eq!(plain_request(b"POST /v1/chat/completions HTTP/1.1\r\nHost", LIMIT), None);
}

#[test]
fn connection_close_is_kept_and_upgrade_declined() {
    let head = "POST /v1/x HTTP/1.1\r\nConnection: keep-alive, Close\r\nContent-Length: 0";
    let data = request(head, "");
    let plain = plain_request(&data, LIMIT).expect("plain");
    assert!(!plain.keep_alive);
    let upgrade = "POST /v1/x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c";
    assert_eq!(plain_request(&request(upgrade, ""), LIMIT), None);
}

#[test]
fn framing_llhttp_must_judge_is_declined() {
    for head in [
        "POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked",
        "POST /v1/x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2",
        "POST /v1/x HTTP/1.1\r\nContent-Length: +2",
        "POST /v1/x HTTP/1.1\r\nContent-Length: 99999999999999999999",
        "POST /v1/x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2",
        "POST /v1/x HTTP/1.0\r\nContent-Length: 2",
        "GET /v1/x HTTP/1.1\r\nContent-Length: 2",
        "POST /v1/x HTTP/1.1\nContent-Length: 2",
        "POST /v1/x HTTP/1.1\r\nX-A: b\rc\r\nContent-Length: 2",
        "POST /v1/x HTTP/1.1\r\nBad Name: 1\r\nContent-Length: 2",
        "POST /v1/x HTTP/1.1\r\nX-Folded: a\r\n b\r\nContent-Length: 2",
    ] {
        assert_eq!(plain_request(&request(head, "{}"), LIMIT), None, "{head:?}");
    }
}

#[test]
fn a_head_over_the_limit_or_with_too_many_headers_is_declined() {
    let long = format!("POST /v1/x HTTP/1.1\r\nX-Big: {}\r\nContent-Length: 0", "a".repeat(200));
    assert_eq!(plain_request(&request(&long, ""), 100), None);
    assert!(plain_request(&request(&long, ""), LIMIT).is_some());
    let many: String = (0..=MAX_HEADERS).map(|i| format!("\r\nX-{i}: v")).collect();
    let head = format!("POST /v1/x HTTP/1.1{many}");
    assert_eq!(plain_request(&request(&head, ""), LIMIT), None);
}

#[test]
fn values_keep_their_bytes_after_the_blanks_that_lead_them() {
    let head = "POST /v1/x?api-version=1 HTTP/1.1\r\nX-Name:   caf\u{e9}  \r\nContent-Length: 0";
    let data = request(head, "");
    let plain: PlainRequest<'_> = plain_request(&data, LIMIT).expect("plain");
    assert_eq!(plain.start, b"/v1/x?api-version=1");
    assert_eq!(plain.headers[0].1, "caf\u{e9}  ".as_bytes());
    assert_eq!(plain.content_length, 0);
}

#[test]
fn blanks_before_the_line_end_stay_in_the_value_as_llhttp_keeps_them() {
    let head = "POST /v1/x HTTP/1.1\r\nX-A: b  \r\nX-Empty:\r\nX-Blank:   \r\nContent-Length: 0";
    let data = request(head, "");
    let plain = plain_request(&data, LIMIT).expect("plain");
    assert_eq!(plain.headers[0], (&b"X-A"[..], &b"b  "[..]));
    assert_eq!(plain.headers[1].1, b"");
}

fn answer(head: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {head}\r\n\r\n{body}").into_bytes()
}

#[test]
fn reads_a_whole_answer_with_its_length() {
    let body = r#"{"id":"chatcmpl-1"}"#;
    let head = format!(
        "200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         x-request-id: req_1",
        body.len()
    );
    let data = answer(&head, body);
    let plain = plain_response(&data, LIMIT).expect("a plain answer");
    assert_eq!(plain.start, 200);
    assert_eq!(plain.headers.len(), 4);
    assert_eq!(plain.headers[3], (&b"x-request-id"[..], &b"req_1"[..]));
    assert_eq!(&data[plain.head_len..], body.as_bytes());
    assert_eq!(plain.len(), data.len());
    assert!(plain.keep_alive);
    let closing = answer("503 Busy\r\nConnection: close\r\nContent-Length: 0", "");
    let plain = plain_response(&closing, LIMIT).expect("plain");
    assert_eq!((plain.start, plain.keep_alive), (503, false));
}

#[test]
fn an_answer_llhttp_must_frame_or_one_not_whole_is_declined() {
    for (head, body) in [
        ("200 OK\r\nTransfer-Encoding: chunked", "0\r\n\r\n"),
        ("200 OK\r\nContent-Type: text/event-stream", "data: x\n\n"),
        ("200 OK\r\nContent-Length: 5", "abc"),
        ("200 OK\r\nContent-Length: 2", "abcd"),
        ("204 No Content\r\nContent-Length: 0", ""),
        ("304 Not Modified\r\nContent-Length: 2", ""),
        ("100 Continue", ""),
        ("101 Switching Protocols\r\nUpgrade: h2c\r\nContent-Length: 0", ""),
        ("200 OK\r\nContent-Length: 2\r\nContent-Length: 2", "{}"),
        ("200 OK\nContent-Length: 2", "{}"),
    ] {
        assert_eq!(plain_response(&answer(head, body), LIMIT), None, "{head:?}");
    }
    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(plain_response(old, LIMIT), None);
}

#[test]
fn reads_the_head_of_a_chunked_stream_with_its_first_events_behind_it() {
    let head = "200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
                Connection: keep-alive\r\nx-request-id: req_2";
    let data = answer(head, "e\r\ndata: [DONE]\n\n\r\n");
    let read = chunked_response(&data, LIMIT).expect("a chunked answer");
    assert_eq!(read.start, 200);
    assert_eq!(read.headers.len(), 4, "Transfer-Encoding stays, for whoever drops it");
    assert_eq!(read.headers[1], (&b"Transfer-Encoding"[..], &b"chunked"[..]));
    assert_eq!(&data[read.head_len..], b"e\r\ndata: [DONE]\n\n\r\n");
    assert!(read.keep_alive);
    let closing = answer("502 Bad Gateway\r\nTransfer-Encoding: CHUNKED\r\nConnection: close", "");
    let read = chunked_response(&closing, LIMIT).expect("chunked");
    assert_eq!((read.start, read.keep_alive, read.head_len), (502, false, closing.len()));
}

#[test]
fn a_head_llhttp_must_judge_is_not_read_as_chunked() {
    for head in [
        "200 OK\r\nContent-Length: 2",
        "200 OK\r\nContent-Type: text/event-stream",
        "200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2",
        "200 OK\r\nTransfer-Encoding: gzip, chunked",
        "200 OK\r\nTransfer-Encoding: chunked \r\nX: y",
        "200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "204 No Content\r\nTransfer-Encoding: chunked",
        "100 Continue\r\nTransfer-Encoding: chunked",
        "101 Switching Protocols\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked",
        "200 OK\nTransfer-Encoding: chunked",
    ] {
        assert_eq!(chunked_response(&answer(head, ""), LIMIT), None, "{head:?}");
    }
    let partial = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n";
    assert_eq!(chunked_response(partial, LIMIT), None);
    let old = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(chunked_response(old, LIMIT), None);
    let big = answer("200 OK\r\nTransfer-Encoding: chunked", "");
    assert_eq!(chunked_response(&big, big.len() - 1), None);
}

#[test]
fn a_line_not_ended_by_crlf_is_left_to_llhttp() {
    let body = r#"{"model":"m"}"#;
    let good = request(&sdk_head(body), body);
    assert!(plain_request(&good, LIMIT).is_some());
    let bare_lf = request(&sdk_head(body).replace("Accept: application/json\r\n", "Accept: x\n"), body);
    let lone_cr = request(&sdk_head(body).replace("Accept: application/json", "Accept: a\rb"), body);
    let cr_cr_lf = request(&sdk_head(body).replace("Accept: application/json\r\n", "Accept: x\r\r\n"), body);
    for declined in [bare_lf, lone_cr, cr_cr_lf] {
        assert!(plain_request(&declined, LIMIT).is_none());
    }
}

#[test]
fn crlf_only_finds_every_line_end_out_of_place() {
    use super::crlf_only;
    assert!(crlf_only(b""));
    assert!(crlf_only(b"a\r\nb\r\n\r\n"));
    for bad in [&b"\n"[..], b"\r", b"a\r", b"a\n\r\n", b"a\r\n\n", b"\r\r\n", b"a\r\nb\rc\r\n"] {
        assert!(!crlf_only(bad), "{bad:?}");
    }
}
