//! `ClusterConfig`: a node's settings, with their defaults and ranges, checked at `build`.

use std::time::Duration;

use crate::error::ConfigError;

/// What `build` does when Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// Refuse to build: [`BuildError::Cluster`](crate::BuildError::Cluster), naming the URL
    /// and the reason. The default.
    #[default]
    Refuse,
    /// Build anyway and serve this node's connections; the bus connects with back-off, and
    /// until then remote sends fail at once with
    /// [`ClusterError::Unavailable`](crate::ClusterError::Unavailable).
    Degraded,
}

/// A node of a cluster of eddy servers that reach each other's uids, groups and
/// connections through Redis (pub/sub for messages, expiring keys for presence). Given to
/// [`ServerBuilder::cluster`](crate::ServerBuilder::cluster); every field is checked at
/// `build`, and a bad one is refused with a [`ConfigError`] naming it
/// (`cluster.node_id`, …).
///
/// ```no_run
/// # use eddy_server::ClusterConfig;
/// let config = ClusterConfig::new("redis://127.0.0.1:6379", "node-1");
/// let config = ClusterConfig {
///     presence_ttl: std::time::Duration::from_secs(10),
///     ..config
/// };
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Redis, as `redis://[:password@]host[:port][/db]` or `redis+unix:///path`. Required.
    pub redis_url: String,
    /// This node's id, unique in the cluster: 1 to 64 letters, digits, `-`, `_` or `.`.
    /// A node restarted with the same id takes its place again (and clears what its former
    /// run left in presence). A node that finds another connection subscribed with its id
    /// when it subscribes logs an error: another live node with the same id, or a former
    /// run Redis has not seen go yet. Required.
    pub node_id: String,
    /// How long a node's presence (its uids and groups) outlives its last heartbeat; the
    /// heartbeat runs every third of it. A node that dies is offline to the others within
    /// this time. Default 30 s. Range 300 ms to 1 h.
    pub presence_ttl: Duration,
    /// Redis unreachable at `build`: refuse, or start degraded. Default refuse.
    pub on_unavailable_at_start: StartMode,
    /// How long a call to Redis (a remote send, a presence question) waits for a free
    /// connection, and then for Redis's answer, before it fails with `Unavailable`: a call
    /// returns within about twice this. A late answer drops only that call's connection;
    /// the presence thread then asks Redis itself (waiting `connect_timeout`), replaces the
    /// connection if Redis answers, and counts Redis down and reconnects everything if it
    /// does not, or if the calls keep failing (more than twice `connections` replaced within
    /// a heartbeat). Default 100 ms. Range 1 ms to 10 s.
    pub command_timeout: Duration,
    /// The longest a connection attempt may take, and how long the presence thread's reads
    /// and writes wait (at least `command_timeout`) before it counts Redis down: a partition
    /// is noticed within about this. A
    /// server starting waits for its bus's first attempts: twice this plus four times
    /// `command_timeout` at most. Default 1 s. Range 1 ms to 1 min.
    pub connect_timeout: Duration,
    /// The longest wait between two reconnection attempts (the wait starts at 50 ms and
    /// doubles). Default 2 s. Range 50 ms to 5 min.
    pub reconnect_max_backoff: Duration,
    /// Connections to Redis for remote sends and questions from workers and other threads
    /// (the subscriber and the presence thread have one each). Default 4. Range 1 to 64.
    pub connections: usize,
    /// The largest message that may cross the bus; a larger one is refused with
    /// `ClusterError::TooLarge`. Default 1 MiB. Range 1 byte to 512 MiB.
    pub max_message_bytes: usize,
    /// Messages from the bus waiting for local delivery; past it (a node too slow to
    /// deliver) they are dropped, counted and logged. Default 4096. Range 1 to 1,048,576.
    pub inbound_queue: usize,
    /// Bytes of messages waiting for local delivery, past which they are dropped likewise.
    /// Default 64 MiB. Range 1 KiB to 4 GiB.
    pub inbound_queue_bytes: usize,
    /// Presence updates (a bind, a close, a join) waiting to be written to Redis; past it they
    /// are dropped and counted, and a full resync of this node's presence follows. Default
    /// 65,536. Range 1 to 16,777,216.
    pub presence_queue: usize,
    /// The prefix of every key and channel, so several clusters can share a Redis. Default
    /// `eddy`. Same characters as `node_id`.
    pub namespace: String,
}

impl ClusterConfig {
    /// The defaults, with Redis at `redis_url` and this node named `node_id`.
    pub fn new(redis_url: impl Into<String>, node_id: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis_url: redis_url.into(),
            node_id: node_id.into(),
            ..ClusterConfig::default()
        }
    }

    /// How often this node renews its presence.
    pub(crate) fn heartbeat(&self) -> Duration {
        self.presence_ttl / 3
    }

    /// Check every field; the first bad one is named.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.redis_url.is_empty() {
            return Err(ConfigError::new("cluster.redis_url", "is required"));
        }
        check_name("cluster.node_id", &self.node_id)?;
        check_name("cluster.namespace", &self.namespace)?;
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        within(
            "cluster.presence_ttl",
            self.presence_ttl,
            ms(300),
            secs(3600),
        )?;
        within(
            "cluster.command_timeout",
            self.command_timeout,
            ms(1),
            secs(10),
        )?;
        within(
            "cluster.connect_timeout",
            self.connect_timeout,
            ms(1),
            secs(60),
        )?;
        let backoff = self.reconnect_max_backoff;
        within("cluster.reconnect_max_backoff", backoff, ms(50), secs(300))?;
        count("cluster.connections", self.connections, 1, 64)?;
        count(
            "cluster.max_message_bytes",
            self.max_message_bytes,
            1,
            512 << 20,
        )?;
        count("cluster.inbound_queue", self.inbound_queue, 1, 1 << 20)?;
        count(
            "cluster.inbound_queue_bytes",
            self.inbound_queue_bytes,
            1024,
            4 << 30,
        )?;
        count("cluster.presence_queue", self.presence_queue, 1, 1 << 24)
    }
}

impl Default for ClusterConfig {
    /// Every default; `redis_url` and `node_id` empty (refused at `build` until set).
    fn default() -> Self {
        ClusterConfig {
            redis_url: String::new(),
            node_id: String::new(),
            presence_ttl: Duration::from_secs(30),
            on_unavailable_at_start: StartMode::Refuse,
            command_timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(1),
            reconnect_max_backoff: Duration::from_secs(2),
            connections: 4,
            max_message_bytes: 1 << 20,
            inbound_queue: 4096,
            inbound_queue_bytes: 64 << 20,
            presence_queue: 65_536,
            namespace: "eddy".into(),
        }
    }
}

fn check_name(setting: &'static str, name: &str) -> Result<(), ConfigError> {
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 64 || !valid {
        return Err(ConfigError::new(
            setting,
            format!("`{name}` is not 1 to 64 letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(())
}

fn within(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            setting,
            format!("{value:?} is outside {min:?} to {max:?}"),
        ));
    }
    Ok(())
}

fn count(setting: &'static str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            setting,
            format!("{value} is outside {min} to {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(config: ClusterConfig) -> &'static str {
        config.check().unwrap_err().setting
    }

    #[test]
    fn defaults_with_a_url_and_a_name_are_valid() {
        ClusterConfig::new("redis://127.0.0.1", "n1")
            .check()
            .unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let ok = ClusterConfig::new("redis://127.0.0.1", "n1");
        assert_eq!(setting(ClusterConfig::default()), "cluster.redis_url");
        let bad_node = ClusterConfig::new("redis://x", "a b");
        assert_eq!(setting(bad_node), "cluster.node_id");
        let long = ClusterConfig::new("redis://x", "n".repeat(65));
        assert_eq!(setting(long), "cluster.node_id");
        let cases = [
            (
                ClusterConfig {
                    presence_ttl: Duration::from_millis(10),
                    ..ok.clone()
                },
                "cluster.presence_ttl",
            ),
            (
                ClusterConfig {
                    command_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "cluster.command_timeout",
            ),
            (
                ClusterConfig {
                    connections: 0,
                    ..ok.clone()
                },
                "cluster.connections",
            ),
            (
                ClusterConfig {
                    inbound_queue: 0,
                    ..ok.clone()
                },
                "cluster.inbound_queue",
            ),
            (
                ClusterConfig {
                    namespace: String::new(),
                    ..ok.clone()
                },
                "cluster.namespace",
            ),
            (
                ClusterConfig {
                    max_message_bytes: 0,
                    ..ok
                },
                "cluster.max_message_bytes",
            ),
        ];
        for (config, name) in cases {
            assert_eq!(setting(config), name);
        }
    }
}
