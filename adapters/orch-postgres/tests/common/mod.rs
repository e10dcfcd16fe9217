//! Shared by the test binaries: the server URL, a schema name per run, and cleanup.

#![allow(dead_code, unreachable_pub)]

use std::time::{SystemTime, UNIX_EPOCH};

use orch_postgres::PostgresConfig;
use sqlx::{Connection, PgConnection};

/// Prefix of every schema these tests create, followed by the creation time in seconds.
pub const PREFIX: &str = "orch_pgtest_";

/// Test schemas older than this are left-overs of finished runs and are dropped.
const STALE_SECS: u64 = 6 * 3600;

/// The server URL, or `None` to skip (see [`orch_testkit::services::env_or_skip`]).
pub fn url() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_POSTGRES_URL")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A schema name no other run uses: `orch_pgtest_<unix secs>_<random>`.
pub fn fresh_schema() -> String {
    format!("{PREFIX}{}_{}", now_secs(), &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The schema of this test run: nextest runs each test in its own process, so processes of one
/// run share the schema through the run id nextest gives them; otherwise one per process.
pub fn run_schema() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| match std::env::var("NEXTEST_RUN_ID") {
        Ok(id) => {
            let id: String = id.chars().filter(|c| c.is_ascii_hexdigit()).take(12).collect::<String>().to_lowercase();
            // Same name in every process of the run; the hour (well inside STALE_SECS) keeps
            // the stale-schema cleanup working.
            format!("{PREFIX}{}_{id}", now_secs() / 3600 * 3600)
        }
        Err(_) => fresh_schema(),
    })
    .clone()
}

/// A config for `schema` on the test server.
pub fn config(url: &str, schema: &str) -> PostgresConfig {
    let mut c = PostgresConfig::new(url);
    c.schema = schema.to_owned();
    c
}

/// A direct connection to the test server, outside any store.
pub async fn raw(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect to the test server")
}

/// Drops `schema` (one this test created).
pub async fn drop_schema(url: &str, schema: &str) {
    assert!(schema.starts_with(PREFIX), "refusing to drop {schema}");
    let mut conn = raw(url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop test schema");
}

/// Drops test schemas of earlier runs (by the time in their name), never younger ones: a
/// concurrent run may be using those.
pub async fn drop_stale_schemas(url: &str) {
    let mut conn = raw(url).await;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut conn)
            .await
            .expect("list test schemas");
    let cutoff = now_secs().saturating_sub(STALE_SECS);
    for name in names {
        let born = name[PREFIX.len()..].split('_').next().and_then(|t| t.parse::<u64>().ok());
        if born.is_some_and(|t| t < cutoff) {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE")))
                .execute(&mut conn)
                .await;
        }
    }
}
