//! tiktoken's split patterns, for the text `split.rs` leaves to a regex (anything that turns
//! on a non-ASCII character).
//!
//! `bpe-openai` runs them with `regex-automata`, `\s+(?!\S)` emulated by a look-ahead pattern
//! whose last character is given back. Its ready-made tokenizers would also build their
//! encoders (tens of megabytes) on first use, so the patterns are compiled here beside an
//! encoder of single bytes that is never used.

use std::sync::OnceLock;

use bpe_openai::byte_pair_encoding::BytePairEncoding;
use bpe_openai::Tokenizer;

use super::Encoding;

const CL100K_WORDS: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$";
const O200K_WORDS: &str = concat!(
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|\\p{N}{1,3}",
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "|\\s*[\\r\\n]+",
    "|\\s+$",
);
/// `\s+(?!\S)`: a run of white space and the character after it, which is given back.
const SPACES_BEFORE_SPACE: &str = "\\s+\\s";
const SPACES: &str = "\\s+";

fn compile(words: &str) -> Option<Tokenizer> {
    let bytes = BytePairEncoding::from_dictionary((0..=255u8).map(|byte| vec![byte]), None);
    let patterns = [(words, false), (SPACES_BEFORE_SPACE, true), (SPACES, false)];
    Tokenizer::new_lookahead(bytes, &patterns, false).ok()
}

impl Encoding {
    /// The length of the first piece of `text` (not empty) by tiktoken's pattern.
    pub(crate) fn regex_piece_len(self, text: &str) -> usize {
        static CL100K: OnceLock<Option<Tokenizer>> = OnceLock::new();
        static O200K: OnceLock<Option<Tokenizer>> = OnceLock::new();
        let (cell, words) = match self {
            Encoding::Cl100kBase => (&CL100K, CL100K_WORDS),
            Encoding::O200kBase => (&O200K, O200K_WORDS),
        };
        // The patterns are constants a test compiles; were one refused, the text would be one
        // piece: counted, if not exactly.
        cell.get_or_init(|| compile(words))
            .as_ref()
            .and_then(|splitter| splitter.split(text).next())
            .map_or(text.len(), str::len)
    }
}
