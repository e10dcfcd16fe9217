//! [`MemQueue`]: the reference `Queue`, in memory, with real delays and visibility timeouts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch_core::error::Result;
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use tokio::sync::Notify;

#[derive(Debug)]
struct Msg {
    payload: Vec<u8>,
    attempt: u32,
    /// Bumped on every delivery, so a receipt from an earlier delivery cannot ack a later one.
    generation: u64,
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    /// (visible_at, seq) → message. In-flight messages sit here at their visibility deadline.
    by_time: BTreeMap<(Instant, u64), Msg>,
    /// seq → visible_at, to find a message by receipt.
    at: HashMap<u64, Instant>,
}

/// An in-memory queue implementing the whole [`Queue`] contract (native delay, visibility
/// timeout, nack with delay; no FIFO, no DLQ).
#[derive(Debug, Default)]
pub struct MemQueue {
    inner: Mutex<Inner>,
    arrived: Notify,
}

impl MemQueue {
    /// An empty queue.
    pub fn new() -> MemQueue {
        MemQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages held (visible or in flight).
    pub fn len(&self) -> usize {
        self.lock().by_time.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_visible(&self, max: usize, visibility: Duration) -> (Vec<Delivery>, Option<Instant>) {
        let mut g = self.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((&(t, seq), _)) = g.by_time.first_key_value() else { break };
            if t > now {
                break;
            }
            let Some(mut m) = g.by_time.remove(&(t, seq)) else { break };
            m.attempt += 1;
            m.generation += 1;
            let until = now + visibility;
            out.push(Delivery {
                payload: m.payload.clone(),
                receipt: Receipt(format!("{seq}:{}", m.generation)),
                attempt: m.attempt,
            });
            g.by_time.insert((until, seq), m);
            g.at.insert(seq, until);
        }
        let next = g.by_time.first_key_value().map(|(k, _)| k.0);
        (out, next)
    }

    fn find(g: &Inner, receipt: &Receipt) -> Option<(Instant, u64)> {
        let (seq, gen) = receipt.0.split_once(':')?;
        let (seq, gen): (u64, u64) = (seq.parse().ok()?, gen.parse().ok()?);
        let t = *g.at.get(&seq)?;
        (g.by_time.get(&(t, seq))?.generation == gen).then_some((t, seq))
    }
}

#[async_trait]
impl Queue for MemQueue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities {
            native_delay: true,
            fifo: false,
            dead_letter: false,
            max_delay: Duration::from_secs(86_400),
        }
    }

    async fn setup(&self) -> Result<()> {
        Ok(())
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        {
            let mut g = self.lock();
            let now = Instant::now();
            for m in messages {
                g.seq += 1;
                let seq = g.seq;
                let t = now + m.delay;
                g.by_time.insert((t, seq), Msg { payload: m.payload, attempt: 0, generation: 0 });
                g.at.insert(seq, t);
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, next) = self.take_visible(max, visibility);
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let until = next.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(until.saturating_duration_since(now)) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let mut g = self.lock();
        for r in receipts {
            if let Some((t, seq)) = Self::find(&g, r) {
                g.by_time.remove(&(t, seq));
                g.at.remove(&seq);
            }
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        {
            let mut g = self.lock();
            let Some((t, seq)) = Self::find(&g, receipt) else { return Ok(()) };
            if let Some(m) = g.by_time.remove(&(t, seq)) {
                let at = Instant::now() + delay;
                g.by_time.insert((at, seq), m);
                g.at.insert(seq, at);
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }
}
