//! [`Client`]: one thread's pipelined view of a queue.
//!
//! Single operations are buffered and sent as one submission ("chunk") when `flush_at` are
//! waiting, immediately when the dispatcher is idle (so a quiet system adds no latency), or
//! when the client waits, flushes, or is dropped. Under load many clients' chunks meet in
//! one launch; the per-operation cost is a few stores, not a channel send.

use std::time::Instant;

use warpgrid_engine::{Batch, Outcome};

use super::{Completion, Msg, Queue, QueueError, Reply, Slot, Submission};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Ticket of one submitted operation: pass it to [`Client::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What a full queue does to a submitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for room (the default).
    #[default]
    Block,
    /// Answer [`QueueError::Busy`]: the operation is not taken.
    Fail,
}

/// A pipelining client. Not `Clone`: its tickets are ordered and belong to it.
pub struct Client {
    queue: Queue,
    slot: Arc<Slot>,
    backpressure: Backpressure,
    /// Operations buffered and not yet sent; the first has ticket `pending_first`.
    pending: Batch,
    pending_first: u64,
    pending_since: Option<Instant>,
    next_ticket: u64,
    /// Finished chunks not yet released, oldest first.
    done: Vec<Completion>,
    incoming: Vec<Completion>,
    /// Tickets below this were released.
    released: u64,
    /// Tickets below this are finished (chunks complete in order).
    finished: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("next_ticket", &self.next_ticket)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(super) fn new(queue: Queue) -> Client {
        let vb = queue.value_bytes();
        let flush_at = queue.shared.config.flush_at;
        Client {
            queue,
            slot: Arc::new(Slot::default()),
            backpressure: Backpressure::Block,
            pending: Batch::with_capacity(vb, flush_at),
            pending_first: 0,
            pending_since: None,
            next_ticket: 0,
            done: Vec::new(),
            incoming: Vec::new(),
            released: 0,
            finished: 0,
        }
    }

    /// Chooses what a full queue does to this client's submissions.
    pub fn set_backpressure(&mut self, bp: Backpressure) {
        self.backpressure = bp;
    }

    /// Tickets submitted and not yet finished (as far as this client has seen).
    pub fn in_flight(&self) -> u64 {
        self.next_ticket - self.finished
    }

    /// Adds one operation (via `push`) and sends the chunk when it is due.
    fn add(
        &mut self,
        push: impl FnOnce(&mut Batch) -> Result<(), warpgrid_engine::TableError>,
    ) -> Result<Ticket, QueueError> {
        let due_before = self.pending.len() + 1 >= self.queue.shared.config.flush_at.max(1)
            || self.queue.shared.state.idle.load(Ordering::Relaxed);
        if due_before && self.backpressure == Backpressure::Fail && self.queue.shared.tx.is_full() {
            return Err(QueueError::Busy);
        }
        push(&mut self.pending)?;
        if self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if due_before {
            match self.flush_with(self.backpressure) {
                // The operation is buffered and goes with the next chunk.
                Err(QueueError::Busy) => {}
                other => other?,
            }
        }
        Ok(t)
    }

    /// Buffers a put of `key` (see [`Batch::put`](warpgrid_engine::Batch::put)).
    pub fn put(&mut self, key: u64, value: &[u8]) -> Result<Ticket, QueueError> {
        self.add(|b| b.put(key, value))
    }

    /// Buffers a get of `key`.
    pub fn get(&mut self, key: u64) -> Result<Ticket, QueueError> {
        self.add(|b| b.get(key))
    }

    /// Buffers a delete of `key`.
    pub fn delete(&mut self, key: u64) -> Result<Ticket, QueueError> {
        self.add(|b| b.delete(key))
    }

    /// Buffers a link of `a` and `b` with `strength` in (0, 1].
    pub fn link(&mut self, a: u64, b: u64, strength: f32) -> Result<Ticket, QueueError> {
        self.add(|batch| batch.link(a, b, strength))
    }

    /// Buffers an unlink of `a` and `b`.
    pub fn unlink(&mut self, a: u64, b: u64) -> Result<Ticket, QueueError> {
        self.add(|batch| batch.unlink(a, b))
    }

    /// Buffers a related query on `key` (see
    /// [`Batch::get_related`](warpgrid_engine::Batch::get_related)).
    pub fn get_related(
        &mut self,
        key: u64,
        min_strength: f32,
        max: u32,
    ) -> Result<Ticket, QueueError> {
        self.add(|b| b.get_related(key, min_strength, max))
    }

    /// Sends the buffered operations now (blocking on a full queue).
    pub fn flush(&mut self) -> Result<(), QueueError> {
        self.flush_with(Backpressure::Block)
    }

    fn flush_with(&mut self, bp: Backpressure) -> Result<(), QueueError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fresh =
            Batch::with_capacity(self.queue.value_bytes(), self.queue.shared.config.flush_at);
        let batch = std::mem::replace(&mut self.pending, fresh);
        let first = self.pending_first;
        let len = batch.len() as u64;
        let sub = Submission {
            batch,
            reply: Some(Reply::Slot {
                slot: Arc::clone(&self.slot),
                first,
            }),
            created: self.pending_since.take().unwrap_or_else(Instant::now),
        };
        match self.queue.send(Msg::Submit(Box::new(sub)), bp) {
            Ok(()) => {
                self.pending_first = first + len;
                Ok(())
            }
            Err((Msg::Submit(mut sub), e)) => {
                // Not sent: take the operations back; they go with the next chunk.
                sub.reply = None;
                self.pending_since = Some(sub.created);
                self.pending = std::mem::replace(&mut sub.batch, Batch::new(0));
                Err(e)
            }
            Err((Msg::Shutdown, e)) => Err(e),
        }
    }

    /// Blocks until ticket `t` finished and returns its result. Waiting releases the results
    /// of every chunk before `t`'s; wait in submission order.
    pub fn wait(&mut self, t: Ticket) -> Result<Outcome<'_>, QueueError> {
        if t.0 >= self.next_ticket {
            return Err(QueueError::Released(t.0));
        }
        if t.0 < self.released {
            return Err(QueueError::Released(t.0));
        }
        if t.0 >= self.pending_first {
            self.flush()?;
        }
        let at = loop {
            if let Some(at) = self.find(t.0) {
                break at;
            }
            self.slot.take_into(&mut self.incoming);
            self.incoming.sort_by_key(|c| c.first);
            for c in self.incoming.drain(..) {
                self.finished = self.finished.max(c.first + c.len);
                self.done.push(c);
            }
        };
        if at > 0 {
            self.released = self.done[at].first;
            self.done.drain(..at);
        }
        let d = &self.done[0];
        match &d.result {
            Ok(r) => Ok(r
                .get((t.0 - d.first) as usize)
                .expect("ticket inside its chunk")),
            Err(e) => Err(e.clone()),
        }
    }

    /// Index in `done` of the chunk holding ticket `t`.
    fn find(&self, t: u64) -> Option<usize> {
        let i = self.done.partition_point(|d| d.first <= t).checked_sub(1)?;
        (t < self.done[i].first + self.done[i].len).then_some(i)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Operations already accepted still run; their results are simply not read.
        let _ = self.flush();
    }
}
