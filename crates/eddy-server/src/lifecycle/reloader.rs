//! A reload's phases, led by the supervisor: `on_before_reload`, a rebuild request to every
//! worker and task worker concerned, their acknowledgements (or the deadline), then
//! `on_after_reload`.

use std::{sync::atomic::Ordering, time::Instant};

use super::supervisor::Supervisor;
use crate::shared::{Rebuild, ReloadScope, ServerHandle, WakeWorker};

impl Supervisor<'_> {
    /// Start a requested reload; end the running one once every handler concerned has been
    /// rebuilt, or at its deadline.
    pub(super) fn step_reload(&mut self, server: &ServerHandle) {
        let reload = &self.shared.reload;
        if self.reload_deadline.is_none() {
            if let Some(scope) = reload.take_request() {
                self.begin_reload(scope, server);
            }
        }
        if let Some(deadline) = self.reload_deadline {
            if reload.pending() == 0 || Instant::now() >= deadline {
                self.end_reload(server);
            }
        }
    }

    fn begin_reload(&mut self, scope: ReloadScope, server: &ServerHandle) {
        tracing::info!(?scope, "reload: rebuilding handlers");
        self.lifecycle("on_before_reload", |main| main.on_before_reload(server));
        let shared = self.shared;
        let workers = match scope {
            ReloadScope::All => shared.workers.len(),
            ReloadScope::TaskWorkers => 0,
        };
        let task_workers = shared.config.task_worker_num;
        let generation = shared.reload.begin(workers + task_workers);
        self.reload_deadline = Some(Instant::now() + shared.config.max_wait_time);
        for (id, worker) in shared.workers.iter().enumerate().take(workers) {
            if worker.ask_rebuild(Rebuild::Reload(generation)) {
                shared.wake_worker(id);
            } else {
                // Its control queue is full of rebuilds already: it rebuilds anyway.
                shared.reload.ack(generation, &shared.supervisor);
            }
        }
        if let Some(pool) = &shared.tasks {
            pool.rebuild_all(generation);
        }
    }

    pub(super) fn end_reload(&mut self, server: &ServerHandle) {
        let reload = &self.shared.reload;
        let left = reload.end();
        if left > 0 {
            tracing::warn!(
                left,
                "reload: max_wait_time passed before every handler was rebuilt"
            );
        }
        self.reload_deadline = None;
        self.lifecycle("on_after_reload", |main| main.on_after_reload(server));
        // Free first, then count (Release, read with Acquire by `stats`): whoever sees the
        // reload counted can start the next one. The other way round, a `reload()` right
        // after the count could still be refused as `InProgress`.
        reload.running.store(false, Ordering::Release);
        reload.count.fetch_add(1, Ordering::Release);
        tracing::info!("reload: done");
    }
}
