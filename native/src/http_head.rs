//! The lean server's common request, read in one pass: a whole `POST` with a `Content-Length`
//! body, as the OpenAI SDKs send it.
//!
//! llhttp (through httptools) calls back into Python once per header; an SDK's request has
//! about seventeen, and those calls cost more than the rest of parsing. This reads such a
//! request's head here and says how long the request is. Anything else — a body still on its
//! way, chunked framing, `Expect`, an upgrade, HTTP/1.0, a head llhttp might read differently
//! (bare LF line ends, a repeated `Content-Length`) — is declined, and the caller gives the
//! bytes to llhttp, which then answers or refuses them exactly as before.

/// Headers read before a request is declined (an SDK sends about seventeen).
pub const MAX_HEADERS: usize = 64;

/// A whole request this module read; the slices borrow the caller's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainRequest<'a> {
    /// The request target as sent (path and query).
    pub target: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// Bytes from the request line to the blank line after the headers, inclusive.
    pub head_len: usize,
    pub content_length: usize,
    /// False when `Connection` names `close`.
    pub keep_alive: bool,
}

impl PlainRequest<'_> {
    /// Bytes of `data` this request takes, body included.
    pub fn len(&self) -> usize {
        self.head_len + self.content_length
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    let mut content_length: Option<usize> = None;
    let mut keep_alive = true;
    let mut headers = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        let value = as_llhttp_reads(data, head_len, header.value)?;
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
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return None;
        }
        headers.push((name, value));
    }
    let content_length = content_length.unwrap_or(0);
    let plain = PlainRequest {
        target,
        headers,
        head_len,
        content_length,
        keep_alive,
    };
    (data.len() >= head_len.checked_add(content_length)?).then_some(plain)
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
    let mut previous = 0u8;
    for (index, &byte) in head.iter().enumerate() {
        match byte {
            b'\n' if previous != b'\r' => return false,
            b'\r' if head.get(index + 1) != Some(&b'\n') => return false,
            _ => {}
        }
        previous = byte;
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
