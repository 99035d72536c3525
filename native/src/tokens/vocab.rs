//! A vocabulary table as the binary holds it (`vocab_layout.rs`): read in place, never copied,
//! so its pages are shared by every process that loads the extension and only those a lookup
//! touches are ever read in.

use std::sync::OnceLock;

use super::vocab_layout::{slot_hash, tag, EMPTY, HEADER_WORDS, ID_BITS, ID_MASK, PAIRS};
use super::Encoding;

static CL100K_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.vocab"));
static O200K_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.vocab"));

#[derive(Debug)]
pub(crate) struct Vocab {
    offsets: &'static [u8],
    slots: &'static [u8],
    pairs: &'static [u8],
    bytes: &'static [u8],
    tokens: usize,
    mask: usize,
    longest: usize,
}

fn word(area: &[u8], index: usize) -> Option<usize> {
    let at = index * 4;
    let bytes = area.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
}

impl Vocab {
    /// The table in `table`; `None` when it is not one (cut short, say).
    pub(crate) fn read(table: &'static [u8]) -> Option<Self> {
        let (tokens, slots, longest) = (word(table, 0)?, word(table, 1)?, word(table, 2)?);
        if !slots.is_power_of_two() {
            return None;
        }
        let offsets_at = HEADER_WORDS * 4;
        let slots_at = offsets_at + (tokens + 1) * 4;
        let pairs_at = slots_at + slots * 4;
        let bytes_at = pairs_at + PAIRS * 4;
        let vocab = Self {
            offsets: table.get(offsets_at..slots_at)?,
            slots: table.get(slots_at..pairs_at)?,
            pairs: table.get(pairs_at..bytes_at)?,
            bytes: table.get(bytes_at..)?,
            tokens,
            mask: slots - 1,
            longest,
        };
        (word(vocab.offsets, tokens)? == vocab.bytes.len()).then_some(vocab)
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens
    }

    /// The bytes of token `id` (empty for an id outside the vocabulary).
    pub(crate) fn token(&self, id: u32) -> &'static [u8] {
        let id = id as usize;
        let (Some(start), Some(end)) = (word(self.offsets, id), word(self.offsets, id + 1)) else {
            return &[];
        };
        self.bytes.get(start..end).unwrap_or(&[])
    }

    /// The id (tiktoken's rank) of the token that is exactly `bytes`, if there is one.
    pub(crate) fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if let [first, second] = *bytes {
            return self.pair(first, second);
        }
        if bytes.len() > self.longest || bytes.is_empty() {
            return None;
        }
        let hash = slot_hash(bytes);
        let wanted = tag(hash);
        let mut slot = (hash as usize) & self.mask;
        loop {
            let entry = word(self.slots, slot)? as u32;
            if entry == EMPTY {
                return None;
            }
            let id = entry & ID_MASK;
            if entry >> ID_BITS == wanted && self.token(id) == bytes {
                return Some(id);
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// The id of the token that is the two bytes `first`, `second`, if there is one.
    pub(crate) fn pair(&self, first: u8, second: u8) -> Option<u32> {
        let id = word(self.pairs, usize::from(first) << 8 | usize::from(second))?;
        (id != EMPTY as usize).then_some(id as u32)
    }
}

impl Encoding {
    pub(crate) fn vocab(self) -> &'static Vocab {
        static CL100K: OnceLock<Vocab> = OnceLock::new();
        static O200K: OnceLock<Vocab> = OnceLock::new();
        let (cell, table) = match self {
            Encoding::Cl100kBase => (&CL100K, CL100K_TABLE),
            Encoding::O200kBase => (&O200K, O200K_TABLE),
        };
        // build.rs wrote the table (a test reads both); were one unreadable, counting would
        // see no tokens but single bytes rather than panic inside a request.
        cell.get_or_init(|| Vocab::read(table).unwrap_or(Vocab::EMPTY_VOCAB))
    }
}

impl Vocab {
    const EMPTY_VOCAB: Vocab = Vocab {
        offsets: &[0, 0, 0, 0],
        slots: &[0xff, 0xff, 0xff, 0xff],
        pairs: &[],
        bytes: &[],
        tokens: 0,
        mask: 0,
        longest: 0,
    };
}
