//! The job creator (watcher): makes the jobs of every new batch, never further than
//! `max_blocks_ahead` past the lowest unsettled block.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::stats::Stats;
use super::{graph, CreatorPorts, Shared};
use crate::error::Result;
use crate::job::{JobQuery, Order};
use crate::queue::{OutMessage, WakeMessage};
use crate::types::{BlockNumber, BlockRange, JobKind, JobStatus, Timestamp};

/// At most this many batches per tick, so one tick stays short.
const MAX_BATCHES_PER_TICK: u64 = 512;

#[derive(Debug, Clone, Copy)]
struct Cursor {
    next: BlockNumber,
    prev: Option<BlockRange>,
    /// When the creator first saw block `next` without enough blocks for a full batch.
    waiting_since: Option<Timestamp>,
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
        return Ok(Cursor { next: last.range().last() + 1, prev: Some(last.range()), waiting_since: None });
    }
    if let Some(s) = cp.settlement.last_settled().await? {
        return Ok(Cursor { next: (s.block + 1).max(sh.cfg.start_block), prev: None, waiting_since: None });
    }
    Ok(Cursor { next: sh.cfg.start_block, prev: None, waiting_since: None })
}

/// Lowest block not yet settled by a completed StateTransition job.
async fn lowest_unsettled(sh: &Shared) -> Result<Option<BlockNumber>> {
    let mut q = JobQuery::all(sh.chain.clone(), 1);
    q.kinds = vec![JobKind::StateTransition];
    q.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
    Ok(sh.db.list_jobs(&q).await?.pop().map(|j| j.range().first()))
}

async fn tick(sh: &Shared, cp: &CreatorPorts, cursor: &mut Option<Cursor>) -> Result<u64> {
    let now = sh.clock.now();
    let hold = sh.cfg.creator_interval.max(Duration::from_millis(500)) * 3;
    let lead_name = format!("creator:{}", sh.chain);
    if !sh.db.try_lead(&lead_name, &sh.worker_id, now, now.plus(hold)).await? {
        *cursor = None;
        return Ok(0);
    }
    let mut cur = match *cursor {
        Some(c) => c,
        None => initial_cursor(sh, cp).await?,
    };
    let Some(head) = cp.chain.latest_block().await? else { return Ok(0) };
    let low = lowest_unsettled(sh).await?.unwrap_or(cur.next);
    let limit = low.saturating_add(sh.cfg.max_blocks_ahead);
    let size = sh.cfg.batch_size;
    let mut jobs = Vec::new();
    let mut batches = 0;
    let start = cur;
    while batches < MAX_BATCHES_PER_TICK {
        if head < cur.next {
            break;
        }
        let full = cur.next + size - 1;
        // A batch closes when it is full, or when its first block has waited `batch_timeout`
        // for the rest (so a quiet chain, or the end of a fixed one, still settles).
        let since = *cur.waiting_since.get_or_insert(now);
        let last = if full <= head {
            full
        } else if now.since(since) >= sh.cfg.batch_timeout {
            head
        } else {
            break;
        };
        if last >= limit {
            break;
        }
        let range = BlockRange::new(cur.next, last)?;
        jobs.extend(graph::batch_jobs(
            &sh.chain,
            range,
            cur.prev,
            sh.with_registration,
            sh.cfg.retry.max_attempts,
            now,
            now.plus(sh.cfg.dependency_poll),
        ));
        cur = Cursor { next: last + 1, prev: Some(range), waiting_since: None };
        batches += 1;
    }
    if jobs.is_empty() {
        *cursor = Some(cur);
        return Ok(0);
    }
    let created = sh.db.create_jobs(jobs, now).await?;
    *cursor = Some(cur);
    let new: Vec<_> = created.iter().filter(|c| c.is_new()).map(|c| c.job()).collect();
    Stats::add(&sh.stats.created, new.len() as u64);
    info!(target: "orch::creator", from = start.next, to = cur.next - 1, jobs = new.len(), head, "created jobs");
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
    Ok(batches)
}
