//! Handing events to workers: dispatch, bounded inboxes with a backlog behind them, and
//! coalesced wake-ups.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use crossbeam_channel::TrySendError;

use super::{
    local::{pause, Held},
    Reactor,
};
use crate::{
    conn::inflight,
    dispatch::{Load, Subject},
    shared::{Event, WorkerShared},
};

/// The workers' load, as the idle dispatch mode reads it.
pub(super) struct Workers<'a>(pub(super) &'a [WorkerShared]);

impl Load for Workers<'_> {
    fn is_idle(&self, worker: usize) -> bool {
        self.0[worker].is_idle()
    }

    fn is_stopping(&self, worker: usize) -> bool {
        self.0[worker].stopping.load(Ordering::Relaxed)
    }

    fn depth(&self, worker: usize) -> usize {
        self.0[worker].queue_len()
    }
}

impl Reactor {
    /// Dispatch the packets of one read. In a stateful mode they all go to one worker as one
    /// event (one hand-over, answered with one write); otherwise each packet picks its worker.
    pub(super) fn deliver_packets(&mut self, key: usize, packets: Bytes, lens: &[u32]) {
        let Some(conn) = self.conns.get(key).map(|lc| lc.conn.clone()) else {
            return;
        };
        match lens {
            [] => {}
            [_] => self.deliver(key, Event::Receive(conn, packets)),
            _ if self.dispatcher.is_stateful() => {
                self.deliver(key, Event::Batch(conn, packets, lens.into()));
            }
            _ => {
                let mut start = 0;
                for &len in lens {
                    let end = start + len as usize;
                    self.deliver(key, Event::Receive(conn.clone(), packets.slice(start..end)));
                    start = end;
                }
            }
        }
    }

    /// Dispatch a counted event of connection `key` to the worker its mode picks.
    pub(super) fn deliver(&mut self, key: usize, event: Event) {
        // The connection may have been closed a moment ago (a failed poller call): the event
        // then has nobody to go to, and was never counted.
        let Some(lc) = self.conns.get_mut(key) else {
            return;
        };
        let conn = &lc.conn;
        let weight = conn.inflight.load(Ordering::Acquire) & inflight::WEIGHT;
        let data = match &event {
            Event::Receive(_, data) | Event::Message(_, _, data) => Some(&data[..]),
            _ => None,
        };
        let subject = Subject {
            conn: conn.id,
            peer: &conn.peer,
            uid_hash: conn
                .uid_bound
                .load(Ordering::Acquire)
                .then(|| conn.uid_hash.load(Ordering::Relaxed)),
            last: lc.worker,
            in_flight: weight != 0,
            data,
        };
        let worker = self
            .dispatcher
            .pick(&subject, &Workers(&self.shared.workers));
        lc.worker = Some(worker);
        conn.inflight.fetch_add(event.weight(), Ordering::AcqRel);
        let id = conn.id;
        let counters = &self.shared.stats.reactors[self.id];
        counters.dispatched.add(1);
        counters.per_worker[worker].add(1);
        let backlogged = self.push(worker, event);
        if let Some(lc) = self.conns.get_mut(key).filter(|_| backlogged) {
            if lc.paused & pause::INBOX == 0 {
                lc.paused |= pause::INBOX;
                self.stalled[worker].push((key, id));
                self.sync_interest(key);
            }
        }
    }

    /// Hand an event to a worker, or queue it behind that worker's backlog. Returns whether it
    /// went to the backlog.
    pub(super) fn push(&mut self, worker: usize, event: Event) -> bool {
        if let Some(inline) = &mut self.inline {
            inline.handle(event);
            return false;
        }
        if self.backlog[worker].is_empty() {
            match self.try_hand(worker, event) {
                Ok(()) => return false,
                Err(event) => self.backlog[worker].push_back(event),
            }
        } else {
            self.backlog[worker].push_back(event);
        }
        true
    }

    /// `try_send`, and if the queue is full, ask to be woken and try once more (so a worker
    /// that emptied its queue in between cannot be missed).
    fn try_hand(&mut self, worker: usize, event: Event) -> Result<(), Event> {
        match self.inboxes[worker].try_send(event) {
            Ok(()) => {
                self.handed(worker);
                Ok(())
            }
            Err(TrySendError::Full(event)) => {
                self.shared.workers[worker].want_wake(self.id);
                std::sync::atomic::fence(Ordering::SeqCst);
                self.inboxes[worker]
                    .try_send(event)
                    .map_err(|err| err.into_inner())?;
                self.handed(worker);
                Ok(())
            }
            Err(TrySendError::Disconnected(event)) => Err(event),
        }
    }

    /// Remember to wake `worker` at the end of this loop (once, however many events it got).
    pub(super) fn handed(&mut self, worker: usize) {
        if !self.to_wake[worker] {
            self.to_wake[worker] = true;
            self.wake_list.push(worker);
        }
    }

    /// Wake the workers that were handed events and went to sleep.
    pub(super) fn wake_workers(&mut self) {
        if self.wake_list.is_empty() {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        for worker in self.wake_list.drain(..) {
            self.to_wake[worker] = false;
            self.shared.workers[worker].wake();
        }
    }

    pub(super) fn flush_backlogs(&mut self) {
        for worker in 0..self.backlog.len() {
            while let Some(event) = self.backlog[worker].pop_front() {
                if let Err(event) = self.try_hand(worker, event) {
                    self.backlog[worker].push_front(event);
                    break;
                }
            }
            if self.backlog[worker].is_empty() && !self.stalled[worker].is_empty() {
                let mut stalled = std::mem::take(&mut self.stalled[worker]);
                for &(key, id) in &stalled {
                    if let Some(lc) = self.conns.get_mut(key).filter(|lc| lc.conn.id == id) {
                        lc.paused &= !pause::INBOX;
                        let was_held = lc.held_events != Held::None;
                        // Resumes reading, and hands over watermark events held meanwhile.
                        self.check_output(key);
                        // Or, if they are still held (its events go to another worker now,
                        // backed up too), lists it there: it is off this list. (Events held
                        // only now were listed by `check_output`.)
                        if was_held {
                            self.relist_held(key);
                        }
                        self.resume_kept(key);
                    }
                }
                // Keep the allocation, and whatever stalled again while we went through it.
                stalled.clear();
                stalled.append(&mut self.stalled[worker]);
                self.stalled[worker] = stalled;
            }
        }
    }
}
