//! The subscriber thread (this node's channel and the broadcast channel, reconnecting with
//! back-off) and the delivery thread (what it read, sent to this node's connections like
//! any other thread's `send_to_uid`, group send or broadcast). A message for a uid that
//! finds the queue empty is delivered by the subscriber itself, one wake-up fewer.

use std::{
    sync::{
        atomic::{
            AtomicBool,
            Ordering::{Relaxed, SeqCst},
        },
        Arc,
    },
    time::Duration,
};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use redis::{Connection, Msg, RedisResult};

use super::{
    inbox::{Full, Inbox, Outbox, Throttle},
    keys::Keys,
    link::Link,
    presence::FIRST_BACKOFF,
    wire::{self, Inbound, Target},
};
use crate::shared::ServerHandle;

static DROPS: Throttle = Throttle::new();

/// The subscriber thread's state.
pub(crate) struct Subscriber {
    /// Where uid messages are delivered when nothing waits in the queue.
    pub(crate) server: ServerHandle,
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Keys,
    pub(crate) inbox: Inbox,
    /// Set to stop (with `stop` dropped): checked after every read.
    pub(crate) stopping: Arc<AtomicBool>,
    pub(crate) stop: Receiver<()>,
    /// Told once the first subscription attempt is over (either way).
    pub(crate) started: Option<Sender<()>>,
    /// How long a read waits before the subscriber pings Redis (to find a dead link).
    pub(crate) idle: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_message_bytes: usize,
}

impl Subscriber {
    /// Subscribe and read until told to stop, reconnecting with back-off.
    pub(crate) fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stopping.load(Relaxed) {
            let result = self
                .link
                .open(self.idle)
                .and_then(|conn| self.listen(conn, &mut backoff));
            let was_subscribed = self.link.subscribed.swap(false, Relaxed);
            self.link.subscriber_id.store(0, Relaxed);
            self.started.take();
            if self.stopping.load(Relaxed) {
                return;
            }
            if let Err(err) = result {
                // The first failure of a series is a warning (messages for this node are
                // missed until it subscribes again); the retries while it fails are not.
                if was_subscribed || backoff == FIRST_BACKOFF {
                    tracing::warn!("cluster: subscriber: {err}; subscribing again in {backoff:?}");
                } else {
                    tracing::debug!("cluster: subscriber: {err}; again in {backoff:?}");
                }
                if was_subscribed {
                    // Redis may be gone (the presence thread finds out), or only this
                    // connection was cut.
                    self.link.check();
                }
            }
            if !matches!(
                self.stop.recv_timeout(backoff),
                Err(RecvTimeoutError::Timeout)
            ) {
                return;
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    fn listen(&mut self, mut conn: Connection, backoff: &mut Duration) -> RedisResult<()> {
        let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut conn)?;
        warn_if_taken(&mut conn, &self.keys.own_channel, &self.keys.node);
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&[&self.keys.own_channel, &self.keys.broadcast])?;
        self.link.subscriber_id.store(id, SeqCst);
        self.link.subscribed.store(true, Relaxed);
        self.started.take();
        *backoff = FIRST_BACKOFF;
        // A stop that read no id (it came before the store above) is seen here: the read
        // below would not be ended for it.
        if self.stopping.load(SeqCst) {
            return Ok(());
        }
        loop {
            match pubsub.get_message() {
                Ok(message) => self.take(&message),
                Err(err) if err.is_timeout() => {
                    if self.stopping.load(Relaxed) {
                        return Ok(());
                    }
                    // Quiet for a while: make sure the link is alive.
                    pubsub.ping::<redis::Value>()?;
                }
                Err(err) => return Err(err),
            }
            if self.stopping.load(Relaxed) {
                return Ok(());
            }
        }
    }

    /// Decode a message and queue it for delivery, or drop it (counted, logged).
    fn take(&self, message: &Msg) {
        let counters = &self.link.counters;
        let bytes = message.get_payload_bytes();
        let direct = message.get_channel_name() == self.keys.own_channel;
        let inbound = match wire::decode(bytes) {
            Ok(inbound) if inbound.payload.len() <= self.max_message_bytes => inbound,
            Ok(inbound) => {
                return self.drop_one(&format!(
                    "{} bytes, over max_message_bytes",
                    inbound.payload.len()
                ))
            }
            Err(err) => return self.drop_one(&format!("undecodable ({err:?})")),
        };
        if !direct && inbound.from == self.keys.node {
            return; // Our own broadcast, delivered here already.
        }
        let counter = if direct {
            &counters.received_direct
        } else {
            &counters.received_broadcast
        };
        counter.fetch_add(1, Relaxed);
        // A message for a uid is cheap to deliver: with nothing ahead of it, deliver it
        // here and save the delivery thread's wake-up. Groups and broadcasts (many
        // connections) go through the queue, so reading Redis never waits on them.
        if matches!(inbound.target, Target::Uid(_)) && self.inbox.is_idle() {
            return deliver_one(&self.server, &self.link, inbound);
        }
        match self.inbox.push(inbound) {
            Ok(()) => {}
            Err(Full::Closed) => {}
            Err(full) => self.drop_one(&format!("the delivery queue is full ({full:?})")),
        }
    }

    fn drop_one(&self, why: &str) {
        self.link.counters.dropped.fetch_add(1, Relaxed);
        if let Some(times) = DROPS.ready() {
            tracing::warn!(times, "cluster: dropped a message from the bus: {why}");
        }
    }
}

/// Warn if another connection is subscribed to this node's `channel`: another live node
/// with this id (node ids must be unique: both would miss messages), or a former run whose
/// connection Redis has not seen drop yet (a crashed host: then it goes by itself). A
/// warning, not a refusal, for that second case (and this node's own connection from before
/// a partition counts too). A Redis that does not answer the question (an ACL without
/// PUBSUB) is not an error.
fn warn_if_taken(conn: &mut Connection, channel: &str, node: &str) {
    let answer: RedisResult<(String, u64)> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(conn);
    if let Ok((_, taken @ 1..)) = answer {
        tracing::error!(
            node,
            taken,
            "cluster: another connection is subscribed with this node's id: another live node \
             with the same id (node ids must be unique; both will miss messages), or a former \
             run Redis has not seen go yet"
        );
    }
}

/// Deliver what the subscriber queued, until it is gone.
pub(crate) fn deliver(server: &ServerHandle, link: &Link, outbox: &Outbox) {
    while let Some(message) = outbox.next() {
        deliver_one(server, link, message);
        outbox.done();
    }
}

/// Send one message from the bus to this node's connections, counting them.
fn deliver_one(server: &ServerHandle, link: &Link, message: Inbound) {
    let payload = &message.payload;
    let delivery = match message.target {
        Target::Uid(uid) => server.deliver_to_uid(&uid.into(), payload),
        Target::Group(group) => server.deliver_to_group(&group, payload, &[]),
        Target::All => server.broadcast_local(payload, |_| true),
    };
    let delivered = delivery.delivered() as u64;
    link.counters.delivered.fetch_add(delivered, Relaxed);
}
