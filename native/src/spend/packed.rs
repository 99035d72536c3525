//! Queued rows packed end to end in blocks of memory mapped for the queue alone.
//!
//! A queued row used to be a struct owning up to eight strings, each allocated on the serving
//! thread among everything else that thread allocates. After a backlog (thousands of rows queued
//! while a checkpoint held the writer up) those strings were freed into holes of the process's
//! heap that the C allocator does not give back, so every new peak backlog raised RSS for good
//! (+5.9 MB after four backlogs of up to 18,000 rows). Here a row is copied into a block mapped
//! with mmap, the writer reads the rows where they lie, and a block not kept for the next rows
//! is unmapped: once a backlog is written its memory is the system's again.

use std::collections::VecDeque;
use std::io::Write;

use memmap2::MmapMut;

use super::SpendRecord;

/// A block's size: about 900 rows of the usual size, so in everyday serving the blocks in use
/// are the spares, and mapping one is a backlog's cost.
pub const BLOCK_BYTES: usize = 128 * 1024;
/// Emptied blocks kept for the next rows; any more are unmapped.
pub const SPARE_BLOCKS: usize = 2;

// A row: its length (u32), created_at, input and output tokens, cost, latency, status (8 bytes
// each), then each text as a u32 length and its bytes, NO_TEXT standing for None.
const HEAD_BYTES: usize = 4 + 6 * 8;
const NO_TEXT: u32 = u32::MAX;

fn texts<'a>(row: &SpendRecord<'a>) -> [Option<&'a str>; 8] {
    [
        Some(row.request_id),
        Some(row.tenant),
        row.key_id,
        Some(row.model),
        Some(row.served_model),
        Some(row.upstream),
        Some(row.cache),
        row.trace_id,
    ]
}

fn packed_len(row: &SpendRecord<'_>) -> usize {
    HEAD_BYTES + texts(row).iter().map(|text| 4 + text.map_or(0, str::len)).sum::<usize>()
}

fn pack(out: &mut [u8], row: &SpendRecord<'_>) -> std::io::Result<()> {
    let mut out = out;
    let len = u32::try_from(out.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&row.created_at.to_le_bytes())?;
    out.write_all(&row.input_tokens.to_le_bytes())?;
    out.write_all(&row.output_tokens.to_le_bytes())?;
    out.write_all(&row.cost_usd.to_le_bytes())?;
    out.write_all(&row.latency_ms.to_le_bytes())?;
    out.write_all(&row.status.to_le_bytes())?;
    for text in texts(row) {
        match text {
            Some(text) => {
                let len = u32::try_from(text.len())
                    .ok()
                    .filter(|len| *len != NO_TEXT)
                    .ok_or(std::io::ErrorKind::InvalidInput)?;
                out.write_all(&len.to_le_bytes())?;
                out.write_all(text.as_bytes())?;
            }
            None => out.write_all(&NO_TEXT.to_le_bytes())?,
        }
    }
    Ok(())
}

/// Reads one packed row's fields in order.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn number(&mut self) -> Option<[u8; 8]> {
        self.take::<8>()
    }

    fn text(&mut self) -> Option<Option<&'a str>> {
        let len = u32::from_le_bytes(self.take::<4>()?);
        if len == NO_TEXT {
            return Some(None);
        }
        let (text, rest) = self.bytes.split_at_checked(len as usize)?;
        self.bytes = rest;
        std::str::from_utf8(text).ok().map(Some)
    }

    fn row(mut self) -> Option<SpendRecord<'a>> {
        let created_at = f64::from_le_bytes(self.number()?);
        let input_tokens = i64::from_le_bytes(self.number()?);
        let output_tokens = i64::from_le_bytes(self.number()?);
        let cost_usd = f64::from_le_bytes(self.number()?);
        let latency_ms = f64::from_le_bytes(self.number()?);
        let status = i64::from_le_bytes(self.number()?);
        Some(SpendRecord {
            created_at,
            request_id: self.text()??,
            tenant: self.text()??,
            key_id: self.text()?,
            model: self.text()??,
            served_model: self.text()??,
            upstream: self.text()??,
            input_tokens,
            output_tokens,
            cost_usd,
            latency_ms,
            status,
            cache: self.text()??,
            trace_id: self.text()?,
        })
    }
}

/// Splits the first packed row (its bytes after the length) off `bytes`.
fn first_row<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, _) = bytes.split_first_chunk::<4>()?;
    let (row, rest) = bytes.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    *bytes = rest;
    row.get(4..)
}

/// Rows packed end to end in one mapping; read from `start`, appended at `end`.
pub struct Block {
    map: MmapMut,
    start: usize,
    end: usize,
    rows: usize,
}

impl Block {
    /// A block with room for at least `bytes`.
    fn map(bytes: usize) -> std::io::Result<Self> {
        let map = MmapMut::map_anon(bytes.max(BLOCK_BYTES))?;
        Ok(Self { map, start: 0, end: 0, rows: 0 })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends `row` (`len` bytes packed) when it fits.
    fn push(&mut self, row: &SpendRecord<'_>, len: usize) -> bool {
        let Some(room) = self.map.get_mut(self.end..self.end.saturating_add(len)) else {
            return false;
        };
        if pack(room, row).is_err() {
            return false;
        }
        self.end += len;
        self.rows += 1;
        true
    }

    fn pop_front(&mut self) {
        let mut bytes = self.map.get(self.start..self.end).unwrap_or_default();
        let before = bytes.len();
        if first_row(&mut bytes).is_some() {
            self.start += before - bytes.len();
            self.rows -= 1;
        }
    }

    /// The rows, oldest first, read where they lie.
    pub fn iter(&self) -> impl Iterator<Item = SpendRecord<'_>> {
        let mut bytes = self.map.get(self.start..self.end).unwrap_or_default();
        std::iter::from_fn(move || first_row(&mut bytes))
            .map_while(|row| Fields { bytes: row }.row())
    }

    /// Emptied for reuse: a standard block is worth keeping, a block mapped for one large row
    /// is not.
    fn recycled(mut self) -> Option<Self> {
        (self.map.len() == BLOCK_BYTES).then(|| {
            self.start = 0;
            self.end = 0;
            self.rows = 0;
            self
        })
    }
}

/// The queue's rows, in blocks, oldest first, and the emptied blocks kept for the next rows.
#[derive(Default)]
pub struct PackedRows {
    blocks: VecDeque<Block>,
    rows: usize,
    spares: Vec<Block>,
}

impl PackedRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Blocks mapped by the queue (holding rows or spare); not the writer's.
    pub fn blocks(&self) -> usize {
        self.blocks.len() + self.spares.len()
    }

    /// Appends a copy of `row`; false when no memory could be mapped for it.
    pub fn push(&mut self, row: &SpendRecord<'_>) -> bool {
        let len = packed_len(row);
        if let Some(last) = self.blocks.back_mut() {
            if last.push(row, len) {
                self.rows += 1;
                return true;
            }
        }
        let block = match self.spares.pop().filter(|spare| spare.map.len() >= len) {
            Some(spare) => spare,
            None => match Block::map(len) {
                Ok(block) => block,
                Err(_) => return false,
            },
        };
        let mut block = block;
        let pushed = block.push(row, len);
        self.blocks.push_back(block);
        self.rows += usize::from(pushed);
        pushed
    }

    /// Drops the oldest `count` rows (fewer when the queue holds fewer) and returns how many
    /// went. Whole blocks go at once, so a large drop costs a step per block, not per row; the
    /// emptied blocks that are not kept as spares are pushed onto `unmapped`, for the caller to
    /// unmap outside any lock.
    pub fn drop_front(&mut self, count: usize, unmapped: &mut Vec<Block>) -> usize {
        let mut dropped = 0;
        while dropped < count {
            let Some(first) = self.blocks.front_mut() else { break };
            if first.rows <= count - dropped {
                dropped += first.rows;
                self.rows -= first.rows;
                if let Some(empty) = self.blocks.pop_front() {
                    unmapped.extend(self.spare(empty));
                }
                continue;
            }
            while dropped < count {
                let before = first.rows;
                first.pop_front();
                if first.rows == before {
                    break; // unreadable rest: only whole-block drops can clear it
                }
                dropped += 1;
                self.rows -= 1;
            }
            break;
        }
        dropped
    }

    /// Moves whole blocks from the front into `taken` until it holds at least `most_rows`
    /// rows or the queue is empty; the block being filled goes too.
    pub fn take_front(&mut self, taken: &mut Vec<Block>, most_rows: usize) {
        let mut rows: usize = taken.iter().map(Block::rows).sum();
        while rows < most_rows {
            let Some(block) = self.blocks.pop_front() else { break };
            rows += block.rows;
            self.rows -= block.rows;
            taken.push(block);
        }
    }

    /// Puts blocks taken by `take_front` back at the front, in their order.
    pub fn put_back(&mut self, taken: &mut Vec<Block>) {
        for block in taken.drain(..).rev() {
            self.rows += block.rows;
            self.blocks.push_front(block);
        }
    }

    /// Keeps an emptied block for the next rows when there is room among the spares; returns
    /// it otherwise, for the caller to unmap (outside any lock).
    pub fn spare(&mut self, block: Block) -> Option<Block> {
        if self.spares.len() >= SPARE_BLOCKS {
            return Some(block);
        }
        if let Some(block) = block.recycled() {
            self.spares.push(block);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tenant: &str, index: u32) -> SpendRecord<'_> {
        SpendRecord {
            created_at: 1_700_000_000.5 + f64::from(index),
            request_id: "req_3f9a12c4b8e1000000012abc",
            tenant,
            key_id: Some("k-7f3c"),
            model: "gpt-4o-mini",
            served_model: "gpt-4o-mini-2024-07-18",
            upstream: "openai",
            input_tokens: i64::from(index),
            output_tokens: -1,
            cost_usd: 0.000_119_4,
            latency_ms: 183.417,
            status: 200,
            cache: "miss",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
    }

    fn drain(rows: &mut PackedRows) -> Vec<(String, i64, Option<String>)> {
        let mut taken = Vec::new();
        rows.take_front(&mut taken, usize::MAX);
        taken
            .iter()
            .flat_map(Block::iter)
            .map(|row| (row.tenant.to_owned(), row.input_tokens, row.trace_id.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn a_row_reads_back_as_it_was_queued() {
        let mut rows = PackedRows::default();
        let full = row("acme", 7);
        let sparse = SpendRecord {
            key_id: None,
            trace_id: None,
            model: "",
            upstream: "ünïcode ✓",
            ..row("", 8)
        };
        assert!(rows.push(&full) && rows.push(&sparse));
        let mut taken = Vec::new();
        rows.take_front(&mut taken, usize::MAX);
        let read: Vec<SpendRecord<'_>> = taken.iter().flat_map(Block::iter).collect();
        assert_eq!(read, [full, sparse]);
        assert!(rows.is_empty());
    }

    #[test]
    fn rows_span_blocks_in_order_and_the_oldest_go_first() {
        let mut rows = PackedRows::default();
        let names: Vec<String> = (0..5_000).map(|index| format!("t{index}")).collect();
        for (index, name) in (0u32..).zip(&names) {
            assert!(rows.push(&row(name, index)));
        }
        assert!(rows.blocks() > 1, "5,000 rows fill more than one block");
        let mut unmapped = Vec::new();
        assert_eq!(rows.drop_front(1_000, &mut unmapped), 1_000);
        for _ in 0..500 {
            assert_eq!(rows.drop_front(1, &mut unmapped), 1);
        }
        assert_eq!(rows.len(), 3_500);
        let read = drain(&mut rows);
        let tokens: Vec<i64> = read.iter().map(|(_, tokens, _)| *tokens).collect();
        assert_eq!(tokens, (1_500..5_000).collect::<Vec<i64>>());
        assert_eq!(read.first().map(|(tenant, ..)| tenant.as_str()), Some("t1500"));
    }

    #[test]
    fn a_row_larger_than_a_block_gets_a_block_of_its_own() {
        let mut rows = PackedRows::default();
        let huge = "x".repeat(BLOCK_BYTES * 2);
        assert!(rows.push(&row("before", 0)));
        assert!(rows.push(&row(&huge, 1)));
        assert!(rows.push(&row("after", 2)));
        let read = drain(&mut rows);
        let tenants: Vec<usize> = read.iter().map(|(tenant, ..)| tenant.len()).collect();
        assert_eq!(tenants, [6, BLOCK_BYTES * 2, 5]);
    }

    #[test]
    fn blocks_put_back_keep_their_place_before_newer_rows() {
        let mut rows = PackedRows::default();
        assert!(rows.push(&row("first", 0)));
        let mut taken = Vec::new();
        rows.take_front(&mut taken, usize::MAX);
        assert!(rows.push(&row("second", 1)));
        rows.put_back(&mut taken);
        assert!(taken.is_empty());
        let tenants: Vec<String> = drain(&mut rows).into_iter().map(|(tenant, ..)| tenant).collect();
        assert_eq!(tenants, ["first", "second"]);
    }

    #[test]
    fn only_a_few_emptied_blocks_are_kept() {
        let mut rows = PackedRows::default();
        for index in 0..20_000 {
            assert!(rows.push(&row("acme", index)));
        }
        let mut taken = Vec::new();
        rows.take_front(&mut taken, usize::MAX);
        assert!(taken.len() > SPARE_BLOCKS + 1);
        let unmapped = taken.drain(..).filter_map(|block| rows.spare(block)).count();
        assert!(unmapped > 0);
        assert_eq!(rows.blocks(), SPARE_BLOCKS);
    }

    #[test]
    fn a_large_drop_takes_whole_blocks_and_hands_the_extra_ones_back_for_unmapping() {
        let mut rows = PackedRows::default();
        for index in 0..20_000 {
            assert!(rows.push(&row("acme", index)));
        }
        let blocks = rows.blocks();
        let mut unmapped = Vec::new();
        assert_eq!(rows.drop_front(19_990, &mut unmapped), 19_990);
        assert_eq!(rows.len(), 10);
        let tokens: Vec<i64> = drain(&mut rows).iter().map(|(_, tokens, _)| *tokens).collect();
        assert_eq!(tokens, (19_990..20_000).collect::<Vec<i64>>());
        assert_eq!(unmapped.len() + SPARE_BLOCKS, blocks - 1, "all but the last block emptied");
        assert_eq!(rows.drop_front(5, &mut unmapped), 0, "nothing left to drop");
    }
}
