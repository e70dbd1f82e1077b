//! The presence thread: keeps this node's uids and groups in Redis, renews them every
//! heartbeat, and (re)connects the link with back-off.
//!
//! The indexes only queue which uid or group changed (`Dirty`); this thread writes what is
//! true locally when it gets to it, so every write is idempotent and a dropped update is
//! healed by the full resync that follows an overflow or a reconnect.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{select, Receiver, Sender};
use dashmap::DashSet;
use redis::{Connection, RedisResult};

use super::{
    keys::{decode_uid, encode_uid, Keys},
    link::Link,
    scripts::{self, HEARTBEAT, LEAVE, REGISTER},
};
use crate::{conn::Uid, shared::ServerHandle};

/// The first wait before reconnecting; it doubles up to `reconnect_max_backoff`.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Updates written per round trip.
const BATCH: usize = 512;

/// What changed on this node.
#[derive(Debug)]
pub(crate) enum Dirty {
    Uid(Uid),
    Group(Arc<str>),
}

/// What the presence thread shares with the bus.
#[derive(Debug)]
pub(crate) struct PresenceShared {
    pub(crate) link: Arc<Link>,
    pub(crate) keys: Keys,
    /// An update was dropped: resync everything at the next chance.
    pub(crate) resync: AtomicBool,
    /// Uids bound here that another node holds too.
    pub(crate) shared_uids: DashSet<Uid>,
    pub(crate) ttl: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) max_backoff: Duration,
}

/// The presence thread's state.
pub(crate) struct Presence {
    pub(crate) shared: Arc<PresenceShared>,
    pub(crate) server: ServerHandle,
    pub(crate) dirty: Receiver<Dirty>,
    pub(crate) wake: Receiver<()>,
    pub(crate) stop: Receiver<()>,
    /// Told once the first connection attempt is over (either way).
    pub(crate) started: Option<Sender<()>>,
    pub(crate) conn: Option<Connection>,
    /// Callers' connections replaced since `refills_since` (see `check_link`).
    pub(crate) refills: usize,
    pub(crate) refills_since: Instant,
}

impl Presence {
    /// Run until told to stop; then leave the cluster.
    pub(crate) fn run(mut self) {
        // Between failed connection attempts; and between a loss and the reconnection, for
        // a link lost soon after it was made.
        let mut backoff = FIRST_BACKOFF;
        let mut flap = FIRST_BACKOFF;
        let mut connected_once = false;
        let mut connected_at = Instant::now();
        loop {
            if self.conn.is_none() {
                match self.connect() {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        self.refills = 0;
                        connected_at = Instant::now();
                        self.started.take();
                        let counters = &self.shared.link.counters;
                        if connected_once {
                            counters.reconnects.fetch_add(1, Relaxed);
                        }
                        connected_once = true;
                        tracing::info!(url = %self.shared.link.url, node = %self.shared.keys.node, "cluster: connected");
                    }
                    Err(err) => {
                        self.started.take();
                        if backoff == FIRST_BACKOFF {
                            tracing::warn!(url = %self.shared.link.url, "cluster: cannot reach Redis ({err}); retrying with back-off");
                        } else {
                            tracing::debug!(
                                "cluster: cannot reach Redis: {err}; again in {backoff:?}"
                            );
                        }
                        if !self.wait(&mut backoff) {
                            return;
                        }
                        continue;
                    }
                }
            }
            if !self.serve() {
                self.leave();
                return;
            }
            // Lost. A link that held for a heartbeat reconnects at once; one lost sooner (a
            // Redis that answers, then fails again) waits before reconnecting, longer each
            // time, so a flapping Redis is not resynced in a loop.
            if connected_at.elapsed() >= self.shared.heartbeat {
                flap = FIRST_BACKOFF;
            } else if !self.wait(&mut flap) {
                return;
            }
        }
    }

    /// Wait `backoff` (doubling it, up to the maximum); `false` if told to stop meanwhile.
    fn wait(&self, backoff: &mut Duration) -> bool {
        let waited = matches!(
            self.stop.recv_timeout(*backoff),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        );
        *backoff = (*backoff * 2).min(self.shared.max_backoff);
        waited
    }

    /// Serve while connected; `false` once told to stop.
    fn serve(&mut self) -> bool {
        let mut next_heartbeat = Instant::now() + self.shared.heartbeat;
        while self.conn.is_some() {
            // Due first: `select!` prefers a ready channel to its timeout, so steady churn
            // would otherwise starve the heartbeat and let this node's presence expire.
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + self.shared.heartbeat;
                if let Err(err) = self.heartbeat() {
                    tracing::warn!("cluster: presence update failed: {err}");
                    self.lost();
                    continue;
                }
            }
            let timeout = next_heartbeat.saturating_duration_since(Instant::now());
            let result = select! {
                recv(self.stop) -> _ => return false,
                recv(self.wake) -> _ => self.check_link(),
                recv(self.dirty) -> first => match first {
                    Ok(first) => self.apply(first),
                    Err(_) => return false,
                },
                default(timeout) => {
                    next_heartbeat = Instant::now() + self.shared.heartbeat;
                    self.heartbeat()
                }
            };
            if let Err(err) = result {
                tracing::warn!("cluster: presence update failed: {err}");
                self.lost();
            }
        }
        true
    }

    /// A caller's connection (or the subscriber's) failed: Redis is gone if this thread's
    /// own connection gets no answer either (then the caller reconnects everything, with
    /// back-off); if it answers, only the lost connections are replaced. Up to twice as
    /// many as there are within a heartbeat: past that, Redis answers this thread but keeps
    /// failing the callers (slower than `command_timeout`, or paused for writes), and is
    /// counted down too rather than have connections opened in a loop.
    fn check_link(&mut self) -> RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        redis::cmd("PING").query::<()>(conn)?;
        let link = &self.shared.link;
        if self.refills_since.elapsed() >= self.shared.heartbeat {
            self.refills = 0;
            self.refills_since = Instant::now();
        }
        if self.refills >= 2 * link.connections() {
            return Err(std::io::Error::other(
                "Redis answers, but the calls of other threads keep failing",
            )
            .into());
        }
        self.refills += link.refill()?;
        Ok(())
    }

    fn lost(&mut self) {
        self.conn = None;
        self.shared.link.mark_down();
        self.shared.link.clear();
    }

    /// Connect this thread's and the callers' connections, load the scripts, then write
    /// this node's whole presence.
    fn connect(&mut self) -> RedisResult<()> {
        let link = &self.shared.link;
        let mut conn = link.open_for_presence()?;
        for script in scripts::all() {
            script.load(&mut conn)?;
        }
        // What queued while down is in the resync.
        while self.dirty.try_recv().is_ok() {}
        self.resync(&mut conn)?;
        link.fill()?;
        self.conn = Some(conn);
        Ok(())
    }

    /// Write this node's presence from scratch: every local uid and group, and the uids a
    /// former run (or a dropped update) left that are no longer here removed.
    fn resync(&self, conn: &mut Connection) -> RedisResult<()> {
        self.shared.resync.store(false, Relaxed);
        let keys = &self.shared.keys;
        let stored: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&keys.own_uids).query(conn)?;
        let uids = self.server.shared.uids.all();
        // A uid no longer here is shared by no one here (Redis may have lost what would
        // have told this node so).
        let here: HashSet<&Uid> = uids.iter().collect();
        self.shared.shared_uids.retain(|uid| here.contains(uid));
        let local: HashSet<Vec<u8>> = uids.iter().map(encode_uid).collect();
        let stale = stored.iter().filter(|s| !local.contains(*s));
        let stale: Vec<Uid> = stale.filter_map(|s| decode_uid(s)).collect();
        self.register(conn, &stale)?;
        self.register(conn, &uids)?;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&keys.own_groups);
        for (group, count) in self.server.shared.groups.all() {
            pipe.hset(&keys.own_groups, &*group, count);
        }
        pipe.pexpire(&keys.own_groups, self.ttl_ms());
        pipe.query::<()>(conn)?;
        self.beat(conn)
    }

    /// Register each uid as it is here now (bound or not), a batch per round trip.
    fn register(&self, conn: &mut Connection, uids: &[Uid]) -> RedisResult<()> {
        let keys = &self.shared.keys;
        let ttl = self.ttl_ms();
        for chunk in uids.chunks(BATCH) {
            let mut pipe = redis::pipe();
            let mut present = Vec::with_capacity(chunk.len());
            for uid in chunk {
                let here = self.server.shared.uids.contains(uid);
                present.push(here);
                let flag = if here { "1" } else { "0" };
                let (key, encoded) = (keys.uid(uid), encode_uid(uid));
                pipe.add_command(REGISTER.cmd(
                    &[&key, &keys.own_uids],
                    &[&keys.node, &ttl, &flag, &encoded],
                ));
            }
            let holders: Vec<u64> = pipe.query(conn)?;
            for ((uid, here), holders) in chunk.iter().zip(present).zip(holders) {
                if here && holders > 1 {
                    self.shared.shared_uids.insert(uid.clone());
                } else {
                    self.shared.shared_uids.remove(uid);
                }
            }
        }
        Ok(())
    }

    /// Write the changes queued (this one and up to a batch more), each once.
    fn apply(&mut self, first: Dirty) -> RedisResult<()> {
        let mut uids = HashSet::new();
        let mut groups = HashSet::new();
        let mut next = Some(first);
        while let Some(dirty) = next.take() {
            match dirty {
                Dirty::Uid(uid) => uids.insert(uid),
                Dirty::Group(group) => groups.insert(group),
            };
            if uids.len() + groups.len() < BATCH {
                next = self.dirty.try_recv().ok();
            }
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let result = self.write(&mut conn, uids, groups);
        self.conn = Some(conn);
        result
    }

    fn write(
        &self,
        conn: &mut Connection,
        uids: HashSet<Uid>,
        groups: HashSet<Arc<str>>,
    ) -> RedisResult<()> {
        if self.shared.resync.load(Relaxed) {
            return self.resync(conn);
        }
        let uids: Vec<Uid> = uids.into_iter().collect();
        self.register(conn, &uids)?;
        if groups.is_empty() {
            return Ok(());
        }
        let own = &self.shared.keys.own_groups;
        let mut pipe = redis::pipe();
        for group in groups {
            match self.server.shared.groups.count(&group) {
                0 => pipe.hdel(own, &*group),
                count => pipe.hset(own, &*group, count),
            };
        }
        pipe.pexpire(own, self.ttl_ms());
        pipe.query(conn)
    }

    /// Renew this node's entry, then every local uid (the entry first: with many uids
    /// their renewal takes a while, and the node must not look dead meanwhile).
    fn heartbeat(&mut self) -> RedisResult<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let result = if self.shared.resync.load(Relaxed) {
            self.resync(&mut conn)
        } else {
            let uids = self.server.shared.uids.all();
            self.beat(&mut conn)
                .and_then(|()| self.register(&mut conn, &uids))
        };
        self.conn = Some(conn);
        result
    }

    fn beat(&self, conn: &mut Connection) -> RedisResult<()> {
        let keys = &self.shared.keys;
        HEARTBEAT.run(
            conn,
            &[&keys.nodes, &keys.own_uids, &keys.own_groups],
            &[&keys.node, &self.ttl_ms()],
        )
    }

    /// Take this node out of presence (at shutdown), if Redis is there.
    fn leave(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let keys = &self.shared.keys;
        let left: RedisResult<u64> = LEAVE.run(
            conn,
            &[&keys.nodes, &keys.own_uids, &keys.own_groups],
            &[&keys.node, &keys.uid_prefix()],
        );
        match left {
            Ok(uids) => tracing::info!(node = %keys.node, uids, "cluster: left"),
            Err(err) => tracing::warn!(
                "cluster: could not leave cleanly ({err}): presence expires by itself"
            ),
        }
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.shared.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}
