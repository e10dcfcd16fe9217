//! The whole Database conformance suite against a live MongoDB-wire server
//! (`ORCH_TEST_MONGO_URL`), in one database per test run.

mod common;

use std::sync::Arc;

use orch_core::db::Database;
use orch_mongo::MongoStore;

/// A store on this run's database, migrated; `None` (skip) without a server URL. Each
/// `#[tokio::test]` has its own runtime, so each case connects its own client.
async fn store() -> Option<Arc<dyn Database>> {
    let url = common::url()?;
    common::drop_stale(&url).await;
    let store = MongoStore::connect_and_migrate(common::config(&url, common::run_database()))
        .await
        .unwrap_or_else(|e| panic!("connecting to ORCH_TEST_MONGO_URL failed: {e}"));
    Some(store.database())
}

mod database {
    use super::*;

    // Cases use random chain ids, so they share one database (and run concurrently on it).
    orch_testkit::database_suite!(store());
}
