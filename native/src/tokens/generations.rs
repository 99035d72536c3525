//! A bounded map that forgets roughly the least recently used, for the token-count memos.
//!
//! New and re-used entries go to the young generation; when it holds `size` entries the old
//! one is dropped and the young one becomes old. At most `2 * size` entries, one comparison to
//! keep the bound, and an entry in use survives any flood of new ones.

use std::collections::HashMap;
use std::hash::Hash;

use super::prehashed::Prehashed;

pub(crate) struct Generations<K, V> {
    young: HashMap<K, V, Prehashed>,
    old: HashMap<K, V, Prehashed>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Self { young: HashMap::default(), old: HashMap::default() }
    }
}

impl<K: Eq + Hash + Copy, V> Generations<K, V> {
    /// What `read` makes of the entry under `key` (`None` when it has none, or `read` refuses
    /// it); an old entry `read` takes is kept past the next turn.
    pub(crate) fn get<R>(
        &mut self,
        key: K,
        size: usize,
        read: impl Fn(&V) -> Option<R>,
    ) -> Option<R> {
        if let Some(value) = self.young.get(&key) {
            return read(value);
        }
        let value = self.old.remove(&key)?;
        let result = read(&value);
        if result.is_some() {
            self.insert(key, value, size);
        }
        result
    }

    pub(crate) fn insert(&mut self, key: K, value: V, size: usize) {
        if self.young.len() >= size {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: K) -> bool {
        self.young.contains_key(&key) || self.old.contains_key(&key)
    }
}
