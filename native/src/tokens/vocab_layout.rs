//! The layout of a vocabulary table, shared by `build.rs` (which writes one per encoding) and
//! `vocab.rs` (which reads it where the binary holds it).
//!
//! Little-endian `u32` words: the token count `n`, the slot count `m` (a power of two), the
//! longest token's length; `n + 1` offsets into the byte area (token `id` is
//! `bytes[offsets[id]..offsets[id + 1]]`, ids being tiktoken's ranks); `m` slots of an
//! open-addressing table from a token's bytes to its id (`EMPTY` where none), probed linearly
//! from `slot_hash(bytes) & (m - 1)`, each slot holding the id in its low `ID_BITS` bits and
//! `tag(hash)` above them, so that a probe reads a token's bytes only when the tags agree;
//! `PAIRS` words giving the id of each two-byte token at index `256 * first + second` (`EMPTY`
//! where none: half of BPE's lookups are of two bytes); then the byte area. About 21 bytes per
//! token against the tens of megabytes an automaton-based encoder builds on first use.

use xxhash_rust::xxh3::xxh3_64;

pub const HEADER_WORDS: usize = 3;
pub const EMPTY: u32 = u32::MAX;
pub const PAIRS: usize = 1 << 16;
pub const ID_BITS: u32 = 18;
pub const ID_MASK: u32 = (1 << ID_BITS) - 1;

pub fn slot_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The hash's top bits, for the slot's bits above the id.
pub fn tag(hash: u64) -> u32 {
    (hash >> (64 - (32 - ID_BITS))) as u32
}

/// At most 40% of the slots taken: a lookup that misses (most of BPE's) probes about 1.6 slots.
/// (Three in four taken, half the size, counted CJK text 15% slower: longer probe runs.)
pub fn slot_count(tokens: usize) -> usize {
    (tokens * 5 / 2).next_power_of_two()
}

/// The table for `tokens`, listed in rank order; `None` when they do not fit (more than
/// `ID_MASK` tokens, or bytes beyond `u32` offsets) or two tokens are the same bytes.
#[allow(dead_code)] // only build.rs and the tests write tables
pub fn write(tokens: &[Vec<u8>]) -> Option<Vec<u8>> {
    let m = slot_count(tokens.len());
    let mut slots = vec![EMPTY; m];
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    let mut area = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        offsets.push(u32::try_from(area.len()).ok()?);
        area.extend_from_slice(token);
        let id = u32::try_from(id).ok().filter(|&id| id < ID_MASK)?;
        let hash = slot_hash(token);
        let mut slot = (hash as usize) & (m - 1);
        while slots[slot] != EMPTY {
            if tokens[(slots[slot] & ID_MASK) as usize] == *token {
                return None;
            }
            slot = (slot + 1) & (m - 1);
        }
        slots[slot] = id | tag(hash) << ID_BITS;
    }
    offsets.push(u32::try_from(area.len()).ok()?);
    let mut pairs = vec![EMPTY; PAIRS];
    for (id, token) in tokens.iter().enumerate() {
        if let [first, second] = token[..] {
            pairs[usize::from(first) << 8 | usize::from(second)] = u32::try_from(id).ok()?;
        }
    }
    let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
    let header = [tokens.len(), m, longest].map(u32::try_from);
    let words = HEADER_WORDS + offsets.len() + m + PAIRS;
    let mut out = Vec::with_capacity(4 * words + area.len());
    for word in header {
        out.extend_from_slice(&word.ok()?.to_le_bytes());
    }
    for word in offsets.iter().chain(&slots).chain(&pairs) {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&area);
    Some(out)
}
