//! The spend log's SQLite writer: rows handed over on the request path, written by a thread of
//! its own.
//!
//! Written on the event loop, SQLite held the loop for every transaction (~0.1 ms for 8 rows,
//! with a commit each time) while requests that arrived meanwhile waited. A Python thread was
//! worse (the sqlite3 module hands the GIL back and forth around every row). This thread never touches Python: `record` appends the row to a
//! queue under a mutex, and the thread writes whatever is queued in one transaction when a
//! batch is full or the flush interval passes, so rows cost one commit per batch, not per
//! eight rows, and the loop never waits for the disk.
//!
//! While the file cannot be written the rows wait in the queue, in order (up to `max_pending`,
//! then the oldest go, counted), and the writer tries again after 0.5 s, doubling to 30 s.
//! What went wrong is kept as `SpendEvent`s for the Python side to log.

mod packed;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use packed::{Block, PackedRows};
pub use store::{SqliteSpend, SCHEMA};

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
// The rows one transaction takes at most, give or take a block (blocks are taken whole): a long
// backlog is written in parts, each committed.
const MOST_ROWS_PER_WRITE: usize = 4096;
// Events kept for the Python side between two of its reads (it reads every second).
const MOST_EVENTS: usize = 64;
// The writer thread's nice value. It shares the serving process's core: at the default 0 a
// batch (a few ms of CPU) is time-sliced with the event loop, and requests arriving meanwhile
// wait for their turn; at 10 the loop's thread takes the core back as soon as it wakes, while
// the writer still gets ~10 % of a saturated core, more than a row per request needs.
const WRITER_NICE: i32 = 10;

/// One request's row of the spend table (`created_at` as `time.time()`), borrowed: the queue
/// keeps a packed copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendRecord<'a> {
    pub created_at: f64,
    pub request_id: &'a str,
    pub tenant: &'a str,
    pub key_id: Option<&'a str>,
    pub model: &'a str,
    pub served_model: &'a str,
    pub upstream: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: f64,
    pub status: i64,
    pub cache: &'a str,
    pub trace_id: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rows queued before the writer is woken early.
    pub batch_size: usize,
    /// The longest a row waits in the queue while the database is well.
    pub flush_interval: Duration,
    /// Rows kept while the database cannot be written; past it the oldest are dropped.
    pub max_pending: usize,
    /// Rows written between two checkpoints.
    pub checkpoint_rows: u64,
    /// How long one write waits for another worker's write to the same file.
    pub busy_timeout: Duration,
}

/// Something the Python side should log.
#[derive(Debug, Clone, PartialEq)]
pub enum SpendEvent {
    /// A write failed; its rows are queued again and tried after `retry_in`.
    WriteFailed { error: String, pending: usize, retry_in: Duration },
    /// Rows the queue had no room for (the oldest), since the last event of this kind.
    RowsDropped { dropped: u64 },
    /// A checkpoint failed; the write-ahead log keeps the rows and grows until one succeeds.
    CheckpointFailed { error: String },
}

#[derive(Default)]
struct Queue {
    rows: PackedRows,
    dropped: u64,
    events: Vec<SpendEvent>,
    /// Set by `close`: write what is left until then, then stop.
    stop_by: Option<Instant>,
    /// `flush` asks for a write now by raising `wanted`; the writer raises `served` when a
    /// write cycle that started after the request has finished.
    wanted: u64,
    served: u64,
    /// Whether the last write cycle left the queue empty without an error.
    clean: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    served: Condvar,
    written: AtomicU64,
    checkpoints: AtomicU64,
    options: WriterOptions,
}

pub struct SpendWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SpendWriter {
    /// Starts the writer thread for the SQLite file at `path` (opened by the thread, and
    /// opened again after an error).
    pub fn start(path: PathBuf, options: WriterOptions) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { clean: true, ..Queue::default() }),
            wake: Condvar::new(),
            served: Condvar::new(),
            written: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            options,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sidegate-spend".into())
            .spawn(move || {
                // On Linux the nice value is the calling thread's alone. Not permitted: the
                // writer runs at the process's priority, which is only slower to give way.
                let _ = rustix::process::setpriority_process(None, WRITER_NICE);
                run(&worker, &path);
            })?;
        Ok(Self { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a copy of one row (no I/O: this runs at the end of every request). A row no
    /// memory can be mapped for is counted as dropped.
    pub fn record(&self, row: &SpendRecord<'_>) {
        let options = &self.shared.options;
        let mut unmapped = Vec::new();
        let mut queue = self.shared.queue.lock();
        if queue.rows.len() >= options.max_pending {
            let over = queue.rows.len() + 1 - options.max_pending;
            queue.dropped += queue.rows.drop_front(over, &mut unmapped) as u64;
        }
        if !queue.rows.push(row) {
            queue.dropped += 1;
        }
        if queue.rows.len() == options.batch_size {
            self.shared.wake.notify_one();
        }
        drop(queue);
        drop(unmapped);
    }

    pub fn pending(&self) -> usize {
        self.shared.queue.lock().rows.len()
    }

    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// Blocks of memory the queue holds mapped (rows and spares; not the writer's batch).
    pub fn mapped_blocks(&self) -> usize {
        self.shared.queue.lock().rows.blocks()
    }

    /// What happened since the last call (dropped rows included), oldest first.
    pub fn take_events(&self) -> Vec<SpendEvent> {
        let mut queue = self.shared.queue.lock();
        if queue.dropped > 0 {
            let dropped = std::mem::take(&mut queue.dropped);
            queue.events.push(SpendEvent::RowsDropped { dropped });
        }
        std::mem::take(&mut queue.events)
    }

    /// Writes what is queued now and waits for it (at most `timeout`); true when the queue
    /// was emptied without an error.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.shared.queue.lock();
        queue.wanted += 1;
        let ticket = queue.wanted;
        self.shared.wake.notify_one();
        while queue.served < ticket {
            if self.shared.served.wait_until(&mut queue, deadline).timed_out() {
                return false;
            }
        }
        queue.clean
    }

    /// Stops the writer after it has written what is left, trying for at most `timeout`;
    /// returns the rows it could not write (lost).
    pub fn close(&self, timeout: Duration) -> usize {
        let Some(thread) = self.thread.lock().take() else {
            return self.pending();
        };
        {
            let mut queue = self.shared.queue.lock();
            queue.stop_by = Some(Instant::now() + timeout);
            self.shared.wake.notify_one();
        }
        let _ = thread.join(); // the thread does not panic: its errors are events
        self.pending()
    }
}

impl Drop for SpendWriter {
    /// Not closed: the thread still writes what is queued, without anyone waiting for it.
    fn drop(&mut self) {
        let mut queue = self.shared.queue.lock();
        if queue.stop_by.is_none() {
            queue.stop_by = Some(Instant::now() + RETRY_FIRST);
            self.shared.wake.notify_one();
        }
    }
}

fn run(shared: &Shared, path: &std::path::Path) {
    let options = &shared.options;
    let mut store: Option<SqliteSpend> = None;
    let mut retry: Option<Duration> = None;
    let mut since_checkpoint = 0u64;
    // The blocks of rows being written.
    let mut batch: Vec<Block> = Vec::new();
    loop {
        let (ticket, stop_by) = {
            let mut queue = shared.queue.lock();
            let pause = retry.unwrap_or(options.flush_interval);
            let until = Instant::now() + pause;
            loop {
                let asked = queue.wanted > queue.served;
                let full = retry.is_none() && queue.rows.len() >= options.batch_size;
                let closing = retry.is_none() && queue.stop_by.is_some();
                if asked || full || closing {
                    break;
                }
                let until = queue.stop_by.map_or(until, |stop_by| stop_by.min(until));
                if shared.wake.wait_until(&mut queue, until).timed_out() {
                    break;
                }
            }
            queue.rows.take_front(&mut batch, MOST_ROWS_PER_WRITE);
            (queue.wanted, queue.stop_by)
        };
        let mut clean = true;
        while !batch.is_empty() {
            match write(&mut store, path, options, &batch) {
                Ok(rows) => {
                    shared.written.fetch_add(rows as u64, Ordering::Relaxed);
                    since_checkpoint += rows as u64;
                    retry = None;
                    recycle(shared, &mut batch, rows);
                }
                Err(error) => {
                    store = None; // opened again next time: the file may have been replaced
                    let wait = retry.map_or(RETRY_FIRST, |last| (last * 2).min(RETRY_MAX));
                    retry = Some(wait);
                    requeue(shared, &mut batch, error.to_string(), wait);
                    clean = false;
                    break;
                }
            }
            if since_checkpoint >= options.checkpoint_rows {
                since_checkpoint = 0;
                checkpoint(shared, store.as_ref());
            }
            // Rows that arrived meanwhile go in this cycle too.
            let mut queue = shared.queue.lock();
            queue.rows.take_front(&mut batch, MOST_ROWS_PER_WRITE);
        }
        let mut queue = shared.queue.lock();
        queue.clean = clean && queue.rows.is_empty();
        queue.served = queue.served.max(ticket);
        shared.served.notify_all();
        if let Some(stop_by) = stop_by {
            if queue.rows.is_empty() || Instant::now() >= stop_by {
                return;
            }
        }
    }
}

fn write(
    store: &mut Option<SqliteSpend>,
    path: &std::path::Path,
    options: &WriterOptions,
    batch: &[Block],
) -> rusqlite::Result<usize> {
    if store.is_none() {
        *store = Some(SqliteSpend::open(path, options.busy_timeout)?);
    }
    match store {
        Some(open) => open.write(batch.iter().flat_map(Block::iter)),
        None => Ok(0),
    }
}

/// Hands the written blocks back to the queue as spares; those it has no use for are unmapped
/// here, outside the lock. Rows of the batch that were not `written` (that could not be read
/// back, which a bug alone would cause) are counted as dropped rather than retried forever.
fn recycle(shared: &Shared, batch: &mut Vec<Block>, written: usize) {
    let unread = batch.iter().map(Block::rows).sum::<usize>().saturating_sub(written);
    let mut unmapped = Vec::new();
    {
        let mut queue = shared.queue.lock();
        queue.dropped += unread as u64;
        unmapped.extend(batch.drain(..).filter_map(|block| queue.rows.spare(block)));
    }
    drop(unmapped);
}

/// A batch the database refused goes back to the front of the queue (leaving `batch` empty);
/// past `max_pending` the oldest rows are dropped and counted, as in `record`, whole blocks at a
/// time, and what is unmapped is unmapped outside the lock.
fn requeue(shared: &Shared, batch: &mut Vec<Block>, error: String, retry_in: Duration) {
    let mut unmapped = Vec::new();
    let mut queue = shared.queue.lock();
    queue.rows.put_back(batch);
    let over = queue.rows.len().saturating_sub(shared.options.max_pending);
    queue.dropped += queue.rows.drop_front(over, &mut unmapped) as u64;
    let pending = queue.rows.len();
    if queue.events.len() < MOST_EVENTS {
        queue.events.push(SpendEvent::WriteFailed { error, pending, retry_in });
    }
    drop(queue);
    drop(unmapped);
}

fn checkpoint(shared: &Shared, store: Option<&SqliteSpend>) {
    let Some(store) = store else { return };
    match store.checkpoint() {
        Ok(()) => {
            shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            let mut queue = shared.queue.lock();
            if queue.events.len() < MOST_EVENTS {
                queue.events.push(SpendEvent::CheckpointFailed { error: error.to_string() });
            }
        }
    }
}
