//! A fast pre-tokenizer for ASCII text, exact by construction and by test.
//!
//! tiktoken splits text with a regex before BPE (`pretokenizer.rs` runs it with
//! `regex-automata`), which costs about as much as the BPE itself. Most text is ASCII, where the
//! regex's classes (`\p{L}`, `\p{N}`, `\s`, ...) are byte tests, so this module matches the
//! same alternatives by hand. Whenever a decision would depend on a non-ASCII character, it
//! gives up on that piece and the regex decides; the next piece is tried by hand again.
//!
//! The patterns mirrored here (tiktoken's, leftmost-first):
//! - cl100k: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//!   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//! - o200k: `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|
//!   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
//!   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//!
//! In ASCII, `Lm`, `Lo` and `M` are empty, so o200k's letter classes are `[A-Z]` and `[a-z]`.

use super::Encoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    End,
    Upper,
    Lower,
    Digit,
    /// `\r` or `\n`.
    Newline,
    /// Other ASCII white space: space, `\t`, `\x0b`, `\x0c`.
    Space,
    /// Anything else in ASCII: punctuation, symbols, control characters.
    Other,
    /// Not ASCII: only the regex knows.
    Unknown,
}

const fn class_of(byte: u8) -> Class {
    match byte {
        b'A'..=b'Z' => Class::Upper,
        b'a'..=b'z' => Class::Lower,
        b'0'..=b'9' => Class::Digit,
        b'\r' | b'\n' => Class::Newline,
        b' ' | b'\t' | 0x0b | 0x0c => Class::Space,
        0x80..=0xff => Class::Unknown,
        _ => Class::Other,
    }
}

const CLASSES: [Class; 256] = {
    let mut table = [Class::Other; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = class_of(i as u8);
        i += 1;
    }
    table
};

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn class(&self, at: usize) -> Class {
        self.0.get(at).map_or(Class::End, |&b| CLASSES[b as usize])
    }

    fn byte(&self, at: usize) -> u8 {
        self.0.get(at).copied().unwrap_or(0)
    }

    /// End of the run of classes accepted by `accept` from `at`, or `None` if the run stops at
    /// a non-ASCII character (which might belong to it).
    fn run(&self, mut at: usize, accept: impl Fn(Class) -> bool) -> Option<usize> {
        loop {
            match self.class(at) {
                Class::Unknown => return None,
                class if accept(class) => at += 1,
                _ => return Some(at),
            }
        }
    }

    /// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `at` (0 if none), `None` if unsure.
    fn contraction(&self, at: usize) -> Option<usize> {
        if self.byte(at) != b'\'' {
            return Some(0);
        }
        let (first, second) = (self.class(at + 1), self.class(at + 2));
        if first == Class::Unknown {
            return None; // e.g. U+017F folds to `s`.
        }
        match self.byte(at + 1).to_ascii_lowercase() {
            b's' | b't' | b'm' | b'd' => Some(2),
            lead @ (b'r' | b'v' | b'l') => {
                if second == Class::Unknown {
                    return None;
                }
                let want = if lead == b'l' { b'l' } else { b'e' };
                Some(if self.byte(at + 2).to_ascii_lowercase() == want {
                    3
                } else {
                    0
                })
            }
            _ => Some(0),
        }
    }
}

/// `\p{N}{1,3}` at `at` (a digit).
fn digits(bytes: &Bytes<'_>, at: usize) -> Option<usize> {
    let mut end = at + 1;
    while end < at + 3 {
        match bytes.class(end) {
            Class::Digit => end += 1,
            Class::Unknown => return None,
            _ => break,
        }
    }
    Some(end)
}

/// ` ?[^\s\p{L}\p{N}]+[\r\n]*`, or with `[\r\n/]*` for o200k (`slash`).
fn punctuation(bytes: &Bytes<'_>, at: usize, slash: bool) -> Option<Option<usize>> {
    let start = if bytes.byte(at) == b' ' { at + 1 } else { at };
    match bytes.class(start) {
        Class::Unknown => return None,
        Class::Other => {}
        _ => return Some(None),
    }
    let end = bytes.run(start, |c| c == Class::Other)?;
    let mut end = end;
    while bytes.class(end) == Class::Newline || (slash && bytes.byte(end) == b'/') {
        end += 1;
    }
    Some(Some(end))
}

/// `\s*[\r\n]+|\s+(?!\S)|\s+` at `at` (white space).
fn whitespace(bytes: &Bytes<'_>, at: usize) -> Option<usize> {
    let end = bytes.run(at, |c| matches!(c, Class::Space | Class::Newline))?;
    let run = bytes.0.get(at..end)?;
    if let Some(last) = run.iter().rposition(|&b| b == b'\r' || b == b'\n') {
        return Some(at + last + 1);
    }
    if end == bytes.0.len() || end - at == 1 {
        Some(end)
    } else {
        Some(end - 1)
    }
}

/// Where the piece starting at `at` ends, or `None` if the regex must decide.
fn cl100k_piece(bytes: &Bytes<'_>, at: usize) -> Option<usize> {
    let contraction = bytes.contraction(at)?;
    if contraction > 0 {
        return Some(at + contraction);
    }
    let first = bytes.class(at);
    let letters_from = match first {
        Class::Upper | Class::Lower => at,
        Class::Space | Class::Other => at + 1,
        _ => usize::MAX,
    };
    if letters_from != usize::MAX {
        match bytes.class(letters_from) {
            Class::Unknown => return None,
            Class::Upper | Class::Lower => {
                return bytes.run(letters_from, |c| matches!(c, Class::Upper | Class::Lower));
            }
            _ => {}
        }
    }
    shared_tail(bytes, at, first, false)
}

fn o200k_piece(bytes: &Bytes<'_>, at: usize) -> Option<usize> {
    let first = bytes.class(at);
    let letters_from = match first {
        Class::Upper | Class::Lower => at,
        Class::Space | Class::Other => at + 1,
        _ => usize::MAX,
    };
    if letters_from != usize::MAX {
        match bytes.class(letters_from) {
            Class::Unknown => return None,
            Class::Upper | Class::Lower => {
                let upper_end = bytes.run(letters_from, |c| c == Class::Upper)?;
                let lower_end = bytes.run(upper_end, |c| c == Class::Lower)?;
                return Some(lower_end + bytes.contraction(lower_end)?);
            }
            _ => {}
        }
    }
    shared_tail(bytes, at, first, true)
}

/// The alternatives both encodings share after the letters: digits, punctuation, spaces.
fn shared_tail(bytes: &Bytes<'_>, at: usize, first: Class, slash: bool) -> Option<usize> {
    match first {
        Class::Digit => digits(bytes, at),
        Class::Space | Class::Newline | Class::Other => match punctuation(bytes, at, slash)? {
            Some(end) => Some(end),
            None if first == Class::Other => None, // unreachable: punctuation matched it
            None => whitespace(bytes, at),
        },
        _ => None,
    }
}

impl Encoding {
    /// The pre-tokenizer pieces of `text`, exactly as tiktoken's regex splits it.
    pub(crate) fn pieces<'a>(self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let mut at = 0;
        std::iter::from_fn(move || {
            let rest = text.get(at..).filter(|rest| !rest.is_empty())?;
            let bytes = Bytes(text.as_bytes());
            let fast = match self {
                Encoding::Cl100kBase => cl100k_piece(&bytes, at),
                Encoding::O200kBase => o200k_piece(&bytes, at),
            };
            let len = match fast {
                Some(end) if end > at => end - at,
                _ => self.regex_piece_len(rest),
            };
            let piece = rest.get(..len)?;
            at += len;
            Some(piece)
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn agree(text: &str) -> Result<(), TestCaseError> {
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let ours: Vec<&str> = enc.pieces(text).collect();
            let regex: Vec<&str> = enc.reference().split(text).collect();
            prop_assert_eq!(ours, regex, "{:?} {:?}", enc, text);
        }
        Ok(())
    }

    #[test]
    fn known_tricky_cases() {
        for text in [
            "",
            " ",
            "  ",
            "a  b",
            "a \n b",
            "x\r\n\r\n  y",
            "  \t",
            "HELLOworld",
            "HelloWorld",
            "I'm",
            "I'M",
            "'s",
            "'sa",
            "don't'",
            "x'LL",
            "x're'",
            "a'ſ",
            " 'll",
            "(hi)",
            " !!\n\n",
            "//a",
            "a//\n",
            "12345",
            "1a2",
            " 1",
            "\u{a0}a",
            "a\u{e9}",
            "A\u{301}",
            "é ",
            "x \u{3000}",
            "x\u{85}y",
            "\x0b\x0c\x1c",
            "中文abc",
            "abc中文",
            "!\u{2014}",
            ")\u{e9}",
            "1\u{661}",
        ] {
            agree(text).unwrap();
        }
    }

    fn piecey() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            "[ \t\r\n\x0b\x0c]{1,4}",
            "[a-zA-Z]{1,5}",
            "'[sStTmMdDrReEvVlL]{0,2}",
            "[0-9]{1,5}",
            "[!-/:-@\\[-`{-~]{1,3}",
            "[\x00-\x7f]{1,4}",
            "\\PC",
            "[\u{a0}\u{85}\u{3000}\u{17f}\u{e9}\u{301}\u{661}\u{4e2d}]",
        ];
        prop::collection::vec(part, 0..30).prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn agrees_with_the_regex(text in piecey()) {
            agree(&text)?;
        }
    }
}
