//! The node's connections to Redis for the calls other threads make (remote sends, presence
//! questions), the up/down state they share, and the bus's counters.
//!
//! A caller never connects: it takes a free connection, or waits at most `command_timeout`
//! for one (then at most `command_timeout` for the answer), and fails at once with
//! `Unavailable` while the state is down (or, briefly, when every free connection was lost
//! and is not replaced yet). A call that fails or times out drops only its own connection
//! and wakes the presence thread, which asks Redis itself, on its own connection and with a
//! longer wait: if Redis answers (it was only slow, or only that connection was cut), the
//! lost connections are replaced, up to twice as many as there are within a heartbeat; if
//! it does not, or the callers' calls keep failing past that, the state goes down and every
//! connection is reconnected (with back-off for a link lost soon after it was made). One
//! late answer used to mark the whole link down, and a Redis slower than `command_timeout`
//! now and then was reconnected and resynced in a loop.

use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult};

use super::{config::ClusterConfig, inbox::Throttle};
use crate::error::{ClusterError, ConfigError};

/// The bus's counters (what `ClusterStats` shows).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) received_direct: AtomicU64,
    pub(crate) received_broadcast: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) presence_dropped: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Connections to Redis shared by the threads that call it, and whether it is up.
pub(crate) struct Link {
    client: Client,
    /// The URL without its password, for messages.
    pub(crate) url: String,
    up: AtomicBool,
    /// Whether the subscriber is subscribed now.
    pub(crate) subscribed: AtomicBool,
    /// The subscriber's client id in Redis, to end its blocking read at stop (0: none).
    pub(crate) subscriber_id: AtomicU64,
    slots: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
    command_timeout: Duration,
    connect_timeout: Duration,
    /// Tells the presence thread to look at the link (a call just failed).
    wake: Sender<()>,
    pub(crate) counters: Counters,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.url)
            .field("up", &self.is_up())
            .field("connections", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the Redis of `config`, down until [`fill`](Self::fill)ed.
    pub(crate) fn new(config: &ClusterConfig, wake: Sender<()>) -> Result<Link, ConfigError> {
        let info: ConnectionInfo = config
            .redis_url
            .as_str()
            .into_connection_info()
            .map_err(|err| ConfigError::new("cluster.redis_url", err.to_string()))?;
        let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
        let client = Client::open(info.set_tcp_settings(tcp))
            .map_err(|err| ConfigError::new("cluster.redis_url", err.to_string()))?;
        Ok(Link {
            client,
            url: redact(&config.redis_url),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            subscriber_id: AtomicU64::new(0),
            slots: (0..config.connections).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            command_timeout: config.command_timeout,
            connect_timeout: config.connect_timeout,
            wake,
            counters: Counters::default(),
        })
    }

    /// A new connection, with the timeouts set (`read_timeout`: how long a read may wait).
    pub(crate) fn open(&self, read_timeout: Duration) -> RedisResult<Connection> {
        self.open_with(self.connect_timeout, read_timeout, self.command_timeout)
    }

    /// A new connection made within `connect`, whose reads and writes wait `read` and
    /// `write` at most.
    fn open_with(
        &self,
        connect: Duration,
        read: Duration,
        write: Duration,
    ) -> RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(connect)?;
        conn.set_read_timeout(Some(read))?;
        conn.set_write_timeout(Some(write))?;
        Ok(conn)
    }

    /// A new connection for commands (reads wait at most `command_timeout`).
    pub(crate) fn open_for_commands(&self) -> RedisResult<Connection> {
        self.open(self.command_timeout)
    }

    /// A new connection for the presence thread, whose answer decides whether Redis is gone:
    /// its reads and writes wait `connect_timeout` (at least `command_timeout`), so a Redis
    /// that is only slow for a moment is not taken for a lost one.
    pub(crate) fn open_for_presence(&self) -> RedisResult<Connection> {
        let wait = self.connect_timeout.max(self.command_timeout);
        self.open_with(self.connect_timeout, wait, wait)
    }

    /// Connect every caller's connection, then count Redis as up.
    pub(crate) fn fill(&self) -> RedisResult<()> {
        for slot in self.slots.iter() {
            let conn = self.open_for_commands()?;
            *slot.lock() = Some(conn);
        }
        self.up.store(true, Relaxed);
        Ok(())
    }

    /// Replace the callers' connections that were dropped (Redis is known to answer);
    /// returns how many were. A slot a caller holds is passed over: it holds a connection,
    /// or its caller finds it empty and asks again. (Callers pass over a slot being filled.)
    pub(crate) fn refill(&self) -> RedisResult<usize> {
        let mut opened = 0;
        for slot in self.slots.iter() {
            let Some(mut slot) = slot.try_lock() else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(self.open_for_commands()?);
                opened += 1;
            }
        }
        Ok(opened)
    }

    /// How many connections the callers share.
    pub(crate) fn connections(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// Count Redis as down (calls fail at once from now on) and wake the presence thread.
    pub(crate) fn mark_down(&self) {
        if self.up.swap(false, Relaxed) {
            tracing::warn!(url = %self.url, "cluster: Redis lost; remote sends fail until it is back");
        }
        let _ = self.wake.try_send(());
    }

    /// A connection failed a caller: ask the presence thread to find out why (and replace
    /// it), without counting Redis as down.
    pub(crate) fn check(&self) {
        let _ = self.wake.try_send(());
    }

    /// Run `f` on a caller's connection: at once `Unavailable` when down; an I/O error or a
    /// timeout drops that connection (see the module's doc); an error answer is `Rejected`
    /// (and logged, a few times a second at most).
    pub(crate) fn call<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        if !self.is_up() {
            return Err(ClusterError::Unavailable);
        }
        let mut slot = self.slot().ok_or(ClusterError::Unavailable)?;
        let Some(conn) = slot.as_mut() else {
            // Every free connection was lost and not replaced yet.
            drop(slot);
            self.check();
            return Err(ClusterError::Unavailable);
        };
        match f(conn) {
            Ok(value) => Ok(value),
            Err(err) if is_link_failure(&err) => {
                *slot = None;
                drop(slot);
                self.check();
                Err(ClusterError::Unavailable)
            }
            Err(err) => {
                if let Some(times) = REFUSED.ready() {
                    tracing::warn!(times, "cluster: Redis refused a command: {err}");
                }
                Err(ClusterError::Rejected)
            }
        }
    }

    /// A free connection (one that was not lost, if there is one), or the next one once
    /// free (at most `command_timeout`).
    fn slot(&self) -> Option<parking_lot::MutexGuard<'_, Option<Connection>>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Relaxed) % n;
        let mut lost = None;
        for i in 0..n {
            if let Some(slot) = self.slots[(start + i) % n].try_lock() {
                if slot.is_some() {
                    return Some(slot);
                }
                lost.get_or_insert(slot);
            }
        }
        if lost.is_some() {
            return lost;
        }
        let deadline = Instant::now() + self.command_timeout;
        self.slots[start].try_lock_until(deadline)
    }

    /// End the subscriber's blocking read (at stop): Redis closes client `id`'s connection.
    /// Through a caller's connection, or, when there is none (Redis counted down), a
    /// connection of its own.
    pub(crate) fn kill_client(&self, id: u64) {
        let kill = |conn: &mut Connection| {
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query::<()>(conn)
        };
        if self.call(kill).is_ok() {
            return;
        }
        // Briefly: the shutdown waits for this.
        let wait = self.connect_timeout.min(KILL_WAIT);
        let conn = self.open_with(wait, wait, wait);
        if let Err(err) = conn.and_then(|mut conn| kill(&mut conn)) {
            tracing::debug!("cluster: could not end the subscriber's read: {err}");
        }
    }

    /// Drop every caller's connection (after a loss: they are reconnected together).
    pub(crate) fn clear(&self) {
        self.up.store(false, Relaxed);
        for slot in self.slots.iter() {
            // A caller holding one finds out by itself.
            if let Some(mut slot) = slot.try_lock() {
                *slot = None;
            }
        }
    }
}

/// Whether an error means the connection cannot be trusted any more.
pub(crate) fn is_link_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}

/// How long each step (the connect, the command) of a stop's fallback connection for
/// `CLIENT KILL` may wait: a stop waits at most about twice this for it.
const KILL_WAIT: Duration = Duration::from_millis(500);

/// Redis refusing commands (out of memory, read-only, an ACL) is logged this often at most.
static REFUSED: Throttle = Throttle::new();

/// The URL with any password hidden: `user:password@` and a `pass=` query parameter (the
/// form `redis+unix://` URLs take).
fn redact(url: &str) -> String {
    // The credentials end at the last `@` of the authority (before the query or the
    // fragment: an `@` there is not theirs; nor in a unix socket's path). A TCP URL's path is
    // a database number, so an `@` after a `/` there is a password's that holds a raw `/`.
    let url = match url.find("://") {
        Some(scheme) => {
            let rest = &url[scheme + 3..];
            let ends: &[char] = if url[..scheme].contains("unix") {
                &['/', '?', '#']
            } else {
                &['?', '#']
            };
            let authority = rest.find(ends).map_or(rest, |end| &rest[..end]);
            match authority.rfind('@') {
                Some(at) => format!("{}***{}", &url[..scheme + 3], &rest[at..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    let Some(query) = url.find('?') else {
        return url;
    };
    let params: Vec<String> = url[query + 1..]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("pass") => format!("{key}=***"),
            _ => param.to_string(),
        })
        .collect();
    format!("{}?{}", &url[..query], params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=2&pass=secret&user=u"),
            "redis+unix:///tmp/r.sock?db=2&pass=***&user=u"
        );
        assert_eq!(
            redact("redis+unix:///s?pass=se@cret"),
            "redis+unix:///s?pass=***"
        );
        assert_eq!(redact("redis://u:p@ss@host/0"), "redis://***@host/0");
        assert_eq!(redact("redis://u:pa/ss@host/0"), "redis://***@host/0");
        assert_eq!(redact("rediss://:pa/s@s@host"), "rediss://***@host");
        assert_eq!(redact("redis+unix:///a@b.sock"), "redis+unix:///a@b.sock");
    }

    #[test]
    fn a_link_that_never_connected_answers_at_once() {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let link = Link::new(&ClusterConfig::new("redis://127.0.0.1:1", "n"), wake).unwrap();
        let began = Instant::now();
        assert_eq!(link.call(|_| Ok(())), Err(ClusterError::Unavailable));
        assert!(began.elapsed() < Duration::from_millis(50));
        link.check();
        assert!(woken.try_recv().is_ok(), "the presence thread is told");
    }

    #[test]
    fn a_bad_url_is_refused_by_name() {
        let (wake, _) = crossbeam_channel::bounded(1);
        let err = Link::new(&ClusterConfig::new("http://x", "n"), wake).unwrap_err();
        assert_eq!(err.setting, "cluster.redis_url");
    }
}
