//! Exact tiktoken-compatible BPE for `cl100k_base` and `o200k_base`.
//!
//! The vocabularies are compiled into the binary as compact tables (`build.rs` writes them from
//! the rank files `bpe-openai` embeds), so nothing is read from disk or fetched at run time,
//! and a process holds a few megabytes of them where an automaton-based encoder builds tens.

use std::str::FromStr;
use std::sync::LazyLock;

use crate::CoreError;

pub mod chat;
mod generations;
mod merge;
pub mod memo;
mod piece_memo;
mod prehashed;
mod pretokenizer;
mod split;
mod vocab;
mod vocab_layout;

/// Counts of long prompt texts seen recently (system prompts, resent conversation history).
pub static PROMPT_MEMO: LazyLock<memo::CountMemo> =
    LazyLock::new(|| memo::CountMemo::new(memo::DEFAULT_CAPACITY));

/// Model-name prefixes of the older cl100k_base family; everything newer uses o200k_base.
const CL100K_PREFIXES: [&str; 7] = [
    "gpt-4-",
    "gpt-3.5",
    "gpt-35",
    "text-embedding-ada",
    "text-embedding-3",
    "davinci-002",
    "babbage-002",
];
const CL100K_EXACT: [&str; 2] = ["gpt-4", "gpt-4-32k"];
const O200K_PREFIXES: [&str; 8] = [
    "gpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "o1",
    "o3",
    "o4",
    "chatgpt-4o",
];

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

    /// The encoding OpenAI uses for `model` (a `provider/` prefix is ignored); unknown models
    /// get o200k_base.
    pub fn for_model(model: &str) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        if O200K_PREFIXES.iter().any(|p| name.starts_with(p)) {
            Encoding::O200kBase
        } else if CL100K_EXACT.contains(&name)
            || CL100K_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    /// `bpe-openai`'s own tokenizer: what the tests hold ours to, beside tiktoken itself, and
    /// the encoder of pieces too long to merge in the tables (see `merge::LONGEST_MERGED`).
    fn reference(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
            Encoding::O200kBase => bpe_openai::o200k_base(),
        }
    }

    /// Number of tokens `text` encodes to; equal to `len(tiktoken.encode_ordinary(text))`.
    pub fn count(self, text: &str) -> usize {
        let mut merger = merge::Merger::new(self);
        self.pieces(text).map(|piece| merger.count(piece.as_bytes())).sum()
    }

    /// `count(text)` for a prompt text: long texts are remembered in `PROMPT_MEMO`, because
    /// prompts repeat (system prompts, history resent with every turn).
    pub fn count_prompt(self, text: &str) -> usize {
        PROMPT_MEMO.count(self, text)
    }

    /// Tokens of the part of `text` that no continuation can re-tokenize, and that part's
    /// length in bytes. `count(text + more) == tokens + count(text[consumed..] + more)` for
    /// every `more`, which lets a stream be counted exactly a piece at a time.
    ///
    /// Pre-tokenizer pieces never merge, and a piece's extent depends on at most a few
    /// characters after it, except in a run of whitespace (which may still grow). So pieces
    /// that end `SETTLED_MARGIN` bytes before the trailing whitespace are final.
    pub fn count_prefix(self, text: &str) -> (usize, usize) {
        const SETTLED_MARGIN: usize = 16;
        let settled = text.trim_end_matches(char::is_whitespace).len();
        let limit = settled.saturating_sub(SETTLED_MARGIN);
        let (mut tokens, mut consumed) = (0, 0);
        let mut merger = merge::Merger::new(self);
        for piece in self.pieces(text) {
            if consumed + piece.len() > limit {
                break;
            }
            consumed += piece.len();
            tokens += merger.count(piece.as_bytes());
        }
        (tokens, consumed)
    }

    /// Token ids of `text`, identical to `tiktoken.encode_ordinary(text)`.
    pub fn encode(self, text: &str) -> Vec<u32> {
        let mut merger = merge::Merger::new(self);
        let mut tokens = Vec::with_capacity(text.len() / 4);
        for piece in self.pieces(text) {
            merger.encode_into(piece.as_bytes(), &mut tokens);
        }
        tokens
    }

    /// The bytes `tokens` stand for; a token may end inside a multi-byte character.
    pub fn decode_bytes(self, tokens: &[u32]) -> Result<Vec<u8>, CoreError> {
        let vocab = self.vocab();
        match tokens.iter().find(|&&id| id as usize >= vocab.len()) {
            Some(&bad) => Err(CoreError::InvalidToken(bad)),
            None => Ok(tokens.iter().flat_map(|&id| vocab.token(id)).copied().collect()),
        }
    }

    /// Decode ids back to text; `None` when the ids do not form valid UTF-8.
    pub fn decode(self, tokens: &[u32]) -> Option<String> {
        String::from_utf8(self.decode_bytes(tokens).ok()?).ok()
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
