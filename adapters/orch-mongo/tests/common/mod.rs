//! Shared by the live-server tests: the server URL, a database name per test run, and the
//! clean-up of databases earlier runs left behind.

#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::{doc, Document};
use orch_mongo::MongoConfig;

/// Prefix of every database the tests create.
pub const PREFIX: &str = "orchtest_";

/// Test databases older than this are dropped by the next run.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The server URL, or `None` to skip (see [`orch_testkit::services::env_or_skip`]).
pub fn url() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_MONGO_URL")
}

/// A fresh database name.
pub fn fresh_name() -> String {
    format!("{PREFIX}{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// One database name for the whole test run: nextest runs each test in its own process but
/// gives them one `NEXTEST_RUN_ID`; `cargo test` runs them in one process.
pub fn run_database() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| match std::env::var("NEXTEST_RUN_ID") {
        Ok(id) => {
            let hex: String = id.chars().filter(|c| c.is_ascii_hexdigit()).take(16).collect();
            format!("{PREFIX}{hex}")
        }
        Err(_) => fresh_name(),
    })
}

/// A config for `database` on the test server, with a short timeout.
pub fn config(url: &str, database: &str) -> MongoConfig {
    let mut c = MongoConfig::new(url);
    c.database = database.into();
    c.connect_timeout = Duration::from_secs(5);
    c
}

/// A raw driver handle on the test server, for what the adapter does not expose.
pub async fn raw(url: &str) -> mongodb::Client {
    mongodb::Client::with_uri_str(url).await.expect("driver client")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Drops test databases whose schema was written more than [`STALE_AFTER`] ago (runs that
/// ended leave theirs behind: no test binary knows it is the last). Once per process.
pub async fn drop_stale(url: &str) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let client = raw(url).await;
    let Ok(names) = client.list_database_names().await else { return };
    for name in names.into_iter().filter(|n| n.starts_with(PREFIX) && n != run_database()) {
        let db = client.database(&name);
        let meta = db.collection::<Document>("orch_meta").find_one(doc! { "_id": "schema" }).await;
        // No schema document: another run may be migrating it right now; leave it.
        let Some(at) = meta.ok().flatten().and_then(|d| d.get_i64("migrated_at").ok()) else { continue };
        if now_ms() - at > STALE_AFTER.as_millis() as i64 {
            let _ = db.drop().await;
        }
    }
}
