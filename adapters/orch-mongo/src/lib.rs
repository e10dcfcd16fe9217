#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod db;
mod error;
mod schema;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::secret::redact_url;

pub use config::MongoConfig;
pub use schema::SCHEMA_VERSION;

use codec::{JobDoc, WorkerDoc, JOBS, LEADERS, META, WORKERS};
use error::{map_err, Ctx};

/// orch's jobs, history, worker registry and leader leases in one MongoDB database.
///
/// Cheap to clone (clones share the driver's connection pool). Any number of stores, in one
/// process or many, may use the same database: every write is conditional (on `version` and
/// the fencing `epoch`) and atomic per document.
#[derive(Debug, Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: mongodb::Database,
    jobs: Collection<JobDoc>,
    workers: Collection<WorkerDoc>,
    leaders: Collection<mongodb::bson::Document>,
    ctx: Ctx,
    concurrency: usize,
    /// Whether the server takes MongoDB 8.0's `bulkWrite` command; cleared for good on the
    /// first refusal (an older server), after which writes go one `update_one` each.
    bulk: AtomicBool,
    /// One lock per `(chain, kind code)`: claims made through this store take turns, so they
    /// never race each other for the same candidates (claims from other stores are fenced by
    /// the conditional writes as always).
    claim_locks: Mutex<HashMap<(String, i32), ClaimLock>>,
}

/// What claims of one `(chain, kind)` take turns on.
type ClaimLock = Arc<tokio::sync::Mutex<()>>;

impl MongoStore {
    /// Validates `config`, connects, and checks the schema: a database orch never set up is an
    /// error telling the operator to run `orchestrator setup`; one with a newer schema is an
    /// error naming both versions. An unreachable server is a retryable `Unavailable` after
    /// `connect_timeout`.
    pub async fn connect(config: MongoConfig) -> Result<MongoStore> {
        let store = MongoStore::open(config).await?;
        match schema::current_version(&store.inner.db, &store.inner.ctx).await? {
            None => Err(schema::not_set_up(&store.inner.ctx)),
            Some(v) if v < SCHEMA_VERSION => Err(Error::invalid_input(
                "database.database",
                format!(
                    "database {:?} on {} has schema version {v}, older than this orch's {SCHEMA_VERSION}; \
                     run `orchestrator setup` to upgrade it",
                    store.inner.ctx.database, store.inner.ctx.url
                ),
            )),
            Some(v) => {
                schema::check_supported(v, &store.inner.ctx)?;
                Ok(store)
            }
        }
    }

    /// Connects and brings the schema to [`SCHEMA_VERSION`] (what `orchestrator setup` does).
    pub async fn connect_and_migrate(config: MongoConfig) -> Result<MongoStore> {
        let store = MongoStore::open(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without looking at the schema.
    async fn open(config: MongoConfig) -> Result<MongoStore> {
        config.validate()?;
        let url = config.url.expose().trim();
        let ctx = Ctx { url: redact_url(url), database: config.database.clone() };
        // Parsing a mongodb+srv:// URL resolves DNS records: bound it by the same timeout.
        let parsed = tokio::time::timeout(config.connect_timeout, ClientOptions::parse(url)).await.map_err(|_| {
            Error::unavailable(
                error::BACKEND,
                format!("resolving {} took longer than database.connect_timeout", ctx.url),
            )
        })?;
        let mut options = parsed.map_err(|e| match &*e.kind {
            mongodb::error::ErrorKind::InvalidArgument { message, .. } => Error::invalid_input(
                "database.url",
                format!("{} is not a valid MongoDB connection string: {}", ctx.url, scrub(message, url)),
            ),
            _ => map_err(e, &ctx),
        })?;
        options.server_selection_timeout = Some(config.connect_timeout);
        options.connect_timeout = Some(config.connect_timeout);
        options.max_pool_size = Some(config.max_pool_size);
        if options.app_name.is_none() {
            options.app_name = Some("orch".into());
        }
        let client = Client::with_options(options).map_err(|e| map_err(e, &ctx))?;
        let db = client.database(&config.database);
        let inner = Inner {
            jobs: db.collection(JOBS),
            workers: db.collection(WORKERS),
            leaders: db.collection(LEADERS),
            db,
            ctx,
            concurrency: config.concurrency,
            bulk: AtomicBool::new(true),
            claim_locks: Mutex::new(HashMap::new()),
        };
        Ok(MongoStore { inner: Arc::new(inner) })
    }

    /// This store as a shared [`Database`].
    pub fn database(&self) -> Arc<dyn Database> {
        Arc::new(self.clone())
    }

    /// The name of the database orch uses.
    pub fn database_name(&self) -> &str {
        &self.inner.ctx.database
    }

    /// Drops orch's collections (jobs with their history, workers, leader leases, the schema
    /// document): what `orchestrator teardown` does. Other collections are left alone.
    pub async fn teardown(&self) -> Result<()> {
        for coll in [JOBS, WORKERS, LEADERS, META] {
            self.inner
                .db
                .collection::<mongodb::bson::Document>(coll)
                .drop()
                .await
                .map_err(|e| map_err(e, &self.inner.ctx))?;
        }
        Ok(())
    }
}

/// `message` with anything of the connection string's credentials removed.
fn scrub(message: &str, url: &str) -> String {
    let mut out = message.replace(url, "<connection string>");
    if let Some(userinfo) = url.split_once("://").and_then(|(_, rest)| rest.rsplit_once('@')).map(|(u, _)| u) {
        if let Some((_, password)) = userinfo.split_once(':') {
            if !password.is_empty() {
                out = out.replace(password, "<redacted>");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_passwords() {
        let url = "mongodb://u:hunter2@h:99999/";
        let s = scrub("bad port in mongodb://u:hunter2@h:99999/ (hunter2)", url);
        assert!(!s.contains("hunter2"), "{s}");
    }
}
