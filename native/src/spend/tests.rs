use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::*;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scratch(name: &str) -> Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sidegate-spend-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("spend.db"))
}

fn options() -> WriterOptions {
    WriterOptions {
        batch_size: 500,
        flush_interval: Duration::from_secs(3600),
        max_pending: 100_000,
        checkpoint_rows: 10_000,
        busy_timeout: Duration::from_millis(50),
    }
}

fn row(tenant: &str, at: f64) -> SpendRecord<'_> {
    SpendRecord {
        created_at: at,
        request_id: "req_1",
        tenant,
        key_id: Some("abc123"),
        model: "gpt-4o-mini",
        served_model: "gpt-4o-mini",
        upstream: "openai",
        input_tokens: 10,
        output_tokens: 5,
        cost_usd: 0.01,
        latency_ms: 12.5,
        status: 200,
        cache: "miss",
        trace_id: None,
    }
}

fn tenants(path: &std::path::Path) -> Result<Vec<String>> {
    let reader = Connection::open(path)?;
    let mut query = reader.prepare("SELECT tenant FROM spend ORDER BY id")?;
    let names = query.query_map([], |found| found.get(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

type StoredRow = (String, String, Option<String>, f64, Option<String>);

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn rows_keep_their_order_and_values() -> Result {
    let path = scratch("values")?;
    let writer = SpendWriter::start(path.clone(), options())?;
    let mut special = row("t7", 1_700_000_007.25);
    special.key_id = None;
    special.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736");
    writer.record(&row("t0", 1_700_000_000.0));
    writer.record(&special);
    assert!(writer.flush(WAIT));
    assert_eq!(writer.written(), 2);
    assert_eq!(writer.close(WAIT), 0);
    let reader = Connection::open(&path)?;
    let mut query = reader
        .prepare("SELECT created_at, tenant, key_id, cost_usd, trace_id FROM spend ORDER BY id")?;
    let stored: Vec<StoredRow> = query
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    assert_eq!(
        stored[0],
        ("2023-11-14 22:13:20.000000".into(), "t0".into(), Some("abc123".into()), 0.01, None)
    );
    assert_eq!(
        stored[1],
        (
            "2023-11-14 22:13:27.250000".into(),
            "t7".into(),
            None,
            0.01,
            Some("4bf92f3577b34da6a3ce929d0e0e4736".into())
        )
    );
    Ok(())
}

#[test]
fn a_full_batch_wakes_the_writer_before_the_interval() -> Result {
    let path = scratch("batch")?;
    let writer = SpendWriter::start(path, WriterOptions { batch_size: 10, ..options() })?;
    for index in 0..10 {
        writer.record(&row(&format!("t{index}"), 1.0));
    }
    let deadline = Instant::now() + WAIT;
    while writer.written() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(writer.written(), 10);
    Ok(())
}

#[test]
fn rows_wait_out_another_writer_and_are_written_in_order_after_it() -> Result {
    let path = scratch("busy")?;
    let writer = SpendWriter::start(path.clone(), options())?;
    writer.record(&row("first", 1.0));
    assert!(writer.flush(WAIT));
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    writer.record(&row("late-1", 2.0));
    writer.record(&row("late-2", 3.0));
    assert!(!writer.flush(WAIT));
    assert_eq!(writer.pending(), 2);
    let events = writer.take_events();
    assert!(
        matches!(&events[..], [SpendEvent::WriteFailed { pending: 2, .. }]),
        "{events:?}"
    );
    other.execute_batch("COMMIT")?;
    assert!(writer.flush(WAIT));
    assert_eq!(writer.close(WAIT), 0);
    assert_eq!(tenants(&path)?, ["first", "late-1", "late-2"]);
    Ok(())
}

#[test]
fn a_full_queue_drops_the_oldest_rows_and_says_how_many() -> Result {
    let path = scratch("full")?;
    let writer = SpendWriter::start(path.clone(), WriterOptions { max_pending: 3, ..options() })?;
    for index in 0..5 {
        writer.record(&row(&format!("t{index}"), 1.0));
    }
    assert_eq!(writer.pending(), 3);
    assert_eq!(writer.take_events(), [SpendEvent::RowsDropped { dropped: 2 }]);
    assert!(writer.take_events().is_empty());
    assert_eq!(writer.close(WAIT), 0);
    assert_eq!(tenants(&path)?, ["t2", "t3", "t4"]);
    Ok(())
}

#[test]
fn checkpoints_let_the_write_ahead_log_start_over() -> Result {
    let path = scratch("checkpoint")?;
    let writer =
        SpendWriter::start(path.clone(), WriterOptions { checkpoint_rows: 1_000, ..options() })?;
    for part in 0..20 {
        for index in 0..1_000 {
            writer.record(&row(&format!("t{part}-{index}"), 1.0));
        }
        assert!(writer.flush(WAIT));
    }
    assert!(writer.checkpoints() >= 19);
    // 20,000 rows leave ~6 MB of log when it never starts over; one part's worth here.
    let wal = std::fs::metadata(path.with_extension("db-wal"))?.len();
    assert!(wal < 1_500_000, "{wal}");
    assert_eq!(writer.close(WAIT), 0);
    let reader = Connection::open(&path)?;
    let count: i64 = reader.query_row("SELECT count(*) FROM spend", [], |r| r.get(0))?;
    assert_eq!(count, 20_000);
    Ok(())
}

#[test]
fn close_writes_what_is_left() -> Result {
    let path = scratch("close")?;
    let writer = SpendWriter::start(path.clone(), options())?;
    for index in 0..3 {
        writer.record(&row(&format!("t{index}"), 1.0));
    }
    assert_eq!(writer.close(WAIT), 0);
    assert_eq!(tenants(&path)?, ["t0", "t1", "t2"]);
    Ok(())
}

#[test]
fn close_gives_up_on_a_database_that_stays_locked_and_counts_the_rows() -> Result {
    let path = scratch("lost")?;
    let writer = SpendWriter::start(path.clone(), options())?;
    writer.record(&row("first", 1.0));
    assert!(writer.flush(WAIT));
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    writer.record(&row("late", 2.0));
    let started = Instant::now();
    assert_eq!(writer.close(Duration::from_millis(300)), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    other.execute_batch("COMMIT")?;
    Ok(())
}

#[test]
fn an_unwritable_path_is_retried_not_fatal() -> Result {
    let path = scratch("missing")?.with_file_name("no-such-dir").join("spend.db");
    let writer = SpendWriter::start(path.clone(), options())?;
    writer.record(&row("kept", 1.0));
    assert!(!writer.flush(WAIT));
    assert_eq!(writer.pending(), 1);
    let parent = path.parent().ok_or("no parent")?;
    std::fs::create_dir_all(parent)?;
    assert!(writer.flush(WAIT));
    assert_eq!(writer.close(WAIT), 0);
    assert_eq!(tenants(&path)?, ["kept"]);
    Ok(())
}

#[test]
fn a_backlog_once_written_gives_the_queues_room_back() -> Result {
    let path = scratch("backlog")?;
    let writer = SpendWriter::start(path.clone(), WriterOptions { batch_size: 10, ..options() })?;
    writer.record(&row("first", 1.0));
    assert!(writer.flush(WAIT));
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    for index in 0..20_000 {
        writer.record(&row("late", f64::from(index)));
    }
    // None is written while the other connection holds the file: the rows stay queued, bar the
    // blocks the writer has taken.
    let peak = writer.mapped_blocks();
    other.execute_batch("COMMIT")?;
    assert!(writer.flush(WAIT));
    assert_eq!(writer.written(), 20_001);
    let kept = writer.mapped_blocks();
    assert!(peak >= 10, "blocks the backlog took: {peak}");
    assert!(kept <= packed::SPARE_BLOCKS, "blocks kept once the backlog was written: {kept}");
    Ok(())
}
