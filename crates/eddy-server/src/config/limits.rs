//! Ranges the builder enforces.

use std::time::Duration;

pub(crate) const REACTOR_NUM: (usize, usize) = (1, 64);
pub(crate) const WORKER_NUM: (usize, usize) = (1, 1024);
pub(crate) const BACKLOG: (u32, u32) = (1, 65_535);
pub(crate) const MAX_CONN: (usize, usize) = (1, 1 << 24);
pub(crate) const PACKAGE_MAX_LENGTH: usize = 1 << 30;
pub(crate) const SOCKET_BUFFER_SIZE: (usize, usize) = (1024, 1 << 30);
pub(crate) const MAX_QUEUED_BYTES: (usize, usize) = (1, 1 << 30);
pub(crate) const WORKER_QUEUE_CAPACITY: (usize, usize) = (1, 1 << 20);
pub(crate) const TASK_WORKER_NUM: (usize, usize) = (1, 256);
pub(crate) const TASK_QUEUE_CAPACITY: (usize, usize) = (1, 1 << 20);
pub(crate) const MAX_REQUEST: (usize, usize) = (1, 1 << 32);
pub(crate) const HEARTBEAT: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(86_400));
pub(crate) const MAX_WAIT_TIME: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));
