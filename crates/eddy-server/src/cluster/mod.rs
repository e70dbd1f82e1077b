//! Several eddy servers as one: the cluster bus over Redis (cargo feature `cluster`).
//!
//! Above `lifecycle`, below `server` (which starts and stops it). Each node runs three
//! threads of its own: the **subscriber** (one connection, `SUBSCRIBE NS:bus:NODE NS:bus`),
//! the **delivery** thread (what the subscriber read, sent to this node's connections as any
//! other thread sends), and the **presence** thread (one connection: this node's uids and
//! groups in Redis, renewed every heartbeat, and the reconnects). Callers (workers, user
//! threads) publish and ask presence on a small pool of connections of their own (`link`),
//! one round trip each, never connecting themselves. See `keys.rs` for what lives where in
//! Redis.
//!
//! # Routing
//!
//! - `send_to_uid`: delivered here when the uid is bound here; published only to the
//!   channel of each other node presence says holds it (a Lua script reads presence and
//!   publishes in one round trip). A uid bound on several nodes reaches every connection
//!   on every one of them.
//! - `broadcast` / `broadcast_where`: delivered here (filtered), then published once on the
//!   broadcast channel; every other node delivers it to all its connections, encoding the
//!   frame once.
//! - `send_to_group`: delivered here, then published to each other live node whose presence
//!   has members in the group.
//!
//! # What can be lost (Redis pub/sub is at-most-once)
//!
//! A message published is delivered at most once, never twice; it is lost, with no error
//! to the sender, when: the receiving node's subscriber is not connected at that moment
//! (Redis restarting, the node reconnecting, or the node dead while its presence has not
//! expired yet); the receiving node cannot keep up (its delivery queue is full: dropped and
//! counted in `ClusterStats::dropped`), or Redis cuts a subscriber that reads too slowly
//! (`client-output-buffer-limit pubsub`); the uid or group leaves the receiving node while
//! the message is on its way. A send fails with `ClusterError::Unavailable` when Redis is
//! known down (nothing published) or does not answer within `command_timeout` (it may have
//! published all the same; nothing is retried, so nothing goes twice). Presence lags
//! behind a bind by one round trip of the presence thread (a moment), and a node that dies
//! stays present until its TTL runs out. Messages from one sending thread to one node keep
//! their order; nothing orders messages from different threads or nodes.

mod bus;
mod config;
mod inbox;
mod keys;
mod link;
mod presence;
mod scripts;
mod subscriber;
mod wire;

pub use self::config::{ClusterConfig, StartMode};

use std::sync::Arc;

use self::bus::RedisBus;
use crate::{error::BuildError, shared::ClusterBus};

/// Check `config`, and reach Redis unless the node may start degraded.
pub(crate) fn connect(config: ClusterConfig) -> Result<Arc<dyn ClusterBus>, BuildError> {
    let mode = config.on_unavailable_at_start;
    let bus = RedisBus::new(config)?;
    if mode == StartMode::Refuse {
        bus.probe().map_err(|reason| BuildError::Cluster {
            url: bus.url().to_string(),
            reason,
        })?;
    }
    Ok(Arc::new(bus))
}
