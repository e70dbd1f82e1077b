//! `RedisBus`: the cluster bus over Redis, as the server sees it (`ClusterBus`), and its
//! threads' start and stop.

use std::{
    fmt, io,
    sync::{
        atomic::{
            AtomicBool,
            Ordering::{Relaxed, SeqCst},
        },
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use super::{
    config::ClusterConfig,
    inbox::{inbox, Throttle},
    keys::{decode_uid, Keys},
    link::Link,
    presence::{Dirty, Presence, PresenceShared},
    scripts::{GROUP, IS_ONLINE, ONLINE, SEND_UID},
    subscriber::{deliver, Subscriber},
    wire::{self, Target},
};
use crate::{
    conn::Uid,
    error::ClusterError,
    shared::{ClusterBus, ClusterState, ClusterStats, ServerHandle, Watch},
};

/// How long `stop` waits for the bus's threads before leaving them behind.
const STOP_WAIT: Duration = Duration::from_secs(2);

static PRESENCE_DROPS: Throttle = Throttle::new();

/// A node's cluster bus over Redis.
pub(crate) struct RedisBus {
    config: ClusterConfig,
    presence: Arc<PresenceShared>,
    link: Arc<Link>,
    dirty: Sender<Dirty>,
    /// Taken by `start`.
    parts: Mutex<Option<Parts>>,
    running: Mutex<Option<Running>>,
}

/// What the threads take when they start.
struct Parts {
    dirty: Receiver<Dirty>,
    wake: Receiver<()>,
}

/// The threads, and how to stop them.
struct Running {
    stop: Sender<()>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Each thread sends its index here as it ends.
    done: Receiver<usize>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("url", &self.link.url)
            .field("node", &self.config.node_id)
            .field("up", &self.link.is_up())
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// A bus for `config` (checked), not connected yet.
    pub(crate) fn new(config: ClusterConfig) -> Result<RedisBus, crate::error::ConfigError> {
        config.check()?;
        let (wake_tx, wake) = bounded(1);
        let link = Arc::new(Link::new(&config, wake_tx)?);
        let (dirty_tx, dirty) = bounded(config.presence_queue);
        let presence = Arc::new(PresenceShared {
            link: link.clone(),
            keys: Keys::new(&config.namespace, &config.node_id),
            resync: AtomicBool::new(false),
            shared_uids: Default::default(),
            ttl: config.presence_ttl,
            heartbeat: config.heartbeat(),
            max_backoff: config.reconnect_max_backoff,
        });
        Ok(RedisBus {
            config,
            presence,
            link,
            dirty: dirty_tx,
            parts: Mutex::new(Some(Parts { dirty, wake })),
            running: Mutex::new(None),
        })
    }

    /// Whether Redis answers now (a connection and a `PING`), for `build`.
    pub(crate) fn probe(&self) -> Result<(), String> {
        let mut conn = self.link.open_for_commands().map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub(crate) fn url(&self) -> &str {
        &self.link.url
    }

    fn keys(&self) -> &Keys {
        &self.presence.keys
    }

    fn queue(&self, dirty: Dirty) {
        if let Err(TrySendError::Full(_)) = self.dirty.try_send(dirty) {
            self.presence.resync.store(true, Relaxed);
            // While Redis is down nothing drains the queue, and the reconnection resyncs
            // everything anyway: a full queue then is expected, not a drop worth counting.
            if !self.link.is_up() {
                return;
            }
            self.link.counters.presence_dropped.fetch_add(1, Relaxed);
            if let Some(times) = PRESENCE_DROPS.ready() {
                tracing::warn!(times, "cluster: presence queue full; a full resync follows");
            }
        }
    }

    /// Publish `target`'s message through `f`, counting it; refused when too large.
    fn publish(
        &self,
        target: Target,
        data: &[u8],
        f: impl FnOnce(&mut redis::Connection, &[u8]) -> redis::RedisResult<usize>,
    ) -> Result<usize, ClusterError> {
        let counters = &self.link.counters;
        let limit = self.config.max_message_bytes;
        // A broadcast is one message on the broadcast channel; a uid's or a group's, one per
        // node's channel it went to.
        let one = matches!(target, Target::All);
        let result = if data.len() > limit {
            Err(ClusterError::TooLarge {
                len: data.len(),
                limit,
            })
        } else {
            wire::encode(&self.config.node_id, target, data)
                .map_err(|too| ClusterError::NameTooLong {
                    len: too.len,
                    limit: too.limit,
                })
                .and_then(|bytes| self.link.call(|conn| f(conn, &bytes)))
        };
        match result {
            Ok(n) => counters
                .published
                .fetch_add(if one { 1 } else { n as u64 }, Relaxed),
            Err(_) => counters.publish_failed.fetch_add(1, Relaxed),
        };
        result
    }

    /// Start the presence, subscriber and delivery threads.
    fn spawn(
        &self,
        server: ServerHandle,
        parts: Parts,
    ) -> io::Result<(Running, Vec<Receiver<()>>)> {
        let (stop, stop_rx) = bounded::<()>(0);
        let stopping = Arc::new(AtomicBool::new(false));
        let (presence_started, presence_ready) = bounded(0);
        let (subscriber_started, subscriber_ready) = bounded(0);
        let (to_deliver, outbox) =
            inbox(self.config.inbound_queue, self.config.inbound_queue_bytes);
        let presence = Presence {
            shared: self.presence.clone(),
            server: server.clone(),
            dirty: parts.dirty,
            wake: parts.wake,
            stop: stop_rx.clone(),
            started: Some(presence_started),
            conn: None,
            refills: 0,
            refills_since: Instant::now(),
        };
        let subscriber = Subscriber {
            server: server.clone(),
            link: self.link.clone(),
            keys: self.keys().clone(),
            inbox: to_deliver,
            stopping: stopping.clone(),
            stop: stop_rx,
            started: Some(subscriber_started),
            idle: self.config.heartbeat(),
            max_backoff: self.config.reconnect_max_backoff,
            max_message_bytes: self.config.max_message_bytes,
        };
        let link = self.link.clone();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let threads = vec![
            spawn("eddy-cluster-presence", (&done_tx, 0), move || {
                presence.run()
            })?,
            spawn("eddy-cluster-subscriber", (&done_tx, 1), move || {
                subscriber.run()
            })?,
            spawn("eddy-cluster-deliver", (&done_tx, 2), move || {
                deliver(&server, &link, &outbox)
            })?,
        ];
        let running = Running {
            stop,
            stopping,
            threads,
            done,
        };
        Ok((running, vec![presence_ready, subscriber_ready]))
    }
}

/// Start a thread that sends `index` on `done` as it ends.
fn spawn(
    name: &str,
    (done, index): (&Sender<usize>, usize),
    body: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let done = done.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            body();
            let _ = done.send(index);
        })
}

impl Watch for RedisBus {
    fn uid_changed(&self, uid: &Uid) {
        self.queue(Dirty::Uid(uid.clone()));
    }

    fn group_changed(&self, group: &Arc<str>) {
        self.queue(Dirty::Group(group.clone()));
    }
}

impl ClusterBus for RedisBus {
    fn is_shared(&self, uid: &Uid) -> bool {
        self.presence.shared_uids.contains(uid)
    }

    fn send_to_uid(&self, uid: &Uid, data: &[u8]) -> Result<usize, ClusterError> {
        let keys = self.keys();
        let (key, prefix) = (keys.uid(uid), keys.channel_prefix());
        self.publish(Target::Uid(uid.into()), data, |conn, bytes| {
            SEND_UID.run(conn, &[&key], &[&keys.node, &prefix, &bytes])
        })
    }

    fn broadcast(&self, data: &[u8]) -> Result<usize, ClusterError> {
        let keys = self.keys();
        let me = usize::from(self.link.subscribed.load(Relaxed));
        self.publish(Target::All, data, |conn, bytes| {
            let receivers: usize = redis::cmd("PUBLISH")
                .arg(&keys.broadcast)
                .arg(bytes)
                .query(conn)?;
            Ok(receivers.saturating_sub(me))
        })
    }

    fn send_to_group(&self, group: &str, data: &[u8]) -> Result<usize, ClusterError> {
        let keys = self.keys();
        let (groups, channels) = (keys.groups_prefix(), keys.channel_prefix());
        self.publish(Target::Group(group.to_string()), data, |conn, bytes| {
            GROUP.run(
                conn,
                &[&keys.nodes],
                &[&keys.node, &groups, &channels, &group, &bytes],
            )
        })
    }

    fn is_uid_online(&self, uid: &Uid) -> Result<bool, ClusterError> {
        let keys = self.keys();
        let key = keys.uid(uid);
        self.link
            .call(|conn| IS_ONLINE.run(conn, &[&key], &[&keys.node]))
    }

    fn uid_count(&self) -> Result<usize, ClusterError> {
        let keys = self.keys();
        let prefix = keys.uids_prefix();
        self.link
            .call(|conn| ONLINE.run(conn, &[&keys.nodes], &[&prefix, &0]))
    }

    fn online_uids(&self, limit: usize) -> Result<Vec<Uid>, ClusterError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let prefix = keys.uids_prefix();
        let raw: Vec<Vec<u8>> = self
            .link
            .call(|conn| ONLINE.run(conn, &[&keys.nodes], &[&prefix, &limit]))?;
        Ok(raw.iter().filter_map(|raw| decode_uid(raw)).collect())
    }

    fn remote_group_count(&self, group: &str) -> Result<usize, ClusterError> {
        let keys = self.keys();
        let (groups, channels) = (keys.groups_prefix(), keys.channel_prefix());
        self.link.call(|conn| {
            GROUP.run(
                conn,
                &[&keys.nodes],
                &[&keys.node, &groups, &channels, &group, &""],
            )
        })
    }

    fn stats(&self) -> ClusterStats {
        let c = &self.link.counters;
        ClusterStats {
            node_id: self.config.node_id.clone(),
            state: if self.link.is_up() {
                ClusterState::Up
            } else {
                ClusterState::Down
            },
            subscribed: self.link.subscribed.load(Relaxed),
            published: c.published.load(Relaxed),
            publish_failed: c.publish_failed.load(Relaxed),
            received_direct: c.received_direct.load(Relaxed),
            received_broadcast: c.received_broadcast.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            presence_dropped: c.presence_dropped.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            shared_uids: self.presence.shared_uids.len(),
        }
    }

    /// Start the threads, and wait (a bounded time) for their first connection attempts,
    /// so a node that can reach Redis is up and subscribed when its server starts.
    fn start(&self, server: ServerHandle) -> io::Result<()> {
        let Some(parts) = self.parts.lock().take() else {
            return Err(io::Error::other("the cluster bus was started already"));
        };
        let (running, ready) = self.spawn(server, parts)?;
        *self.running.lock() = Some(running);
        let deadline =
            Instant::now() + self.config.connect_timeout * 2 + self.config.command_timeout * 4;
        for started in ready {
            let _ = started.recv_deadline(deadline);
        }
        Ok(())
    }

    fn stop(&self) {
        let Some(running) = self.running.lock().take() else {
            return;
        };
        // (SeqCst with the subscriber's store of its id and load of `stopping`: either this
        // reads its id, or it sees `stopping` before it reads.)
        running.stopping.store(true, SeqCst);
        // End the subscriber's blocking read: Redis closes its connection.
        let id = self.link.subscriber_id.load(SeqCst);
        if id != 0 {
            self.link.kill_client(id);
        }
        drop(running.stop);
        let deadline = Instant::now() + STOP_WAIT;
        let mut threads: Vec<Option<JoinHandle<()>>> =
            running.threads.into_iter().map(Some).collect();
        for _ in 0..threads.len() {
            let Ok(index) = running.done.recv_deadline(deadline) else {
                tracing::warn!("cluster: a bus thread did not stop in time: left behind");
                break;
            };
            if let Some(thread) = threads.get_mut(index).and_then(Option::take) {
                let _ = thread.join();
            }
        }
    }
}
