//! Pieces that are one whole token, found with one hash lookup.
//!
//! Most pre-tokenizer pieces of ordinary text (" the", "ing", ",") are a single token. The BPE
//! encoder would still set up its backtracking state (two allocations) for each; this index
//! answers them directly and leaves the rest to the encoder.

use std::collections::HashMap;
use std::sync::OnceLock;

use bpe_openai::byte_pair_encoding::BytePairEncoding;
use xxhash_rust::xxh3::xxh3_64;

use super::prehashed::Prehashed;
use super::Encoding;

type Index = HashMap<u64, u32, Prehashed>;

pub(crate) struct WholeTokens {
    index: Index,
}

impl WholeTokens {
    fn build(bpe: &BytePairEncoding) -> Self {
        let mut index = Index::with_capacity_and_hasher(bpe.num_tokens(), Default::default());
        for id in 0..bpe.num_tokens() {
            let Ok(id) = u32::try_from(id) else { break };
            // On the (astronomically unlikely) hash collision the first token keeps the slot;
            // the other is still counted correctly by the encoder.
            index.entry(xxh3_64(bpe.token_bytes(id))).or_insert(id);
        }
        Self { index }
    }

    /// The token `piece` is, if it is exactly one.
    pub(crate) fn get(&self, bpe: &BytePairEncoding, piece: &[u8]) -> Option<u32> {
        let id = *self.index.get(&xxh3_64(piece))?;
        (bpe.token_bytes(id) == piece).then_some(id)
    }
}

impl Encoding {
    /// Built on first use (a few milliseconds), then shared read-only by every thread.
    pub(crate) fn whole_tokens(self) -> &'static WholeTokens {
        static CL100K: OnceLock<WholeTokens> = OnceLock::new();
        static O200K: OnceLock<WholeTokens> = OnceLock::new();
        let cell = match self {
            Encoding::Cl100kBase => &CL100K,
            Encoding::O200kBase => &O200K,
        };
        cell.get_or_init(|| WholeTokens::build(&self.tokenizer().bpe))
    }
}
