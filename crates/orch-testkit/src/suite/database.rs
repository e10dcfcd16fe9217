//! The `Database` conformance suite: one function per line of the contract. Every case uses a
//! fresh random chain id, so cases may share one store (and run concurrently).

use std::sync::Arc;

use orch_core::db::{Database, DatabaseExt};
use orch_core::error::Error;
use orch_core::job::{ClaimRequest, Job, JobQuery, JobRecord, JobWrite, NewJob, Order, Transition, WorkerInfo};
use orch_core::types::{BlockRange, ChainId, JobId, JobKey, JobKind, JobStatus, ObjectKey, Timestamp, WorkerId};
use orch_core::types::{Epoch, Lease, Version};

use crate::fixtures::{assert_claimed_once, fresh_chain, new_job, T0};

fn key(chain: &ChainId, kind: JobKind, first: u64) -> JobKey {
    JobKey { chain: chain.clone(), kind, range: BlockRange::single(first) }
}

fn claim(chain: &ChainId, owner: &str, now: Timestamp, wants: Vec<(JobKind, u32)>) -> ClaimRequest {
    ClaimRequest {
        chain: chain.clone(),
        owner: WorkerId(owner.into()),
        now,
        lease_until: Timestamp(now.0 + 30_000),
        wants,
    }
}

async fn create(db: &dyn Database, jobs: Vec<NewJob>) -> Vec<Job> {
    db.create_jobs(jobs, T0).await.expect("create_jobs").into_iter().map(|c| c.job().clone()).collect()
}

fn write(job: &Job, now: Timestamp) -> JobWrite {
    JobWrite { job: job.clone(), transition: None, now }
}

/// Rule 1: a taken key returns the stored job unchanged; a free key creates.
pub async fn create_if_absent_returns_existing_job(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let first = db.create_job(new_job(&c, JobKind::SnosRun, 7), T0).await.unwrap();
    assert!(first.is_new());
    let mut again = new_job(&c, JobKind::SnosRun, 7);
    again.max_attempts = 99;
    let second = db.create_job(again, Timestamp(T0.0 + 5)).await.unwrap();
    assert!(!second.is_new(), "same key must not create a second job");
    assert_eq!(second.job(), first.job(), "existing job must be returned unchanged");
    let other = db.create_job(new_job(&c, JobKind::ProofCreation, 7), T0).await.unwrap();
    assert!(other.is_new(), "another kind is another key");
}

/// Rule 1: a created job has status Created, version 1, epoch 0 and every field as given.
pub async fn created_job_round_trips_every_field(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let mut nj = new_job(&c, JobKind::StateTransition, 10);
    nj.key.range = BlockRange::new(10, 12).unwrap();
    nj.deps = vec![key(&c, JobKind::ProofCreation, 10), key(&c, JobKind::DataSubmission, 10)];
    nj.meta.intent = Some("intent-1".into());
    nj.meta.artifacts.insert("pie".into(), ObjectKey::new("c/pie.bin").unwrap());
    nj.meta.extra.insert("k".into(), "v".into());
    nj.max_attempts = 3;
    nj.next_run_at = Timestamp(T0.0 + 1234);
    let id = nj.id;
    db.create_job(nj.clone(), T0).await.unwrap();
    let got = db.get_job(id).await.unwrap();
    assert_eq!(got, nj.clone().into_job(T0));
    assert_eq!(db.get_job_by_key(&got.key).await.unwrap(), Some(got));
}

/// Rule 1: results in input order; a batch mixing new and taken keys.
pub async fn create_batch_reports_each_job_in_order(db: Arc<dyn Database>) {
    let c = fresh_chain();
    create(&*db, vec![new_job(&c, JobKind::SnosRun, 2)]).await;
    let out = db
        .create_jobs(
            vec![new_job(&c, JobKind::SnosRun, 1), new_job(&c, JobKind::SnosRun, 2), new_job(&c, JobKind::SnosRun, 3)],
            T0,
        )
        .await
        .unwrap();
    let flags: Vec<_> = out.iter().map(|c| (c.job().range().first(), c.is_new())).collect();
    assert_eq!(flags, vec![(1, true), (2, false), (3, true)]);
}

/// Rule 2: unknown id is NotFound; unknown key is None.
pub async fn lookups_of_unknown_jobs(db: Arc<dyn Database>) {
    let c = fresh_chain();
    assert!(matches!(db.get_job(JobId::random()).await, Err(Error::NotFound { .. })));
    assert_eq!(db.get_job_by_key(&key(&c, JobKind::SnosRun, 1)).await.unwrap(), None);
    assert!(matches!(db.history(JobId::random()).await, Err(Error::NotFound { .. })));
}

/// Rule 3: a write with the current version applies, bumps the version and appends history.
pub async fn update_with_current_version_applies(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let job = create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await.remove(0);
    let mut next = job.clone();
    next.meta.intent = Some("x".into());
    next.status = JobStatus::Cancelled;
    let t = Transition {
        at: Timestamp(T0.0 + 1),
        from: JobStatus::Created,
        to: JobStatus::Cancelled,
        reason: "test".into(),
        attempt: 0,
        actor: None,
        epoch: job.epoch,
    };
    let stored =
        db.update_job(JobWrite { job: next, transition: Some(t.clone()), now: Timestamp(T0.0 + 1) }).await.unwrap();
    assert_eq!(stored.version.0, job.version.0 + 1);
    assert_eq!(stored.updated_at, Timestamp(T0.0 + 1));
    assert_eq!(stored.meta.intent.as_deref(), Some("x"));
    assert_eq!(db.get_job(job.id).await.unwrap(), stored);
    assert_eq!(db.history(job.id).await.unwrap(), vec![t]);
}

/// Rule 3: a stale version conflicts and writes nothing.
pub async fn update_with_stale_version_conflicts_and_changes_nothing(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let job = create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await.remove(0);
    let v2 = db.update_job(write(&job, T0)).await.unwrap();
    let mut stale = job.clone();
    stale.meta.intent = Some("stale".into());
    let r = db.update_job(write(&stale, T0)).await;
    assert!(matches!(r, Err(Error::VersionConflict { .. })), "{r:?}");
    assert_eq!(db.get_job(job.id).await.unwrap(), v2);
}

/// Rule 3: unknown job in a write is NotFound; items in one batch are independent.
pub async fn batch_update_items_are_independent(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let jobs = create(&*db, vec![new_job(&c, JobKind::SnosRun, 1), new_job(&c, JobKind::SnosRun, 2)]).await;
    let mut stale = jobs[1].clone();
    stale.version.0 += 7;
    let mut ghost = jobs[0].clone();
    ghost.id = JobId::random();
    let out = db.update_jobs(&[write(&jobs[0], T0), write(&stale, T0), write(&ghost, T0)]).await.unwrap();
    assert!(out[0].is_ok(), "{:?}", out[0]);
    assert!(matches!(out[1], Err(Error::VersionConflict { .. })), "{:?}", out[1]);
    assert!(matches!(out[2], Err(Error::NotFound { .. }) | Err(Error::VersionConflict { .. })), "{:?}", out[2]);
    assert_eq!(db.get_job(jobs[1].id).await.unwrap(), jobs[1]);
}

/// Rule 4: a claim sets lease, epoch+1, version+1, moves Created to Processing and records it.
pub async fn claim_leases_due_job_and_records_transition(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let job = create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await.remove(0);
    let got = db.claim_jobs(&claim(&c, "w1", T0, vec![(JobKind::SnosRun, 10)])).await.unwrap();
    assert_eq!(got.len(), 1);
    let j = &got[0];
    assert_eq!(j.id, job.id);
    assert_eq!(j.status, JobStatus::Processing);
    assert_eq!(j.epoch.0, job.epoch.0 + 1);
    assert_eq!(j.version.0, job.version.0 + 1);
    assert_eq!(j.attempts, 0, "claiming a fresh job spends no attempt");
    let lease = j.lease.as_ref().expect("lease");
    assert_eq!((lease.owner.0.as_str(), lease.until), ("w1", Timestamp(T0.0 + 30_000)));
    assert_eq!(&db.get_job(job.id).await.unwrap(), j);
    let h = db.history(job.id).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].from, h[0].to, h[0].reason.as_str()), (JobStatus::Created, JobStatus::Processing, "claimed"));
    assert_eq!(h[0].epoch, j.epoch);
}

/// Rule 4: a job with a live lease is not claimed again.
pub async fn claim_skips_job_with_live_lease(db: Arc<dyn Database>) {
    let c = fresh_chain();
    create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await;
    let first = db.claim_jobs(&claim(&c, "w1", T0, vec![(JobKind::SnosRun, 10)])).await.unwrap();
    assert_eq!(first.len(), 1);
    let again = db.claim_jobs(&claim(&c, "w2", Timestamp(T0.0 + 29_999), vec![(JobKind::SnosRun, 10)])).await.unwrap();
    assert!(again.is_empty(), "live lease must not be claimable: {again:?}");
}

/// Rule 4: a job whose next_run_at is in the future is not claimed; at that time it is.
pub async fn claim_skips_jobs_not_yet_due(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let mut nj = new_job(&c, JobKind::SnosRun, 1);
    nj.next_run_at = Timestamp(T0.0 + 500);
    create(&*db, vec![nj]).await;
    assert!(db.claim_jobs(&claim(&c, "w", T0, vec![(JobKind::SnosRun, 5)])).await.unwrap().is_empty());
    assert_eq!(
        db.claim_jobs(&claim(&c, "w", Timestamp(T0.0 + 500), vec![(JobKind::SnosRun, 5)])).await.unwrap().len(),
        1
    );
}

/// Rules 1 and 4: an expired lease is reclaimable by anyone, the orphan's attempt counts, and the
/// stale holder's write is fenced out.
pub async fn expired_lease_is_reclaimed_and_stale_writer_fenced(db: Arc<dyn Database>) {
    let c = fresh_chain();
    create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await;
    let a = db.claim_jobs(&claim(&c, "a", T0, vec![(JobKind::SnosRun, 1)])).await.unwrap().remove(0);
    let later = Timestamp(T0.0 + 30_000);
    let b = db.claim_jobs(&claim(&c, "b", later, vec![(JobKind::SnosRun, 1)])).await.unwrap();
    assert_eq!(b.len(), 1, "expired lease must be reclaimable");
    let b = &b[0];
    assert_eq!(b.status, JobStatus::Processing);
    assert_eq!(b.epoch.0, a.epoch.0 + 1);
    assert_eq!(b.attempts, a.attempts + 1, "an orphaned Processing job spends an attempt");
    assert_eq!(b.lease.as_ref().unwrap().owner.0, "b");
    let mut late = a.clone();
    late.status = JobStatus::Completed;
    let r = db.update_job(write(&late, later)).await;
    assert!(matches!(r, Err(Error::VersionConflict { .. })), "stale worker's write must be fenced: {r:?}");
    let mut good = b.clone();
    good.status = JobStatus::Completed;
    good.lease = None;
    assert!(db.update_job(write(&good, later)).await.is_ok());
}

/// Rule 4: per-kind limits, only the wanted kinds, lowest blocks first.
pub async fn claim_respects_kinds_limits_and_block_order(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let mut jobs = vec![];
    for b in [5, 3, 9, 1, 7] {
        jobs.push(new_job(&c, JobKind::SnosRun, b));
        jobs.push(new_job(&c, JobKind::DataSubmission, b));
    }
    create(&*db, jobs).await;
    let got = db.claim_jobs(&claim(&c, "w", T0, vec![(JobKind::SnosRun, 2)])).await.unwrap();
    let blocks: Vec<_> = got.iter().map(|j| (j.kind(), j.range().first())).collect();
    assert_eq!(blocks, vec![(JobKind::SnosRun, 1), (JobKind::SnosRun, 3)]);
    let got =
        db.claim_jobs(&claim(&c, "w", T0, vec![(JobKind::SnosRun, 1), (JobKind::DataSubmission, 2)])).await.unwrap();
    let mut blocks: Vec<_> = got.iter().map(|j| (j.kind(), j.range().first())).collect();
    blocks.sort();
    assert_eq!(blocks, vec![(JobKind::SnosRun, 5), (JobKind::DataSubmission, 1), (JobKind::DataSubmission, 3)]);
}

/// Rule 4: PendingVerification stays PendingVerification when claimed (a verification poll);
/// Completed, Failed, Cancelled and VerificationTimeout are never claimed.
pub async fn claim_status_rules(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let statuses = [
        JobStatus::PendingVerification,
        JobStatus::PendingRetry,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::VerificationTimeout,
    ];
    let created =
        create(&*db, (0..statuses.len() as u64).map(|b| new_job(&c, JobKind::ProofCreation, b)).collect()).await;
    for (job, status) in created.iter().zip(statuses) {
        let mut j = job.clone();
        j.status = status;
        db.update_job(write(&j, T0)).await.unwrap();
    }
    let got = db.claim_jobs(&claim(&c, "w", T0, vec![(JobKind::ProofCreation, 100)])).await.unwrap();
    let mut seen: Vec<_> = got.iter().map(|j| (j.range().first(), j.status, j.attempts)).collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![(0, JobStatus::PendingVerification, 0), (1, JobStatus::Processing, 0)],
        "only PendingVerification and PendingRetry were claimable"
    );
}

/// Rule 4: concurrent claimers never get the same job.
pub async fn concurrent_claims_never_share_a_job(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let n = 120u64;
    create(&*db, (0..n).map(|b| new_job(&c, JobKind::SnosRun, b)).collect()).await;
    let mut tasks = Vec::new();
    for w in 0..6 {
        let db = db.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = db.claim_jobs(&claim(&c, &format!("w{w}"), T0, vec![(JobKind::SnosRun, 7)])).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    assert_claimed_once(tasks, n).await;
}

/// Rule 5: wake moves waiting Created jobs of the targets to now, nothing else; no version bump.
pub async fn wake_touches_only_waiting_created_jobs(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let mut waiting = new_job(&c, JobKind::StateTransition, 4);
    waiting.next_run_at = Timestamp(T0.0 + 60_000);
    let mut other_block = new_job(&c, JobKind::StateTransition, 5);
    other_block.next_run_at = Timestamp(T0.0 + 60_000);
    let mut other_kind = new_job(&c, JobKind::ProofCreation, 4);
    other_kind.next_run_at = Timestamp(T0.0 + 60_000);
    let jobs = create(&*db, vec![waiting, other_block, other_kind]).await;
    let now = Timestamp(T0.0 + 10);
    let woken = db.wake_jobs(&c, &[(JobKind::StateTransition, 4)], now).await.unwrap();
    assert_eq!(woken, vec![(jobs[0].id, jobs[0].epoch)]);
    let w = db.get_job(jobs[0].id).await.unwrap();
    assert_eq!(w.next_run_at, now);
    assert_eq!(w.version, jobs[0].version, "wake must not bump the version");
    assert_eq!(db.get_job(jobs[1].id).await.unwrap(), jobs[1]);
    assert_eq!(db.get_job(jobs[2].id).await.unwrap(), jobs[2]);
    assert_eq!(db.claim_jobs(&claim(&c, "w", now, vec![(JobKind::StateTransition, 9)])).await.unwrap().len(), 1);
    let again = db.wake_jobs(&c, &[(JobKind::StateTransition, 4)], now).await.unwrap();
    assert!(again.is_empty(), "a claimed job is not woken");
}

/// Rule 5a: lease extension is fenced on the epoch and keeps the version.
pub async fn extend_lease_is_fenced_on_epoch(db: Arc<dyn Database>) {
    let c = fresh_chain();
    create(&*db, vec![new_job(&c, JobKind::SnosRun, 1)]).await;
    let a = db.claim_jobs(&claim(&c, "a", T0, vec![(JobKind::SnosRun, 1)])).await.unwrap().remove(0);
    let until = Timestamp(T0.0 + 90_000);
    db.extend_lease(a.id, a.epoch, until).await.unwrap();
    let j = db.get_job(a.id).await.unwrap();
    assert_eq!(j.lease.as_ref().unwrap().until, until);
    assert_eq!((j.version, j.epoch), (a.version, a.epoch));
    assert!(db
        .claim_jobs(&claim(&c, "b", Timestamp(T0.0 + 60_000), vec![(JobKind::SnosRun, 1)]))
        .await
        .unwrap()
        .is_empty());
    let b = db.claim_jobs(&claim(&c, "b", until, vec![(JobKind::SnosRun, 1)])).await.unwrap().remove(0);
    let r = db.extend_lease(a.id, a.epoch, Timestamp(until.0 + 1)).await;
    assert!(matches!(r, Err(Error::VersionConflict { .. })), "{r:?}");
    // The holder's own next write still applies after an extension.
    db.extend_lease(b.id, b.epoch, Timestamp(until.0 + 5_000)).await.unwrap();
    let mut done = b.clone();
    done.status = JobStatus::Completed;
    assert!(db.update_job(write(&done, until)).await.is_ok());
}

/// Rule 6: filters, keyset pages, both orders.
pub async fn list_filters_and_pages(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let mut jobs = vec![];
    for b in 0..10 {
        jobs.push(new_job(&c, JobKind::SnosRun, b));
        jobs.push(new_job(&c, JobKind::StateTransition, b));
    }
    let created = create(&*db, jobs).await;
    let st4 = created.iter().find(|j| j.kind() == JobKind::StateTransition && j.range().first() == 4).unwrap();
    let mut failed = st4.clone();
    failed.status = JobStatus::Failed;
    db.update_job(write(&failed, T0)).await.unwrap();

    let mut q = JobQuery::all(c.clone(), 7);
    let page1 = db.list_jobs(&q).await.unwrap();
    let keys: Vec<_> = page1.iter().map(|j| (j.range().first(), j.kind())).collect();
    assert_eq!(keys[..3], [(0, JobKind::SnosRun), (0, JobKind::StateTransition), (1, JobKind::SnosRun)]);
    assert_eq!(page1.len(), 7);
    q.after = Some(page1.last().unwrap().key.clone());
    let page2 = db.list_jobs(&q).await.unwrap();
    assert_eq!(page2.first().map(|j| (j.range().first(), j.kind())), Some((3, JobKind::StateTransition)));
    let mut all = page1.clone();
    all.extend(page2);
    q.after = Some(all.last().unwrap().key.clone());
    all.extend(db.list_jobs(&q).await.unwrap());
    assert_eq!(all.len(), 20, "pages cover everything once");

    let mut q = JobQuery::all(c.clone(), 100);
    q.kinds = vec![JobKind::StateTransition];
    q.statuses = vec![JobStatus::Failed];
    let f = db.list_jobs(&q).await.unwrap();
    assert_eq!(f.iter().map(|j| j.id).collect::<Vec<_>>(), vec![st4.id]);

    let mut q = JobQuery::all(c.clone(), 3);
    q.kinds = vec![JobKind::SnosRun];
    q.order = Order::Descending;
    q.first_block = Some((2, 8));
    let d: Vec<_> = db.list_jobs(&q).await.unwrap().iter().map(|j| j.range().first()).collect();
    assert_eq!(d, vec![8, 7, 6]);
    q.after = Some(key(&c, JobKind::SnosRun, 6));
    let d: Vec<_> = db.list_jobs(&q).await.unwrap().iter().map(|j| j.range().first()).collect();
    assert_eq!(d, vec![5, 4, 3]);
}

/// Rule 6: counts per (kind, status), zeros omitted.
pub async fn counts_per_kind_and_status(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let jobs = create(&*db, (0..3).map(|b| new_job(&c, JobKind::DataSubmission, b)).collect()).await;
    let mut done = jobs[0].clone();
    done.status = JobStatus::Completed;
    db.update_job(write(&done, T0)).await.unwrap();
    let mut counts = db.count_jobs(&c).await.unwrap();
    counts.sort_by_key(|s| (s.kind, s.status));
    let got: Vec<_> = counts.iter().map(|s| (s.kind, s.status, s.count)).collect();
    assert_eq!(
        got,
        vec![(JobKind::DataSubmission, JobStatus::Created, 2), (JobKind::DataSubmission, JobStatus::Completed, 1)]
    );
}

/// Rule 8: another chain's jobs are invisible.
pub async fn chains_are_isolated(db: Arc<dyn Database>) {
    let (a, b) = (fresh_chain(), fresh_chain());
    create(&*db, vec![new_job(&a, JobKind::SnosRun, 1)]).await;
    assert!(db.claim_jobs(&claim(&b, "w", T0, vec![(JobKind::SnosRun, 9)])).await.unwrap().is_empty());
    assert!(db.list_jobs(&JobQuery::all(b.clone(), 9)).await.unwrap().is_empty());
    assert!(db.count_jobs(&b).await.unwrap().is_empty());
    assert_eq!(db.get_job_by_key(&key(&b, JobKind::SnosRun, 1)).await.unwrap(), None);
    assert!(db.create_job(new_job(&b, JobKind::SnosRun, 1), T0).await.unwrap().is_new());
}

/// Rule 7: heartbeats upsert (keeping the first start time) and list by recency.
pub async fn worker_registry_upserts_and_lists_recent(db: Arc<dyn Database>) {
    let id = WorkerId::random("suite");
    let mut w = WorkerInfo {
        id: id.clone(),
        mode: "all".into(),
        host: "h".into(),
        version: "0".into(),
        started_at: T0,
        heartbeat_at: T0,
    };
    db.heartbeat(&w).await.unwrap();
    w.heartbeat_at = Timestamp(T0.0 + 5_000);
    w.started_at = Timestamp(T0.0 + 4_000);
    db.heartbeat(&w).await.unwrap();
    let recent = db.workers(Timestamp(T0.0 + 5_000)).await.unwrap();
    let mine: Vec<_> = recent.iter().filter(|x| x.id == id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].heartbeat_at, Timestamp(T0.0 + 5_000));
    assert_eq!(mine[0].started_at, T0, "start time is kept");
    assert!(db.workers(Timestamp(T0.0 + 5_001)).await.unwrap().iter().all(|x| x.id != id));
}

/// Rule 7: a leader lease is exclusive until it expires; the holder can renew it.
pub async fn leader_lease_is_exclusive_until_expiry(db: Arc<dyn Database>) {
    let name = format!("lead-{}", fresh_chain());
    let (a, b) = (WorkerId("a".into()), WorkerId("b".into()));
    assert!(db.try_lead(&name, &a, T0, Timestamp(T0.0 + 100)).await.unwrap());
    assert!(!db.try_lead(&name, &b, Timestamp(T0.0 + 99), Timestamp(T0.0 + 200)).await.unwrap());
    assert!(db.try_lead(&name, &a, Timestamp(T0.0 + 50), Timestamp(T0.0 + 300)).await.unwrap());
    assert!(!db.try_lead(&name, &b, Timestamp(T0.0 + 299), Timestamp(T0.0 + 400)).await.unwrap());
    assert!(db.try_lead(&name, &b, Timestamp(T0.0 + 300), Timestamp(T0.0 + 400)).await.unwrap());
}

/// Rule 9: imported records come back verbatim (job and history), a repeat import is a no-op,
/// a taken key is refused, and the engine's operations continue on imported jobs.
pub async fn import_restores_records_verbatim(db: Arc<dyn Database>) {
    let c = fresh_chain();
    let t = |ms| Timestamp(T0.0 + ms);
    let transition = |at, from, to, reason: &str, attempt, epoch| Transition {
        at: t(at),
        from,
        to,
        reason: reason.into(),
        attempt,
        actor: Some(WorkerId("w-old".into())),
        epoch: Epoch(epoch),
    };
    let mut done = new_job(&c, JobKind::ProofCreation, 4).into_job(T0);
    done.key.range = BlockRange::new(4, 6).unwrap();
    done.status = JobStatus::Completed;
    done.version = Version(5);
    done.epoch = Epoch(2);
    done.attempts = 2;
    done.deps = vec![key(&c, JobKind::SnosRun, 4)];
    done.meta.intent = Some("submit:4-6".into());
    done.meta.external_ref = Some("task-9".into());
    done.meta.artifacts.insert("proof".into(), ObjectKey::new("c/proof-4.bin").unwrap());
    done.last_error = Some("prover: timeout".into());
    done.updated_at = t(900);
    let done_history = vec![
        transition(10, JobStatus::Created, JobStatus::Processing, "claimed", 1, 1),
        transition(20, JobStatus::Processing, JobStatus::PendingRetry, "prover: timeout", 1, 1),
        transition(30, JobStatus::PendingRetry, JobStatus::Processing, "claimed", 2, 2),
        transition(40, JobStatus::Processing, JobStatus::Completed, "verified", 2, 2),
    ];
    // Leased by a worker of the old store, lease long expired: claimable at once.
    let mut leased = new_job(&c, JobKind::SnosRun, 7).into_job(T0);
    leased.status = JobStatus::Processing;
    leased.version = Version(2);
    leased.epoch = Epoch(1);
    leased.attempts = 1;
    leased.lease = Some(Lease { owner: WorkerId("w-old".into()), until: t(50) });
    let leased_history = vec![transition(5, JobStatus::Created, JobStatus::Processing, "claimed", 1, 1)];
    let fresh = new_job(&c, JobKind::SnosRun, 8).into_job(T0);
    let records = vec![
        JobRecord { job: done.clone(), history: done_history.clone() },
        JobRecord { job: leased.clone(), history: leased_history.clone() },
        JobRecord { job: fresh.clone(), history: vec![] },
    ];

    assert_eq!(db.import_jobs(&records).await.unwrap(), vec![true, true, true]);
    for r in &records {
        assert_eq!(db.get_job(r.job.id).await.unwrap(), r.job, "imported job must read back verbatim");
        assert_eq!(db.get_job_by_key(&r.job.key).await.unwrap().as_ref(), Some(&r.job));
        assert_eq!(db.history(r.job.id).await.unwrap(), r.history, "imported history must read back in order");
    }
    let listed = db.list_jobs(&JobQuery::all(c.clone(), 100)).await.unwrap();
    assert_eq!(listed.len(), 3, "imported jobs must be listed");
    assert_eq!(db.import_jobs(&records).await.unwrap(), vec![false, false, false], "a repeat import changes nothing");

    let mut usurper = records[2].clone();
    usurper.job.id = JobId::random();
    let e = db.import_jobs(&[usurper.clone()]).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "a taken key must be refused, got {e:?}");
    assert!(matches!(db.get_job(usurper.job.id).await, Err(Error::NotFound { .. })));
    let mut corrupt = records[0].clone();
    corrupt.job.id = JobId::random();
    corrupt.job.key = key(&c, JobKind::DataSubmission, 99);
    corrupt.job.version = Version(1);
    assert!(matches!(db.import_jobs(&[corrupt]).await, Err(Error::InvalidInput { .. })));

    // The engine carries on: the expired lease is reclaimed with the next epoch, and a write
    // appends to the imported history.
    let got = db.claim_jobs(&claim(&c, "w-new", t(1_000), vec![(JobKind::SnosRun, 10)])).await.unwrap();
    let reclaimed = got.iter().find(|j| j.id == leased.id).expect("expired imported lease must be claimable");
    assert_eq!(reclaimed.epoch, Epoch(2));
    assert!(got.iter().any(|j| j.id == fresh.id), "an imported due job must be claimable");
    let mut next = reclaimed.clone();
    next.status = JobStatus::PendingVerification;
    let tr = transition(1_100, JobStatus::Processing, JobStatus::PendingVerification, "processed", 2, 2);
    db.update_job(JobWrite { job: next, transition: Some(tr.clone()), now: t(1_100) }).await.unwrap();
    let h = db.history(leased.id).await.unwrap();
    assert_eq!(&h[..1], &leased_history[..], "imported history must stay first");
    assert_eq!(h.last(), Some(&tr), "new transitions append after imported ones");
}

/// `migrate` is idempotent.
pub async fn migrate_is_idempotent(db: Arc<dyn Database>) {
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();
}

/// Runs every Database case as its own `#[tokio::test]`. `$make` is an expression of type
/// `impl Future<Output = Option<Arc<dyn Database>>>`; `None` skips (print why before returning).
#[macro_export]
macro_rules! database_suite {
    ($make:expr) => {
        $crate::database_suite!(@cases $make;
            create_if_absent_returns_existing_job,
            created_job_round_trips_every_field,
            create_batch_reports_each_job_in_order,
            lookups_of_unknown_jobs,
            update_with_current_version_applies,
            update_with_stale_version_conflicts_and_changes_nothing,
            batch_update_items_are_independent,
            claim_leases_due_job_and_records_transition,
            claim_skips_job_with_live_lease,
            claim_skips_jobs_not_yet_due,
            expired_lease_is_reclaimed_and_stale_writer_fenced,
            claim_respects_kinds_limits_and_block_order,
            claim_status_rules,
            concurrent_claims_never_share_a_job,
            wake_touches_only_waiting_created_jobs,
            extend_lease_is_fenced_on_epoch,
            list_filters_and_pages,
            counts_per_kind_and_status,
            chains_are_isolated,
            worker_registry_upserts_and_lists_recent,
            leader_lease_is_exclusive_until_expiry,
            import_restores_records_verbatim,
            migrate_is_idempotent
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(db) = $make.await else { return };
                $crate::suite::database::$case(db).await;
            }
        )*
    };
}
