//! A chunked body (RFC 9112 §7.1) read as its bytes come, for the lean client's streamed
//! answers: each call hands back the payload of every chunk in hand, however the reads cut
//! the framing. llhttp (through httptools) calls back into Python per chunk; an event stream
//! is a chunk per event.
//!
//! The reading is strict where llhttp's choices vary with its leniency flags: every line ends
//! in CRLF, a size is hexadecimal digits (at most 15 of them), and what follows them on the
//! size line (extensions, which mean nothing here) is at most `MAX_LINE` bytes of visible
//! text, blanks and `;`. Trailer fields are read and dropped.

use thiserror::Error;

/// Longest chunk-size line extension and longest trailer section, in bytes.
pub const MAX_LINE: usize = 4096;
const MAX_SIZE_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("a chunk size is not hexadecimal digits")]
    BadSize,
    #[error("a chunk size is too large")]
    SizeTooLarge,
    #[error("a chunk size line is too long")]
    LongLine,
    #[error("a chunk does not end with CRLF")]
    BadChunkEnd,
    #[error("a line does not end with CRLF")]
    BadLineEnd,
    #[error("the trailer section is too long")]
    LongTrailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Within a chunk-size line: the size so far, its digits, and the extension's length once
    /// one has begun (after a blank or `;`).
    Size {
        size: u64,
        digits: usize,
        extension: Option<usize>,
    },
    /// The size line's CR is read; its LF is next.
    SizeEnd {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// Within the trailer section (after the last chunk): the current line's length, and the
    /// section's so far.
    Trailer {
        line: usize,
        total: usize,
    },
    /// A trailer line's CR is read; an empty line ends the body.
    TrailerEnd {
        empty: bool,
        total: usize,
    },
    Done,
}

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
        Self { state: State::Size { size: 0, digits: 0, extension: None } }
    }

    /// The last chunk and the trailer section are read: the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `data`, appending every chunk's payload in it to `out`. Returns the bytes of
    /// `data` the body took: all of them, unless the body ended within `data` (what follows
    /// is not this body's). After an error the body cannot be read further.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < data.len() {
            if let State::Data { left } = self.state {
                let take = (data.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&data[at..at + take]);
                at += take;
                let left = left - take as u64;
                self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                continue;
            }
            if self.state == State::Done {
                return Ok(at);
            }
            self.state = self.step(data[at])?;
            at += 1;
        }
        Ok(at)
    }

    /// The state after one byte of framing (anything but chunk data).
    fn step(&self, byte: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { size, digits, extension: None } => match byte {
                b'\r' if digits > 0 => State::SizeEnd { size },
                b';' | b' ' | b'\t' if digits > 0 => {
                    State::Size { size, digits, extension: Some(1) }
                }
                _ => {
                    let digit = char::from(byte).to_digit(16).ok_or(ChunkError::BadSize)?;
                    if digits == MAX_SIZE_DIGITS {
                        return Err(ChunkError::SizeTooLarge);
                    }
                    State::Size {
                        size: size * 16 + u64::from(digit),
                        digits: digits + 1,
                        extension: None,
                    }
                }
            },
            State::Size { size, digits, extension: Some(length) } => match byte {
                b'\r' => State::SizeEnd { size },
                b'\t' | b' '..=b'~' | 0x80..=0xff if length < MAX_LINE => {
                    State::Size { size, digits, extension: Some(length + 1) }
                }
                b'\t' | b' '..=b'~' | 0x80..=0xff => return Err(ChunkError::LongLine),
                _ => return Err(ChunkError::BadSize),
            },
            State::SizeEnd { size } => match byte {
                b'\n' if size == 0 => State::Trailer { line: 0, total: 0 },
                b'\n' => State::Data { left: size },
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::BadChunkEnd),
            },
            State::DataLf => match byte {
                b'\n' => Self::new().state,
                _ => return Err(ChunkError::BadChunkEnd),
            },
            State::Trailer { line, total } => match byte {
                b'\r' => State::TrailerEnd { empty: line == 0, total },
                b'\n' => return Err(ChunkError::BadLineEnd),
                _ if total >= MAX_LINE => return Err(ChunkError::LongTrailer),
                _ => State::Trailer { line: line + 1, total: total + 1 },
            },
            State::TrailerEnd { empty, total } => match byte {
                b'\n' if empty => State::Done,
                b'\n' => State::Trailer { line: 0, total },
                _ => return Err(ChunkError::BadLineEnd),
            },
            State::Data { .. } | State::Done => unreachable!("handled by `feed`"),
        })
    }
}

#[cfg(test)]
mod tests;
