use super::{frame_chunk, ChunkError, ChunkedBody, MAX_LINE};

const EVENTS: &[u8] = b"1e\r\ndata: {\"n\": 1, \"text\": \"Hi\"}\n\n\r\n\
    e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
const PAYLOAD: &[u8] = b"data: {\"n\": 1, \"text\": \"Hi\"}\n\ndata: [DONE]\n\n";

fn read_all(data: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
    let mut body = ChunkedBody::new();
    let mut out = Vec::new();
    let used = body.feed(data, &mut out)?;
    Ok((out, used, body.is_done()))
}

#[test]
fn reads_every_chunk_in_one_call_and_ends() {
    assert_eq!(read_all(EVENTS), Ok((PAYLOAD.to_vec(), EVENTS.len(), true)));
}

#[test]
fn reads_the_same_however_the_reads_cut_the_framing() {
    for cut in 0..=EVENTS.len() {
        let mut body = ChunkedBody::new();
        let mut out = Vec::new();
        assert_eq!(body.feed(&EVENTS[..cut], &mut out), Ok(cut));
        assert!(!body.is_done() || cut == EVENTS.len());
        assert_eq!(body.feed(&EVENTS[cut..], &mut out), Ok(EVENTS.len() - cut));
        assert_eq!(out, PAYLOAD, "cut at {cut}");
        assert!(body.is_done());
    }
    let mut body = ChunkedBody::new();
    let mut out = Vec::new();
    for byte in EVENTS {
        assert_eq!(body.feed(std::slice::from_ref(byte), &mut out), Ok(1));
    }
    assert_eq!(out, PAYLOAD);
    assert!(body.is_done());
}

#[test]
fn bytes_after_the_body_are_left_to_the_caller() {
    let mut data = EVENTS.to_vec();
    data.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    assert_eq!(read_all(&data), Ok((PAYLOAD.to_vec(), EVENTS.len(), true)));
}

#[test]
fn a_body_not_yet_ended_says_so() {
    let (out, used, done) = read_all(b"5\r\nhello\r\n3\r\nwo").unwrap();
    assert_eq!((out.as_slice(), used, done), (&b"hellowo"[..], 15, false));
}

#[test]
fn sizes_in_either_case_extensions_and_trailers_are_read() {
    let data = b"A;name=value\r\n0123456789\r\nc;x\r\n hello world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let (out, used, done) = read_all(data).unwrap();
    assert_eq!(out, b"0123456789 hello world");
    assert_eq!((used, done), (data.len(), true));
}

#[test]
fn malformed_framing_is_an_error() {
    let cases: &[(&[u8], ChunkError)] = &[
        (b"5\nhello\r\n", ChunkError::BadSize),
        (b"5\r\rhello\r\n", ChunkError::BadLineEnd),
        (b"g\r\n", ChunkError::BadSize),
        (b"\r\n", ChunkError::BadSize),
        (b";ext\r\n", ChunkError::BadSize),
        (b"-5\r\n", ChunkError::BadSize),
        (b"5\r\nhelloXY", ChunkError::BadChunkEnd),
        (b"5\r\nhello\rX", ChunkError::BadChunkEnd),
        (b"1 0\r\na\r\n", ChunkError::BadSize),
        (b"5 \r\n", ChunkError::BadSize),
        (b"5\t;a\r\n", ChunkError::BadSize),
        (b"5;\r\n", ChunkError::BadExtension),
        (b"5;a=\r\n", ChunkError::BadExtension),
        (b"5;a=\"x\r\n", ChunkError::BadExtension),
        (b"5;\x80\r\n", ChunkError::BadExtension),
        (b"5;a b\r\n", ChunkError::BadExtension),
        (b"5;a=b c\r\n", ChunkError::BadExtension),
        (b"5;a\0b\r\n", ChunkError::BadExtension),
        (b"1000000000000000\r\n", ChunkError::SizeTooLarge),
        (b"0\r\nX-Trailer: 1\n", ChunkError::BadLineEnd),
        (b"0\r\nfoo\r\n\r\n", ChunkError::BadLineEnd),
        (b"0\r\nA: \x01\r\n\r\n", ChunkError::BadTrailer),
        (b"0\r\nA: 1\r\n folded\r\n\r\n", ChunkError::BadTrailer),
        (b"0\r\n: 1\r\n\r\n", ChunkError::BadTrailer),
        (b"0\r\n\rX", ChunkError::BadLineEnd),
    ];
    for (data, error) in cases {
        assert_eq!(read_all(data).map(|_| ()), Err(*error), "{:?}", String::from_utf8_lossy(data));
    }
}

#[test]
fn the_largest_size_is_fifteen_digits_leading_zeros_aside() {
    let (out, used, done) = read_all(b"fffffffffffffff\r\nab").unwrap();
    assert_eq!((out.as_slice(), used, done), (&b"ab"[..], 19, false));
    let data = b"0000000000000000005\r\nhello\r\n0\r\n\r\n";
    assert_eq!(read_all(data), Ok((b"hello".to_vec(), data.len(), true)));
}

#[test]
fn extensions_of_every_form_are_read_and_dropped() {
    let data = b"5;a\r\nhello\r\n1;a=b;c\r\n \r\n5;q=\"x \\\" ;y\";z=1\r\nworld\r\n0;end\r\n\r\n";
    assert_eq!(read_all(data), Ok((b"hello world".to_vec(), data.len(), true)));
}

#[test]
fn what_came_before_broken_framing_is_handed_over_and_the_error_stays() {
    let mut body = ChunkedBody::new();
    let mut out = Vec::new();
    assert_eq!(body.feed(b"3\r\nabc\r\n4\r\ndefg\r\nZZ", &mut out), Err(ChunkError::BadSize));
    assert_eq!(out, b"abcdefg");
    assert_eq!(body.feed(b"\r\n0\r\n\r\n", &mut out), Err(ChunkError::BadSize));
    assert!(!body.is_done());
}

#[test]
fn long_extensions_and_trailers_are_refused() {
    let mut line = b"5;".to_vec();
    line.extend(std::iter::repeat_n(b'x', MAX_LINE));
    assert_eq!(read_all(&line).map(|_| ()), Err(ChunkError::LongLine));
    let mut trailers = b"0\r\n".to_vec();
    for _ in 0..=MAX_LINE / 15 {
        trailers.extend_from_slice(b"X-Trailer: 1234\r\n");
    }
    assert_eq!(read_all(&trailers).map(|_| ()), Err(ChunkError::LongTrailer));
}

#[test]
fn a_framed_chunk_reads_back_as_its_payload() {
    for size in [1_usize, 9, 15, 16, 255, 256, 4097] {
        let payload = vec![b'x'; size];
        let mut framed = Vec::new();
        frame_chunk(&payload, &mut framed);
        assert!(framed.starts_with(format!("{size:x}\r\n").as_bytes()));
        framed.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(read_all(&framed), Ok((payload, framed.len(), true)));
    }
}
