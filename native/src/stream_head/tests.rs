use super::*;

fn stamp<'a>(overhead_seconds: f64, lines: &'a [u8]) -> StreamStamp<'a> {
    StreamStamp {
        request_id: b"req-1",
        cache: b"miss",
        overhead_seconds,
        lines,
    }
}

#[test]
fn a_stream_head_keeps_the_upstreams_headers_and_adds_the_gateways() {
    let headers: [Header<'_>; 4] = [
        (b"Content-Type", b"text/event-stream; charset=utf-8"),
        (b"Server", b"nginx"),
        (b"Transfer-Encoding", b"chunked"),
        (b"openai-processing-ms", b"12"),
    ];
    let lines = b"x-ratelimit-limit-requests: 10\r\n";
    let head = event_stream_head(&headers, b"HTTP/1.1 200 OK\r\n", &stamp(0.001_234_1, lines), b"T\r\n\r\n");
    let expected: &[u8] = b"HTTP/1.1 200 OK\r\n\
        Content-Type: text/event-stream; charset=utf-8\r\n\
        openai-processing-ms: 12\r\n\
        Cache-Control: no-cache\r\n\
        x-request-id: req-1\r\n\
        x-cache: miss\r\n\
        x-sidegate-overhead-ms: 1.234\r\n\
        x-ratelimit-limit-requests: 10\r\n\
        T\r\n\r\n";
    assert_eq!(head.as_deref(), Some(expected));
}

#[test]
fn a_negative_overhead_is_written_as_zero() {
    let headers: [Header<'_>; 1] = [(b"content-type", b"text/event-stream")];
    let head = event_stream_head(&headers, b"", &stamp(-0.5, b""), b"").unwrap_or_default();
    let text = String::from_utf8_lossy(&head);
    assert!(text.contains("x-sidegate-overhead-ms: 0.000\r\n"), "{text}");
}

#[test]
fn only_an_event_stream_gets_a_stream_head() {
    let json: [Header<'_>; 1] = [(b"Content-Type", b"application/json")];
    assert_eq!(event_stream_head(&json, b"", &stamp(0.0, b""), b""), None);
    assert_eq!(event_stream_head(&[], b"", &stamp(0.0, b""), b""), None);
    // The first Content-Type decides, as a lookup of one value would.
    let twice: [Header<'_>; 2] = [
        (b"content-type", b"application/json"),
        (b"Content-Type", b"text/event-stream"),
    ];
    assert!(!is_event_stream(&twice));
}

#[test]
fn the_overhead_is_written_in_milliseconds_to_the_microsecond() {
    for (seconds, written) in [
        (0.0000004, "0.000"),
        (0.0000005, "0.001"),
        (0.012_345_6, "12.346"),
        (1.5, "1500.000"),
        (123.000_001, "123000.001"),
    ] {
        let headers: [Header<'_>; 1] = [(b"Content-Type", b"text/event-stream")];
        let head = event_stream_head(&headers, b"", &stamp(seconds, b""), b"").unwrap_or_default();
        let text = String::from_utf8_lossy(&head);
        assert!(text.contains(&format!("x-sidegate-overhead-ms: {written}\r\n")), "{text}");
    }
}
