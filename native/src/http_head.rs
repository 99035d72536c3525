//! Whole HTTP/1.1 messages read in one pass: the lean server's common request (a `POST` with a
//! `Content-Length` body, as the OpenAI SDKs send it) and the lean client's common answer (a
//! status with a `Content-Length` body, as an unstreamed completion comes).
//!
//! llhttp (through httptools) calls back into Python once per header; an SDK's request has
//! about seventeen, a cloud API's answer twenty, and those calls cost more than the rest of
//! parsing. This reads such a message here and says how long it is. Anything else — a body
//! still on its way, chunked framing, `Expect`, an upgrade, HTTP/1.0, an interim or bodiless
//! status, a head llhttp might read differently (bare LF line ends, a repeated
//! `Content-Length`) — is declined, and the caller gives the bytes to llhttp, which then
//! answers or refuses them exactly as before.
//!
//! A streamed answer's head (`Transfer-Encoding: chunked`) is read here too
//! (`chunked_response`; `answer_start` reads either kind at once), and its body by `chunked::ChunkedBody`: llhttp would call back once
//! per header and again per event.

/// Headers read before a message is declined (an SDK sends about seventeen).
pub const MAX_HEADERS: usize = 64;

/// A whole message this module read; the slices borrow the caller's bytes. `start` is what
/// its first line says that matters here: a request's target, an answer's status.
#[derive(Debug, PartialEq, Eq)]
pub struct Plain<'a, S> {
    pub start: S,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Bytes from the first line to the blank line after the headers, inclusive.
    pub head_len: usize,
    pub content_length: usize,
    /// False when `Connection` names `close`: the connection carries nothing after it.
    pub keep_alive: bool,
}

impl<S> Plain<'_, S> {
    /// Bytes of `data` this message takes, body included.
    pub fn len(&self) -> usize {
        self.head_len + self.content_length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request, with its target (path and query) as sent.
pub type PlainRequest<'a> = Plain<'a, &'a [u8]>;
/// An answer, with its status.
pub type PlainResponse<'a> = Plain<'a, u16>;

/// The request at the start of `data` when it is a plain, whole `POST` over HTTP/1.1 whose
/// head is at most `head_limit` bytes; `None` for anything llhttp should read instead.
pub fn plain_request(data: &[u8], head_limit: usize) -> Option<PlainRequest<'_>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let head_len = match request.parse(data) {
        Ok(httparse::Status::Complete(length)) => length,
        _ => return None,
    };
    if head_len > head_limit
        || request.method != Some("POST")
        || request.version != Some(1)
        || !crlf_only(&data[..head_len])
    {
        return None;
    }
    let target = request.path?.as_bytes();
    if !target.iter().all(|byte| (0x21..=0x7e).contains(byte)) {
        return None;
    }
    // Without `Content-Length` a request has no body.
    let plain = with_headers(data, head_len, target, request.headers, Some(0))?;
    (data.len() >= head_len.checked_add(plain.content_length)?).then_some(plain)
}

/// The answer that is exactly `data` when it is a whole HTTP/1.1 answer (status 200 to 599,
/// not 204 or 304) framed by `Content-Length`, its head at most `head_limit` bytes; `None` for
/// anything llhttp should read instead — bytes after the answer included.
pub fn plain_response(data: &[u8], head_limit: usize) -> Option<PlainResponse<'_>> {
    answer_start(data, head_limit).and_then(|(plain, chunked)| (!chunked).then_some(plain))
}

/// The head of an HTTP/1.1 answer framed by `Transfer-Encoding: chunked` (status 200 to 599,
/// not 204 or 304) at the start of `data`, as a streamed completion comes; its body is read by
/// `chunked::ChunkedBody` from `data[head_len..]` on. `content_length` is 0 and means nothing
/// here. `None` for anything llhttp should read instead: a head not all in `data`, another
/// framing, a `Content-Length` beside the chunking, a coding besides `chunked`.
pub fn chunked_response(data: &[u8], head_limit: usize) -> Option<PlainResponse<'_>> {
    answer_start(data, head_limit).and_then(|(plain, chunked)| chunked.then_some(plain))
}

/// `plain_response` or `chunked_response`, whichever `data` holds, read once; true for a
/// chunked answer.
pub fn answer_start(data: &[u8], head_limit: usize) -> Option<(PlainResponse<'_>, bool)> {
    with_answer_head(data, head_limit, |status, head_len, parsed| {
        let ((headers, keep_alive), framing) = read_headers(data, head_len, parsed)?;
        let (content_length, chunked) = match framing {
            Framing::Length(length) => (length, false),
            Framing::Chunked => (0, true),
            // Without `Content-Length` an answer ends with the connection: llhttp's to read.
            Framing::Unstated => return None,
        };
        let plain = Plain { start: status, headers, head_len, content_length, keep_alive };
        (chunked || data.len() == plain.len()).then_some((plain, chunked))
    })
}

/// `read(status, head_len, headers)` for the answer head at the start of `data`, when it is
/// all there, HTTP/1.1, at most `head_limit` bytes, its lines ending in CRLF and its status
/// one with a body (200 to 599 but 204 and 304); `None` otherwise.
fn with_answer_head<'a, T>(
    data: &'a [u8],
    head_limit: usize,
    read: impl FnOnce(u16, usize, &[httparse::Header<'a>]) -> Option<T>,
) -> Option<T> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let head_len = match response.parse(data) {
        Ok(httparse::Status::Complete(length)) => length,
        _ => return None,
    };
    let status = response.code?;
    if head_len > head_limit
        || response.version != Some(1)
        || !(200..600).contains(&status)
        || status == 204
        || status == 304
        || !crlf_only(&data[..head_len])
    {
        return None;
    }
    read(status, head_len, response.headers)
}

/// The message with its headers as llhttp reads them; `None` when they ask for framing this
/// module leaves to llhttp, or name no length and `unstated_length` is `None`.
fn with_headers<'a, S>(
    data: &'a [u8],
    head_len: usize,
    start: S,
    parsed: &[httparse::Header<'a>],
    unstated_length: Option<usize>,
) -> Option<Plain<'a, S>> {
    let ((headers, keep_alive), framing) = read_headers(data, head_len, parsed)?;
    let content_length = match framing {
        Framing::Length(length) => length,
        Framing::Unstated => unstated_length?,
        Framing::Chunked => return None,
    };
    Some(Plain { start, headers, head_len, content_length, keep_alive })
}

/// How a message's headers say its body is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    /// `Transfer-Encoding: chunked`, the one coding, in one header.
    Chunked,
    Unstated,
}

type ReadHeaders<'a> = (Vec<(&'a [u8], &'a [u8])>, bool);

/// The headers as llhttp reads them, whether the connection stays open, and the framing;
/// `None` for what this module leaves to llhttp (an upgrade, `Expect`, a repeated or bad
/// `Content-Length`, a transfer coding other than a lone `chunked`, both framings at once).
fn read_headers<'a>(
    data: &'a [u8],
    head_len: usize,
    parsed: &[httparse::Header<'a>],
) -> Option<(ReadHeaders<'a>, Framing)> {
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut keep_alive = true;
    let mut headers = Vec::with_capacity(parsed.len());
    for header in parsed {
        let value = as_llhttp_reads(data, head_len, header.value)?;
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return None;
            }
            content_length = Some(decimal(value)?);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|byte| *byte == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return None;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return None;
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect") {
            return None;
        }
        headers.push((name, value));
    }
    let framing = match (content_length, chunked) {
        (Some(_), true) => return None,
        (Some(length), false) => Framing::Length(length),
        (None, true) => Framing::Chunked,
        (None, false) => Framing::Unstated,
    };
    Some(((headers, keep_alive), framing))
}

/// `value` as llhttp gives it: httparse drops the blanks before the line's CRLF, llhttp keeps
/// them. `value` lies within `data[..head_len]`, whose lines all end in CRLF.
fn as_llhttp_reads<'a>(data: &'a [u8], head_len: usize, value: &[u8]) -> Option<&'a [u8]> {
    let start = (value.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
    let head = data.get(..head_len)?;
    let rest = head.get(start..)?;
    let end = rest.iter().position(|&byte| byte == b'\r')?;
    if end < value.len() {
        return None;
    }
    rest.get(..end)
}

/// Every line ends in CRLF: llhttp and httparse differ on bare LF and lone CR.
fn crlf_only(head: &[u8]) -> bool {
    // Line ends are found with memchr (a head is mostly text between them), each pair skipped
    // whole: a `\n` found is then one without its `\r`.
    let mut at = 0;
    while let Some(found) = memchr::memchr2(b'\r', b'\n', &head[at..]) {
        let index = at + found;
        if head[index] == b'\n' || head.get(index + 1) != Some(&b'\n') {
            return false;
        }
        at = index + 2;
    }
    true
}

/// A `Content-Length` value: ASCII digits only, small enough for any body we would take.
fn decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
