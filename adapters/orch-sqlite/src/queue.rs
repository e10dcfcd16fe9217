//! [`SqliteQueue`]: a [`Queue`] in the `messages` table of the store's file.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use orch_core::error::Result;
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use rusqlite::params;
use tokio::sync::Notify;

use crate::conn::Conns;
use crate::error::{map_err, BACKEND};

/// Longest delay `send` and `nack` accept (longer ones are clamped by the engine).
const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);

/// A queue named `name` inside a [`SqliteStore`](crate::SqliteStore)'s file.
///
/// Messages are rows; `receive` leases visible rows with one `UPDATE … RETURNING` that gives
/// each a fresh random receipt and hides it for the visibility timeout. SQLite cannot push, so
/// a waiting `receive` polls every [`queue_poll`](crate::SqliteConfig::queue_poll), and is
/// woken at once by sends and nacks made through the same store. Capabilities: native delay,
/// no FIFO, no dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    conns: Arc<Conns>,
    name: Arc<str>,
    poll: Duration,
    arrived: Arc<Notify>,
}

impl SqliteQueue {
    pub(crate) fn new(conns: Arc<Conns>, name: &str, arrived: Arc<Notify>) -> SqliteQueue {
        let poll = conns.shared.config.queue_poll;
        SqliteQueue { conns, name: name.into(), poll, arrived }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Messages held, visible or in flight.
    pub async fn len(&self) -> Result<u64> {
        let name = self.name.clone();
        self.conns
            .read(move |conn, sh| {
                conn.prepare_cached("SELECT COUNT(*) FROM messages WHERE queue = ?1")
                    .and_then(|mut s| s.query_row([&*name], |r| r.get::<_, i64>(0)))
                    .map(|n| n.max(0) as u64)
                    .map_err(|e| map_err(e, &sh.path))
            })
            .await
    }

    /// Leases up to `max` visible messages; also says when the next hidden one shows.
    async fn take(&self, max: usize, visibility: Duration) -> Result<(Vec<Delivery>, Option<i64>)> {
        let name = self.name.clone();
        let now = now_ms();
        // Cheap read first: an empty queue never takes the write lock.
        let next = {
            let name = name.clone();
            self.conns
                .read(move |conn, sh| {
                    conn.prepare_cached("SELECT min(visible_at) FROM messages WHERE queue = ?1")
                        .and_then(|mut s| s.query_row([&*name], |r| r.get::<_, Option<i64>>(0)))
                        .map_err(|e| map_err(e, &sh.path))
                })
                .await?
        };
        match next {
            Some(t) if t <= now => {}
            other => return Ok((Vec::new(), other)),
        }
        let until = now.saturating_add(ms(visibility));
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let got = self
            .conns
            .write(move |conn, sh| {
                let m = |e| map_err(e, &sh.path);
                let mut stmt = conn
                    .prepare_cached(
                        "UPDATE messages SET visible_at = ?1, attempt = attempt + 1, receipt = lower(hex(randomblob(16))) \
                         WHERE id IN (SELECT id FROM messages WHERE queue = ?2 AND visible_at <= ?3 \
                         ORDER BY visible_at, id LIMIT CAST(?4 AS INTEGER)) RETURNING payload, receipt, attempt",
                    )
                    .map_err(m)?;
                let mut rows = stmt.query(params![until, &*name, now, max]).map_err(m)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(m)? {
                    out.push(Delivery {
                        payload: row.get(0).map_err(m)?,
                        receipt: Receipt(row.get(1).map_err(m)?),
                        attempt: u32::try_from(row.get::<_, i64>(2).map_err(m)?).unwrap_or(u32::MAX),
                    });
                }
                Ok(out)
            })
            .await?;
        Ok((got, next))
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(ms).unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Queue for SqliteQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities { native_delay: true, fifo: false, dead_letter: false, max_delay: MAX_DELAY }
    }

    async fn setup(&self) -> Result<()> {
        // The messages table is part of the schema; migrating is idempotent.
        self.conns.write(|conn, sh| crate::schema::migrate(conn, &sh.path)).await
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let name = self.name.clone();
        let now = now_ms();
        self.conns
            .write(move |conn, sh| {
                let m = |e| map_err(e, &sh.path);
                let mut stmt = conn
                    .prepare_cached("INSERT INTO messages (queue, payload, visible_at) VALUES (?1, ?2, ?3)")
                    .map_err(m)?;
                for msg in messages {
                    let at = now.saturating_add(ms(msg.delay.min(MAX_DELAY)));
                    stmt.execute(params![&*name, msg.payload, at]).map_err(m)?;
                }
                Ok(())
            })
            .await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, next) = self.take(max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Sleep until the next hidden message shows, a local send, or the next poll for
            // other processes' sends — whichever is first.
            let mut until = (now + self.poll).min(deadline);
            if let Some(t) = next {
                let in_ms = t.saturating_sub(now_ms()).max(0) as u64;
                until = until.min(now + Duration::from_millis(in_ms));
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let (name, receipts) = (self.name.clone(), receipts.to_vec());
        self.conns
            .write(move |conn, sh| {
                let m = |e| map_err(e, &sh.path);
                let mut stmt =
                    conn.prepare_cached("DELETE FROM messages WHERE receipt = ?1 AND queue = ?2").map_err(m)?;
                for r in receipts {
                    stmt.execute(params![r.0, &*name]).map_err(m)?;
                }
                Ok(())
            })
            .await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (name, receipt) = (self.name.clone(), receipt.0.clone());
        let at = now_ms().saturating_add(ms(delay.min(MAX_DELAY)));
        let n = self
            .conns
            .write(move |conn, sh| {
                conn.prepare_cached("UPDATE messages SET visible_at = ?1 WHERE receipt = ?2 AND queue = ?3")
                    .and_then(|mut s| s.execute(params![at, receipt, &*name]))
                    .map_err(|e| map_err(e, &sh.path))
            })
            .await?;
        if n > 0 {
            self.arrived.notify_waiters();
        }
        Ok(())
    }
}
