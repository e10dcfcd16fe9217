//! The whole Database and Queue conformance suites against a real SQLite file.

use std::sync::{Arc, OnceLock};

use orch_core::db::Database;
use orch_core::queue::Queue;
use orch_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;

/// One directory for the whole test binary; each suite's file lives in it.
fn dir() -> &'static TempDir {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

/// Opens a store on `name` in the shared directory. Each `#[tokio::test]` has its own runtime,
/// so each case opens its own handle; several handles on one file is also what several
/// orchestrator processes do.
async fn open(name: &str) -> SqliteStore {
    SqliteStore::open(SqliteConfig::new(dir().path().join(name))).await.expect("open sqlite store")
}

mod database {
    use super::*;
    // Cases use random chain ids, so they share one file (and run concurrently on it).
    orch_testkit::database_suite!(async { Some(open("db.sqlite").await.database()) as Option<Arc<dyn Database>> });
}

mod queue {
    use super::*;
    // A fresh queue name per case, all in one file.
    orch_testkit::queue_suite!(async {
        let name = format!("q-{}", uuid::Uuid::new_v4().simple());
        Some(Arc::new(open("queue.sqlite").await.queue(&name).unwrap()) as Arc<dyn Queue>)
    });
}
