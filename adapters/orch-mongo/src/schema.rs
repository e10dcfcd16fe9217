//! Collections, indexes and the schema-version document.
//!
//! A schema version is history: once released its indexes never change; a new schema is a
//! new version with its own steps. `orch_meta` holds `{_id: "schema", version, migrated_at}`.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use orch_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::codec::{JOBS, LEADERS, META, WORKERS};
use crate::error::{is_duplicate_key, map_err, Ctx};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// `_id` of the schema-version document in `orch_meta`.
pub(crate) const SCHEMA_DOC: &str = "schema";

/// Worker rows not heard from for this long are deleted by the server (TTL index on `seen`).
pub(crate) const WORKER_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The schema-version document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SchemaDoc {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    pub(crate) version: i64,
    /// Wall-clock milliseconds of the last migration (for operators).
    #[serde(default)]
    pub(crate) migrated_at: i64,
}

/// One index: collection, name, keys, unique, TTL.
struct Index {
    coll: &'static str,
    name: &'static str,
    keys: mongodb::bson::Document,
    unique: bool,
    ttl: Option<Duration>,
}

/// The indexes of version 1. Every engine query is served by one of them (docs.md lists which).
///
/// * `jobs_key` — unique job key; its field order `(chain, first, last, kind)` is the listing
///   order, so listings walk it without sorting, and `get_job_by_key` is one seek.
/// * `jobs_due` — `(chain, kind, due_at, first)`: claims read one range of it, due jobs only
///   (`due_at` is null for statuses that cannot be claimed and for nothing else).
/// * `jobs_kind` — `(chain, kind, first, last)`: listings filtered by kind (and block range).
/// * `jobs_status` — `(chain, status, kind, first, last)`: listings filtered by status, wakes
///   (`status = created` at one block), and per-status counts.
/// * `workers_heartbeat` — `workers(since)`; `workers_seen` — TTL clean-up of dead workers.
fn indexes() -> Vec<Index> {
    vec![
        Index {
            coll: JOBS,
            name: "jobs_key",
            keys: doc! { "chain": 1, "first": 1, "last": 1, "kind": 1 },
            unique: true,
            ttl: None,
        },
        Index {
            coll: JOBS,
            name: "jobs_due",
            keys: doc! { "chain": 1, "kind": 1, "due_at": 1, "first": 1 },
            unique: false,
            ttl: None,
        },
        Index {
            coll: JOBS,
            name: "jobs_kind",
            keys: doc! { "chain": 1, "kind": 1, "first": 1, "last": 1 },
            unique: false,
            ttl: None,
        },
        Index {
            coll: JOBS,
            name: "jobs_status",
            keys: doc! { "chain": 1, "status": 1, "kind": 1, "first": 1, "last": 1 },
            unique: false,
            ttl: None,
        },
        Index { coll: WORKERS, name: "workers_heartbeat", keys: doc! { "heartbeat_at": 1 }, unique: false, ttl: None },
        Index { coll: WORKERS, name: "workers_seen", keys: doc! { "seen": 1 }, unique: false, ttl: Some(WORKER_TTL) },
    ]
}

/// The stored schema version, `None` when orch never migrated this database.
pub(crate) async fn current_version(db: &mongodb::Database, ctx: &Ctx) -> Result<Option<u32>> {
    let meta = db.collection::<SchemaDoc>(META);
    let found = meta.find_one(doc! { "_id": SCHEMA_DOC }).await.map_err(|e| map_err(e, ctx))?;
    found
        .map(|d| {
            u32::try_from(d.version).map_err(|_| {
                Error::invalid_input(
                    "database.database",
                    format!("database {:?} has an invalid schema version {}", ctx.database, d.version),
                )
            })
        })
        .transpose()
}

/// Errors unless a database at `version` can be used by this code.
pub(crate) fn check_supported(version: u32, ctx: &Ctx) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::invalid_input(
            "database.database",
            format!(
                "database {:?} on {} has schema version {version}, but this orch understands versions up to \
                 {SCHEMA_VERSION}; run a newer orch, or restore a backup taken before the upgrade",
                ctx.database, ctx.url
            ),
        ));
    }
    Ok(())
}

/// The error for a database orch never set up.
pub(crate) fn not_set_up(ctx: &Ctx) -> Error {
    Error::invalid_input(
        "database.database",
        format!(
            "database {:?} on {} has no orch schema (no schema-version document in {META}); \
             run `orchestrator setup` to create the collections and indexes",
            ctx.database, ctx.url
        ),
    )
}

/// Creates collections and indexes (idempotent: creating an existing index with the same
/// definition is a no-op), then records [`SCHEMA_VERSION`].
pub(crate) async fn migrate(db: &mongodb::Database, ctx: &Ctx) -> Result<()> {
    let m = |e| map_err(e, ctx);
    let from = current_version(db, ctx).await?;
    if let Some(v) = from {
        check_supported(v, ctx)?;
    }
    // Indexes are (re)declared even at the current version: cheap, and repairs a dropped one.
    let mut by_coll: Vec<(&str, Vec<IndexModel>)> = Vec::new();
    for ix in indexes() {
        let mut opts = IndexOptions::builder().name(ix.name.to_owned()).build();
        if ix.unique {
            opts.unique = Some(true);
        }
        opts.expire_after = ix.ttl;
        let model = IndexModel::builder().keys(ix.keys).options(opts).build();
        match by_coll.iter_mut().find(|(c, _)| *c == ix.coll) {
            Some((_, v)) => v.push(model),
            None => by_coll.push((ix.coll, vec![model])),
        }
    }
    for (coll, models) in by_coll {
        db.collection::<mongodb::bson::Document>(coll).create_indexes(models).await.map_err(m)?;
    }
    // `leaders` needs only `_id`; make sure the collection exists so `setup` shows it.
    let existing = db.list_collection_names().await.map_err(m)?;
    if !existing.iter().any(|c| c == LEADERS) {
        if let Err(e) = db.create_collection(LEADERS).await {
            // 48 NamespaceExists: another instance created it meanwhile.
            if !matches!(&*e.kind, mongodb::error::ErrorKind::Command(c) if c.code == 48) {
                return Err(m(e));
            }
        }
    }
    if from == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // `$max` never moves the version down, even if a newer orch migrated concurrently.
    let meta = db.collection::<mongodb::bson::Document>(META);
    let write = || {
        meta.update_one(
            doc! { "_id": SCHEMA_DOC },
            doc! { "$max": { "version": i64::from(SCHEMA_VERSION) }, "$set": { "migrated_at": now } },
        )
        .upsert(true)
    };
    match write().await {
        // Two instances upserted at once and this one lost the insert: the document exists now.
        Err(e) if is_duplicate_key(&e) => write().await.map(|_| ()).map_err(m)?,
        other => other.map(|_| ()).map_err(m)?,
    }
    tracing::info!(target: "orch::mongo", database = %ctx.database, version = SCHEMA_VERSION, "schema migrated");
    Ok(())
}
