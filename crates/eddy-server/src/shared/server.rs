//! The state every thread of one server reaches, and [`ServerHandle`], the public way to it.
//!
//! The admin-command types live here too: a command's body gets a [`CommandContext`], which
//! holds a handle, and the handle's state holds the commands, so these few types are one knot
//! by nature; kept in one file, they tie no two files together. `ServerHandle`'s methods are
//! a layer up, in `handle/`.

use std::{
    collections::HashMap,
    fmt, io,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Instant, SystemTime},
};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use super::{
    bus::{ClusterStats, Watch},
    counters::Counters,
    datagram::DatagramPort,
    groups::GroupIndex,
    reactor_mail::ReactorHandle,
    reload::ReloadState,
    send::Outlet,
    table::ConnTable,
    tasks::PoolControl,
    uids::UidIndex,
    worker_mail::{WakeWorker, WorkerShared},
};
use crate::{
    config::Config,
    conn::Uid,
    dispatch::DispatchMode,
    error::{panic_message, ClusterError, CommandError},
    message::{CommandTarget, Destination, Message, MessageError, MessageSource},
    net::ListenAddr,
    sys::Poller,
};

/// Everything the threads of one server share. Immutable but for atomics, locks and the
/// table; each part is written by the thread that owns it (see the field docs).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// Ids to records; written by the supervisor (insert) and the workers (remove).
    pub(crate) table: ConnTable,
    /// The reactors' mailboxes, the clock and the send limits: the send path.
    pub(crate) outlet: Outlet,
    /// What other threads see of each worker (written by that worker).
    pub(crate) workers: Box<[WorkerShared]>,
    /// Counters, each written by one thread.
    pub(crate) stats: Counters,
    pub(crate) local_addrs: Vec<ListenAddr>,
    /// By listener index: the datagram listeners (`None` for stream listeners).
    pub(crate) datagrams: Box<[Option<Arc<DatagramPort>>]>,
    /// Wakes the supervisor (accept loop) for shutdown, reloads and commands.
    pub(crate) supervisor: Arc<Poller>,
    /// A shutdown was asked for: `on_before_shutdown` runs, and the server still serves.
    pub(crate) shutdown_requested: AtomicBool,
    /// The reactors are being told to stop (`on_before_shutdown` returned): from now on a
    /// connection accepted by one reactor is not handed to another (see `Shared::admit`).
    pub(crate) reactors_stopping: AtomicBool,
    /// `send_message` calls between their `reactors_stopping` check and their queueing: a
    /// stopping worker waits for none to be left before it takes its last messages
    /// ([`Shared::messages_settled`]), so a message that was taken is never dropped.
    pub(crate) messages_in_flight: AtomicUsize,
    /// Which connections each uid is bound to.
    pub(crate) uids: UidIndex,
    /// Which connections each group holds.
    pub(crate) groups: GroupIndex,
    /// The cluster bus, when the server is a node of a cluster.
    pub(crate) cluster: Option<Arc<dyn ClusterBus>>,
    pub(crate) start_time: SystemTime,
    /// The task pool, if the server has task workers.
    pub(crate) tasks: Option<Arc<dyn PoolControl>>,
    /// When a graceful shutdown must be over, once one has begun.
    pub(crate) deadline: OnceLock<Instant>,
    /// Reloads: requested, running, counted (the supervisor leads them).
    pub(crate) reload: ReloadState,
    /// Admin commands, by name.
    pub(crate) commands: Commands,
    /// Commands for the supervisor to run.
    pub(crate) supervisor_commands: SupervisorCommands,
}

impl Shared {
    /// Milliseconds since the server was built, on the coarse clock, from 1.
    pub(crate) fn now_ms(&self) -> u64 {
        self.outlet.clock.now_ms()
    }

    /// Reactor `id`'s mailbox.
    pub(crate) fn reactor(&self, id: usize) -> &ReactorHandle {
        self.outlet.reactor(id)
    }

    /// Queue a message for a worker's or task worker's `on_pipe_message`, and wake it.
    pub(crate) fn send_message(
        &self,
        src: MessageSource,
        dst: Destination,
        message: Message,
    ) -> Result<(), MessageError> {
        // Taken while `on_before_shutdown` runs (the workers still serve then); refused once
        // the reactors are being stopped, after which the workers may be gone. Counted in
        // flight from before the check until queued (SeqCst with the flag and the stopping
        // worker's wait: either this call sees the flag, or that worker sees it in flight).
        struct InFlight<'a>(&'a AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.messages_in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(&self.messages_in_flight);
        if self.reactors_stopping.load(Ordering::SeqCst) {
            return Err(MessageError::ShuttingDown);
        }
        match dst {
            Destination::Worker(id) => {
                let worker = self
                    .workers
                    .get(id)
                    .ok_or(MessageError::NoSuchDestination(dst))?;
                worker
                    .messages
                    .0
                    .try_send((src, message))
                    .map_err(|_| MessageError::QueueFull)?;
                self.wake_worker(id);
                Ok(())
            }
            Destination::TaskWorker(id) => self
                .tasks
                .as_ref()
                .ok_or(MessageError::NoSuchDestination(dst))?
                .message(id, src, message),
        }
    }

    /// Wait until no `send_message` is between its check and its queueing: called by a worker
    /// that stops (the reactors are stopping by then), before it takes its last messages.
    /// The wait is for another thread's few instructions (yielding, in case it was preempted
    /// in between).
    pub(crate) fn messages_settled(&self) {
        while self.messages_in_flight.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
    }

    /// The shutdown deadline; `max_wait_time` from now if no shutdown has begun.
    pub(crate) fn shutdown_deadline(&self) -> Instant {
        *self
            .deadline
            .get_or_init(|| Instant::now() + self.config.max_wait_time)
    }
}

impl WakeWorker for Shared {
    fn wake_worker(&self, id: usize) {
        if matches!(self.config.dispatch_mode, DispatchMode::Reactor) {
            // The worker is reactor `id`'s thread, asleep in its poller.
            self.reactor(id).poller.notify();
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
            self.workers[id].wake();
        }
    }
}

/// A cluster bus, as the rest of the server sees it (the seam: the Redis bus of the `cluster`
/// module is one implementation). Every method returns at once when the
/// bus is known to be down; the ones that ask Redis wait at most the bus's command timeout.
pub(crate) trait ClusterBus: Watch + fmt::Debug {
    /// Whether `uid`, bound here, is also bound on another node (so a send to it must be
    /// published too).
    fn is_shared(&self, uid: &Uid) -> bool;
    /// Publish `data` for `uid` to the other nodes that hold it; returns how many took it.
    fn send_to_uid(&self, uid: &Uid, data: &[u8]) -> Result<usize, ClusterError>;
    /// Publish `data` to every other node's connections; returns how many nodes took it.
    fn broadcast(&self, data: &[u8]) -> Result<usize, ClusterError>;
    /// Publish `data` to the other nodes with members in `group`; returns how many took it.
    fn send_to_group(&self, group: &str, data: &[u8]) -> Result<usize, ClusterError>;
    /// Whether `uid` is bound on another node.
    fn is_uid_online(&self, uid: &Uid) -> Result<bool, ClusterError>;
    /// Distinct uids bound on any node, this one's as presence has them.
    fn uid_count(&self) -> Result<usize, ClusterError>;
    /// Up to `limit` uids bound on any node, sorted by their presence key.
    fn online_uids(&self, limit: usize) -> Result<Vec<Uid>, ClusterError>;
    /// Connections in `group` on the other nodes.
    fn remote_group_count(&self, group: &str) -> Result<usize, ClusterError>;
    /// The bus's state and counters.
    fn stats(&self) -> ClusterStats;
    /// Start the bus's threads, which deliver through `server`.
    fn start(&self, server: ServerHandle) -> io::Result<()>;
    /// Leave the cluster (presence removed) and stop the threads, waiting a bounded time.
    fn stop(&self);
}

/// A handle to a server: send to and close any connection, look connections up, shut down.
///
/// Cheap to clone, `Send + Sync`: give it to any thread. It is also what callbacks reach
/// through [`Context::server`](crate::Context::server).
#[derive(Clone, Debug)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl WakeWorker for ServerHandle {
    fn wake_worker(&self, id: usize) {
        self.shared.wake_worker(id)
    }
}

/// What a command gets besides its arguments.
#[derive(Debug)]
pub struct CommandContext<'a> {
    server: &'a ServerHandle,
    target: CommandTarget,
}

impl CommandContext<'_> {
    /// The server.
    pub fn server(&self) -> &ServerHandle {
        self.server
    }

    /// Where it runs.
    pub fn target(&self) -> CommandTarget {
        self.target
    }
}

/// A command's body.
pub(crate) type CommandFn = Arc<dyn Fn(&CommandContext<'_>, Value) -> Value + Send + Sync>;

/// The commands added at build time, by name.
#[derive(Default)]
pub(crate) struct Commands(pub(crate) HashMap<String, CommandFn>);

impl fmt::Debug for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A command on its way to its target, with where to answer.
pub(crate) struct CommandCall {
    pub(crate) body: CommandFn,
    pub(crate) args: Value,
    pub(crate) reply: Sender<Result<Value, CommandError>>,
}

impl CommandCall {
    /// Run it here (its target's thread) and answer.
    pub(crate) fn run(self, server: &ServerHandle, target: CommandTarget) {
        let ctx = CommandContext { server, target };
        let (body, args) = (self.body, self.args);
        let answer = catch_unwind(AssertUnwindSafe(|| body(&ctx, args)))
            .map_err(|panic| CommandError::Panicked(panic_message(&*panic)));
        let _ = self.reply.send(answer);
    }
}

/// The supervisor's command queue (bounded). It closes when the supervisor stops serving: a
/// call queued then is answered [`CommandError::ShuttingDown`] at once, by the supervisor's
/// last look or by its sender, where it used to wait out its timeout.
///
/// # Atomic ordering
/// `closed` is stored before the supervisor's last drain and loaded by a sender after its
/// push (both `SeqCst`): a sender that sees it open pushed before the store, so before that
/// drain; one that sees it closed drains the queue itself.
pub(crate) struct SupervisorCommands {
    queue: (Sender<CommandCall>, Receiver<CommandCall>),
    closed: AtomicBool,
}

impl SupervisorCommands {
    pub(crate) fn new(capacity: usize) -> Self {
        SupervisorCommands {
            queue: crossbeam_channel::bounded(capacity),
            closed: AtomicBool::new(false),
        }
    }

    /// Queue `call` for the supervisor.
    pub(crate) fn push(&self, call: CommandCall) -> Result<(), CommandError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(CommandError::ShuttingDown);
        }
        self.queue
            .0
            .try_send(call)
            .map_err(|_| CommandError::QueueFull)?;
        if self.closed.load(Ordering::SeqCst) {
            self.refuse_queued();
        }
        Ok(())
    }

    /// The next call to run, if one waits.
    pub(crate) fn next(&self) -> Option<CommandCall> {
        self.queue.1.try_recv().ok()
    }

    /// The supervisor stops taking commands: those queued, and any queued later, are refused.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.refuse_queued();
    }

    fn refuse_queued(&self) {
        while let Some(call) = self.next() {
            let _ = call.reply.send(Err(CommandError::ShuttingDown));
        }
    }
}

impl fmt::Debug for SupervisorCommands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorCommands")
            .field("queued", &self.queue.1.len())
            .field("closed", &self.closed)
            .finish()
    }
}
