//! Byte-pair merging of one pre-tokenizer piece, as tiktoken does it: of the adjacent pairs of
//! parts whose joined bytes are a token, join the one of lowest rank (the leftmost of equals),
//! until no pair is a token. Every single byte is a token of both vocabularies, so the parts
//! left are the piece's tokens.
//!
//! Short pieces (almost all of them) keep the parts in an array and scan it for the lowest
//! rank, as tiktoken does. A long piece (a run of letters without spaces, a base64 blob) would
//! make that quadratic, so its parts go in a linked list with the candidate pairs in a heap,
//! keyed by (rank, position): the same choice at every step. That costs about what tiktoken
//! does (100 KB of one letter: 27 ms) and some 30 bytes of memory a byte, so a piece over
//! `LONGEST_MERGED` bytes, which no ordinary text has (a blob, or a body crafted to make a
//! gateway burn seconds and hundreds of megabytes), goes to bpe-openai's automaton-based
//! encoder: built on first such piece (~70 MB, ~150 ms), then linear (1.3 ms for those 100 KB).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::piece_memo::PieceMemo;
use super::vocab::Vocab;
use super::Encoding;

const NONE: u32 = u32::MAX;
/// Above this many bytes a piece is merged with the heap.
const SHORT_PIECE: usize = 96;
const LONG_PIECE: usize = SHORT_PIECE + 1;
/// Pieces up to this many bytes that had to be merged are remembered (`piece_memo.rs`): a
/// word, which comes again; longer ones (a clause of Chinese, an identifier) seldom do.
const REMEMBERED_PIECE: usize = 48;
const MERGED_ONLY: usize = REMEMBERED_PIECE + 1;
/// Above this many bytes a piece is left to the automaton-based encoder.
pub(crate) const LONGEST_MERGED: usize = 16 * 1024;

/// Room for the parts of a short piece and the two entries that close the list.
type ShortParts = [(u32, u32); SHORT_PIECE + 2];

/// Counts and encodes the pieces of one text, with room for merging a short piece set up once
/// and the thread's memo of merged pieces, taken when a piece is first merged (most short texts
/// never are) and given back when the merger is dropped.
pub(crate) struct Merger {
    encoding: Encoding,
    vocab: &'static Vocab,
    parts: ShortParts,
    memo: Option<PieceMemo>,
}

impl Merger {
    pub(crate) fn new(encoding: Encoding) -> Self {
        Self { encoding, vocab: encoding.vocab(), parts: [(0, 0); SHORT_PIECE + 2], memo: None }
    }

    /// How many tokens `piece` encodes to.
    pub(crate) fn count(&mut self, piece: &[u8]) -> usize {
        // Most pieces of ordinary text (" the", "ing", ",") are one whole token.
        if self.vocab.rank(piece).is_some() {
            return 1;
        }
        match piece.len() {
            0 => 0,
            1..=REMEMBERED_PIECE => {
                let encoding = self.encoding;
                let memo = self.memo.get_or_insert_with(|| PieceMemo::take(encoding));
                let hash = PieceMemo::hash(piece);
                if let Some(count) = memo.get(hash, piece) {
                    return count as usize;
                }
                let count = merge_short(self.vocab, piece, &mut self.parts);
                memo.insert(hash, piece, count as u32);
                count
            }
            MERGED_ONLY..=SHORT_PIECE => merge_short(self.vocab, piece, &mut self.parts),
            LONG_PIECE..=LONGEST_MERGED => merge_long(self.vocab, piece).len(),
            _ => self.encoding.reference().bpe.count(piece),
        }
    }

    /// The tokens of `piece`, appended to `out`.
    pub(crate) fn encode_into(&mut self, piece: &[u8], out: &mut Vec<u32>) {
        let vocab = self.vocab;
        if let Some(id) = vocab.rank(piece) {
            out.push(id);
            return;
        }
        let mut push = |starts: &mut dyn Iterator<Item = usize>| {
            let Some(mut start) = starts.next() else { return };
            for end in starts.chain([piece.len()]) {
                out.push(vocab.rank(&piece[start..end]).unwrap_or(NONE));
                start = end;
            }
        };
        match piece.len() {
            0 => {}
            1..=SHORT_PIECE => {
                let tokens = merge_short(vocab, piece, &mut self.parts);
                push(&mut self.parts[..tokens].iter().map(|&(start, _)| start as usize));
            }
            LONG_PIECE..=LONGEST_MERGED => push(&mut merge_long(vocab, piece).into_iter()),
            _ => out.extend(self.encoding.reference().bpe.encode_via_backtracking(piece)),
        }
    }
}

impl Drop for Merger {
    fn drop(&mut self) {
        if let Some(memo) = self.memo.take() {
            memo.give_back(self.encoding);
        }
    }
}

/// Merges `piece` (1 to `SHORT_PIECE` bytes) in `parts`, whose first entries then hold where
/// each token starts; returns how many tokens there are.
fn merge_short(vocab: &Vocab, piece: &[u8], parts: &mut ShortParts) -> usize {
    let rank = |from: u32, to: u32| vocab.rank(&piece[from as usize..to as usize]).unwrap_or(NONE);
    let len = piece.len();
    // (start, rank of joining this part with the next); the last two close the list.
    for (start, bytes) in piece.windows(2).enumerate() {
        parts[start] = (start as u32, vocab.pair(bytes[0], bytes[1]).unwrap_or(NONE));
    }
    parts[len - 1] = (len as u32 - 1, NONE);
    parts[len] = (len as u32, NONE);
    let mut count = len + 1;
    loop {
        let mut lowest = (NONE, 0);
        for (at, &(_, pair)) in parts[..count - 1].iter().enumerate() {
            if pair < lowest.0 {
                lowest = (pair, at);
            }
        }
        if lowest.0 == NONE {
            return count - 1;
        }
        let at = lowest.1;
        // After joining `at` and `at + 1`, part `at` ends where `at + 2` does.
        parts[at].1 = if at + 3 < count { rank(parts[at].0, parts[at + 3].0) } else { NONE };
        if at > 0 {
            parts[at - 1].1 = rank(parts[at - 1].0, parts[at + 2].0);
        }
        parts.copy_within(at + 2..count, at + 1);
        count -= 1;
    }
}

fn merge_long(vocab: &Vocab, piece: &[u8]) -> Vec<usize> {
    let len = piece.len();
    // Part `i` starts at byte `i` and keeps that start as it grows; `next[i]` is the start of
    // the part after it (`len` at the end), `prev[i]` the one before (NONE at the start).
    let mut next: Vec<u32> = (1..=len as u32).collect();
    let mut prev: Vec<u32> = std::iter::once(NONE).chain(0..len as u32 - 1).collect();
    let end_of = |next: &[u32], at: usize| next.get(at).map_or(len, |&n| n as usize);
    let pair_rank = |next: &[u32], at: usize| -> u32 {
        let second = end_of(next, at);
        if second >= len {
            return NONE;
        }
        vocab.rank(&piece[at..end_of(next, second)]).unwrap_or(NONE)
    };
    // `pair[i]`: the rank of joining part `i` with the next (NONE when that is no token).
    let mut pair: Vec<u32> = (0..len).map(|at| pair_rank(&next, at)).collect();
    let mut heap: BinaryHeap<_> = (pair.iter().enumerate())
        .filter(|(_, &rank)| rank != NONE)
        .map(|(at, &rank)| Reverse((rank, at as u32)))
        .collect();
    let mut alive = vec![true; len];
    while let Some(Reverse((rank, at))) = heap.pop() {
        let at = at as usize;
        if !alive[at] || pair[at] != rank {
            continue; // a pair that has changed since it was pushed
        }
        let gone = next[at] as usize;
        alive[gone] = false;
        next[at] = next[gone];
        if let Some(after) = prev.get_mut(next[at] as usize) {
            *after = at as u32;
        }
        pair[at] = pair_rank(&next, at);
        if pair[at] != NONE {
            heap.push(Reverse((pair[at], at as u32)));
        }
        if let Some(&before) = prev.get(at).filter(|&&before| before != NONE) {
            let before = before as usize;
            pair[before] = pair_rank(&next, before);
            if pair[before] != NONE {
                heap.push(Reverse((pair[before], before as u32)));
            }
        }
    }
    let mut starts = Vec::new();
    let mut at = 0;
    while at < len {
        starts.push(at);
        at = next[at] as usize;
    }
    starts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::tokens::Encoding;

    /// A piece of letters only (one pre-tokenizer piece), pseudo-random so that it merges.
    fn letters(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[(state >> 24) as usize % 52]
            })
            .collect()
    }

    #[test]
    fn a_piece_too_long_to_merge_in_the_tables_is_encoded_the_same() {
        let piece = letters(LONGEST_MERGED + 3_000);
        for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let vocab = enc.vocab();
            let starts = merge_long(vocab, &piece);
            let ends = starts.iter().skip(1).copied().chain([piece.len()]);
            let merged: Vec<u32> = (starts.iter().zip(ends))
                .map(|(&start, end)| vocab.rank(&piece[start..end]).unwrap_or(NONE))
                .collect();
            let mut merger = Merger::new(enc);
            let mut encoded = Vec::new();
            merger.encode_into(&piece, &mut encoded);
            assert_eq!(merged, encoded, "{enc:?}");
            assert_eq!(merger.count(&piece), merged.len(), "{enc:?}");
        }
    }

    proptest! {
        /// The heap makes the same choices as the scan, on pieces of any length.
        #[test]
        fn the_long_merge_agrees_with_the_short_one(piece in "[ab ]{1,96}|\\PC{1,24}") {
            for enc in [Encoding::Cl100kBase, Encoding::O200kBase] {
                let vocab = enc.vocab();
                let mut parts = [(0, 0); SHORT_PIECE + 2];
                let tokens = merge_short(vocab, piece.as_bytes(), &mut parts);
                let short: Vec<usize> = parts[..tokens].iter().map(|&(at, _)| at as usize).collect();
                prop_assert_eq!(merge_long(vocab, piece.as_bytes()), short);
            }
        }
    }
}
