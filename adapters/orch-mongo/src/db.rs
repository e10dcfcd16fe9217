//! The [`Database`] implementation. docs.md lists every query with the index serving it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, to_bson, to_document, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, PartialBulkWriteResult, WriteFailure};
use mongodb::options::{UpdateModifications, UpdateOneModel};
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, Order, StatusCount, Transition, WorkerInfo,
};
use orch_core::state::{claim_counts_attempt, claimed_status};
use orch_core::types::{BlockNumber, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, Timestamp, WorkerId};

use crate::codec::{
    corrupt, due_at, int, kind_code, ts, CountDoc, HistoryDoc, JobDoc, KeyDoc, TransitionDoc, WorkerDoc,
};
use crate::error::{is_duplicate_key, map_err, BACKEND, DUPLICATE_KEY};
use crate::MongoStore;

/// Rounds of candidates a claim reads per kind when other claimers took some of them first.
const CLAIM_ROUNDS: usize = 3;

/// Largest page `list_jobs` returns.
const MAX_PAGE: u32 = 10_000;

/// Fewest updates one `bulkWrite` command carries when a batch is split across concurrent
/// commands (a batch is split into at most `concurrency` commands).
const MIN_BULK: usize = 8;

/// Wake targets of one kind whose first blocks are at most this far apart are read with one
/// index range instead of one query each.
const WAKE_GAP: i64 = 16;

/// CommandNotFound: a server without the `bulkWrite` command.
const COMMAND_NOT_FOUND: i32 = 59;

/// One single-document conditional update of a batch: filter and modifications.
type CondUpdate = (Document, UpdateModifications);

/// Reads never fetch the embedded history.
fn no_history() -> Document {
    doc! { "history": 0 }
}

/// `{ $lt: v + 1 }`: "at most `v`" for integer fields, written with an exclusive bound.
///
/// SecantusDB (the test server) drops documents equal to an inclusive upper bound (`$lte`)
/// on a compound-index field that has an equality prefix and trailing fields (docs.md has the
/// reproduction); the exclusive form selects the same integers on every server.
pub(crate) fn at_most(v: i64) -> Document {
    match v.checked_add(1) {
        Some(next) => doc! { "$lt": next },
        None => doc! { "$lte": v },
    }
}

/// The filter selecting one job by its key (served by `jobs_key`).
pub(crate) fn key_filter(k: &KeyDoc) -> Document {
    doc! { "chain": &k.chain, "first": k.first, "last": k.last, "kind": k.kind }
}

/// The filter of a claim's candidate query (served by `jobs_due`).
///
/// The range is bounded on both sides (`due_at` is never negative): a one-sided bound makes
/// SecantusDB walk the index entries of every non-claimable job (`due_at` null) too.
pub(crate) fn due_filter(chain: &ChainId, kind: JobKind, now: Timestamp) -> Document {
    let mut due = at_most(ts(now));
    due.insert("$gte", 0_i64);
    doc! { "chain": chain.as_str(), "kind": kind_code(kind), "due_at": due }
}

/// The sort of a claim's candidate query: the order of `jobs_due` after its equality prefix.
pub(crate) fn due_sort() -> Document {
    doc! { "due_at": 1, "first": 1 }
}

/// The filter finding wake candidates of one kind starting at blocks `lo..=hi`: an equality
/// prefix of `jobs_status` (and one equality on `first` when `lo == hi`, else a range bounded
/// on both sides, the upper one exclusive — see [`at_most`]).
pub(crate) fn wake_filter(chain: &ChainId, kind: i32, lo: i64, hi: i64) -> Document {
    let first = if lo == hi {
        Bson::Int64(lo)
    } else {
        let mut r = at_most(hi);
        r.insert("$gte", lo);
        Bson::Document(r)
    };
    doc! {
        "chain": chain.as_str(),
        "status": JobStatus::Created.as_str(),
        "kind": kind,
        "first": first,
    }
}

/// Sorted, deduplicated block numbers cut into `(lo, hi)` runs whose neighbours are at most
/// [`WAKE_GAP`] apart.
pub(crate) fn clusters(mut firsts: Vec<i64>) -> Vec<(i64, i64)> {
    firsts.sort_unstable();
    firsts.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for f in firsts {
        match out.last_mut() {
            Some((_, hi)) if f.saturating_sub(*hi) <= WAKE_GAP => *hi = f,
            _ => out.push((f, f)),
        }
    }
    out
}

/// How a listing is read: a few index ranges with equality prefixes, merged here.
///
/// * `$in` lists of kinds and statuses are fanned out into one query per (kind, status)
///   combination, each an equality prefix of `jobs_kind` / `jobs_status` / `jobs_key`
///   (MongoDB would merge-sort `$in` branches itself; SecantusDB answers any `$in` with a
///   collection scan).
/// * A keyset cursor `(first, last, kind) > after` is split into the jobs at the cursor's
///   own first block (an equality on `first`; the rest of the comparison is made here) and
///   the jobs strictly past it (a plain range on `first`), so no `$or` is needed.
///
/// Every part is sorted in index order and limited to the page size; the merged result is
/// sorted and cut to the page.
#[derive(Debug)]
pub(crate) struct ListPlan {
    /// Filters, each with the `(last, kind)` its jobs must come after when it is a cursor tie.
    pub(crate) parts: Vec<(Document, Option<(i64, i32)>)>,
    /// The order of every part.
    pub(crate) sort: Document,
    /// `1` ascending, `-1` descending.
    pub(crate) dir: i32,
}

pub(crate) fn list_query(q: &JobQuery) -> Result<ListPlan> {
    let mut bases = vec![doc! { "chain": q.chain.as_str() }];
    // With statuses, every kind is named too: `jobs_status` has `kind` before `first`.
    let kinds: &[JobKind] = if q.kinds.is_empty() && !q.statuses.is_empty() { &JobKind::ALL } else { &q.kinds };
    if !kinds.is_empty() {
        let mut kinds: Vec<i32> = kinds.iter().map(|k| kind_code(*k)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        bases = bases
            .into_iter()
            .flat_map(|b| {
                kinds.iter().map(move |k| {
                    let mut b = b.clone();
                    b.insert("kind", *k);
                    b
                })
            })
            .collect();
    }
    if !q.statuses.is_empty() {
        let mut statuses: Vec<&str> = q.statuses.iter().map(|s| s.as_str()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        bases = bases
            .into_iter()
            .flat_map(|b| {
                statuses.iter().map(move |st| {
                    let mut b = b.clone();
                    b.insert("status", *st);
                    b
                })
            })
            .collect();
    }
    // Bounds on `first`, inclusive.
    let (mut lo, mut hi) = (0_i64, i64::MAX);
    if let Some((from, to)) = q.first_block {
        lo = int(from, "first_block")?;
        hi = i64::try_from(to).unwrap_or(i64::MAX);
    }
    let dir = match q.order {
        Order::Ascending => 1,
        Order::Descending => -1,
    };
    let mut parts = Vec::new();
    if let Some(after) = &q.after {
        let a = KeyDoc::from_key(after)?;
        if lo <= a.first && a.first <= hi {
            for b in &bases {
                let mut f = b.clone();
                f.insert("first", a.first);
                parts.push((f, Some((a.last, a.kind))));
            }
        }
        if dir == 1 {
            match a.first.checked_add(1) {
                Some(next) => lo = lo.max(next),
                None => hi = -1,
            }
        } else {
            hi = hi.min(a.first - 1);
        }
    }
    if lo <= hi {
        for mut f in bases {
            // Always both bounds: SecantusDB walks far more of the index for a one-sided range.
            let mut first = at_most(hi);
            first.insert("$gte", lo);
            f.insert("first", first);
            parts.push((f, None));
        }
    }
    Ok(ListPlan { parts, sort: doc! { "first": dir, "last": dir, "kind": dir }, dir })
}

/// What a wake reads of a candidate.
#[derive(Debug, serde::Deserialize)]
struct Waiting {
    #[serde(rename = "_id")]
    id: String,
    epoch: i64,
    kind: i32,
    first: i64,
    last: i64,
    next_run_at: i64,
}

fn parse_id(s: &str) -> Result<JobId> {
    JobId::parse(s).map_err(|_| corrupt(format!("job id {s:?}")))
}

fn bson_of<T: serde::Serialize>(v: &T) -> Result<Bson> {
    to_bson(v).map_err(|e| Error::internal_from("encoding a mongo document", e))
}

/// A claimed job, with what it is ordered by.
struct Claimed {
    due: i64,
    job: Job,
}

impl MongoStore {
    fn m(&self) -> impl Fn(mongodb::error::Error) -> Error + '_ {
        move |e| map_err(e, &self.inner.ctx)
    }

    async fn find_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        let k = KeyDoc::from_key(key)?;
        let found = self.inner.jobs.find_one(key_filter(&k)).projection(no_history()).await.map_err(self.m())?;
        found.map(JobDoc::into_job).transpose()
    }

    async fn job_exists(&self, id: &str) -> Result<bool> {
        let found = self
            .inner
            .jobs
            .clone_with_type::<Document>()
            .find_one(doc! { "_id": id })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(self.m())?;
        Ok(found.is_some())
    }

    /// NotFound or VersionConflict for a conditional write on `id` that matched nothing.
    async fn missed(&self, id: &str, what: String) -> Error {
        match self.job_exists(id).await {
            Ok(true) => Error::conflict(what),
            Ok(false) => Error::not_found(format!("job {id}")),
            Err(e) => e,
        }
    }

    /// The update of one conditional write (contract rule 3), and the job as it will be
    /// stored: filtered on id, key, version and epoch; `$set` of the record, `$inc version`
    /// and `$push` of the transition in one atomic document update.
    fn write_op(w: &JobWrite) -> Result<(CondUpdate, Job)> {
        let job = &w.job;
        let mut stored = JobDoc::from_job(job)?;
        stored.updated_at = ts(w.now);
        let push = w.transition.as_ref().map(TransitionDoc::from_transition).transpose()?;
        let filter = doc! {
            "_id": &stored.id,
            "version": stored.version,
            "epoch": stored.epoch,
            "chain": &stored.chain,
            "kind": stored.kind,
            "first": stored.first,
            "last": stored.last,
        };
        let mut set = to_document(&stored).map_err(|e| Error::internal_from("encoding a job document", e))?;
        for k in ["_id", "version", "epoch", "chain", "kind", "first", "last"] {
            set.remove(k);
        }
        let mut update = doc! { "$set": set, "$inc": { "version": 1_i64 } };
        if let Some(t) = push {
            update.insert("$push", doc! { "history": bson_of(&t)? });
        }
        let mut out = job.clone();
        out.version.0 += 1;
        out.updated_at = w.now;
        Ok(((filter, update.into()), out))
    }

    /// Applies single-document conditional updates on `jobs`; for each, in order, whether it
    /// matched a document, or the error the server gave that update alone. `Err` is for the
    /// backend failing as a whole (updates sent before it may have been applied).
    ///
    /// On a server with `bulkWrite` (MongoDB 8.0+) the batch travels in a few unordered
    /// `bulkWrite` commands (at most `concurrency`, at least [`MIN_BULK`] updates each) whose
    /// per-update results say which matched; otherwise it is one `update_one` per update,
    /// `concurrency` at a time.
    async fn apply_updates(&self, ops: Vec<CondUpdate>) -> Result<Vec<Result<bool>>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let size = ops.len().div_ceil(self.inner.concurrency.max(1)).max(MIN_BULK);
        let futs: Vec<_> = ops.chunks(size).map(|chunk| self.apply_chunk(chunk)).collect();
        let parts: Vec<Result<Vec<Result<bool>>>> =
            futures::stream::iter(futs).buffered(self.inner.concurrency).collect().await;
        let mut out = Vec::with_capacity(ops.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    async fn apply_chunk(&self, ops: &[CondUpdate]) -> Result<Vec<Result<bool>>> {
        if self.inner.bulk.load(Ordering::Relaxed) {
            if let Some(out) = self.bulk_chunk(ops).await? {
                return Ok(out);
            }
        }
        let futs: Vec<_> = ops
            .iter()
            .map(|(filter, update)| async move {
                match self.inner.jobs.update_one(filter.clone(), update.clone()).await {
                    Ok(r) => Ok(r.matched_count > 0),
                    Err(e) => Err(map_err(e, &self.inner.ctx)),
                }
            })
            .collect();
        Ok(futures::stream::iter(futs).buffered(self.inner.concurrency).collect().await)
    }

    /// One unordered `bulkWrite`; `None` when the server has no such command (nothing was
    /// written, and later batches skip straight to `update_one`).
    async fn bulk_chunk(&self, ops: &[CondUpdate]) -> Result<Option<Vec<Result<bool>>>> {
        let ns = self.inner.jobs.namespace();
        let models: Vec<UpdateOneModel> = ops
            .iter()
            .map(|(filter, update)| {
                UpdateOneModel::builder().namespace(ns.clone()).filter(filter.clone()).update(update.clone()).build()
            })
            .collect();
        let e = match self.inner.db.client().bulk_write(models).ordered(false).verbose_results().await {
            Ok(r) => {
                let out = (0..ops.len())
                    .map(|i| match r.update_results.get(&i) {
                        Some(u) => Ok(u.matched_count > 0),
                        None => Err(Error::internal(format!("bulkWrite reported no result for update {i}"))),
                    })
                    .collect();
                return Ok(Some(out));
            }
            Err(e) => e,
        };
        match &*e.kind {
            // No such command here: fall back (nothing was written).
            ErrorKind::IncompatibleServer { .. } => {}
            ErrorKind::Command(c) if c.code == COMMAND_NOT_FOUND => {}
            // Some updates failed on their own; the others have results.
            ErrorKind::BulkWrite(b) if b.write_concern_errors.is_empty() && std::error::Error::source(&e).is_none() => {
                let done = match &b.partial_result {
                    Some(PartialBulkWriteResult::Verbose(v)) => Some(&v.update_results),
                    _ => None,
                };
                let mut out = Vec::with_capacity(ops.len());
                for i in 0..ops.len() {
                    if let Some(w) = b.write_errors.get(&i) {
                        let one = mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(w.clone())));
                        out.push(Err(map_err(one, &self.inner.ctx)));
                    } else if let Some(u) = done.and_then(|d| d.get(&i)) {
                        out.push(Ok(u.matched_count > 0));
                    } else {
                        // Neither a result nor an error: the command did not get that far.
                        return Err(map_err(e, &self.inner.ctx));
                    }
                }
                return Ok(Some(out));
            }
            _ => return Err(map_err(e, &self.inner.ctx)),
        }
        if self.inner.bulk.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "orch::mongo", error = %e, "server has no bulkWrite (MongoDB < 8.0): writing one update at a time");
        }
        Ok(None)
    }

    /// The lock claims of `kind` on `chain` take turns on.
    fn claim_lock(&self, chain: &ChainId, kind: JobKind) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.claim_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry((chain.as_str().to_owned(), kind_code(kind))).or_default().clone()
    }

    /// Stores one exported record verbatim (contract rule 9): one `insert_one` of the job with
    /// its history embedded, so the record is atomic; a refused insert is resolved by `_id`.
    async fn import_one(&self, r: &JobRecord) -> Result<bool> {
        let job = &r.job;
        let mut d =
            to_document(&JobDoc::from_job(job)?).map_err(|e| Error::internal_from("encoding a job document", e))?;
        let history = r.history.iter().map(TransitionDoc::from_transition).collect::<Result<Vec<_>>>()?;
        d.insert("history", bson_of(&history)?);
        let e = match self.inner.jobs.clone_with_type::<Document>().insert_one(d).await {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => e,
            Err(e) => return Err(map_err(e, &self.inner.ctx)),
        };
        let stored = self
            .inner
            .jobs
            .find_one(doc! { "_id": job.id.to_string() })
            .projection(no_history())
            .await
            .map_err(self.m())?;
        match stored.map(JobDoc::into_job).transpose()? {
            Some(cur) if cur.key == job.key => Ok(false),
            Some(cur) => Err(Error::already_exists(format!(
                "job id {} (stored with key {}, imported with key {})",
                job.id, cur.key, job.key
            ))),
            None => {
                let holder = self.find_by_key(&job.key).await?.map(|j| j.id.to_string()).unwrap_or_default();
                tracing::debug!(target: "orch::mongo", error = %e, "import refused by the job key index");
                Err(Error::already_exists(format!(
                    "job key {} (held by job {holder}, imported as job {})",
                    job.key, job.id
                )))
            }
        }
    }

    /// The update claiming one candidate read at `version` — it matches only if nobody wrote
    /// the job since and it is still due — and the job as the claim leaves it; `None` for a
    /// status that cannot be claimed.
    fn claim_op(req: &ClaimRequest, cand: JobDoc) -> Result<Option<(CondUpdate, Claimed)>> {
        let due = cand.due_at.unwrap_or(i64::MIN);
        let mut job = cand.into_job()?;
        let from = job.status;
        let Some(to) = claimed_status(from) else { return Ok(None) };
        let sid = job.id.to_string();
        let lease = Lease { owner: req.owner.clone(), until: req.lease_until };
        let attempts = job.attempts + u32::from(claim_counts_attempt(from));
        let epoch = Epoch(job.epoch.0 + 1);
        let filter = doc! { "_id": &sid, "version": int(job.version.0, "version")?, "due_at": at_most(ts(req.now)) };
        let mut update = doc! {
            "$set": {
                "status": to.as_str(),
                "attempts": i64::from(attempts),
                "lease_owner": &lease.owner.0,
                "lease_until": ts(lease.until),
                "updated_at": ts(req.now),
                "due_at": due_at(to, job.next_run_at, Some(&lease)),
            },
            "$inc": { "version": 1_i64, "epoch": 1_i64 },
        };
        if from != to {
            let t = Transition {
                at: req.now,
                from,
                to,
                reason: "claimed".into(),
                attempt: attempts,
                actor: Some(req.owner.clone()),
                epoch,
            };
            update.insert("$push", doc! { "history": bson_of(&TransitionDoc::from_transition(&t)?)? });
        }
        job.status = to;
        job.attempts = attempts;
        job.epoch = epoch;
        job.version.0 += 1;
        job.lease = Some(lease);
        job.updated_at = req.now;
        Ok(Some(((filter, update.into()), Claimed { due, job })))
    }

    /// Up to `n` due jobs of one kind: candidates from `jobs_due` in (due, block) order, all
    /// taken in one batch of conditional updates ([`MongoStore::apply_updates`]); candidates
    /// lost to claimers of other stores are replaced by reading again, a few rounds at most.
    /// Claims of one `(chain, kind)` through this store take turns, so they do not compete for
    /// the same candidates.
    async fn claim_kind(&self, req: &ClaimRequest, kind: JobKind, n: u32) -> Result<Vec<Job>> {
        let lock = self.claim_lock(&req.chain, kind);
        let _turn = lock.lock().await;
        let mut got: Vec<Claimed> = Vec::new();
        for _ in 0..CLAIM_ROUNDS {
            let want = n as usize - got.len();
            let cands: Vec<JobDoc> = self
                .inner
                .jobs
                .find(due_filter(&req.chain, kind, req.now))
                .sort(due_sort())
                .limit(i64::try_from(want).unwrap_or(i64::MAX))
                .projection(no_history())
                .await
                .map_err(self.m())?
                .try_collect()
                .await
                .map_err(self.m())?;
            let read = cands.len();
            let mut lost = 0;
            let mut ops = Vec::with_capacity(read);
            let mut pending = Vec::with_capacity(read);
            for c in cands {
                match Self::claim_op(req, c)? {
                    Some((op, claimed)) => {
                        ops.push(op);
                        pending.push(claimed);
                    }
                    None => lost += 1,
                }
            }
            for (r, c) in self.apply_updates(ops).await?.into_iter().zip(pending) {
                if r? {
                    got.push(c);
                } else {
                    lost += 1;
                }
            }
            if lost == 0 || read < want || got.len() >= n as usize {
                break;
            }
        }
        got.sort_by_key(|c| (c.due, c.job.key.range.first(), c.job.key.range.last()));
        Ok(got.into_iter().map(|c| c.job).collect())
    }
}

#[async_trait]
impl Database for MongoStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        crate::schema::migrate(&self.inner.db, &self.inner.ctx).await
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // A key repeated inside the batch resolves to its first occurrence.
        enum Slot {
            Insert(usize),
            SameAs(usize),
        }
        let mut first_of: HashMap<JobKey, usize> = HashMap::new();
        let mut slots = Vec::with_capacity(jobs.len());
        let mut new_jobs: Vec<Job> = Vec::new();
        let mut docs: Vec<JobDoc> = Vec::new();
        for (i, nj) in jobs.into_iter().enumerate() {
            let job = nj.into_job(now);
            if let Some(&j) = first_of.get(&job.key) {
                slots.push(Slot::SameAs(j));
                continue;
            }
            first_of.insert(job.key.clone(), i);
            docs.push(JobDoc::from_job(&job)?);
            new_jobs.push(job);
            slots.push(Slot::Insert(docs.len() - 1));
        }
        // One unordered insert; the unique `jobs_key` index refuses taken keys.
        let mut taken: HashSet<usize> = HashSet::new();
        if let Err(e) = self.inner.jobs.insert_many(&docs).ordered(false).await {
            let only_duplicates = match &*e.kind {
                ErrorKind::InsertMany(m) => {
                    m.write_concern_error.is_none()
                        && m.write_errors
                            .as_ref()
                            .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.code == DUPLICATE_KEY))
                }
                _ => false,
            };
            if !only_duplicates {
                return Err(map_err(e, &self.inner.ctx));
            }
            if let ErrorKind::InsertMany(m) = &*e.kind {
                taken.extend(m.write_errors.iter().flatten().map(|w| w.index));
            }
        }
        // Each refused job: the stored job holding its key (one `jobs_key` seek each).
        let mut existing: HashMap<usize, Job> = HashMap::new();
        let futs: Vec<_> = taken.iter().map(|&i| self.find_by_key(&new_jobs[i].key)).collect();
        let found: Vec<Result<Option<Job>>> =
            futures::stream::iter(futs).buffered(self.inner.concurrency).collect().await;
        let lookups = taken.iter().copied().zip(found);
        for (i, r) in lookups {
            match r? {
                Some(j) => {
                    existing.insert(i, j);
                }
                // The key is free, so the `_id` was the duplicate: a job id reused for another key.
                None => return Err(Error::already_exists(format!("job id {}", new_jobs[i].id))),
            }
        }
        let mut out: Vec<Created> = Vec::with_capacity(slots.len());
        for slot in slots {
            let c = match slot {
                Slot::Insert(i) => match existing.remove(&i) {
                    Some(j) => Created::Existing(j),
                    None => Created::New(new_jobs[i].clone()),
                },
                Slot::SameAs(j) => Created::Existing(out[j].job().clone()),
            };
            out.push(c);
        }
        Ok(out)
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        let found = self
            .inner
            .jobs
            .find_one(doc! { "_id": id.to_string() })
            .projection(no_history())
            .await
            .map_err(self.m())?;
        found.ok_or_else(|| Error::not_found(format!("job {id}")))?.into_job()
    }

    async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        self.find_by_key(key).await
    }

    async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>> {
        let mut out: Vec<Option<Result<Job>>> = (0..writes.len()).map(|_| None).collect();
        let mut ops = Vec::with_capacity(writes.len());
        let mut sent: Vec<(usize, Job)> = Vec::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            match Self::write_op(w) {
                Ok((op, job)) => {
                    ops.push(op);
                    sent.push((i, job));
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        let mut missed = Vec::new();
        for (r, (i, job)) in self.apply_updates(ops).await?.into_iter().zip(sent) {
            match r {
                Ok(true) => out[i] = Some(Ok(job)),
                Ok(false) => missed.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        // A write that matched nothing: the job moved on (conflict) or does not exist.
        let futs: Vec<_> = missed
            .iter()
            .map(|&i| {
                let id = writes[i].job.id;
                async move { (i, self.missed(&id.to_string(), format!("job {id}")).await) }
            })
            .collect();
        let answers: Vec<(usize, Error)> = futures::stream::iter(futs).buffered(self.inner.concurrency).collect().await;
        for (i, e) in answers {
            out[i] = Some(Err(e));
        }
        let mut results = Vec::with_capacity(out.len());
        for r in out {
            match r.unwrap_or_else(|| Err(Error::internal("update_jobs lost an item"))) {
                // Per-item outcomes, decided before the item wrote anything.
                r @ (Ok(_)
                | Err(Error::VersionConflict { .. } | Error::NotFound { .. } | Error::InvalidInput { .. })) => {
                    results.push(r)
                }
                // A failing backend fails the call (items already applied stay applied).
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>> {
        let mut out = Vec::new();
        for (kind, n) in &req.wants {
            if *n > 0 {
                out.extend(self.claim_kind(req, *kind, *n).await?);
            }
        }
        Ok(out)
    }

    /// Targets are grouped per kind into runs of nearby blocks (`clusters`); each run is one
    /// read of `jobs_status` (status `created`, that kind, its blocks), the untargeted blocks
    /// of a run are dropped here, and every job still waiting is moved by one conditional
    /// update on `_id`, status, epoch and `next_run_at` (one batch for all targets).
    async fn wake_jobs(
        &self,
        chain: &ChainId,
        targets: &[(JobKind, BlockNumber)],
        now: Timestamp,
    ) -> Result<Vec<(JobId, Epoch)>> {
        // Each target's position, so results come back in target order.
        let mut position: HashMap<(i32, i64), usize> = HashMap::new();
        let mut by_kind: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (pos, (kind, first)) in targets.iter().enumerate() {
            let (k, f) = (kind_code(*kind), int(*first, "block")?);
            position.entry((k, f)).or_insert(pos);
            by_kind.entry(k).or_default().push(f);
        }
        let runs: Vec<(i32, i64, i64)> = by_kind
            .into_iter()
            .flat_map(|(k, firsts)| clusters(firsts).into_iter().map(move |(lo, hi)| (k, lo, hi)))
            .collect();
        let reads: Vec<_> = runs
            .iter()
            .map(|&(k, lo, hi)| async move {
                self.inner
                    .jobs
                    .clone_with_type::<Waiting>()
                    .find(wake_filter(chain, k, lo, hi))
                    .projection(doc! { "_id": 1, "epoch": 1, "kind": 1, "first": 1, "last": 1, "next_run_at": 1 })
                    .await
                    .map_err(self.m())?
                    .try_collect::<Vec<Waiting>>()
                    .await
                    .map_err(self.m())
            })
            .collect();
        let found: Vec<Result<Vec<Waiting>>> =
            futures::stream::iter(reads).buffered(self.inner.concurrency).collect().await;
        // A pipeline update, so that `due_at` stays the later of `next_run_at` and a lease.
        let update = UpdateModifications::Pipeline(vec![doc! { "$set": {
            "next_run_at": ts(now),
            "due_at": { "$max": [ts(now), { "$ifNull": ["$lease_until", 0_i64] }] },
        } }]);
        let mut ops = Vec::new();
        let mut waiting = Vec::new();
        for w in found.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten() {
            let Some(&pos) = position.get(&(w.kind, w.first)) else { continue };
            if w.next_run_at <= ts(now) {
                continue;
            }
            let filter = doc! {
                "_id": &w.id,
                "status": JobStatus::Created.as_str(),
                "epoch": w.epoch,
                "next_run_at": { "$gt": ts(now) },
            };
            ops.push((filter, update.clone()));
            waiting.push((pos, w));
        }
        let mut woken = Vec::new();
        for (r, (pos, w)) in self.apply_updates(ops).await?.into_iter().zip(waiting) {
            if r? {
                let epoch = u64::try_from(w.epoch).map_err(|_| corrupt(format!("negative epoch {}", w.epoch)))?;
                woken.push((pos, w.last, parse_id(&w.id)?, Epoch(epoch)));
            }
        }
        woken.sort();
        Ok(woken.into_iter().map(|(_, _, id, e)| (id, e)).collect())
    }

    async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()> {
        let sid = id.to_string();
        let claimable: Vec<&str> =
            JobStatus::ALL.into_iter().filter(|s| s.is_claimable()).map(|s| s.as_str()).collect();
        let filter = doc! {
            "_id": &sid,
            "epoch": i64::try_from(epoch.0).unwrap_or(-1),
            "lease_owner": { "$ne": Bson::Null },
        };
        // A pipeline update keeps `due_at` = max(next_run_at, lease) for claimable statuses.
        let update = vec![doc! { "$set": {
            "lease_until": ts(until),
            "due_at": { "$cond": [
                { "$in": ["$status", claimable] },
                { "$max": ["$next_run_at", ts(until)] },
                Bson::Null,
            ] },
        } }];
        let r = self.inner.jobs.update_one(filter, update).await.map_err(self.m())?;
        if r.matched_count == 1 {
            Ok(())
        } else {
            Err(self.missed(&sid, format!("lease of job {id}")).await)
        }
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let limit = query.limit.min(MAX_PAGE) as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let plan = list_query(query)?;
        let (sort, dir) = (&plan.sort, plan.dir);
        let futs: Vec<_> = plan
            .parts
            .iter()
            .map(|(filter, tie)| async move {
                let mut docs: Vec<JobDoc> = self
                    .inner
                    .jobs
                    .find(filter.clone())
                    .sort(sort.clone())
                    .limit(limit as i64)
                    .projection(no_history())
                    .await
                    .map_err(self.m())?
                    .try_collect()
                    .await
                    .map_err(self.m())?;
                if let Some(cursor) = tie {
                    docs.retain(|d| if dir == 1 { (d.last, d.kind) > *cursor } else { (d.last, d.kind) < *cursor });
                }
                Ok::<_, Error>(docs)
            })
            .collect();
        let parts: Vec<Result<Vec<JobDoc>>> =
            futures::stream::iter(futs).buffered(self.inner.concurrency).collect().await;
        let mut docs = Vec::new();
        for p in parts {
            docs.extend(p?);
        }
        docs.sort_by_key(|d| (d.first, d.last, d.kind));
        if plan.dir == -1 {
            docs.reverse();
        }
        docs.truncate(limit);
        docs.into_iter().map(JobDoc::into_job).collect()
    }

    async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>> {
        let pipeline = vec![
            doc! { "$match": { "chain": chain.as_str() } },
            doc! { "$group": { "_id": { "kind": "$kind", "status": "$status" }, "n": { "$sum": 1_i64 } } },
        ];
        let rows: Vec<CountDoc> = self
            .inner
            .jobs
            .aggregate(pipeline)
            .with_type::<CountDoc>()
            .await
            .map_err(self.m())?
            .try_collect()
            .await
            .map_err(self.m())?;
        let mut out = rows.into_iter().map(CountDoc::into_count).collect::<Result<Vec<_>>>()?;
        out.retain(|c| c.count > 0);
        out.sort_by_key(|c| (c.kind, c.status));
        Ok(out)
    }

    async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>> {
        for r in records {
            r.validate()?;
        }
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(self.import_one(r).await?);
        }
        Ok(out)
    }

    async fn history(&self, id: JobId) -> Result<Vec<Transition>> {
        let found = self
            .inner
            .jobs
            .clone_with_type::<HistoryDoc>()
            .find_one(doc! { "_id": id.to_string() })
            .projection(doc! { "_id": 0, "history": 1 })
            .await
            .map_err(self.m())?;
        let h = found.ok_or_else(|| Error::not_found(format!("job {id}")))?;
        h.history.into_iter().map(TransitionDoc::into_transition).collect()
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        let workers = self.inner.workers.clone_with_type::<Document>();
        let write = || {
            workers
                .update_one(
                    doc! { "_id": &worker.id.0 },
                    doc! {
                        "$set": {
                            "mode": &worker.mode,
                            "host": &worker.host,
                            "version": &worker.version,
                            "heartbeat_at": ts(worker.heartbeat_at),
                            // Wall-clock time for the TTL index (heartbeat_at may be a test clock's).
                            "seen": DateTime::now(),
                        },
                        "$setOnInsert": { "started_at": ts(worker.started_at) },
                    },
                )
                .upsert(true)
        };
        match write().await {
            // A concurrent first heartbeat of the same worker inserted the row: update it.
            Err(e) if is_duplicate_key(&e) => write().await.map(|_| ()).map_err(self.m()),
            other => other.map(|_| ()).map_err(self.m()),
        }
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>> {
        let docs: Vec<WorkerDoc> = self
            .inner
            .workers
            .find(doc! { "heartbeat_at": { "$gte": ts(since) } })
            .sort(doc! { "heartbeat_at": 1 })
            .projection(doc! { "seen": 0 })
            .await
            .map_err(self.m())?
            .try_collect()
            .await
            .map_err(self.m())?;
        docs.into_iter().map(WorkerDoc::into_worker).collect()
    }

    async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool> {
        // Matches a lease that is expired or already ours; a live lease of someone else makes
        // the upsert try to insert a second `_id`, which the server refuses (duplicate key).
        let filter = doc! {
            "_id": name,
            "$or": [ { "until": { "$lte": ts(now) } }, { "owner": &owner.0 } ],
        };
        let update = doc! { "$set": { "owner": &owner.0, "until": ts(until) } };
        match self.inner.leaders.update_one(filter, update).upsert(true).await {
            Ok(r) => Ok(r.matched_count == 1 || r.upserted_id.is_some()),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(map_err(e, &self.inner.ctx)),
        }
    }
}

#[cfg(test)]
mod plans {
    //! Every engine query is answered from an index: asks the live server (when
    //! `ORCH_TEST_MONGO_URL` is set) to explain each one and fails on a collection scan.

    use orch_core::job::JobQuery;
    use orch_core::types::{BlockRange, JobKey, JobKind, JobStatus};

    use super::*;
    use crate::MongoConfig;

    fn plan_of(explain: &Document) -> String {
        let planner = explain.get_document("queryPlanner").ok().or_else(|| {
            // Aggregations nest the planner in their first stage.
            explain
                .get_array("stages")
                .ok()
                .and_then(|s| s.first())
                .and_then(|s| s.as_document())
                .and_then(|s| s.get_document("$cursor").ok())
                .and_then(|c| c.get_document("queryPlanner").ok())
        });
        match planner.and_then(|p| p.get_document("winningPlan").ok()) {
            Some(p) => p.to_string(),
            None => explain.to_string(),
        }
    }

    fn assert_indexed(what: &str, explain: &Document) {
        let plan = plan_of(explain);
        assert!(!plan.contains("COLLSCAN"), "{what} scans the collection: {plan}");
        assert!(
            ["IXSCAN", "IDHACK", "EXPRESS", "DISTINCT_SCAN", "COUNT_SCAN"].iter().any(|s| plan.contains(s)),
            "{what} uses no index: {plan}"
        );
        let index = plan.split("\"indexName\": \"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("_id_");
        println!("{what}: {index}");
    }

    /// An equality on `_id` as the filter's first field: MongoDB answers it from the `_id_`
    /// index whatever else the filter says. (SecantusDB's `explain` reports such filters as
    /// `COLLSCAN`, yet its `update_one` / `find_one` take them by `_id`: docs.md has timings.)
    fn assert_id_lookup(what: &str, filter: &Document) {
        let first = filter.iter().next();
        assert!(
            matches!(first, Some((k, Bson::String(_))) if k == "_id"),
            "{what} must lead with an _id equality: {filter}"
        );
        println!("{what}: _id_");
    }

    #[tokio::test]
    async fn every_engine_query_is_an_index_lookup() {
        let Ok(url) = std::env::var("ORCH_TEST_MONGO_URL") else {
            eprintln!("skipping: set ORCH_TEST_MONGO_URL (scripts/services.sh does)");
            return;
        };
        let mut config = MongoConfig::new(url);
        config.database = format!("orchtest_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let store = MongoStore::connect_and_migrate(config).await.unwrap();
        let c = ChainId::new("plans").unwrap();
        let key = |kind, b| JobKey { chain: c.clone(), kind, range: BlockRange::single(b) };
        let jobs = (0..20)
            .flat_map(|b| [JobKind::SnosRun, JobKind::StateTransition].map(|k| (k, b)))
            .map(|(k, b)| NewJob {
                id: JobId::random(),
                key: key(k, b),
                max_attempts: 3,
                next_run_at: Timestamp(b * 10),
                deps: vec![],
                meta: Default::default(),
            })
            .collect();
        store.create_jobs(jobs, Timestamp(0)).await.unwrap();
        let db = &store.inner.db;
        let find = |what: &'static str, filter: Document, sort: Option<Document>| async move {
            let mut cmd = doc! { "find": "jobs", "filter": filter };
            if let Some(s) = sort {
                cmd.insert("sort", s);
            }
            let out = db.run_command(doc! { "explain": cmd, "verbosity": "queryPlanner" }).await.unwrap();
            assert_indexed(what, &out);
        };
        let id = JobId::random().to_string();
        find("claim: candidates", due_filter(&c, JobKind::SnosRun, Timestamp(100)), Some(due_sort())).await;
        assert_id_lookup("claim: take one", &doc! { "_id": &id, "version": 1_i64, "due_at": at_most(100) });
        find("get_job / history", doc! { "_id": &id }, None).await;
        let k = KeyDoc::from_key(&key(JobKind::SnosRun, 3)).unwrap();
        find("get_job_by_key / create lookups", key_filter(&k), None).await;
        find("wake_jobs: candidates, one block", wake_filter(&c, kind_code(JobKind::SnosRun), 3, 3), None).await;
        find("wake_jobs: candidates, a run of blocks", wake_filter(&c, kind_code(JobKind::SnosRun), 3, 7), None).await;
        assert_id_lookup(
            "wake_jobs: move one",
            &doc! { "_id": &id, "status": "created", "epoch": 0_i64, "next_run_at": { "$gt": 5_i64 } },
        );
        assert_id_lookup("extend_lease", &doc! { "_id": &id, "epoch": 1_i64, "lease_owner": { "$ne": Bson::Null } });
        let mut write = doc! { "_id": &id, "version": 1_i64, "epoch": 0_i64 };
        write.extend(key_filter(&k));
        assert_id_lookup("update_jobs", &write);
        let list = |what: &'static str, q: JobQuery| async move {
            let plan = list_query(&q).unwrap();
            for (f, _) in plan.parts {
                find(what, f, Some(plan.sort.clone())).await;
            }
        };
        let mut q = JobQuery::all(c.clone(), 10);
        list("list_jobs: all", q.clone()).await;
        q.after = Some(key(JobKind::SnosRun, 5));
        list("list_jobs: cursor", q.clone()).await;
        q.first_block = Some((2, 12));
        q.order = Order::Descending;
        q.kinds = vec![JobKind::SnosRun, JobKind::StateTransition];
        list("list_jobs: kinds, range, cursor, descending", q).await;
        let mut q = JobQuery::all(c.clone(), 10);
        q.kinds = vec![JobKind::StateTransition];
        q.statuses = vec![JobStatus::Created, JobStatus::Failed];
        list("list_jobs: kinds and statuses", q.clone()).await;
        q.after = Some(key(JobKind::StateTransition, 5));
        list("list_jobs: kinds, statuses, cursor", q.clone()).await;
        q.kinds.clear();
        q.statuses = vec![JobStatus::Failed];
        list("list_jobs: statuses only", q).await;
        let out = db
            .run_command(doc! {
                "explain": { "find": "workers", "filter": { "heartbeat_at": { "$gte": 5_i64 } } },
                "verbosity": "queryPlanner",
            })
            .await
            .unwrap();
        assert_indexed("workers", &out);
        assert_id_lookup("try_lead", &doc! { "_id": "x", "$or": [ { "until": { "$lte": 5_i64 } }, { "owner": "o" } ] });
        let out = db
            .run_command(doc! {
                "explain": {
                    "aggregate": "jobs",
                    "pipeline": [
                        { "$match": { "chain": c.as_str() } },
                        { "$group": { "_id": { "kind": "$kind", "status": "$status" }, "n": { "$sum": 1_i64 } } },
                    ],
                    "cursor": {},
                },
                "verbosity": "queryPlanner",
            })
            .await
            .unwrap();
        assert_indexed("count_jobs", &out);
        db.drop().await.unwrap();
    }
}

#[cfg(test)]
mod batched {
    //! Batched writes give the same per-item outcomes with `bulkWrite` (the test server has it)
    //! and with the one-`update_one`-per-job fallback for servers older than MongoDB 8.0.

    use orch_core::job::JobMeta;
    use orch_core::types::{BlockRange, WorkerId};

    use super::*;
    use crate::MongoConfig;

    #[test]
    fn clusters_join_nearby_blocks_only() {
        assert_eq!(clusters(vec![]), vec![]);
        assert_eq!(clusters(vec![7, 3, 7, 5]), vec![(3, 7)]);
        assert_eq!(
            clusters(vec![1, 1 + WAKE_GAP, 2 + 3 * WAKE_GAP]),
            vec![(1, 1 + WAKE_GAP), (2 + 3 * WAKE_GAP, 2 + 3 * WAKE_GAP)]
        );
        assert_eq!(clusters(vec![i64::MAX, 0]), vec![(0, 0), (i64::MAX, i64::MAX)]);
    }

    fn new_job(c: &ChainId, kind: JobKind, b: u64, next_run_at: Timestamp) -> NewJob {
        NewJob {
            id: JobId::random(),
            key: JobKey { chain: c.clone(), kind, range: BlockRange::single(b) },
            max_attempts: 3,
            next_run_at,
            deps: vec![],
            meta: JobMeta::default(),
        }
    }

    async fn run(store: &MongoStore) {
        let c = ChainId::new("batched").unwrap();
        let t0 = Timestamp(1_000);
        let snos: Vec<NewJob> = (0..3).map(|b| new_job(&c, JobKind::SnosRun, b, t0)).collect();
        store.create_jobs(snos, t0).await.unwrap();
        let later = Timestamp(1_000_000);
        let waiting: Vec<NewJob> =
            [1, 2, 40].into_iter().map(|b| new_job(&c, JobKind::ProofCreation, b, later)).collect();
        let waiting = store.create_jobs(waiting, t0).await.unwrap();

        let req = ClaimRequest {
            chain: c.clone(),
            owner: WorkerId("w".into()),
            now: t0,
            lease_until: Timestamp(t0.0 + 60_000),
            wants: vec![(JobKind::SnosRun, 2)],
        };
        let claimed = store.claim_jobs(&req).await.unwrap();
        assert_eq!(claimed.iter().map(|j| j.key.range.first()).collect::<Vec<_>>(), vec![0, 1]);
        for j in &claimed {
            assert_eq!((j.version.0, j.epoch.0, j.status), (2, 1, JobStatus::Processing));
            assert_eq!(store.get_job(j.id).await.unwrap(), *j);
        }

        let mut done = claimed[0].clone();
        done.status = JobStatus::Completed;
        done.lease = None;
        let mut stale = claimed[1].clone();
        stale.version.0 -= 1;
        let mut unknown = claimed[1].clone();
        unknown.id = JobId::random();
        let now = Timestamp(t0.0 + 5);
        let writes: Vec<JobWrite> =
            [done, stale, unknown].into_iter().map(|job| JobWrite { job, transition: None, now }).collect();
        let out = store.update_jobs(&writes).await.unwrap();
        let stored = out[0].as_ref().unwrap();
        assert_eq!((stored.version.0, stored.status), (3, JobStatus::Completed));
        assert_eq!(store.get_job(stored.id).await.unwrap(), *stored);
        assert!(matches!(out[1], Err(Error::VersionConflict { .. })), "{:?}", out[1]);
        assert!(matches!(out[2], Err(Error::NotFound { .. })), "{:?}", out[2]);
        assert_eq!(store.get_job(claimed[1].id).await.unwrap(), claimed[1], "a conflict writes nothing");

        // Blocks 40 and 1 wait and are targeted; block 2 waits inside the run 1..=3 but is not.
        let targets = [
            (JobKind::ProofCreation, 40),
            (JobKind::ProofCreation, 1),
            (JobKind::ProofCreation, 3),
            (JobKind::SnosRun, 7),
        ];
        let woken = store.wake_jobs(&c, &targets, now).await.unwrap();
        let ids = |i: usize| (waiting[i].job().id, waiting[i].job().epoch);
        assert_eq!(woken, vec![ids(2), ids(0)]);
        assert_eq!(store.get_job(waiting[1].job().id).await.unwrap(), *waiting[1].job());
        assert!(store.wake_jobs(&c, &targets, now).await.unwrap().is_empty(), "woken jobs are due");
    }

    #[tokio::test]
    async fn with_and_without_bulk_write() {
        let Ok(url) = std::env::var("ORCH_TEST_MONGO_URL") else {
            eprintln!("skipping: set ORCH_TEST_MONGO_URL (scripts/services.sh does)");
            return;
        };
        for bulk in [true, false] {
            let mut config = MongoConfig::new(url.clone());
            config.database = format!("orchtest_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
            let store = MongoStore::connect_and_migrate(config).await.unwrap();
            store.inner.bulk.store(bulk, Ordering::Relaxed);
            run(&store).await;
            // The test server has `bulkWrite`: the batched path ran and stayed on.
            assert_eq!(store.inner.bulk.load(Ordering::Relaxed), bulk);
            store.inner.db.drop().await.unwrap();
        }
    }
}
