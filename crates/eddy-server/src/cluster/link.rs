//! The node's connections to Redis for the calls other threads make (remote sends, presence
//! questions), the up/down state they share, and the bus's counters.
//!
//! A caller never connects: it takes a free connection, or waits at most `command_timeout`
//! for one (then at most `command_timeout` for the answer), and fails at once with
//! `Unavailable` while the state is down. The first call that fails or times out marks the
//! state down and wakes the presence thread, which reconnects every connection with
//! back-off and marks the state up again.

use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult};

use super::config::ClusterConfig;
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
        let conn = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(read_timeout))?;
        conn.set_write_timeout(Some(self.command_timeout))?;
        Ok(conn)
    }

    /// A new connection for commands (reads wait at most `command_timeout`).
    pub(crate) fn open_for_commands(&self) -> RedisResult<Connection> {
        self.open(self.command_timeout)
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

    /// Run `f` on a caller's connection: at once `Unavailable` when down; an I/O error or a
    /// timeout marks the link down; an error answer is `Rejected` (and logged).
    pub(crate) fn call<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, ClusterError> {
        if !self.is_up() {
            return Err(ClusterError::Unavailable);
        }
        let mut slot = self.slot().ok_or(ClusterError::Unavailable)?;
        let conn = slot.as_mut().ok_or(ClusterError::Unavailable)?;
        match f(conn) {
            Ok(value) => Ok(value),
            Err(err) if is_link_failure(&err) => {
                *slot = None;
                drop(slot);
                self.mark_down();
                Err(ClusterError::Unavailable)
            }
            Err(err) => {
                tracing::warn!("cluster: Redis refused a command: {err}");
                Err(ClusterError::Rejected)
            }
        }
    }

    /// A free connection, or the next one once free (at most `command_timeout`).
    fn slot(&self) -> Option<parking_lot::MutexGuard<'_, Option<Connection>>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Relaxed) % n;
        for i in 0..n {
            if let Some(slot) = self.slots[(start + i) % n].try_lock() {
                return Some(slot);
            }
        }
        let deadline = Instant::now() + self.command_timeout;
        self.slots[start].try_lock_until(deadline)
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

/// The URL with any password hidden.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("redis://:secret@host:6379"), "redis://***@host:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn a_link_that_never_connected_answers_at_once() {
        let (wake, woken) = crossbeam_channel::bounded(1);
        let link = Link::new(&ClusterConfig::new("redis://127.0.0.1:1", "n"), wake).unwrap();
        let began = Instant::now();
        assert_eq!(link.call(|_| Ok(())), Err(ClusterError::Unavailable));
        assert!(began.elapsed() < Duration::from_millis(50));
        link.mark_down();
        assert!(woken.try_recv().is_ok(), "the presence thread is told");
    }

    #[test]
    fn a_bad_url_is_refused_by_name() {
        let (wake, _) = crossbeam_channel::bounded(1);
        let err = Link::new(&ClusterConfig::new("http://x", "n"), wake).unwrap_err();
        assert_eq!(err.setting, "cluster.redis_url");
    }
}
