//! Behaviour specific to the MongoDB adapter: setup checks, schema versions, bad and
//! unreachable servers, several stores claiming from one database, stored document shape.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use orch_core::db::{Database, DatabaseExt};
use orch_core::error::Error;
use orch_core::job::{ClaimRequest, NewJob};
use orch_core::types::{JobKind, ObjectKey, Timestamp, WorkerId};
use orch_mongo::{MongoConfig, MongoStore, SCHEMA_VERSION};
use orch_testkit::fixtures::{assert_claimed_once, fresh_chain, new_job, T0};

/// A fresh database dropped when the test ends (also on panic, best effort).
struct TempDb {
    url: String,
    name: String,
}

impl TempDb {
    fn new(url: &str) -> TempDb {
        TempDb { url: url.to_owned(), name: common::fresh_name() }
    }

    fn config(&self) -> MongoConfig {
        common::config(&self.url, &self.name)
    }

    async fn raw(&self) -> mongodb::Database {
        common::raw(&self.url).await.database(&self.name)
    }

    async fn drop(self) {
        self.raw().await.drop().await.expect("drop test database");
    }
}

fn assert_invalid(e: &Error, field: &str) {
    assert!(
        matches!(e, Error::InvalidInput { field: f, .. } if f == field),
        "expected InvalidInput({field}), got {e:?}"
    );
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn connect_without_setup_tells_the_operator_to_run_setup() {
    let Some(url) = common::url() else { return };
    let tmp = TempDb::new(&url);
    let e = MongoStore::connect(tmp.config()).await.unwrap_err();
    assert_invalid(&e, "database.database");
    assert!(e.to_string().contains("orchestrator setup"), "{e}");
    assert!(e.to_string().contains(&tmp.name), "the error must name the database: {e}");
    tmp.drop().await;
}

#[tokio::test]
async fn setup_twice_then_connect_and_indexes_exist() {
    let Some(url) = common::url() else { return };
    let tmp = TempDb::new(&url);
    let store = MongoStore::connect_and_migrate(tmp.config()).await.unwrap();
    store.migrate().await.unwrap();
    MongoStore::connect_and_migrate(tmp.config()).await.unwrap();
    let store = MongoStore::connect(tmp.config()).await.unwrap();
    assert_eq!(store.database_name(), tmp.name);
    let raw = tmp.raw().await;
    let meta = raw.collection::<Document>("orch_meta").find_one(doc! { "_id": "schema" }).await.unwrap().unwrap();
    assert_eq!(meta.get_i64("version").unwrap(), i64::from(SCHEMA_VERSION));
    let names: HashSet<String> =
        raw.collection::<Document>("jobs").list_index_names().await.unwrap().into_iter().collect();
    for ix in ["jobs_key", "jobs_due", "jobs_status"] {
        assert!(names.contains(ix), "missing index {ix}: {names:?}");
    }
    let workers: HashSet<String> =
        raw.collection::<Document>("workers").list_index_names().await.unwrap().into_iter().collect();
    assert!(workers.contains("workers_heartbeat") && workers.contains("workers_seen"), "{workers:?}");
    // teardown removes what setup created; connecting then asks for setup again.
    store.teardown().await.unwrap();
    let e = MongoStore::connect(tmp.config()).await.unwrap_err();
    assert!(e.to_string().contains("orchestrator setup"), "{e}");
    tmp.drop().await;
}

#[tokio::test]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let Some(url) = common::url() else { return };
    let tmp = TempDb::new(&url);
    MongoStore::connect_and_migrate(tmp.config()).await.unwrap();
    let newer = i64::from(SCHEMA_VERSION) + 1;
    tmp.raw()
        .await
        .collection::<Document>("orch_meta")
        .update_one(doc! { "_id": "schema" }, doc! { "$set": { "version": newer } })
        .await
        .unwrap();
    for e in [
        MongoStore::connect(tmp.config()).await.unwrap_err(),
        MongoStore::connect_and_migrate(tmp.config()).await.unwrap_err(),
    ] {
        assert_invalid(&e, "database.database");
        let s = e.to_string();
        assert!(s.contains(&format!("schema version {newer}")), "{s}");
        assert!(s.contains(&format!("up to {SCHEMA_VERSION}")), "{s}");
    }
    tmp.drop().await;
}

#[tokio::test]
async fn bad_urls_and_names_are_invalid_input_without_the_password() {
    for url in [
        "",
        "postgres://orch:hunter2@db/orch",
        "mongodb://orch:hunter2@db:notaport/orch",
        "mongodb://orch:hunter2@/orch",
        "mongodb://orch:hunter2@db:27017/orch?connectTimeoutMS=soon",
    ] {
        let mut c = MongoConfig::new(url);
        c.connect_timeout = Duration::from_millis(300);
        let e = MongoStore::connect(c).await.unwrap_err();
        assert_invalid(&e, "database.url");
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
    }
    let mut c = MongoConfig::new("mongodb://127.0.0.1:27017");
    c.database = "has.dot".into();
    assert_invalid(&MongoStore::connect(c).await.unwrap_err(), "database.database");
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_error_naming_it() {
    let mut c = MongoConfig::new("mongodb://orch:hunter2@127.0.0.1:1/?directConnection=true");
    c.connect_timeout = Duration::from_millis(500);
    let e = MongoStore::connect(c).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_retryable());
    let s = e.to_string();
    assert!(s.contains("127.0.0.1:1"), "the error must name the server: {s}");
    assert!(!format!("{s} {e:?}").contains("hunter2"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_claiming_concurrently_never_share_a_job() {
    let Some(url) = common::url() else { return };
    let tmp = TempDb::new(&url);
    let stores = [
        MongoStore::connect_and_migrate(tmp.config()).await.unwrap(),
        MongoStore::connect(tmp.config()).await.unwrap(),
    ];
    let c = fresh_chain();
    let n = 200u64;
    let jobs: Vec<NewJob> = (0..n).map(|b| new_job(&c, JobKind::SnosRun, b)).collect();
    let created = stores[0].create_jobs(jobs, T0).await.unwrap();
    assert!(created.iter().all(|j| j.is_new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let db: Arc<dyn Database> = stores[w % 2].database();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let req = ClaimRequest {
                    chain: c.clone(),
                    owner: WorkerId(format!("w{w}")),
                    now: T0,
                    lease_until: Timestamp(T0.0 + 60_000),
                    wants: vec![(JobKind::SnosRun, 16)],
                };
                let got = db.claim_jobs(&req).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                for j in got {
                    assert_eq!(j.epoch.0, 1, "a job claimed at epoch {} was claimed before", j.epoch.0);
                    assert_eq!(j.lease.as_ref().map(|l| l.owner.0.clone()), Some(format!("w{w}")));
                    mine.push(j.id);
                }
            }
        }));
    }
    assert_claimed_once(tasks, n).await;
    tmp.drop().await;
}

#[tokio::test]
async fn repeated_keys_in_one_batch_and_awkward_meta_round_trip() {
    let Some(url) = common::url() else { return };
    let tmp = TempDb::new(&url);
    let store = MongoStore::connect_and_migrate(tmp.config()).await.unwrap();
    let c = fresh_chain();
    let mut a = new_job(&c, JobKind::SnosRun, 1);
    // Map keys MongoDB field names could not hold.
    a.meta.extra.insert("$weird.key".into(), "v".into());
    a.meta.artifacts.insert("pie.v2".into(), ObjectKey::new("c/pie.bin").unwrap());
    let b = new_job(&c, JobKind::SnosRun, 1);
    let out = store.create_jobs(vec![a.clone(), b, new_job(&c, JobKind::SnosRun, 2)], T0).await.unwrap();
    let flags: Vec<bool> = out.iter().map(|c| c.is_new()).collect();
    assert_eq!(flags, vec![true, false, true]);
    assert_eq!(out[1].job(), out[0].job(), "a repeated key resolves to the first job");
    let got = store.get_job(a.id).await.unwrap();
    assert_eq!(got, a.clone().into_job(T0));
    // A job id reused for another key is refused.
    let mut reused = new_job(&c, JobKind::SnosRun, 3);
    reused.id = a.id;
    let e = store.create_job(reused, T0).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    tmp.drop().await;
}
