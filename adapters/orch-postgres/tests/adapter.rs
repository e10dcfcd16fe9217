//! Adapter-specific behaviour against a live PostgreSQL server (`ORCH_TEST_POSTGRES_URL`):
//! setup checks, migrations, connection errors, concurrency, recovery and query plans.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::db::Database;
use orch_core::error::Error;
use orch_core::job::{ClaimRequest, Job, JobMeta, JobWrite, NewJob, Transition};
use orch_core::types::{
    BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, Timestamp, Version, WorkerId,
};
use orch_postgres::{PostgresConfig, PostgresStore, SCHEMA_VERSION};
use orch_testkit::fixtures::assert_claimed_once;

const T0: Timestamp = Timestamp(1_700_000_000_000);

/// A fresh schema, dropped when the guard is: each test here owns its schema.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn config(&self) -> PostgresConfig {
        common::config(&self.url, &self.name)
    }

    async fn drop(self) {
        common::drop_schema(&self.url, &self.name).await;
    }
}

async fn fresh() -> Option<Schema> {
    let url = common::url()?;
    common::drop_stale_schemas(&url).await;
    Some(Schema { url, name: common::fresh_schema() })
}

fn chain() -> ChainId {
    ChainId::new(format!("a{}", &JobId::random().0.simple().to_string()[20..])).unwrap()
}

fn new_jobs(c: &ChainId, kind: JobKind, blocks: std::ops::Range<u64>) -> Vec<NewJob> {
    blocks
        .map(|b| NewJob {
            id: JobId::random(),
            key: JobKey { chain: c.clone(), kind, range: BlockRange::single(b) },
            max_attempts: 5,
            next_run_at: T0,
            deps: vec![],
            meta: JobMeta::default(),
        })
        .collect()
}

fn claim(c: &ChainId, owner: &str, n: u32) -> ClaimRequest {
    ClaimRequest {
        chain: c.clone(),
        owner: WorkerId(owner.into()),
        now: T0,
        lease_until: Timestamp(T0.0 + 60_000),
        wants: vec![(JobKind::SnosRun, n)],
    }
}

fn with_url(url: &str) -> PostgresConfig {
    let mut c = PostgresConfig::new(url);
    c.connect_timeout = Duration::from_secs(3);
    c
}

/// Replaces the database name (the path) of a URL.
fn other_database(url: &str, db: &str) -> String {
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let cut = base.rfind('/').filter(|i| *i > "postgres://".len()).unwrap_or(base.len());
    format!("{}/{db}", &base[..cut])
}

/// Replaces the user of a URL (keeps host, port and database).
fn other_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

#[tokio::test]
async fn connect_without_setup_says_run_orchestrator_setup() {
    let Some(s) = fresh().await else { return };
    let e = PostgresStore::connect(s.config()).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "database.schema"), "{e:?}");
    assert!(e.to_string().contains("orchestrator setup"), "{e}");
    assert!(!e.is_retryable());
    // connect did not create anything.
    let mut raw = common::raw(&s.url).await;
    let exists: bool =
        sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL").bind(&s.name).fetch_one(&mut raw).await.unwrap();
    assert!(!exists, "connect must not create the schema");
}

#[tokio::test]
async fn schema_newer_than_the_code_is_refused_naming_both_versions() {
    let Some(s) = fresh().await else { return };
    let store = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    let mut raw = common::raw(&s.url).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {}.schema_version SET version = $1", s.name)))
        .bind(SCHEMA_VERSION as i32 + 1)
        .execute(&mut raw)
        .await
        .unwrap();
    let e = PostgresStore::connect(s.config()).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&format!("version {}", SCHEMA_VERSION + 1)), "{text}");
    assert!(text.contains(&format!("up to {SCHEMA_VERSION}")), "{text}");
    assert!(text.contains("upgrade orch"), "{text}");
    assert!(!e.is_retryable());
    let e = store.migrate().await.unwrap_err();
    assert!(e.to_string().contains("upgrade orch"), "migrate must refuse too: {e}");
    s.drop().await;
}

#[tokio::test]
async fn migrate_twice_is_fine_and_connect_then_passes_the_check() {
    let Some(s) = fresh().await else { return };
    let a = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    a.migrate().await.unwrap();
    let b = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    b.migrate().await.unwrap();
    let c = PostgresStore::connect(s.config()).await.unwrap();
    assert_eq!(c.schema(), s.name);
    assert!(c.list_jobs(&orch_core::job::JobQuery::all(chain(), 5)).await.unwrap().is_empty());
    s.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_from_several_stores_are_safe() {
    let Some(s) = fresh().await else { return };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let config = s.config();
            tokio::spawn(async move { PostgresStore::connect_and_migrate(config).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every concurrent migration succeeds");
    }
    let mut raw = common::raw(&s.url).await;
    assert_eq!(stored_version(&mut raw, &s.name).await, SCHEMA_VERSION);
    PostgresStore::connect(s.config()).await.unwrap();
    s.drop().await;
}

/// The schema version recorded in schema `name`.
async fn stored_version(raw: &mut sqlx::PgConnection, name: &str) -> u32 {
    let v: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT version FROM {name}.schema_version")))
        .fetch_one(raw)
        .await
        .unwrap();
    v as u32
}

/// Names of the indexes on `jobs` in schema `name`.
async fn job_indexes(url: &str, name: &str) -> Vec<String> {
    let mut raw = common::raw(url).await;
    sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs' ORDER BY 1")
        .bind(name)
        .fetch_all(&mut raw)
        .await
        .unwrap()
}

/// Moves `job` to status `to` as a store at schema version 1 or 2 did (this code writes
/// version 4 only): the row gets the next version — with `lease`, also a lease, the next
/// epoch and one more attempt — and `job_history` a row at that version. Returns the job as
/// stored and the transition recorded.
async fn old_write(
    raw: &mut sqlx::PgConnection,
    schema: &str,
    job: &Job,
    to: JobStatus,
    lease: Option<&str>,
    at: Timestamp,
    reason: &str,
) -> (Job, Transition) {
    let mut j = job.clone();
    let from = j.status;
    j.status = to;
    j.version = Version(j.version.0 + 1);
    j.lease = None;
    if let Some(owner) = lease {
        j.epoch = Epoch(j.epoch.0 + 1);
        j.attempts += 1;
        j.lease = Some(Lease { owner: WorkerId(owner.into()), until: Timestamp(T0.0 + 60_000) });
    }
    let t = Transition {
        at,
        from,
        to,
        reason: reason.into(),
        attempt: j.attempts,
        actor: lease.map(|o| WorkerId(o.into())),
        epoch: j.epoch,
    };
    let sql = format!(
        "UPDATE {schema}.jobs SET status = $2, version = $3, epoch = $4, attempts = $5, lease_owner = $6, \
         lease_until = $7 WHERE id = $1::uuid"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(j.id.to_string())
        .bind(to.as_str())
        .bind(j.version.0 as i64)
        .bind(j.epoch.0 as i64)
        .bind(i64::from(j.attempts))
        .bind(j.lease.as_ref().map(|l| l.owner.0.clone()))
        .bind(j.lease.as_ref().map(|l| l.until.0 as i64))
        .execute(&mut *raw)
        .await
        .unwrap();
    let sql = format!(
        "INSERT INTO {schema}.job_history (job_id, version, at, from_status, to_status, reason, attempt, actor, \
         epoch) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(j.id.to_string())
        .bind(j.version.0 as i64)
        .bind(i64::try_from(at.0).unwrap_or(i64::MAX))
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(i64::from(j.attempts))
        .bind(lease)
        .bind(j.epoch.0 as i64)
        .execute(&mut *raw)
        .await
        .unwrap();
    (j, t)
}

/// A store set up by the first release (schema version 1), holding jobs in every state the
/// hot path leaves them in, is upgraded in place: the data and history survive, the indexes
/// are those of the current version, and the upgraded store claims, completes and lists.
#[tokio::test]
async fn a_store_created_at_version_1_upgrades_and_keeps_its_jobs() {
    let Some(s) = fresh().await else { return };
    let old = PostgresStore::connect_unchecked(s.config()).await.unwrap();
    old.migrate_to_version(1).await.unwrap();
    let e = PostgresStore::connect(s.config()).await.unwrap_err();
    assert!(e.to_string().contains("is at version 1") && e.to_string().contains("orchestrator setup"), "{e}");
    assert!(job_indexes(&s.url, &s.name).await.contains(&"jobs_open".to_string()));
    let e = old.migrate_to_version(SCHEMA_VERSION + 1).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "version"), "{e:?}");

    // Version-1 data: a settled state transition, an unsettled one, a failed one, a claimed
    // SNOS job and a created one. (Creation writes the same columns in every version.)
    let c = chain();
    let created = old.create_jobs(new_jobs(&c, JobKind::StateTransition, 0..3), T0).await.unwrap();
    let snos = old.create_jobs(new_jobs(&c, JobKind::SnosRun, 0..2), T0).await.unwrap();
    let mut raw = common::raw(&s.url).await;
    old_write(&mut raw, &s.name, created[0].job(), JobStatus::Completed, None, T0, "test").await;
    old_write(&mut raw, &s.name, created[2].job(), JobStatus::Failed, None, T0, "test").await;
    let (claimed, t) =
        old_write(&mut raw, &s.name, snos[0].job(), JobStatus::Processing, Some("w-old"), T0, "claimed").await;
    let before = old.list_jobs(&orch_core::job::JobQuery::all(c.clone(), 100)).await.unwrap();
    assert!(before.contains(&claimed));

    let new = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    assert_eq!(stored_version(&mut raw, &s.name).await, SCHEMA_VERSION);
    PostgresStore::connect(s.config()).await.unwrap();
    let indexes = job_indexes(&s.url, &s.name).await;
    for want in ["jobs_due", "jobs_key", "jobs_pkey", "jobs_stuck", "jobs_unsettled"] {
        assert!(indexes.contains(&want.to_string()), "{want} missing: {indexes:?}");
    }
    assert!(!indexes.contains(&"jobs_open".to_string()), "{indexes:?}");

    // Same jobs, same history; the upgraded store serves every query the engine makes.
    assert_eq!(new.list_jobs(&orch_core::job::JobQuery::all(c.clone(), 100)).await.unwrap(), before);
    assert_eq!(new.history(claimed.id).await.unwrap(), vec![t]);
    let mut unsettled = orch_core::job::JobQuery::all(c.clone(), 10);
    unsettled.kinds = vec![JobKind::StateTransition];
    unsettled.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
    let got: Vec<u64> = new.list_jobs(&unsettled).await.unwrap().iter().map(|j| j.range().first()).collect();
    assert_eq!(got, vec![1, 2]);
    let mut stuck = orch_core::job::JobQuery::all(c.clone(), 10);
    stuck.statuses = vec![JobStatus::Failed];
    let got: Vec<_> = new.list_jobs(&stuck).await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(got, vec![created[2].job().id]);
    let more = new.claim_jobs(&claim(&c, "w-new", 10)).await.unwrap();
    assert_eq!(more.len(), 1, "the other SNOS job is still due; the claimed one is leased");
    assert_ne!(more[0].id, claimed.id);
    let mut j = more[0].clone();
    let t = Transition {
        at: T0,
        from: j.status,
        to: JobStatus::Completed,
        reason: "test".into(),
        attempt: 0,
        actor: None,
        epoch: j.epoch,
    };
    j.status = JobStatus::Completed;
    let done = new.update_jobs(&[JobWrite { job: j, transition: Some(t), now: T0 }]).await.unwrap();
    assert_eq!(done[0].as_ref().unwrap().status, JobStatus::Completed);
    assert_eq!(new.history(more[0].id).await.unwrap().len(), 2, "claimed, then completed");
    s.drop().await;
}

/// Whether table `table` exists in schema `name`.
async fn has_table(url: &str, name: &str, table: &str) -> bool {
    let mut raw = common::raw(url).await;
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{name}.{table}"))
        .fetch_one(&mut raw)
        .await
        .unwrap()
}

/// A store at schema version 2 (history in the `job_history` table) is upgraded in place: each
/// job keeps its transitions, in order and field for field (actors or none, a reason with
/// quotes and a newline, `Timestamp::NEVER`), a job without history keeps none, the table is
/// gone, and new transitions are appended after the moved ones.
#[tokio::test]
async fn a_store_created_at_version_2_moves_its_history_into_the_jobs() {
    let Some(s) = fresh().await else { return };
    let old = PostgresStore::connect_unchecked(s.config()).await.unwrap();
    old.migrate_to_version(2).await.unwrap();
    assert!(has_table(&s.url, &s.name, "job_history").await);
    let e = PostgresStore::connect(s.config()).await.unwrap_err();
    assert!(e.to_string().contains("is at version 2") && e.to_string().contains("orchestrator setup"), "{e}");

    // Version-2 data: a claimed job, one claimed and deferred four times (eight entries, the
    // last at `NEVER`), and one never touched.
    let c = chain();
    let created = old.create_jobs(new_jobs(&c, JobKind::SnosRun, 0..3), T0).await.unwrap();
    let mut raw = common::raw(&s.url).await;
    let (claimed, t) =
        old_write(&mut raw, &s.name, created[0].job(), JobStatus::Processing, Some("w-old"), T0, "claimed").await;
    let mut busy = created[1].job().clone();
    let mut busy_history = Vec::new();
    for i in 0..4u64 {
        let (j, t) =
            old_write(&mut raw, &s.name, &busy, JobStatus::Processing, Some("w-old"), Timestamp(T0.0 + i), "claimed")
                .await;
        busy_history.push(t);
        let at = if i == 3 { Timestamp::NEVER } else { Timestamp(T0.0 + i) };
        let (j, t) = old_write(&mut raw, &s.name, &j, JobStatus::Created, None, at, "waiting for \"deps\"\n").await;
        busy_history.push(t);
        busy = j;
    }
    let untouched = created[2].job().id;

    let new = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    PostgresStore::connect(s.config()).await.unwrap();
    assert!(!has_table(&s.url, &s.name, "job_history").await, "the history table is dropped");
    assert_eq!(new.get_job(claimed.id).await.unwrap(), claimed);
    assert_eq!(new.get_job(busy.id).await.unwrap(), busy);
    assert_eq!(new.history(claimed.id).await.unwrap(), vec![t]);
    assert_eq!(new.history(busy.id).await.unwrap(), busy_history);
    assert_eq!(new.history(untouched).await.unwrap(), Vec::new());

    // New transitions go after the moved ones.
    let again = new.claim_jobs(&claim(&c, "w-new", 10)).await.unwrap();
    let j = again.iter().find(|j| j.id == busy.id).expect("the deferred job is due again");
    let h = new.history(j.id).await.unwrap();
    assert_eq!(h.len(), 9);
    assert_eq!(&h[..8], &busy_history[..]);
    assert_eq!((h[8].reason.as_str(), h[8].from, h[8].to), ("claimed", JobStatus::Created, JobStatus::Processing));
    assert_eq!(h[8].actor, Some(WorkerId("w-new".into())));
    assert_eq!((h[8].epoch, h[8].attempt), (j.epoch, j.attempts));
    s.drop().await;
}

/// A store at schema version 3 (history a `jsonb` array in the job row) is upgraded in place:
/// each array becomes its lines, entry for entry (an actor or none, a reason with quotes and a
/// newline, `Timestamp::NEVER`), an empty array becomes no history, and new transitions are
/// appended after the converted ones.
#[tokio::test]
async fn a_store_created_at_version_3_turns_its_history_into_lines() {
    let Some(s) = fresh().await else { return };
    let old = PostgresStore::connect_unchecked(s.config()).await.unwrap();
    old.migrate_to_version(3).await.unwrap();
    let c = chain();
    let created = old.create_jobs(new_jobs(&c, JobKind::SnosRun, 0..2), T0).await.unwrap();
    let (job, untouched) = (created[0].job().clone(), created[1].job().id);
    let history = vec![
        Transition {
            at: T0,
            from: JobStatus::Created,
            to: JobStatus::Processing,
            reason: "claimed".into(),
            attempt: 1,
            actor: Some(WorkerId("w \"old\"".into())),
            epoch: Epoch(1),
        },
        Transition {
            at: Timestamp::NEVER,
            from: JobStatus::Processing,
            to: JobStatus::Created,
            reason: "waiting for \"deps\"\n".into(),
            attempt: 1,
            actor: None,
            epoch: Epoch(1),
        },
    ];
    // The array as version 3 stored it (its entries' shape is the one the codec reads).
    let array: Vec<serde_json::Value> = history
        .iter()
        .map(|t| {
            serde_json::json!({
                "at": i64::try_from(t.at.0).unwrap_or(i64::MAX), "from": t.from.as_str(), "to": t.to.as_str(),
                "reason": t.reason, "attempt": t.attempt, "actor": t.actor.as_ref().map(|a| a.0.clone()),
                "epoch": t.epoch.0,
            })
        })
        .collect();
    let mut raw = common::raw(&s.url).await;
    let sql = format!("UPDATE {}.jobs SET history = $2::jsonb WHERE id = $1::uuid", s.name);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(job.id.to_string())
        .bind(serde_json::Value::Array(array).to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    let e = PostgresStore::connect(s.config()).await.unwrap_err();
    assert!(e.to_string().contains("is at version 3"), "{e}");

    let new = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    assert_eq!(new.history(job.id).await.unwrap(), history);
    assert_eq!(new.history(untouched).await.unwrap(), Vec::new());
    let sql = format!("SELECT history FROM {}.jobs WHERE id = $1::uuid", s.name);
    let text: String =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(job.id.to_string()).fetch_one(&mut raw).await.unwrap();
    assert_eq!(text.lines().count(), 2, "one line per entry: {text:?}");

    let claimed = new.claim_jobs(&claim(&c, "w-new", 10)).await.unwrap();
    assert_eq!(claimed.len(), 2, "both jobs were created and due");
    let h = new.history(job.id).await.unwrap();
    assert_eq!(&h[..2], &history[..]);
    assert_eq!((h[2].reason.as_str(), h[2].actor.clone()), ("claimed", Some(WorkerId("w-new".into()))));
    assert_eq!(new.history(untouched).await.unwrap().len(), 1);
    s.drop().await;
}

/// The plain insert that creates a batch of free keys gives way to the `ON CONFLICT` insert
/// when a key is taken after all (here: twice in the batch): nothing is lost or doubled, the
/// first of the two is new and the second reports it. A job id already used by another key
/// is still `AlreadyExists`, and inserts nothing of its batch.
#[tokio::test]
async fn a_key_twice_in_a_batch_and_a_reused_id_are_handled() {
    let Some(s) = fresh().await else { return };
    let store = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    let c = chain();
    let mut batch = new_jobs(&c, JobKind::SnosRun, 0..3);
    let mut twin = batch[1].clone();
    twin.id = JobId::random();
    batch.push(twin.clone());
    let out = store.create_jobs(batch.clone(), T0).await.unwrap();
    let flags: Vec<_> = out.iter().map(|o| (o.job().range().first(), o.is_new())).collect();
    assert_eq!(flags, vec![(0, true), (1, true), (2, true), (1, false)]);
    assert_eq!(out[3].job().id, batch[1].id, "the twin reports the job stored under its key");
    assert_eq!(store.count_jobs(&c).await.unwrap().iter().map(|n| n.count).sum::<u64>(), 3);

    let mut reused = new_jobs(&c, JobKind::SnosRun, 10..12);
    reused[1].id = batch[0].id;
    let e = store.create_jobs(reused, T0).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    assert_eq!(store.count_jobs(&c).await.unwrap().iter().map(|n| n.count).sum::<u64>(), 3);
    s.drop().await;
}

#[tokio::test]
async fn bad_url_is_invalid_input_and_hides_the_password() {
    for url in ["postgres://orch:hunter2@127.0.0.1:notaport/db", "http://orch:hunter2@127.0.0.1/db", ""] {
        let e = PostgresStore::connect(with_url(url)).await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "database.url"), "{url}: {e:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}

#[tokio::test]
async fn unreachable_port_is_a_retryable_unavailable_without_the_password() {
    let e = PostgresStore::connect(with_url("postgres://orch:hunter2@127.0.0.1:1/orch")).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(text.contains("127.0.0.1:1") && text.contains("refused"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn unknown_database_is_invalid_input_naming_it() {
    let Some(url) = common::url() else { return };
    let name = format!("orch_missing_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // With a password in the URL (the test server trusts local logins, so it is not checked):
    // the error must not show it.
    let user = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(info, _)| info.split(':').next())
        .unwrap_or("postgres")
        .to_owned();
    let with_password = other_database(&other_user(&url, &format!("{user}:hunter2")), &name);
    let e = PostgresStore::connect(with_url(&with_password)).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "database.url"), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&name) && text.contains("does not exist"), "{text}");
    assert!(!text.contains("hunter2") && !format!("{e:?}").contains("hunter2"), "{text}");
}

#[tokio::test]
async fn unknown_role_is_invalid_input_naming_the_login() {
    let Some(url) = common::url() else { return };
    let role = format!("orch_nobody_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let e = PostgresStore::connect(with_url(&other_user(&url, &role))).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "database.url"), "{e:?}");
    assert!(e.to_string().contains(&role), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_never_share_a_job() {
    let Some(s) = fresh().await else { return };
    // Two stores (two pools), like two orchestrator processes.
    let a = PostgresStore::connect_and_migrate(s.config()).await.unwrap().database();
    let b = PostgresStore::connect(s.config()).await.unwrap().database();
    let c = chain();
    let n = 2_000u64;
    for chunk in new_jobs(&c, JobKind::SnosRun, 0..n).chunks(500) {
        let created = a.create_jobs(chunk.to_vec(), T0).await.unwrap();
        assert!(created.iter().all(|c| c.is_new()));
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let db: Arc<dyn Database> = if w % 2 == 0 { a.clone() } else { b.clone() };
            let c = c.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = db.claim_jobs(&claim(&c, &format!("w{w}"), 25)).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    for j in &got {
                        assert_eq!(j.lease.as_ref().unwrap().owner.0, format!("w{w}"));
                        assert_eq!(j.epoch.0, 1);
                    }
                    mine.extend(got.into_iter().map(|j| j.id));
                }
            })
        })
        .collect();
    assert_claimed_once(tasks, n).await;
    let took = started.elapsed();
    println!("8 claimers took {n} jobs in {took:?} ({:.0} claims/s)", n as f64 / took.as_secs_f64());
    s.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_recovers_after_the_server_drops_its_connections() {
    let Some(s) = fresh().await else { return };
    let mut config = s.config();
    let app = format!("orch_recover_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    config.application_name = app.clone();
    let store = PostgresStore::connect_and_migrate(config).await.unwrap();
    let c = chain();
    store.create_jobs(new_jobs(&c, JobKind::SnosRun, 0..4), T0).await.unwrap();
    // Several connections in the pool, then the server terminates all of them (what a
    // restart or failover does to clients).
    let busy: Vec<_> = (0..4).map(|_| store.count_jobs(&c)).collect();
    for r in futures::future::join_all(busy).await {
        r.unwrap();
    }
    let mut raw = common::raw(&s.url).await;
    let killed: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&app)
            .fetch_all(&mut raw)
            .await
            .unwrap();
    assert!(!killed.is_empty(), "the store had connections to terminate");
    // Calls may fail while dead connections are discovered, but only with retryable errors, and
    // the store comes back on its own.
    let mut failures = 0;
    let mut ok = 0;
    for _ in 0..40 {
        match store.count_jobs(&c).await {
            Ok(counts) => {
                assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 4);
                ok += 1;
                if ok == 3 {
                    break;
                }
            }
            Err(e) => {
                assert!(e.is_retryable(), "a dropped connection must be retryable: {e:?}");
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(ok, 3, "the store did not recover ({failures} failures)");
    println!("recovered after {failures} retryable failures");
    s.drop().await;
}

/// Prepares every engine statement on `raw` as a generic plan (statement names start with
/// `phase`) and checks that it reads `jobs` through its indexes as intended.
async fn check_engine_plans(raw: &mut sqlx::PgConnection, phase: &str) {
    for (name, sql) in PostgresStore::engine_queries() {
        // Counting a chain's jobs reads all of them by nature (operators' view, not the hot path).
        if name == "count" {
            continue;
        }
        let params = (1..40).filter(|i| sql.contains(&format!("${i}"))).count();
        let stmt = format!("{phase}_{}", name.replace(' ', "_"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE {stmt} AS {sql}"))).execute(&mut *raw).await.unwrap();
        let nulls = vec!["NULL"; params].join(", ");
        let explain = format!("EXPLAIN (COSTS OFF) EXECUTE {stmt}({nulls})");
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(explain)).fetch_all(&mut *raw).await.unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on jobs"), "{phase}: {name} scans jobs:\n{plan}");
        // Which index a listing takes is the planner's call on the table's statistics: checked
        // once there are some.
        if name == "list unsettled" && phase == "full" {
            assert!(plan.contains("jobs_unsettled"), "the lowest-unsettled listing must use jobs_unsettled:\n{plan}");
        }
        if name == "list stuck" && phase == "full" {
            assert!(plan.contains("jobs_stuck"), "a listing of failed jobs must use jobs_stuck:\n{plan}");
        }
        if name == "claim" {
            assert!(
                plan.contains("Tid Scan on jobs"),
                "{phase}: the claim must update the rows it locked by ctid:\n{plan}"
            );
        }
        if name == "wake" {
            // One probe per target, never the chain's whole key range.
            let probe = "Index Cond: ((chain = $2) AND (first_block = t.first_block) AND (kind = t.kind))";
            assert!(plan.contains(probe), "{phase}: the wake must probe jobs_key per target:\n{plan}");
        }
        println!("{phase} {name}:\n{plan}\n");
    }
}

/// Every engine statement is planned with index scans on `jobs` as a generic plan (what the
/// store's sessions use): planned on an empty, never analysed schema with the sessions'
/// planner settings — a fresh deployment's connections plan their statements then, and keep
/// those plans — and planned on 20,000 analysed jobs without `enable_seqscan = off`, so the
/// indexes win on their merits.
#[tokio::test]
async fn engine_queries_use_indexes() {
    let Some(s) = fresh().await else { return };
    let store = PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    let mut empty = common::raw(&s.url).await;
    let mut set = format!("SET search_path TO {}", s.name);
    for (k, v) in PostgresStore::planner_settings() {
        set.push_str(&format!("; SET {k} = {v}"));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut empty).await.unwrap();
    check_engine_plans(&mut empty, "empty").await;

    // Enough rows, spread over chains and statuses, for the planner to prefer indexes.
    for _ in 0..4 {
        let c = chain();
        let created = store.create_jobs(new_jobs(&c, JobKind::SnosRun, 0..5_000), T0).await.unwrap();
        let writes: Vec<_> = created
            .iter()
            .take(4_500)
            .map(|c| {
                let mut j = c.job().clone();
                j.status = JobStatus::Completed;
                let t = Transition {
                    at: T0,
                    from: JobStatus::Created,
                    to: JobStatus::Completed,
                    reason: "test".into(),
                    attempt: 0,
                    actor: None,
                    epoch: j.epoch,
                };
                JobWrite { job: j, transition: Some(t), now: T0 }
            })
            .collect();
        store.update_jobs(&writes).await.unwrap();
    }
    let mut raw = common::raw(&s.url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ANALYZE {0}.jobs; SET search_path TO {0}; SET plan_cache_mode = force_generic_plan",
        s.name
    )))
    .execute(&mut raw)
    .await
    .unwrap();
    check_engine_plans(&mut raw, "full").await;
    s.drop().await;
}

/// Creates `n` jobs, then 8 workers claim (128 at a time) and complete them; returns jobs/s.
async fn claim_and_complete(config: PostgresConfig, n: u64) -> f64 {
    let store = PostgresStore::connect(config).await.unwrap().database();
    let c = chain();
    for chunk in new_jobs(&c, JobKind::SnosRun, 0..n).chunks(1_000) {
        store.create_jobs(chunk.to_vec(), T0).await.unwrap();
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let db = store.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                loop {
                    let got = db.claim_jobs(&claim(&c, &format!("w{w}"), 128)).await.unwrap();
                    if got.is_empty() {
                        return done;
                    }
                    let writes: Vec<_> = got
                        .into_iter()
                        .map(|mut j| {
                            let t = Transition {
                                at: T0,
                                from: j.status,
                                to: JobStatus::Completed,
                                reason: "processed".into(),
                                attempt: j.attempts,
                                actor: Some(WorkerId(format!("w{w}"))),
                                epoch: j.epoch,
                            };
                            j.status = JobStatus::Completed;
                            j.lease = None;
                            JobWrite { job: j, transition: Some(t), now: T0 }
                        })
                        .collect();
                    for r in db.update_jobs(&writes).await.unwrap() {
                        r.unwrap();
                        done += 1;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, n, "every job claimed and completed exactly once");
    n as f64 / started.elapsed().as_secs_f64()
}

/// Claim + complete throughput with 8 workers on one store: the engine's hot loop without
/// handlers (2 statements per 128 jobs, 2 history entries per job). Prints the figures with
/// `synchronous_commit` on and off; asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_and_complete_throughput_with_eight_workers() {
    let Some(s) = fresh().await else { return };
    PostgresStore::connect_and_migrate(s.config()).await.unwrap();
    let n = 20_000;
    let on = claim_and_complete(s.config(), n).await;
    let mut fast = s.config();
    fast.synchronous_commit = false;
    let off = claim_and_complete(fast, n).await;
    println!("8 workers, {n} no-op jobs: {on:.0} jobs/s (synchronous_commit on), {off:.0} jobs/s (off)");
    s.drop().await;
}
