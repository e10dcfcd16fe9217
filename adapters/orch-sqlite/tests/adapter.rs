//! Behaviour specific to the SQLite adapter: several handles on one file, durability across
//! reopen, migrations, and files it must refuse.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orch_core::db::{Database, DatabaseExt};
use orch_core::error::Error;
use orch_core::job::{ClaimRequest, JobQuery, JobWrite};
use orch_core::queue::{OutMessage, Queue};
use orch_core::types::{ChainId, JobKind, JobStatus, Timestamp, WorkerId};
use orch_sqlite::{SqliteConfig, SqliteStore, SCHEMA_VERSION};
use orch_testkit::fixtures::{assert_claimed_once, fresh_chain, new_job, T0};

fn claim(chain: &ChainId, owner: &str, n: u32) -> ClaimRequest {
    ClaimRequest {
        chain: chain.clone(),
        owner: WorkerId(owner.into()),
        now: T0,
        lease_until: Timestamp(T0.0 + 30_000),
        wants: vec![(JobKind::SnosRun, n), (JobKind::ProofCreation, n)],
    }
}

fn assert_invalid_naming(e: &Error, path: &Path) {
    assert!(matches!(e, Error::InvalidInput { .. }), "expected InvalidInput, got {e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "error must name {}: {e}", path.display());
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_never_share_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteStore::open_path(&path).await.unwrap();
    let b = SqliteStore::open_path(&path).await.unwrap();
    let c = fresh_chain();
    let jobs: Vec<_> =
        (0..300).flat_map(|i| [new_job(&c, JobKind::SnosRun, i), new_job(&c, JobKind::ProofCreation, i)]).collect();
    a.create_jobs(jobs, T0).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db: Arc<dyn Database> = if w % 2 == 0 { a.database() } else { b.database() };
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = db.claim_jobs(&claim(&c, &format!("w{w}"), 9)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                // Complete half of them, so claims and conditional writes interleave.
                let writes: Vec<_> = got
                    .iter()
                    .filter(|j| j.range().first() % 2 == 0)
                    .map(|j| {
                        let mut done = j.clone();
                        done.status = JobStatus::Completed;
                        done.lease = None;
                        JobWrite { job: done, transition: None, now: T0 }
                    })
                    .collect();
                for r in db.update_jobs(&writes).await.unwrap() {
                    r.expect("the holder's write applies");
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    assert_claimed_once(tasks, 600).await;
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/orch.db");
    let c = fresh_chain();
    let id = {
        let s = SqliteStore::open_path(&path).await.unwrap();
        let created = s.create_job(new_job(&c, JobKind::SnosRun, 1), T0).await.unwrap();
        let q = s.queue("wake").unwrap();
        q.send(vec![OutMessage { payload: b"hi".to_vec(), delay: Duration::ZERO }]).await.unwrap();
        s.close();
        created.job().id
    };
    let s = SqliteStore::open_path(&path).await.unwrap();
    let job = s.get_job(id).await.unwrap();
    assert_eq!(job.key.chain, c);
    let got = s.queue("wake").unwrap().receive(5, Duration::from_secs(30), Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"hi");
}

#[tokio::test]
async fn migrate_is_idempotent_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    for _ in 0..3 {
        let s = SqliteStore::open_path(&path).await.unwrap();
        s.migrate().await.unwrap();
        s.migrate().await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, i64::from(SCHEMA_VERSION));
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn newer_schema_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    SqliteStore::open_path(&path).await.unwrap().close();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION + 41]).unwrap();
    drop(conn);
    let e = SqliteStore::open_path(&path).await.unwrap_err();
    assert_invalid_naming(&e, &path);
    let msg = e.to_string();
    assert!(msg.contains(&(SCHEMA_VERSION + 41).to_string()) && msg.contains(&SCHEMA_VERSION.to_string()), "{msg}");
}

#[tokio::test]
async fn garbage_file_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0xA5u8; 64 * 1024]).unwrap();
    let e = SqliteStore::open_path(&path).await.unwrap_err();
    assert_invalid_naming(&e, &path);
    assert_eq!(std::fs::read(&path).unwrap(), vec![0xA5u8; 64 * 1024], "the file must be left untouched");
}

#[tokio::test]
async fn truncated_or_damaged_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    let c = fresh_chain();
    {
        let s = SqliteStore::open_path(&path).await.unwrap();
        let jobs: Vec<_> = (0..2000).map(|i| new_job(&c, JobKind::SnosRun, i)).collect();
        s.create_jobs(jobs, T0).await.unwrap();
        s.close();
    }
    // Fold the WAL into the main file and leave WAL mode, so the file alone holds the data.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    // The closed store's threads let go of the file asynchronously: retry until they have.
    let mut mode = String::new();
    for _ in 0..100 {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        mode = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).unwrap_or_default();
        if mode == "delete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mode, "delete");
    drop(conn);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());

    // Truncated to half: the pages holding most jobs are gone.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let outcome = async {
        let s = SqliteStore::open_path(&path).await?;
        s.list_jobs(&JobQuery::all(c.clone(), 10_000)).await?;
        s.count_jobs(&c).await
    }
    .await;
    let e = outcome.expect_err("a truncated file must not read as healthy");
    assert_invalid_naming(&e, &path);

    // Header intact, page contents overwritten.
    let mut damaged = bytes.clone();
    for b in &mut damaged[8192..bytes.len() - 4096] {
        *b = 0x5A;
    }
    std::fs::write(&path, &damaged).unwrap();
    let outcome = async {
        let s = SqliteStore::open_path(&path).await?;
        s.list_jobs(&JobQuery::all(c.clone(), 10_000)).await
    }
    .await;
    let e = outcome.expect_err("a damaged file must not read as healthy");
    assert_invalid_naming(&e, &path);

    // A header cut short.
    std::fs::write(&path, &bytes[..50]).unwrap();
    let e = SqliteStore::open_path(&path).await.unwrap_err();
    assert_invalid_naming(&e, &path);
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA application_id = 1234; CREATE TABLE t (x)").unwrap();
    drop(conn);
    let e = SqliteStore::open_path(&path).await.unwrap_err();
    assert_invalid_naming(&e, &path);
}

#[tokio::test]
async fn directory_as_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = SqliteStore::open_path(dir.path()).await.unwrap_err();
    assert_invalid_naming(&e, dir.path());
}

#[tokio::test]
async fn a_lock_held_past_busy_timeout_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let mut cfg = SqliteConfig::new(&path);
    cfg.busy_timeout = Duration::from_millis(100);
    let s = SqliteStore::open(cfg).await.unwrap();
    // Another "process" holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = s.create_job(new_job(&fresh_chain(), JobKind::SnosRun, 1), T0).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_retryable());
    other.execute_batch("ROLLBACK").unwrap();
    s.create_job(new_job(&fresh_chain(), JobKind::SnosRun, 1), T0).await.unwrap();
}

#[tokio::test]
async fn named_queues_in_one_file_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_path(dir.path().join("q.db")).await.unwrap();
    let (a, b) = (s.queue("a").unwrap(), s.queue("b").unwrap());
    a.send(vec![OutMessage { payload: b"for-a".to_vec(), delay: Duration::ZERO }]).await.unwrap();
    let none = b.receive(5, Duration::from_secs(30), Duration::from_millis(100)).await.unwrap();
    assert!(none.is_empty());
    let got = a.receive(5, Duration::from_secs(30), Duration::from_millis(100)).await.unwrap();
    assert_eq!(got.len(), 1);
    // A receipt of queue a does nothing on queue b.
    b.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(a.len().await.unwrap(), 1);
    a.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(a.len().await.unwrap(), 0);
    assert!(s.queue("bad name").is_err());
}

#[tokio::test]
async fn a_message_sent_by_another_handle_is_received_by_polling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poll.db");
    let (s1, s2) = (SqliteStore::open_path(&path).await.unwrap(), SqliteStore::open_path(&path).await.unwrap());
    let (rx, tx) = (s1.queue("x").unwrap(), s2.queue("x").unwrap());
    let recv = tokio::spawn(async move { rx.receive(1, Duration::from_secs(30), Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(vec![OutMessage { payload: b"p".to_vec(), delay: Duration::ZERO }]).await.unwrap();
    let got = recv.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn history_of_a_claim_and_a_completion() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_path(dir.path().join("h.db")).await.unwrap();
    let c = fresh_chain();
    s.create_job(new_job(&c, JobKind::SnosRun, 3), T0).await.unwrap();
    let j = s.claim_jobs(&claim(&c, "w", 5)).await.unwrap().remove(0);
    let mut done = j.clone();
    done.status = JobStatus::Completed;
    done.lease = None;
    done.next_run_at = Timestamp::NEVER;
    let t = orch_core::job::Transition {
        at: T0,
        from: JobStatus::Processing,
        to: JobStatus::Completed,
        reason: "processed".into(),
        attempt: 0,
        actor: Some(WorkerId("w".into())),
        epoch: j.epoch,
    };
    let stored = s.update_job(JobWrite { job: done, transition: Some(t), now: T0 }).await.unwrap();
    assert_eq!(stored.next_run_at, Timestamp::NEVER);
    assert_eq!(s.get_job(j.id).await.unwrap(), stored);
    let h = s.history(j.id).await.unwrap();
    let steps: Vec<_> = h.iter().map(|t| (t.from, t.to, t.reason.as_str())).collect();
    assert_eq!(
        steps,
        [
            (JobStatus::Created, JobStatus::Processing, "claimed"),
            (JobStatus::Processing, JobStatus::Completed, "processed")
        ]
    );
}
