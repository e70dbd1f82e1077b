//! `stats()`: a snapshot of the server's counters and gauges.

use std::{
    sync::atomic::{
        AtomicU64,
        Ordering::{Acquire, Relaxed},
    },
    time::SystemTime,
};

use crate::shared::{
    ClusterStats, Counter, DatagramCounters, ReactorCounters, ServerHandle, Shared, WorkerStatus,
};

/// A snapshot of a server's counters (Swoole's `stats()`, the fields this version has).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// When the server started (unix seconds when serialised).
    #[serde(serialize_with = "crate::handle::info::unix_seconds")]
    pub start_time: SystemTime,
    /// Connections open or closing now.
    pub connection_num: usize,
    /// Connections accepted.
    pub accept_count: u64,
    /// Connections closed (every reason).
    pub close_count: u64,
    /// Connections refused at accept because `max_conn` were open.
    pub abort_count: u64,
    /// Events the reactors' dispatch mode handed to workers: connects, reads' packets (one
    /// event for a read's batch in the stateful modes and reactor mode, one a packet
    /// otherwise), WebSocket messages, buffer events. Not counted: closes (they go to the
    /// worker that holds the connection) and datagrams (see `request_count`).
    pub dispatch_count: u64,
    /// Packets, WebSocket messages and datagrams handled (`on_receive`, `on_message`,
    /// `on_packet`).
    pub request_count: u64,
    /// Successful sends.
    pub response_count: u64,
    /// Bytes read from sockets.
    pub total_recv_bytes: u64,
    /// Bytes reactors hold for packets not yet whole. Buffers are allocated only while a
    /// packet is incomplete (never above `package_max_length` plus one read per connection)
    /// and freed as soon as it is whole: an idle server holds 0.
    pub recv_buffer_bytes: u64,
    /// Bytes accepted by successful sends.
    pub total_send_bytes: u64,
    /// Worker threads.
    pub worker_num: usize,
    /// Workers waiting for work right now.
    pub idle_worker_num: usize,
    /// Reactor threads.
    pub reactor_num: usize,
    /// Events waiting in each worker's queue.
    pub worker_queue: Vec<usize>,
    /// What each worker has handled, counted as `request_count`.
    pub worker_request_count: Vec<u64>,
    /// Successful sends from each worker.
    pub worker_response_count: Vec<u64>,
    /// Events dispatched to each worker.
    pub worker_dispatch_count: Vec<u64>,
    /// What each worker is doing now.
    pub worker_status: Vec<WorkerStatus>,
    /// Worker handlers rebuilt (reload, `stop_worker`, `max_request`, after a panic).
    pub worker_restarts: u64,
    /// Reloads finished (every handler rebuilt, or `max_wait_time` passed). Once it counts a
    /// reload, the next [`reload`](crate::ServerHandle::reload) is accepted.
    pub reload_count: u64,
    /// Task worker threads (`task_worker_num`; 0 without a task handler).
    pub task_worker_num: usize,
    /// Tasks running now (task workers busy).
    pub tasking_num: usize,
    /// Tasks queued, not started yet.
    pub task_queue_num: usize,
    /// Task workers with no task running.
    pub task_idle_worker_num: usize,
    /// Tasks queued over the server's life (accepted by `task` and the waits).
    pub task_count: u64,
    /// Tasks whose `on_task` returned.
    pub task_completed: u64,
    /// Tasks whose `on_task` panicked.
    pub task_failed: u64,
    /// Results dropped because nobody waited for them any more (after a timeout, or a
    /// second result to a wait).
    pub task_late: u64,
    /// Tasks refused because a queue was full.
    pub task_rejected: u64,
    /// Queued tasks abandoned at the shutdown deadline.
    pub task_abandoned: u64,
    /// Task handlers rebuilt (`task_max_request`, or after a panic).
    pub task_worker_restarts: u64,
    /// Datagrams read on datagram listeners.
    pub packet_recv_count: u64,
    /// Datagrams sent with `sendto` (now or from the queue).
    pub packet_send_count: u64,
    /// Datagrams waiting in `sendto` queues, and their bytes.
    pub packet_queued: (usize, usize),
    /// Datagrams dropped because the worker's queue was full (a flood it cannot keep up with).
    pub packet_drop_inbox_full: u64,
    /// Datagrams dropped for being over 64 KiB (unix datagrams).
    pub packet_drop_oversized: u64,
    /// `sendto` refused because the socket's send queue was full.
    pub packet_drop_queue_full: u64,
    /// Queued datagrams the kernel refused when they were flushed.
    pub packet_send_failed: u64,
    /// Datagrams that reached a handler without `on_packet` (logged once, counted here).
    pub packet_unhandled: u64,
    /// Distinct uids bound to connections of this node.
    pub uid_num: usize,
    /// Groups with members on this node.
    pub group_num: usize,
    /// The cluster bus, when the server is a node of a cluster (`null` when serialised
    /// otherwise).
    pub cluster: Option<ClusterStats>,
}

impl Stats {
    pub(crate) fn collect(shared: &Shared) -> Stats {
        let packets = |f: fn(&DatagramCounters) -> &AtomicU64| -> u64 {
            let ports = shared.datagrams.iter().flatten();
            ports.map(|p| f(&p.counters).load(Relaxed)).sum()
        };
        let counters = &shared.stats;
        let tasks = shared
            .tasks
            .as_ref()
            .map(|pool| pool.snapshot())
            .unwrap_or_default();
        let sum = |f: fn(&ReactorCounters) -> &Counter| {
            counters.reactors.iter().map(|r| f(r).get()).sum::<u64>()
        };
        let workers = counters
            .workers
            .iter()
            .chain(std::iter::once(&counters.other));
        Stats {
            start_time: shared.start_time,
            connection_num: shared.table.len(),
            accept_count: counters.accepted.load(Relaxed),
            close_count: sum(|r| &r.closed),
            abort_count: counters.aborted.load(Relaxed),
            dispatch_count: sum(|r| &r.dispatched),
            request_count: counters.workers.iter().map(|w| w.requests.get()).sum(),
            response_count: workers.clone().map(|w| w.responses.get()).sum(),
            total_recv_bytes: sum(|r| &r.received_bytes),
            recv_buffer_bytes: sum(|r| &r.buffered),
            total_send_bytes: workers.map(|w| w.sent_bytes.get()).sum(),
            worker_num: shared.config.worker_num,
            idle_worker_num: shared.workers.iter().filter(|w| w.is_idle()).count(),
            reactor_num: shared.config.reactor_num,
            worker_queue: shared.workers.iter().map(|w| w.queue_len()).collect(),
            worker_request_count: counters.workers.iter().map(|w| w.requests.get()).collect(),
            worker_response_count: counters.workers.iter().map(|w| w.responses.get()).collect(),
            worker_dispatch_count: dispatched_per_worker(shared),
            worker_status: shared.workers.iter().map(|w| w.status()).collect(),
            worker_restarts: shared.reload.worker_restarts.load(Relaxed),
            reload_count: shared.reload.count.load(Acquire),
            task_worker_num: tasks.task_worker_num,
            tasking_num: tasks.tasking_num,
            task_queue_num: tasks.task_queue_num,
            task_idle_worker_num: tasks.task_worker_num - tasks.tasking_num,
            task_count: tasks.submitted,
            task_completed: tasks.completed,
            task_failed: tasks.failed,
            task_late: tasks.late,
            task_rejected: tasks.rejected,
            task_abandoned: tasks.abandoned,
            task_worker_restarts: tasks.restarts,
            packet_recv_count: packets(|c| &c.received),
            packet_send_count: packets(|c| &c.sent),
            packet_queued: shared
                .datagrams
                .iter()
                .flatten()
                .map(|p| p.queued())
                .fold((0, 0), |(n, b), (pn, pb)| (n + pn, b + pb)),
            packet_drop_inbox_full: packets(|c| &c.inbox_full),
            packet_drop_oversized: packets(|c| &c.oversized),
            packet_drop_queue_full: packets(|c| &c.queue_full),
            packet_send_failed: packets(|c| &c.send_failed),
            packet_unhandled: packets(|c| &c.unhandled),
            uid_num: shared.uids.len(),
            group_num: shared.groups.len(),
            cluster: shared.cluster.as_ref().map(|bus| bus.stats()),
        }
    }
}

/// Events dispatched to each worker, summed over the reactors.
fn dispatched_per_worker(shared: &Shared) -> Vec<u64> {
    let reactors = &shared.stats.reactors;
    (0..shared.config.worker_num)
        .map(|w| reactors.iter().map(|r| r.per_worker[w].get()).sum())
        .collect()
}

impl ServerHandle {
    /// Counters and gauges of the whole server; the same answer from any thread.
    pub fn stats(&self) -> Stats {
        Stats::collect(&self.shared)
    }
}
