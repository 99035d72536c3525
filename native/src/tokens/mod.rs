//! Exact tiktoken-compatible BPE for `cl100k_base` and `o200k_base`.
//!
//! The vocabularies are compiled into the binary by `bpe-openai`, so nothing is read from disk
//! or fetched at run time.

use std::str::FromStr;

use crate::CoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Cl100kBase,
    O200kBase,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
        }
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
            Encoding::O200kBase => bpe_openai::o200k_base(),
        }
    }

    /// Number of tokens `text` encodes to; equal to `len(tiktoken.encode_ordinary(text))`.
    pub fn count(self, text: &str) -> usize {
        self.tokenizer().count(text)
    }

    /// Token ids of `text`, identical to `tiktoken.encode_ordinary(text)`.
    pub fn encode(self, text: &str) -> Vec<u32> {
        self.tokenizer().encode(text)
    }

    /// The bytes `tokens` stand for; a token may end inside a multi-byte character.
    pub fn decode_bytes(self, tokens: &[u32]) -> Result<Vec<u8>, CoreError> {
        let bpe = &self.tokenizer().bpe;
        let vocabulary = bpe.num_tokens();
        match tokens.iter().find(|&&id| id as usize >= vocabulary) {
            Some(&bad) => Err(CoreError::InvalidToken(bad)),
            None => Ok(bpe.decode_tokens(tokens)),
        }
    }

    /// Decode ids back to text; `None` when the ids do not form valid UTF-8.
    pub fn decode(self, tokens: &[u32]) -> Option<String> {
        self.tokenizer().decode(tokens)
    }
}

impl FromStr for Encoding {
    type Err = CoreError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "cl100k_base" => Ok(Encoding::Cl100kBase),
            "o200k_base" => Ok(Encoding::O200kBase),
            other => Err(CoreError::UnknownEncoding(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests;
