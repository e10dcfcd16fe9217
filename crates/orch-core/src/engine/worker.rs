//! Worker loops: claim due jobs in batches, run their handlers under a renewed lease, write the
//! results in one batch, then wake whatever the results unblocked.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use tracing::{debug, info, warn};

use super::graph;
use super::handler::{JobCtx, JobHandler, Outcome, Verdict};
use super::stats::Stats;
use super::{Shared, TimeoutPolicy};
use crate::alerts::{Alert, Severity};
use crate::error::{Error, Result};
use crate::events::JobEvent;
use crate::job::{ClaimRequest, Job, JobWrite, Transition, WorkerInfo};
use crate::queue::{OutMessage, WakeMessage};
use crate::state::{transition, Event};
use crate::types::{Epoch, JobId, JobKind, JobStatus, Timestamp};

/// Reserves up to `want` slots of a kind's in-flight budget; returns how many it got. A
/// shortfall marks the instance starved, so that the next [`release`] wakes the workers.
fn reserve(sh: &Shared, kind: JobKind, want: u32) -> u32 {
    let limit = sh.cfg.in_flight_limit(kind);
    let slot = &sh.in_flight[kind.index()];
    let mut cur = slot.load(Ordering::SeqCst);
    let mut marked = false;
    loop {
        let take = want.min(limit.saturating_sub(cur));
        if take < want && !marked {
            // Marked before looking again: a release after the mark sees it and wakes us; a
            // release before it is seen by the second look.
            sh.starved.store(true, Ordering::SeqCst);
            marked = true;
            cur = slot.load(Ordering::SeqCst);
            continue;
        }
        if take == 0 {
            return 0;
        }
        match slot.compare_exchange_weak(cur, cur + take, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return take,
            Err(now) => cur = now,
        }
    }
}

/// Returns `n` slots of a kind's budget; wakes the workers if a reservation fell short since
/// the last wake (otherwise nobody is waiting for capacity, and waking them would only send
/// claims that find nothing).
fn release(sh: &Shared, kind: JobKind, n: u32) {
    if n > 0 {
        sh.in_flight[kind.index()].fetch_sub(n, Ordering::SeqCst);
        if sh.starved.swap(false, Ordering::SeqCst) {
            sh.work.notify_waiters();
        }
    }
}

/// Waits for a wake-up, the sweep interval, or shutdown.
async fn idle(sh: &Shared, notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) {
    tokio::select! {
        _ = notified => {}
        _ = tokio::time::sleep(sh.cfg.poll_interval) => {}
        _ = sh.shutdown.cancelled() => {}
    }
}

pub(crate) async fn worker_loop(sh: Arc<Shared>, n: usize) {
    debug!(target: "orch::engine", worker = %sh.worker_id, n, "worker started");
    let mut db_backoff = Duration::from_millis(50);
    while !sh.shutdown.is_cancelled() {
        // Registered before claiming, so a notification sent while we claim is not lost.
        let notified = sh.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let mut wants = Vec::with_capacity(JobKind::COUNT);
        for kind in JobKind::ALL {
            if sh.handlers[kind.index()].is_some() {
                let got = reserve(&sh, kind, sh.cfg.claim_batch);
                if got > 0 {
                    wants.push((kind, got));
                }
            }
        }
        if wants.is_empty() {
            idle(&sh, notified).await;
            continue;
        }
        // A bounded number of claims at a time per instance (`concurrent_claims`): claims
        // beyond a few take the same due jobs from the store's index, only to step over the
        // rows the others locked, and contend for the same index pages; a second one keeps the
        // store busy while the first one's result travels back. Results are written
        // concurrently, without a bound.
        let claim_turn = sh.claiming.acquire().await;
        let now = sh.clock.now();
        let req = ClaimRequest {
            chain: sh.chain.clone(),
            owner: sh.worker_id.clone(),
            now,
            lease_until: now.plus(sh.cfg.lease),
            wants: wants.clone(),
        };
        let claimed = sh.db.claim_jobs(&req).await;
        drop(claim_turn);
        let claimed = match claimed {
            Ok(c) => {
                db_backoff = Duration::from_millis(50);
                c
            }
            Err(e) => {
                for (k, w) in &wants {
                    release(&sh, *k, *w);
                }
                Stats::add(&sh.stats.db_errors, 1);
                warn!(target: "orch::engine", error = %e, backoff_ms = db_backoff.as_millis() as u64, "claim failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(db_backoff) => {}
                    _ = sh.shutdown.cancelled() => {}
                }
                db_backoff = (db_backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut counts = [0u32; JobKind::COUNT];
        for j in &claimed {
            counts[j.kind().index()] += 1;
        }
        for (k, w) in &wants {
            release(&sh, *k, w - counts[k.index()].min(*w));
        }
        if claimed.is_empty() {
            idle(&sh, notified).await;
            continue;
        }
        Stats::add(&sh.stats.claimed, claimed.len() as u64);

        let results = join_all(claimed.into_iter().map(|job| run_job(&sh, job))).await;
        let writes: Vec<JobWrite> = results.into_iter().flatten().collect();
        flush(&sh, writes).await;
        // Freed capacity wakes the workers that are waiting for it (see `release`).
        for kind in JobKind::ALL {
            release(&sh, kind, counts[kind.index()]);
        }
    }
    debug!(target: "orch::engine", worker = %sh.worker_id, n, "worker stopped");
}

/// Writes a batch of results, retrying a failing backend for up to one lease; then reacts to
/// what was written. A batch that cannot be written is abandoned: the leases lapse and the jobs
/// run again, which is safe because handlers are idempotent.
async fn flush(sh: &Shared, writes: Vec<JobWrite>) {
    if writes.is_empty() {
        return;
    }
    let deadline = sh.clock.now().plus(sh.cfg.lease);
    let mut delay = Duration::from_millis(20);
    let results = loop {
        match sh.db.update_jobs(&writes).await {
            Ok(r) => break r,
            Err(e) => {
                Stats::add(&sh.stats.db_errors, 1);
                if sh.clock.now() >= deadline || !e.is_retryable() {
                    warn!(target: "orch::engine", error = %e, jobs = writes.len(), "could not write job results; leases will lapse and the jobs run again");
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    let now = sh.clock.now();
    let mut wake = Vec::new();
    let mut hints = Vec::new();
    let mut deferred = Vec::new();
    for (w, r) in writes.into_iter().zip(results) {
        match r {
            Ok(job) => {
                if let Some(t) = w.transition {
                    after_transition(sh, &job, &t, &mut wake, &mut deferred);
                    if sh.events.is_active() {
                        sh.events.publish(JobEvent { job_id: job.id, key: job.key.clone(), transition: t });
                    }
                }
                if job.next_run_at > now && job.next_run_at != Timestamp::NEVER {
                    hints.push((job.id, job.kind(), job.epoch, job.next_run_at.since(now)));
                }
            }
            Err(e) => {
                Stats::add(&sh.stats.conflicts, 1);
                info!(target: "orch::engine", job_id = %w.job.id, key = %w.job.key, error = %e, "result dropped: job was taken over");
            }
        }
    }
    for job in deferred {
        // The dependency may have completed between our check and our write, and its wake-up
        // found the job still claimed: look once more now that the write is visible.
        if deps_ready(sh, &job).await.unwrap_or(false) {
            wake.push((job.kind(), job.range().first()));
        }
    }
    if !wake.is_empty() {
        match sh.db.wake_jobs(&sh.chain, &wake, now).await {
            Ok(woken) if !woken.is_empty() => {
                sh.work.notify_waiters();
                for (id, epoch) in woken {
                    // Kind is informative only; the receiver claims whatever is due.
                    hints.push((id, JobKind::StateTransition, epoch, Duration::ZERO));
                }
            }
            Ok(_) => {}
            Err(e) => {
                Stats::add(&sh.stats.db_errors, 1);
                debug!(target: "orch::engine", error = %e, "wake failed; dependents will be found by the sweep");
            }
        }
    }
    // Jobs due again before the next sweep (a short verification poll, a quick retry) would
    // otherwise wait for it: wake this instance's workers when they fall due.
    if let Some(soonest) = hints.iter().map(|h| h.3).filter(|d| *d < sh.cfg.poll_interval).min() {
        let work = sh.work_handle();
        tokio::spawn(async move {
            tokio::time::sleep(soonest).await;
            work.notify_waiters();
        });
    }
    send_hints(sh, hints).await;
}

fn after_transition(sh: &Shared, job: &Job, t: &Transition, wake: &mut Vec<(JobKind, u64)>, deferred: &mut Vec<Job>) {
    match t.to {
        JobStatus::Completed => {
            Stats::add(&sh.stats.completed, 1);
            wake.extend(graph::dependents(job.kind(), job.range()));
        }
        JobStatus::PendingRetry => Stats::add(&sh.stats.retried, 1),
        JobStatus::Failed => {
            Stats::add(&sh.stats.failed, 1);
            let alert = Alert {
                severity: Severity::Critical,
                key: format!("job-failed:{}", job.key),
                summary: format!("job {} failed after {} attempts", job.key, job.attempts),
                details: job.last_error.clone().unwrap_or_default(),
            };
            let alerts = sh.alerts.clone();
            tokio::spawn(async move {
                if let Err(e) = alerts.send(alert).await {
                    warn!(target: "orch::engine", error = %e, "alert not sent");
                }
            });
        }
        JobStatus::Created if t.from == JobStatus::Processing => {
            Stats::add(&sh.stats.deferred, 1);
            // Only a deferral for incomplete dependencies is re-checked: a handler that said
            // "not my turn" (`Outcome::Wait`) must wait out its delay, not be woken at once.
            if t.reason == WAITING_FOR_DEPS {
                deferred.push(job.clone());
            }
        }
        _ => {}
    }
}

async fn send_hints(sh: &Shared, hints: Vec<(JobId, JobKind, Epoch, Duration)>) {
    let Some(q) = &sh.queue else { return };
    if !sh.cfg.queue_hints || hints.is_empty() {
        return;
    }
    let max = q.capabilities().max_delay;
    let msgs = hints
        .into_iter()
        .map(|(id, kind, epoch, delay)| OutMessage {
            payload: WakeMessage::new(id, kind, epoch).encode(),
            delay: delay.min(max),
        })
        .collect();
    if let Err(e) = q.send(msgs).await {
        // Hints are an optimisation: the sweep finds the jobs anyway.
        debug!(target: "orch::engine", error = %e, "queue hint not sent");
    }
}

pub(crate) async fn deps_ready(sh: &Shared, job: &Job) -> Result<bool> {
    for dep in &job.deps {
        match sh.db.get_job_by_key(dep).await? {
            Some(d) if d.status == JobStatus::Completed => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Runs a future while renewing the job's lease every third of its length. Losing the lease
/// (epoch moved on) abandons the future.
async fn under_lease<T>(sh: &Shared, (id, epoch): (JobId, Epoch), fut: impl Future<Output = Result<T>>) -> Result<T> {
    let every = sh.cfg.lease / 3;
    tokio::pin!(fut);
    // Most handlers finish without waiting on anything: don't arm a timer for them.
    if let std::task::Poll::Ready(r) = futures::poll!(&mut fut) {
        return r;
    }
    loop {
        tokio::select! {
            r = &mut fut => return r,
            () = tokio::time::sleep(every) => {
                let until = sh.clock.now().plus(sh.cfg.lease);
                match sh.db.extend_lease(id, epoch, until).await {
                    Ok(()) => {}
                    Err(e @ Error::VersionConflict { .. }) => return Err(e),
                    Err(e) => {
                        // Transient: keep working. If the lease lapses meanwhile, the fence
                        // rejects our result and the new holder's counts.
                        warn!(target: "orch::engine", job_id = %id, error = %e, "lease renewal failed");
                    }
                }
            }
        }
    }
}

/// Builds the write that moves `job` (as the handler left it) with `event`.
fn write(
    sh: &Shared,
    mut job: Job,
    event: Event,
    reason: impl Into<String>,
    next_run_at: Timestamp,
) -> Option<JobWrite> {
    let now = sh.clock.now();
    let from = job.status;
    let to = match transition(from, event) {
        Ok(to) => to,
        Err(e) => {
            warn!(target: "orch::engine", job_id = %job.id, error = %e, "engine bug: invalid transition skipped");
            return None;
        }
    };
    job.status = to;
    job.lease = None;
    job.next_run_at = next_run_at;
    let transition = (from != to).then(|| Transition {
        at: now,
        from,
        to,
        reason: reason.into(),
        attempt: job.attempts,
        actor: Some(sh.worker_id.clone()),
        epoch: job.epoch,
    });
    Some(JobWrite { job, transition, now })
}

fn fail(sh: &Shared, mut job: Job, reason: String, retryable: bool, retry_after: Option<Duration>) -> Option<JobWrite> {
    let now = sh.clock.now();
    job.attempts += 1;
    let left = retryable && job.attempts < job.max_attempts;
    job.last_error = Some(reason.clone());
    let next = if left {
        let seed = job.id.seed();
        let d = sh.cfg.retry.delay(job.attempts, seed).max(retry_after.unwrap_or_default());
        now.plus(d)
    } else {
        Timestamp::NEVER
    };
    warn!(target: "orch::engine", job_id = %job.id, key = %job.key, attempt = job.attempts, retry = left, error = %reason, "job attempt failed");
    job.verify_deadline = None;
    write(sh, job, Event::Failed { attempts_left: left }, reason, next)
}

/// A retryable error (a service down or overloaded): try again with backoff, without spending
/// one of the job's attempts, so an outage of any length never fails jobs. Attempts count only
/// definitive failures (a task failed, a transaction reverted, a non-retryable error). Every
/// tenth consecutive transient failure raises a warning alert.
fn transient(sh: &Shared, mut job: Job, e: &Error) -> Option<JobWrite> {
    let n = job.meta.transient_failures.saturating_add(1);
    job.meta.transient_failures = n;
    let seed = job.id.seed();
    let delay = sh.cfg.retry.delay(n, seed).max(e.retry_after().unwrap_or_default());
    let reason = e.to_string();
    job.last_error = Some(reason.clone());
    warn!(target: "orch::engine", job_id = %job.id, key = %job.key, transient_failures = n, error = %reason, "transient failure; retrying");
    if n.is_multiple_of(10) {
        let alert = Alert {
            severity: Severity::Warning,
            key: format!("job-transient:{}", job.key),
            summary: format!("job {} keeps failing transiently ({n} times)", job.key),
            details: reason.clone(),
        };
        let alerts = sh.alerts.clone();
        tokio::spawn(async move {
            let _ = alerts.send(alert).await;
        });
    }
    let next = sh.clock.now().plus(delay);
    write(sh, job, Event::Failed { attempts_left: true }, reason, next)
}

/// Transition reason of a job put back because its dependencies are incomplete.
const WAITING_FOR_DEPS: &str = "waiting for dependencies";

/// Runs one claimed job; returns the write that records its result (none if the job was lost).
async fn run_job(sh: &Shared, job: Job) -> Option<JobWrite> {
    let handler = sh.handlers[job.kind().index()].clone()?;
    let now = sh.clock.now();
    match job.status {
        JobStatus::PendingVerification => {
            Stats::add(&sh.stats.verify_checks, 1);
            if job.verify_deadline.is_some_and(|d| now > d) {
                let mut job = job;
                return match sh.cfg.on_verify_timeout {
                    TimeoutPolicy::Wait => write(sh, job, Event::TimedOut, "verification timed out", Timestamp::NEVER),
                    TimeoutPolicy::Reprocess => {
                        job.meta.external_ref = None;
                        fail(sh, job, "verification timed out; processing again".into(), true, None)
                    }
                };
            }
            let (job, verdict) = run_step(sh, &*handler, job, |h, ctx| h.verify(ctx)).await?;
            record_verdict(sh, job, verdict, Check::Scheduled)
        }
        JobStatus::Processing => {
            if job.attempts >= job.max_attempts {
                return fail(sh, job, "abandoned by crashed or stalled workers too many times".into(), false, None);
            }
            match deps_ready(sh, &job).await {
                Ok(true) => {}
                Ok(false) => {
                    let next = now.plus(sh.cfg.dependency_poll);
                    return write(sh, job, Event::Deferred, WAITING_FOR_DEPS, next);
                }
                Err(e) => {
                    let next = now.plus(sh.cfg.poll_interval);
                    return write(sh, job, Event::Deferred, format!("dependency check failed: {e}"), next);
                }
            }
            let (job, res) = run_step(sh, &*handler, job, |h, ctx| h.process(ctx)).await?;
            let now = sh.clock.now();
            match res {
                Ok(Outcome::Done) => write(sh, job, Event::ProcessedDone, "processed", Timestamp::NEVER),
                Ok(Outcome::Verify { after }) if after.is_zero() => {
                    // Nothing to wait for: verify under the same claim instead of writing,
                    // re-claiming and writing again.
                    Stats::add(&sh.stats.verify_checks, 1);
                    let (job, verdict) = run_step(sh, &*handler, job, |h, ctx| h.verify(ctx)).await?;
                    record_verdict(sh, job, verdict, Check::Inline)
                }
                Ok(Outcome::Verify { after }) => to_verification(sh, job, now, after),
                Ok(Outcome::Wait { after }) => write(sh, job, Event::Deferred, "not its turn yet", now.plus(after)),
                Err(e) if e.is_retryable() => transient(sh, job, &e),
                Err(e) => fail(sh, job, e.to_string(), false, None),
            }
        }
        other => {
            warn!(target: "orch::engine", job_id = %job.id, status = %other, "claimed a job in a status that is not claimable; ignoring");
            None
        }
    }
}

/// Runs one handler step (`process` or `verify`) on `job` under its claim's lease; returns the
/// job as the step left it, with the step's result. `None` if the job was lost to another
/// worker (a version conflict): nothing of this run may be written.
async fn run_step<T>(
    sh: &Shared,
    handler: &dyn JobHandler,
    job: Job,
    step: impl for<'a> FnOnce(&'a dyn JobHandler, &'a mut JobCtx) -> BoxFuture<'a, Result<T>>,
) -> Option<(Job, Result<T>)> {
    let claim = (job.id, job.epoch);
    let mut ctx = JobCtx::new(job, sh.db.clone(), sh.clock.clone(), sh.worker_id.clone());
    let res = under_lease(sh, claim, step(handler, &mut ctx)).await;
    let job = ctx.into_job();
    match res {
        Err(Error::VersionConflict { .. }) => {
            Stats::add(&sh.stats.conflicts, 1);
            None
        }
        res => Some((job, res)),
    }
}

/// Which verification check a verdict answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// A check of a job in `PendingVerification`.
    Scheduled,
    /// The check run right after `process`, under the same claim: the job is still
    /// `Processing`, and anything short of `Done` or `Failed` sends it to verification.
    Inline,
}

/// Builds the write that records a verification verdict.
fn record_verdict(sh: &Shared, mut job: Job, verdict: Result<Verdict>, check: Check) -> Option<JobWrite> {
    let now = sh.clock.now();
    let after = match verdict {
        Ok(Verdict::Done) => {
            return match check {
                Check::Scheduled => write(sh, job, Event::Verified, "verified", Timestamp::NEVER),
                Check::Inline => write(sh, job, Event::ProcessedDone, "processed and verified", Timestamp::NEVER),
            };
        }
        Ok(Verdict::Failed { reason }) => return fail(sh, job, reason, true, None),
        Ok(Verdict::Pending { after }) => after,
        // Not confirmed yet (or the check failed): verify later as usual.
        Err(_) if check == Check::Inline => sh.cfg.verify_poll.max(Duration::from_millis(1)),
        Err(e) if e.is_retryable() => {
            // The check itself failed (RPC down): look again later, no attempt spent; the
            // verification deadline bounds this.
            job.last_error = Some(e.to_string());
            e.retry_after().unwrap_or(sh.cfg.verify_poll)
        }
        Err(e) => return fail(sh, job, e.to_string(), false, None),
    };
    match check {
        Check::Scheduled => write(sh, job, Event::StillPending, "", now.plus(after)),
        Check::Inline => to_verification(sh, job, now, after),
    }
}

/// Builds the write that moves a processed job to verification, first checked `after` from `now`.
fn to_verification(sh: &Shared, mut job: Job, now: Timestamp, after: Duration) -> Option<JobWrite> {
    job.verify_deadline = Some(now.plus(sh.cfg.verify_timeout));
    write(sh, job, Event::ProcessedNeedsVerification, "processed; verifying", now.plus(after))
}

/// Receives queue hints and wakes the workers. A malformed message is logged and dropped.
pub(crate) async fn queue_listener(sh: Arc<Shared>) {
    let Some(q) = sh.queue.clone() else { return };
    let mut backoff = Duration::from_millis(100);
    while !sh.shutdown.is_cancelled() {
        let got = tokio::select! {
            r = q.receive(256, sh.cfg.lease, sh.cfg.poll_interval) => r,
            _ = sh.shutdown.cancelled() => break,
        };
        match got {
            Ok(deliveries) => {
                backoff = Duration::from_millis(100);
                if deliveries.is_empty() {
                    continue;
                }
                let mut valid = 0;
                for d in &deliveries {
                    match WakeMessage::decode(&d.payload) {
                        Ok(_) => valid += 1,
                        Err(e) => {
                            Stats::add(&sh.stats.malformed_messages, 1);
                            warn!(target: "orch::engine", error = %e, bytes = d.payload.len(), "dropping malformed queue message");
                        }
                    }
                }
                let receipts: Vec<_> = deliveries.into_iter().map(|d| d.receipt).collect();
                if let Err(e) = q.ack(&receipts).await {
                    debug!(target: "orch::engine", error = %e, "ack failed; messages will be redelivered (harmless)");
                }
                if valid > 0 {
                    sh.work.notify_waiters();
                }
            }
            Err(e) => {
                warn!(target: "orch::engine", error = %e, "queue receive failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = sh.shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Keeps this instance's row in the worker registry fresh.
pub(crate) async fn heartbeat_loop(sh: Arc<Shared>) {
    let started_at = sh.clock.now();
    let mode = match (sh.roles.create, sh.roles.work) {
        (true, true) => "all",
        (true, false) => "watcher",
        (false, true) => "worker",
        (false, false) => "idle",
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    while !sh.shutdown.is_cancelled() {
        let info = WorkerInfo {
            id: sh.worker_id.clone(),
            mode: mode.into(),
            host: host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            heartbeat_at: sh.clock.now(),
        };
        if let Err(e) = sh.db.heartbeat(&info).await {
            debug!(target: "orch::engine", error = %e, "heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = sh.shutdown.cancelled() => {}
        }
    }
}
