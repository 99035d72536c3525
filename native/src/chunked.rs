//! A chunked body (RFC 9112 §7.1) read as its bytes come, for the lean client's streamed
//! answers: each call hands back the payload of every chunk in hand, however the reads cut
//! the framing. llhttp (through httptools) calls back into Python per chunk; an event stream
//! is a chunk per event.
//!
//! The grammar is RFC 9112's, read as strictly as llhttp reads it: every line ends in CRLF, a
//! size is hexadecimal digits (leading zeros aside, at most 15), and nothing but chunk
//! extensions (`;name` or `;name=value`, a token or a quoted string) may follow it, with no
//! blanks. Extensions and trailer fields mean nothing here and are dropped; each size line's
//! extensions, and the trailer section, are at most `MAX_LINE` bytes.

use thiserror::Error;

/// Longest extension part of a chunk-size line, and longest trailer section, in bytes.
pub const MAX_LINE: usize = 4096;
/// A size must stay below 2^60 (fifteen significant hexadecimal digits).
const SIZE_LIMIT: u64 = 1 << 60;

#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("a chunk size is not hexadecimal digits")]
    BadSize,
    #[error("a chunk size is too large")]
    SizeTooLarge,
    #[error("a chunk extension is malformed")]
    BadExtension,
    #[error("a chunk size line is too long")]
    LongLine,
    #[error("a chunk does not end with CRLF")]
    BadChunkEnd,
    #[error("a line does not end with CRLF")]
    BadLineEnd,
    #[error("a trailer field is malformed")]
    BadTrailer,
    #[error("the trailer section is too long")]
    LongTrailer,
}

/// Where a chunk-size line's reading stands after its digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    /// Right after `;`: a name must start.
    NameStart,
    Name,
    /// Right after `=`: a token or a quoted string must start.
    ValueStart,
    Token,
    Quoted,
    /// After a backslash within a quoted string.
    Escaped,
    /// After a quoted string's closing quote: `;` or the line's end.
    Closed,
}

/// Where a trailer line's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// At a line's start: a name, or the CR of the empty line that ends the body.
    LineStart,
    Name,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Within a chunk-size line: the size so far, whether a digit was read, and the
    /// extensions' reading once `;` came, with their length so far.
    Size { size: u64, digits: bool, extension: Option<(Extension, usize)> },
    /// The size line's CR is read; its LF is next.
    SizeEnd { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    /// Within the trailer section: where the current line stands, and the section's length.
    Trailer { field: Field, total: usize },
    /// A trailer line's CR is read; `last` when the line was empty (it ends the body).
    TrailerEnd { last: bool, total: usize },
    Done,
    Failed(ChunkError),
}

const SIZE_LINE: State = State::Size { size: 0, digits: false, extension: None };

#[derive(Debug)]
pub struct ChunkedBody {
    state: State,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedBody {
    pub fn new() -> Self {
        Self { state: SIZE_LINE }
    }

    /// The last chunk and the trailer section are read: the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `data`, appending every chunk's payload in it to `out` (on an error too: what
    /// came before the broken framing is the upstream's). Returns the bytes of `data` the body
    /// took: all of them, unless the body ended within `data` (what follows is not this
    /// body's). After an error every call fails with it.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < data.len() {
            match self.state {
                State::Data { left } => {
                    let take = (data.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&data[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                    continue;
                }
                State::Done => return Ok(at),
                State::Failed(error) => return Err(error),
                _ => {}
            }
            self.state = match self.step(data[at]) {
                Ok(state) => state,
                Err(error) => State::Failed(error),
            };
            at += 1;
        }
        match self.state {
            State::Failed(error) => Err(error),
            _ => Ok(at),
        }
    }

    /// The state after one byte of framing (anything but chunk data).
    fn step(&self, byte: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { size, digits, extension: None } => match byte {
                b'\r' if digits => State::SizeEnd { size },
                b';' if digits => {
                    State::Size { size, digits, extension: Some((Extension::NameStart, 1)) }
                }
                _ => {
                    let digit = char::from(byte).to_digit(16).ok_or(ChunkError::BadSize)?;
                    let size = size * 16 + u64::from(digit);
                    if size >= SIZE_LIMIT {
                        return Err(ChunkError::SizeTooLarge);
                    }
                    State::Size { size, digits: true, extension: None }
                }
            },
            State::Size { size, digits, extension: Some((at, length)) } => {
                let ended = matches!(at, Extension::Name | Extension::Token | Extension::Closed);
                if byte == b'\r' && ended {
                    return Ok(State::SizeEnd { size });
                }
                if length >= MAX_LINE {
                    return Err(ChunkError::LongLine);
                }
                let next = extension_step(at, byte).ok_or(ChunkError::BadExtension)?;
                State::Size { size, digits, extension: Some((next, length + 1)) }
            }
            State::SizeEnd { size } => match byte {
                b'\n' if size == 0 => State::Trailer { field: Field::LineStart, total: 0 },
                b'\n' => State::Data { left: size },
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::BadChunkEnd),
            },
            State::DataLf => match byte {
                b'\n' => SIZE_LINE,
                _ => return Err(ChunkError::BadChunkEnd),
            },
            State::Trailer { field, total } => {
                if byte == b'\r' && matches!(field, Field::LineStart | Field::Value) {
                    return Ok(State::TrailerEnd { last: field == Field::LineStart, total });
                }
                if total >= MAX_LINE {
                    return Err(ChunkError::LongTrailer);
                }
                let next = match (field, byte) {
                    (Field::LineStart | Field::Name, _) if is_tchar(byte) => Field::Name,
                    (Field::Name, b':') => Field::Value,
                    (Field::Value, b'\t' | b' '..=b'~' | 0x80..=0xff) => Field::Value,
                    (_, b'\r' | b'\n') => return Err(ChunkError::BadLineEnd),
                    _ => return Err(ChunkError::BadTrailer),
                };
                State::Trailer { field: next, total: total + 1 }
            }
            State::TrailerEnd { last, total } => match byte {
                b'\n' if last => State::Done,
                b'\n' => State::Trailer { field: Field::LineStart, total },
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::Data { .. } | State::Done | State::Failed(_) => {
                unreachable!("handled by `feed`")
            }
        })
    }
}

/// Where a chunk extension stands after `byte`; `None` when `byte` cannot come there.
fn extension_step(at: Extension, byte: u8) -> Option<Extension> {
    Some(match (at, byte) {
        (Extension::NameStart | Extension::Name, _) if is_tchar(byte) => Extension::Name,
        (Extension::Name | Extension::Token | Extension::Closed, b';') => Extension::NameStart,
        (Extension::Name, b'=') => Extension::ValueStart,
        (Extension::ValueStart | Extension::Token, _) if is_tchar(byte) => Extension::Token,
        (Extension::ValueStart, b'"') => Extension::Quoted,
        (Extension::Quoted, b'"') => Extension::Closed,
        (Extension::Quoted, b'\\') => Extension::Escaped,
        (Extension::Quoted, b'\t' | b' '..=b'~' | 0x80..=0xff) => Extension::Quoted,
        (Extension::Escaped, b'\t' | b' '..=b'~' | 0x80..=0xff) => Extension::Quoted,
        _ => return None,
    })
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// `data` framed as one chunk (its size in hexadecimal, CRLF, `data`, CRLF) into `out`: what a
/// relay writes per event. Empty `data` would be the last chunk; the caller sends none.
pub fn frame_chunk(data: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut size = [0u8; 16];
    let mut start = size.len();
    let mut rest = data.len();
    loop {
        start -= 1;
        size[start] = DIGITS[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.reserve(size.len() - start + data.len() + 4);
    out.extend_from_slice(&size[start..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
