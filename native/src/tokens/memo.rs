//! A bounded memo of the token counts of long prompt texts.
//!
//! Chat traffic repeats itself: every turn of a conversation resends the system prompt and the
//! whole history, many tenants send one system prompt with every request, and roles, names and
//! tool definitions recur in nearly every body. Counting 4 KB exactly takes ~15 µs; hashing it
//! takes ~0.2 µs, and even for a word a lookup (~30 ns) beats the pre-tokenizer and the BPE. So
//! every prompt text is looked up by its xxh3-128 hash (seeded with the encoding) before it is
//! counted, and its count is remembered after.
//!
//! The memo is sharded; each shard keeps two generations of entries (`generations.rs`), a
//! cheap approximation of LRU with a hard bound: at most `capacity` entries in all (two
//! generations of `capacity / 2 / SHARDS` per shard).
//!
//! A false hit needs two different texts with equal 128-bit hashes; the count is otherwise the
//! exact one `Encoding::count` returns.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::generations::Generations;
use super::Encoding;

/// Default bound on remembered texts (~40 bytes each with the map's overhead).
pub const DEFAULT_CAPACITY: usize = 65_536;
const SHARDS: usize = 16;

/// Counts by the xxh3-128 hash of the text, seeded with the encoding.
type Counts = Generations<u128, u32>;

pub struct CountMemo {
    shards: [Mutex<Counts>; SHARDS],
    /// Entries per generation per shard; 0 turns the memo off.
    generation_size: AtomicUsize,
    capacity: AtomicUsize,
}

impl CountMemo {
    pub fn new(capacity: usize) -> Self {
        let memo = Self {
            shards: std::array::from_fn(|_| Mutex::new(Counts::default())),
            generation_size: AtomicUsize::new(0),
            capacity: AtomicUsize::new(0),
        };
        memo.set_capacity(capacity);
        memo
    }

    /// Bound the memo to `capacity` texts (0 turns it off); what it holds is forgotten.
    /// Returns the previous capacity.
    pub fn set_capacity(&self, capacity: usize) -> usize {
        let per_generation = capacity / SHARDS / 2;
        self.generation_size
            .store(per_generation, Ordering::Relaxed);
        let previous = self.capacity.swap(capacity, Ordering::Relaxed);
        for shard in &self.shards {
            *shard.lock() = Counts::default();
        }
        previous
    }

    /// How many texts the memo remembers now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `encoding.count(text)`, from the memo when `text` was counted before.
    pub fn count(&self, encoding: Encoding, text: &str) -> usize {
        let generation_size = self.generation_size.load(Ordering::Relaxed);
        if text.is_empty() || generation_size == 0 {
            return encoding.count(text);
        }
        let key = xxh3_128_with_seed(text.as_bytes(), encoding as u64);
        let shard = &self.shards[(key >> 64) as usize % SHARDS];
        if let Some(count) = shard.lock().get(key, generation_size, |&count| Some(count)) {
            return count as usize;
        }
        // Counted outside the lock: other texts of this shard need not wait for it.
        let count = encoding.count(text);
        if let Ok(stored) = u32::try_from(count) {
            shard.lock().insert(key, stored, generation_size);
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(index: usize) -> String {
        format!("text number {index}")
    }

    #[test]
    fn counts_are_the_exact_counts_on_a_miss_and_on_a_hit() {
        let memo = CountMemo::new(1024);
        for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
            let long = "Hello, world! ".repeat(20);
            assert_eq!(memo.count(encoding, &long), encoding.count(&long));
            assert_eq!(memo.count(encoding, &long), encoding.count(&long));
        }
        // One entry per encoding: the same text counts differently in each.
        assert_eq!(memo.len(), 2);
    }

    #[test]
    fn empty_texts_are_not_remembered() {
        let memo = CountMemo::new(1024);
        assert_eq!(memo.count(Encoding::O200kBase, ""), 0);
        assert!(memo.is_empty());
        assert_eq!(memo.count(Encoding::O200kBase, "short"), 1);
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn the_memo_never_holds_more_than_its_capacity() {
        let memo = CountMemo::new(256);
        for index in 0..10_000 {
            let text = text(index);
            assert_eq!(
                memo.count(Encoding::O200kBase, &text),
                Encoding::O200kBase.count(&text)
            );
            assert!(memo.len() <= 256);
        }
        assert!(memo.len() >= 128, "it keeps at least one full generation");
    }

    #[test]
    fn a_text_in_use_survives_a_flood_of_new_ones() {
        let memo = CountMemo::new(SHARDS * 2 * 8);
        let hot = text(usize::MAX);
        for index in 0..5_000 {
            memo.count(Encoding::O200kBase, &hot);
            memo.count(Encoding::O200kBase, &text(index));
        }
        let key = xxh3_128_with_seed(hot.as_bytes(), Encoding::O200kBase as u64);
        assert!(memo.shards[(key >> 64) as usize % SHARDS].lock().contains(key));
    }

    #[test]
    fn capacity_zero_turns_the_memo_off() {
        let memo = CountMemo::new(1024);
        memo.count(Encoding::O200kBase, &text(1));
        assert_eq!(memo.set_capacity(0), 1024);
        assert!(memo.is_empty());
        assert_eq!(
            memo.count(Encoding::O200kBase, &text(2)),
            Encoding::O200kBase.count(&text(2))
        );
        assert!(memo.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn memoized_counts_equal_direct_counts(texts in proptest::collection::vec(".{0,300}", 1..8)) {
            let memo = CountMemo::new(64);
            for round in 0..2 {
                for text in &texts {
                    for encoding in [Encoding::Cl100kBase, Encoding::O200kBase] {
                        proptest::prop_assert_eq!(
                            memo.count(encoding, text), encoding.count(text), "round {}", round
                        );
                    }
                }
            }
        }
    }
}
