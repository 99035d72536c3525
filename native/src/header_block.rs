//! A response's header lines, `name: value\r\n` each, written in one pass.
//!
//! A name or value holding a line break would let whoever wrote it add headers of their own
//! or end the head early (response splitting), so such a header is refused, never written.

/// A header whose name or value holds a CR or LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineBreakInHeader;

/// Append `name: value\r\n` to `block`, or nothing when either holds a line break.
pub fn push_line(block: &mut Vec<u8>, name: &str, value: &str) -> Result<(), LineBreakInHeader> {
    let breaks = |text: &str| memchr::memchr2(b'\r', b'\n', text.as_bytes()).is_some();
    if breaks(name) || breaks(value) {
        return Err(LineBreakInHeader);
    }
    block.reserve(name.len() + value.len() + 4);
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend_from_slice(value.as_bytes());
    block.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_in_order() {
        let mut block = Vec::new();
        push_line(&mut block, "x-request-id", "abc").unwrap();
        push_line(&mut block, "x-cache", "miss").unwrap();
        assert_eq!(block, b"x-request-id: abc\r\nx-cache: miss\r\n");
    }

    #[test]
    fn a_line_break_anywhere_is_refused_and_nothing_written() {
        for (name, value) in [("x-a", "1\r\nset-cookie: x"), ("x-a\n", "1"), ("x-a", "\r")] {
            let mut block = b"kept\r\n".to_vec();
            assert_eq!(push_line(&mut block, name, value), Err(LineBreakInHeader));
            assert_eq!(block, b"kept\r\n");
        }
    }

    #[test]
    fn text_beyond_ascii_is_written_as_utf8() {
        let mut block = Vec::new();
        push_line(&mut block, "x-tenant", "café").unwrap();
        assert_eq!(block, "x-tenant: café\r\n".as_bytes());
    }
}
