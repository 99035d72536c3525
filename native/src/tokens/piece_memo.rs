//! The token counts of the pieces a thread had to merge, remembered for the next time.
//!
//! A piece that is one whole token (" the", "ing", "、") costs one lookup. One that is not
//! costs a merge: a lookup for every join tried, ~0.3-10 µs a piece. In Korean, Russian or
//! Chinese most pieces are of that kind, and they repeat: words follow Zipf's law within a text
//! and across the requests a gateway sees. So each thread remembers the counts of the pieces it
//! merged, if short (`merge::REMEMBERED_PIECE`), keyed by the piece's own bytes: exact, not
//! trusting a hash. As in the prompt memo, two generations of at most `GENERATION` entries
//! each (`generations.rs`) keep it bounded and roughly least-recently-used.
//!
//! A `Merger` takes its thread's memo for the text it counts (at its first merged piece) and
//! gives it back when dropped, so a piece costs no thread-local access.

use std::cell::RefCell;

use xxhash_rust::xxh3::xxh3_64;

use super::generations::Generations;
use super::Encoding;

/// Entries per generation: two generations, for each encoding, in each thread that counts.
const GENERATION: usize = 4096;

struct Entry {
    piece: Box<[u8]>,
    count: u32,
}

/// Counts by the xxh3-64 hash of the piece, with the piece to tell two apart.
#[derive(Default)]
pub(crate) struct PieceMemo(Generations<u64, Entry>);

thread_local! {
    static MEMOS: RefCell<[PieceMemo; 2]> = RefCell::new(Default::default());
}

impl PieceMemo {
    /// This thread's memo for `encoding`, taken until `give_back`.
    pub(crate) fn take(encoding: Encoding) -> Self {
        MEMOS
            .try_with(|memos| std::mem::take(&mut memos.borrow_mut()[encoding as usize]))
            .unwrap_or_default()
    }

    pub(crate) fn give_back(self, encoding: Encoding) {
        // A thread being torn down has no memo to give it back to: then it is dropped.
        let _ = MEMOS.try_with(|memos| memos.borrow_mut()[encoding as usize] = self);
    }

    pub(crate) fn hash(piece: &[u8]) -> u64 {
        xxh3_64(piece)
    }

    pub(crate) fn get(&mut self, hash: u64, piece: &[u8]) -> Option<u32> {
        self.0.get(hash, GENERATION, |entry| (*entry.piece == *piece).then_some(entry.count))
    }

    pub(crate) fn insert(&mut self, hash: u64, piece: &[u8], count: u32) {
        self.0.insert(hash, Entry { piece: piece.into(), count }, GENERATION);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_is_found_by_its_bytes_not_only_its_hash() {
        let mut memo = PieceMemo::default();
        memo.insert(7, b"word", 2);
        assert_eq!(memo.get(7, b"word"), Some(2));
        assert_eq!(memo.get(7, b"other"), None, "same hash, other bytes: not the same piece");
    }

    #[test]
    fn the_memo_stays_bounded_and_keeps_what_is_in_use() {
        let mut memo = PieceMemo::default();
        let hot = b"hot piece";
        memo.insert(PieceMemo::hash(hot), hot, 3);
        for index in 0..10 * GENERATION {
            let piece = format!("piece {index}");
            memo.insert(PieceMemo::hash(piece.as_bytes()), piece.as_bytes(), 1);
            assert_eq!(memo.get(PieceMemo::hash(hot), hot), Some(3));
            assert!(memo.len() <= 2 * GENERATION);
        }
    }

    #[test]
    fn each_encoding_has_its_own_memo_per_thread() {
        let mut memo = PieceMemo::take(Encoding::O200kBase);
        memo.insert(1, b"x", 1);
        memo.give_back(Encoding::O200kBase);
        assert_eq!(PieceMemo::take(Encoding::Cl100kBase).len(), 0);
        assert_eq!(PieceMemo::take(Encoding::O200kBase).len(), 1);
        let elsewhere = std::thread::spawn(|| PieceMemo::take(Encoding::O200kBase).len());
        assert_eq!(elsewhere.join().ok(), Some(0));
    }
}
