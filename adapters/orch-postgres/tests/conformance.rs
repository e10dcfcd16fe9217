//! The whole Database conformance suite against a live PostgreSQL server
//! (`ORCH_TEST_POSTGRES_URL`), in a schema of its own per test run.

mod common;

use std::sync::Arc;

use orch_core::db::Database;
use orch_postgres::PostgresStore;

/// A store on this run's schema, migrated. Each `#[tokio::test]` has its own runtime, so each
/// case opens its own pool; the first to arrive creates the schema, the others find it made
/// (migrations take an advisory lock).
async fn store() -> Option<Arc<dyn Database>> {
    let url = common::url()?;
    let store = PostgresStore::connect_and_migrate(common::config(&url, &common::run_schema()))
        .await
        .expect("connect to ORCH_TEST_POSTGRES_URL and migrate");
    Some(store.database())
}

mod database {
    use super::*;
    // Cases use random chain ids, so they share one schema.
    orch_testkit::database_suite!(store());
}
