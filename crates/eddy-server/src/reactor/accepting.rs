//! What a reactor keeps of the stream listeners it accepts on (see `accept`).

use std::{sync::Arc, time::Instant};

use crate::net::Listener;

/// The stream listeners a reactor accepts on.
#[derive(Debug, Default)]
pub(super) struct Accepting {
    pub(super) listeners: Arc<[(usize, Arc<Listener>)]>,
    /// Accepting paused (out of descriptors or memory) until then.
    pub(super) paused_until: Option<Instant>,
    /// The listeners are in the poller.
    pub(super) watched: bool,
}
