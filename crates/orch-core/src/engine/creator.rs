//! The job creator (watcher): makes the jobs of every new batch, never further than
//! `max_blocks_ahead` past the lowest unsettled block.
//!
//! A batch closes when it has `batch_size` blocks, when its first block has waited
//! `batch_timeout` for the rest, or — with a [`BatchBudget`] — before the first block whose
//! data would overflow the budget, whichever comes first. The boundaries of full and
//! budget-closed batches depend only on the chain's blocks, so an instance that restarts (or
//! takes over the lead) from the store's last batch draws the same ones.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::budget::{BatchBudget, BatchFill, Fill};
use super::stats::Stats;
use super::{graph, CreatorPorts, Shared};
use crate::chain::{ChainSource, StateUpdate};
use crate::error::{Error, Result};
use crate::job::{JobQuery, NewJob, Order};
use crate::queue::{OutMessage, WakeMessage};
use crate::types::{BlockNumber, BlockRange, JobKind, JobStatus, Timestamp};

/// At most this many batches per tick, so one tick stays short.
const MAX_BATCHES_PER_TICK: u64 = 512;
/// At most this many state updates read per tick when batches are budgeted: a tick runs under
/// the creator's lead lease (1.5 s or more), renewed only between ticks, and a remote chain
/// answers in milliseconds. The measurement is kept in the cursor, so the next tick (at once)
/// goes on where this one stopped.
const MAX_READS_PER_TICK: u64 = 256;

/// Why a batch closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Closed {
    /// It has `batch_size` blocks.
    Full,
    /// Its first block waited `batch_timeout`; it has the blocks that exist.
    Timeout,
    /// The next block's data would not have fitted the budget.
    Budget,
    /// Its one block alone does not fit the budget.
    Oversized,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Full => "batch_size",
            Closed::Timeout => "batch_timeout",
            Closed::Budget => "budget",
            Closed::Oversized => "oversized_block",
        }
    }
}

/// A batch the creator decided on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Batch {
    range: BlockRange,
    closed: Closed,
    /// With a budget: the fill of the batch's data.
    fill: Option<Fill>,
}

/// The open batch measured so far (with a budget).
struct Measured {
    fill: Box<dyn BatchFill>,
    /// The last block that fitted, with the batch's fill through it.
    fitted: Option<(BlockNumber, Fill)>,
    /// The first block that did not fit, with the fill it would have made and its update
    /// (which starts the next batch). Nothing is pushed after it.
    over: Option<(BlockNumber, Fill, StateUpdate)>,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("fitted", &self.fitted)
            .field("over", &self.over.as_ref().map(|(n, fill, _)| (n, fill)))
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Cursor {
    next: BlockNumber,
    prev: Option<BlockRange>,
    /// When the creator first saw block `next` without enough blocks for a full batch.
    waiting_since: Option<Timestamp>,
    /// The batch from `next`, measured so far (with a budget). Kept across ticks, so a batch
    /// that waits for blocks is not measured again every tick; rebuilt from `next` after a
    /// restart or an error.
    open: Option<Measured>,
    /// The state update of block `next` when the previous batch was closed by it (it did not
    /// fit there), so it is not read twice.
    carry: Option<(BlockNumber, StateUpdate)>,
}

impl Cursor {
    fn at(next: BlockNumber, prev: Option<BlockRange>) -> Cursor {
        Cursor { next, prev, waiting_since: None, open: None, carry: None }
    }

    /// Moves past `batch`: the block that overflowed it starts the next one.
    fn advance(&mut self, batch: &Batch) {
        let carry = match (batch.closed, self.open.take()) {
            (Closed::Budget, Some(m)) => m.over.map(|(n, _, u)| (n, u)),
            _ => None,
        };
        *self = Cursor { carry, ..Cursor::at(batch.range.last() + 1, Some(batch.range)) };
    }
}

/// What batch boundaries depend on.
#[derive(Debug, Clone, Copy)]
struct Rules<'a> {
    size: u64,
    timeout: Duration,
    budget: Option<&'a dyn BatchBudget>,
    /// Bound on `reads` per tick.
    max_reads: u64,
}

/// The next batch from `cur.next`, or `None` when it must wait (for blocks, the timeout, or
/// the next tick after `rules.max_reads` state updates read). Reads state updates only with a
/// budget, each block once while the cursor lives; `reads` counts them.
async fn next_batch(
    rules: &Rules<'_>,
    chain: &dyn ChainSource,
    cur: &mut Cursor,
    head: BlockNumber,
    now: Timestamp,
    reads: &mut u64,
) -> Result<Option<Batch>> {
    if head < cur.next {
        return Ok(None);
    }
    let full = cur.next.saturating_add(rules.size - 1);
    let since = *cur.waiting_since.get_or_insert(now);
    let timed_out = now.since(since) >= rules.timeout;
    let Some(budget) = rules.budget else {
        let (last, closed) = if full <= head {
            (full, Closed::Full)
        } else if timed_out {
            (head, Closed::Timeout)
        } else {
            return Ok(None);
        };
        return Ok(Some(Batch { range: BlockRange::new(cur.next, last)?, closed, fill: None }));
    };
    let m = cur.open.get_or_insert_with(|| Measured { fill: budget.start(), fitted: None, over: None });
    while m.over.is_none() {
        let n = m.fitted.map_or(cur.next, |(t, _)| t + 1);
        if n > full.min(head) || *reads >= rules.max_reads {
            break;
        }
        let update = match cur.carry.take() {
            Some((c, u)) if c == n => u,
            _ => {
                *reads += 1;
                chain.state_update(n).await?
            }
        };
        let fill = m.fill.push(&update).map_err(|e| {
            Error::invalid_input(
                format!("state update of block {n}"),
                format!("the batch budget cannot measure it: {e}"),
            )
        })?;
        if fill.fits {
            m.fitted = Some((n, fill));
        } else {
            m.over = Some((n, fill, update));
        }
    }
    let (last, closed, fill) = match (m.fitted, &m.over) {
        (None, Some((n, fill, _))) => (*n, Closed::Oversized, *fill),
        (Some((t, fill)), Some(_)) => (t, Closed::Budget, fill),
        (Some((t, fill)), None) if t == full => (t, Closed::Full, fill),
        (Some((t, fill)), None) if t == head && timed_out => (t, Closed::Timeout, fill),
        _ => return Ok(None),
    };
    Ok(Some(Batch { range: BlockRange::new(cur.next, last)?, closed, fill: Some(fill) }))
}

pub(crate) async fn creator_loop(sh: Arc<Shared>, cp: CreatorPorts) {
    let mut cursor = None;
    let mut failures = 0u32;
    while !sh.shutdown.is_cancelled() {
        match tick(&sh, &cp, &mut cursor).await {
            Ok(n) => {
                failures = 0;
                if n > 0 {
                    // More may be creatable right away (window moved): go again soon.
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                // Forget the cursor: the store is the truth and is re-read next time.
                cursor = None;
                warn!(target: "orch::creator", error = %e, failures, "job creation failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(sh.cfg.creator_interval) => {}
            _ = sh.shutdown.cancelled() => {}
        }
    }
}

async fn initial_cursor(sh: &Shared, cp: &CreatorPorts) -> Result<Cursor> {
    let mut q = JobQuery::all(sh.chain.clone(), 1);
    q.kinds = vec![JobKind::SnosRun];
    q.order = Order::Descending;
    if let Some(last) = sh.db.list_jobs(&q).await?.pop() {
        return Ok(Cursor::at(last.range().last() + 1, Some(last.range())));
    }
    if let Some(s) = cp.settlement.last_settled().await? {
        return Ok(Cursor::at((s.block + 1).max(sh.cfg.start_block), None));
    }
    Ok(Cursor::at(sh.cfg.start_block, None))
}

/// Lowest block not yet settled by a completed StateTransition job.
async fn lowest_unsettled(sh: &Shared) -> Result<Option<BlockNumber>> {
    let mut q = JobQuery::all(sh.chain.clone(), 1);
    q.kinds = vec![JobKind::StateTransition];
    q.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
    Ok(sh.db.list_jobs(&q).await?.pop().map(|j| j.range().first()))
}

/// Notes the batch's fill on its DataSubmission job, for operators (`jobs show`).
fn record_fill(jobs: &mut [NewJob], batch: &Batch) {
    let Some(fill) = batch.fill else { return };
    for j in jobs.iter_mut().filter(|j| j.key.kind == JobKind::DataSubmission) {
        let extra = &mut j.meta.extra;
        extra.insert("batch_closed_by".into(), batch.closed.as_str().into());
        extra.insert("blob_fill".into(), format!("{:.4}", fill.ratio()));
        extra.insert("blobs".into(), fill.blobs.to_string());
        extra.insert("blob_payload_felts".into(), fill.used.to_string());
        extra.insert("blob_capacity_felts".into(), fill.capacity.to_string());
    }
}

/// Returns how much it did: batches created, plus one when it stopped at the read bound (so
/// the loop goes again at once).
async fn tick(sh: &Shared, cp: &CreatorPorts, cursor: &mut Option<Cursor>) -> Result<u64> {
    let now = sh.clock.now();
    let hold = sh.cfg.creator_interval.max(Duration::from_millis(500)) * 3;
    let lead_name = format!("creator:{}", sh.chain);
    if !sh.db.try_lead(&lead_name, &sh.worker_id, now, now.plus(hold)).await? {
        *cursor = None;
        return Ok(0);
    }
    let mut cur = match cursor.take() {
        Some(c) => c,
        None => initial_cursor(sh, cp).await?,
    };
    let Some(head) = cp.chain.latest_block().await? else {
        *cursor = Some(cur);
        return Ok(0);
    };
    let low = lowest_unsettled(sh).await?.unwrap_or(cur.next);
    let limit = low.saturating_add(sh.cfg.max_blocks_ahead);
    let rules = Rules {
        size: sh.cfg.batch_size,
        timeout: sh.cfg.batch_timeout,
        budget: sh.budget.as_deref(),
        max_reads: MAX_READS_PER_TICK,
    };
    let mut jobs = Vec::new();
    let mut batches = 0;
    let mut reads = 0;
    let (mut budget_closed, mut budget_fill) = (0u32, 0.0f64);
    let from = cur.next;
    while batches < MAX_BATCHES_PER_TICK {
        let Some(batch) = next_batch(&rules, &*cp.chain, &mut cur, head, now, &mut reads).await? else { break };
        if batch.range.last() >= limit {
            break;
        }
        let mut new = graph::batch_jobs(
            &sh.chain,
            batch.range,
            cur.prev,
            sh.with_registration,
            sh.cfg.retry.max_attempts,
            now,
            now.plus(sh.cfg.dependency_poll),
        );
        record_fill(&mut new, &batch);
        jobs.extend(new);
        if let Some(fill) = batch.fill {
            match batch.closed {
                Closed::Oversized => warn!(
                    target: "orch::creator",
                    block = batch.range.first(),
                    blobs = fill.blobs,
                    payload_felts = fill.used,
                    capacity_felts = fill.capacity,
                    "block alone needs more blobs than the batch budget allows; it becomes a batch of its own, which \
                     the settlement layer may refuse"
                ),
                Closed::Budget => {
                    budget_closed += 1;
                    budget_fill += fill.ratio();
                }
                Closed::Full | Closed::Timeout => {}
            }
            debug!(
                target: "orch::creator",
                range = %batch.range,
                closed_by = batch.closed.as_str(),
                blobs = fill.blobs,
                fill = fill.ratio(),
                "batch closed"
            );
        }
        cur.advance(&batch);
        batches += 1;
    }
    let more = u64::from(reads >= MAX_READS_PER_TICK);
    if jobs.is_empty() {
        *cursor = Some(cur);
        return Ok(more);
    }
    let created = sh.db.create_jobs(jobs, now).await?;
    let to = cur.next - 1;
    *cursor = Some(cur);
    let new: Vec<_> = created.iter().filter(|c| c.is_new()).map(|c| c.job()).collect();
    Stats::add(&sh.stats.created, new.len() as u64);
    let mean_fill = (budget_closed > 0).then(|| budget_fill / f64::from(budget_closed));
    info!(
        target: "orch::creator",
        from,
        to,
        batches,
        jobs = new.len(),
        head,
        budget_closed,
        mean_fill,
        "created jobs"
    );
    sh.work.notify_waiters();
    if let (Some(q), true) = (&sh.queue, sh.cfg.queue_hints) {
        let msgs = new
            .iter()
            .filter(|j| j.deps.is_empty())
            .map(|j| OutMessage { payload: WakeMessage::new(j.id, j.kind(), j.epoch).encode(), delay: Duration::ZERO })
            .collect();
        if let Err(e) = q.send(msgs).await {
            debug!(target: "orch::creator", error = %e, "queue hint not sent");
        }
    }
    Ok(batches + more)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::chain::{BlockInfo, ContractStorageDiff, StateDiff, StorageEntry};
    use crate::felt::Felt;

    /// A chain whose block `n` has `sizes[n]` storage writes; counts state-update reads.
    #[derive(Debug)]
    struct Chain {
        sizes: Vec<u64>,
        reads: AtomicU64,
    }

    impl Chain {
        fn new(sizes: &[u64]) -> Chain {
            Chain { sizes: sizes.to_vec(), reads: AtomicU64::new(0) }
        }

        fn reads(&self) -> u64 {
            self.reads.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl ChainSource for Chain {
        async fn latest_block(&self) -> Result<Option<BlockNumber>> {
            Ok((self.sizes.len() as u64).checked_sub(1))
        }
        async fn block(&self, n: BlockNumber) -> Result<BlockInfo> {
            Err(Error::not_found(format!("block {n}")))
        }
        async fn state_update(&self, n: BlockNumber) -> Result<StateUpdate> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let size = *self.sizes.get(n as usize).ok_or_else(|| Error::not_found(format!("block {n}")))?;
            let storage_entries =
                (0..size).map(|k| StorageEntry { key: Felt::from_u64(k), value: Felt::from_u64(n) }).collect();
            Ok(StateUpdate {
                block_hash: Felt::from_u64(n),
                old_root: Felt::ZERO,
                new_root: Felt::ZERO,
                state_diff: StateDiff {
                    storage_diffs: vec![ContractStorageDiff { address: Felt::from_u64(n), storage_entries }],
                    ..StateDiff::default()
                },
            })
        }
        async fn nonce_at(&self, _n: BlockNumber, _c: Felt) -> Result<Felt> {
            Ok(Felt::ZERO)
        }
    }

    /// A budget of `capacity` units, a block costing its number of storage writes; one
    /// "blob" per 4 units. Counts pushes.
    #[derive(Debug)]
    struct Units {
        capacity: u64,
        pushes: Arc<Mutex<u64>>,
    }

    impl Units {
        fn new(capacity: u64) -> Units {
            Units { capacity, pushes: Arc::default() }
        }
    }

    struct UnitsFill {
        used: u64,
        capacity: u64,
        pushes: Arc<Mutex<u64>>,
    }

    impl BatchFill for UnitsFill {
        fn push(&mut self, update: &StateUpdate) -> Result<Fill> {
            *self.pushes.lock().unwrap() += 1;
            self.used += update.state_diff.storage_diffs.iter().map(|c| c.storage_entries.len() as u64).sum::<u64>();
            Ok(Fill::new(self.used, self.capacity, self.used.div_ceil(4) as u32))
        }
    }

    impl BatchBudget for Units {
        fn start(&self) -> Box<dyn BatchFill> {
            Box::new(UnitsFill { used: 0, capacity: self.capacity, pushes: self.pushes.clone() })
        }
    }

    const T0: Timestamp = Timestamp(1_000_000);
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn rules(size: u64, budget: Option<&dyn BatchBudget>) -> Rules<'_> {
        Rules { size, timeout: TIMEOUT, budget, max_reads: 1_000_000 }
    }

    /// Every batch the creator closes from `cur` at `now`, as ticks would create them.
    async fn drain(rules: &Rules<'_>, chain: &Chain, cur: &mut Cursor, now: Timestamp) -> Vec<Batch> {
        let head = chain.latest_block().await.unwrap().unwrap();
        let mut out = Vec::new();
        let mut reads = 0;
        while let Some(b) = next_batch(rules, chain, cur, head, now, &mut reads).await.unwrap() {
            cur.advance(&b);
            out.push(b);
        }
        out
    }

    fn shape(batches: &[Batch]) -> Vec<(u64, u64, Closed)> {
        batches.iter().map(|b| (b.range.first(), b.range.last(), b.closed)).collect()
    }

    #[tokio::test]
    async fn budget_closes_a_batch_before_the_block_that_would_overflow_it() {
        let chain = Chain::new(&[3; 12]);
        let budget = Units::new(10);
        let mut cur = Cursor::at(0, None);
        let batches = drain(&rules(100, Some(&budget)), &chain, &mut cur, T0).await;
        assert_eq!(
            shape(&batches),
            vec![(0, 2, Closed::Budget), (3, 5, Closed::Budget), (6, 8, Closed::Budget)],
            "blocks 9..=11 wait: they fit, and neither the limit nor the timeout is reached"
        );
        assert_eq!(batches[0].fill, Some(Fill::new(9, 10, 3)), "the fill of the blocks kept, not of the overflow");
        assert_eq!(batches[0].fill.unwrap().ratio(), 0.9);
        // The overflowing block is carried into the next batch, not read again.
        assert_eq!(chain.reads(), 12);
        assert_eq!(cur.next, 9);
    }

    #[tokio::test]
    async fn block_limit_closes_a_batch_that_still_fits() {
        let chain = Chain::new(&[1; 7]);
        let budget = Units::new(1000);
        let mut cur = Cursor::at(0, None);
        let batches = drain(&rules(3, Some(&budget)), &chain, &mut cur, T0).await;
        assert_eq!(shape(&batches), vec![(0, 2, Closed::Full), (3, 5, Closed::Full)]);
        assert_eq!(batches[1].fill, Some(Fill::new(3, 1000, 1)));
    }

    #[tokio::test]
    async fn without_a_budget_batches_close_on_size_and_timeout_and_no_update_is_read() {
        let chain = Chain::new(&[1; 7]);
        let r = rules(3, None);
        let mut cur = Cursor::at(0, None);
        let batches = drain(&r, &chain, &mut cur, T0).await;
        assert_eq!(shape(&batches), vec![(0, 2, Closed::Full), (3, 5, Closed::Full)]);
        let batches = drain(&r, &chain, &mut cur, T0.plus(TIMEOUT)).await;
        assert_eq!(shape(&batches), vec![(6, 6, Closed::Timeout)]);
        assert_eq!(batches[0].fill, None);
        assert_eq!(chain.reads(), 0);
    }

    #[tokio::test]
    async fn timeout_closes_a_short_batch_and_a_waiting_batch_is_measured_once() {
        let chain = Chain::new(&[2; 5]);
        let budget = Units::new(100);
        let r = rules(50, Some(&budget));
        let mut cur = Cursor::at(0, None);
        for tick in 0..5 {
            let now = T0.plus(Duration::from_secs(tick));
            assert!(drain(&r, &chain, &mut cur, now).await.is_empty(), "tick {tick}: nothing to close yet");
        }
        assert_eq!(chain.reads(), 5, "each block read once, however many ticks the batch waits");
        assert_eq!(*budget.pushes.lock().unwrap(), 5, "and pushed once");
        let batches = drain(&r, &chain, &mut cur, T0.plus(TIMEOUT)).await;
        assert_eq!(shape(&batches), vec![(0, 4, Closed::Timeout)]);
        assert_eq!(batches[0].fill, Some(Fill::new(10, 100, 3)));
        assert_eq!(chain.reads(), 5);
    }

    #[tokio::test]
    async fn a_block_over_the_budget_alone_becomes_a_batch_of_one() {
        let chain = Chain::new(&[3, 3, 50, 3, 3, 3, 3]);
        let budget = Units::new(10);
        let mut cur = Cursor::at(0, None);
        let batches = drain(&rules(100, Some(&budget)), &chain, &mut cur, T0).await;
        assert_eq!(shape(&batches), vec![(0, 1, Closed::Budget), (2, 2, Closed::Oversized), (3, 5, Closed::Budget)],);
        assert_eq!(batches[1].fill, Some(Fill { used: 50, capacity: 10, blobs: 13, fits: false }));
        // An oversized first block too.
        let chain = Chain::new(&[50, 3]);
        let mut cur = Cursor::at(0, None);
        let batches = drain(&rules(100, Some(&budget)), &chain, &mut cur, T0).await;
        assert_eq!(shape(&batches), vec![(0, 0, Closed::Oversized)]);
        assert_eq!(cur.next, 1);
        assert!(cur.carry.is_none(), "an oversized block carries nothing into the next batch");
    }

    #[tokio::test]
    async fn a_restart_from_any_batch_boundary_draws_the_same_batches() {
        // Sizes with a little of everything: overflows, an oversized block, a limit.
        let sizes: Vec<u64> = (0..200u64).map(|n| if n % 37 == 5 { 40 } else { 1 + (n * 7) % 9 }).collect();
        let chain = Chain::new(&sizes);
        let budget = Units::new(30);
        let r = rules(6, Some(&budget));
        let mut cur = Cursor::at(0, None);
        let all = drain(&r, &chain, &mut cur, T0).await;
        let kinds: std::collections::HashSet<_> = all.iter().map(|b| b.closed).collect();
        assert!(kinds.contains(&Closed::Budget) && kinds.contains(&Closed::Full) && kinds.contains(&Closed::Oversized));
        for (i, b) in all.iter().enumerate().skip(1) {
            // What `initial_cursor` builds from the store: the last batch created, nothing measured.
            let mut restarted = Cursor::at(b.range.first(), Some(all[i - 1].range));
            let again = drain(&r, &chain, &mut restarted, T0).await;
            assert_eq!(again, all[i..], "restart at block {}", b.range.first());
        }
    }

    #[tokio::test]
    async fn the_read_bound_stops_a_tick_and_the_next_goes_on() {
        let chain = Chain::new(&[1; 10]);
        let budget = Units::new(100);
        let r = Rules { max_reads: 4, ..rules(8, Some(&budget)) };
        let mut cur = Cursor::at(0, None);
        let mut reads = 0;
        assert_eq!(next_batch(&r, &chain, &mut cur, 9, T0, &mut reads).await.unwrap(), None);
        assert_eq!(reads, 4);
        reads = 0;
        let b = next_batch(&r, &chain, &mut cur, 9, T0, &mut reads).await.unwrap().unwrap();
        assert_eq!((b.range, b.closed), (BlockRange::new(0, 7).unwrap(), Closed::Full));
        assert_eq!(chain.reads(), 8);
    }

    #[tokio::test]
    async fn a_budget_error_names_the_block() {
        #[derive(Debug)]
        struct Refuses;
        struct RefusesFill;
        impl BatchFill for RefusesFill {
            fn push(&mut self, _u: &StateUpdate) -> Result<Fill> {
                Err(Error::invalid_input("nonce", "does not fit 64 bits"))
            }
        }
        impl BatchBudget for Refuses {
            fn start(&self) -> Box<dyn BatchFill> {
                Box::new(RefusesFill)
            }
        }
        let chain = Chain::new(&[1; 3]);
        let mut cur = Cursor::at(1, None);
        let e = next_batch(&rules(2, Some(&Refuses)), &chain, &mut cur, 2, T0, &mut 0).await.unwrap_err();
        assert!(e.to_string().contains("block 1") && e.to_string().contains("64 bits"), "{e}");
    }

    #[test]
    fn fill_records_on_the_data_submission_job_only() {
        let chain = crate::types::ChainId::new("c").unwrap();
        let range = BlockRange::new(4, 9).unwrap();
        let mut jobs = graph::batch_jobs(&chain, range, None, false, 3, T0, T0);
        let batch = Batch { range, closed: Closed::Budget, fill: Some(Fill::new(24_000, 24_576, 6)) };
        record_fill(&mut jobs, &batch);
        for j in &jobs {
            if j.key.kind == JobKind::DataSubmission {
                assert_eq!(j.meta.extra["blob_fill"], "0.9766");
                assert_eq!(j.meta.extra["blobs"], "6");
                assert_eq!(j.meta.extra["batch_closed_by"], "budget");
                assert_eq!(j.meta.extra["blob_payload_felts"], "24000");
            } else {
                assert!(j.meta.extra.is_empty(), "{}", j.key);
            }
        }
    }
}
