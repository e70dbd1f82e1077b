//! What a worker callback can do: send, close, bind, look up, queue tasks, set timers, reach
//! the server.
//!
//! Above `handle` (it forwards to the handle's methods) and `task`; used by the
//! worker, which makes one `Context` per callback.

use std::{cell::RefCell, fmt, sync::Arc, time::Duration};

use crate::{
    conn::{CloseReason, Conn, ConnId, Uid},
    error::{SendError, SendFileError, SendStatus, SendToError, TaskError},
    handle::ClientInfo,
    message::{Destination, Message, MessageError, MessageSource},
    net::{PacketInfo, PacketPeer},
    shared::{Outlet, ServerHandle},
    task::{
        client::{wait_all, wait_one},
        NoTasks, Reply, TaskHandler, TaskId, TaskPool, TaskSource,
    },
    timer::{TimerError, TimerId, Timers},
    ws::Opcode,
};

/// The context handed to every worker callback.
///
/// It sends to and closes connections (the one the event is about, with no table lookup, or
/// any other by id), sends tasks to the task workers (typed by the server's [`TaskHandler`]
/// `T`), and reaches the whole server through [`Context::server`].
pub struct Context<'a, T: TaskHandler = NoTasks> {
    server: &'a ServerHandle,
    worker_id: usize,
    current: Option<&'a Arc<Conn>>,
    tasks: Option<&'a TaskPool<T>>,
    timers: &'a RefCell<Timers<WorkerTimer<T>>>,
}

/// A worker's timer callback.
pub(crate) type WorkerTimer<T> = dyn FnMut(&mut Context<'_, T>, TimerId) + Send;

/// A `task_then` callback: runs on the worker that sent the task, instead of `on_finish`,
/// with the first result (or the error that ended the task without one). The pool carries
/// it type-erased and the worker downcasts it back to this type.
pub(crate) type WorkerCallback<T> = Box<
    dyn FnOnce(&mut Context<'_, T>, TaskId, Result<<T as TaskHandler>::Output, TaskError>) + Send,
>;

impl<T: TaskHandler> fmt::Debug for Context<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("worker_id", &self.worker_id)
            .field("conn", &self.current.map(|c| c.id))
            .finish_non_exhaustive()
    }
}

impl<'a, T: TaskHandler> Context<'a, T> {
    pub(crate) fn new(
        server: &'a ServerHandle,
        worker_id: usize,
        current: Option<&'a Arc<Conn>>,
        tasks: Option<&'a TaskPool<T>>,
        timers: &'a RefCell<Timers<WorkerTimer<T>>>,
    ) -> Self {
        Context {
            server,
            worker_id,
            current,
            tasks,
            timers,
        }
    }

    /// Run `f` on this worker every `interval` (Swoole's `tick`), the first time one interval
    /// from now, until [`clear_timer`](Self::clear_timer). Timers fire between events, on
    /// this worker's thread; they are dropped when its handler is rebuilt (a reload) or the
    /// worker stops, so `on_worker_start` is the place to set them. An interval under
    /// [`MIN_TICK`](crate::MIN_TICK) is refused.
    pub fn tick(
        &self,
        interval: Duration,
        f: impl FnMut(&mut Context<'_, T>, TimerId) + Send + 'static,
    ) -> Result<TimerId, TimerError> {
        self.timers.borrow_mut().tick(interval, Box::new(f))
    }

    /// Run `f` once on this worker after `delay` (Swoole's `after`).
    pub fn after(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut Context<'_, T>) + Send + 'static,
    ) -> TimerId {
        let mut f = Some(f);
        let once = move |ctx: &mut Context<'_, T>, _: TimerId| {
            if let Some(f) = f.take() {
                f(ctx)
            }
        };
        self.timers.borrow_mut().add(delay, None, Box::new(once))
    }

    /// Run `f` on this worker once the current callback has returned, before the next event
    /// (Swoole's `defer`).
    pub fn defer(&self, f: impl FnOnce(&mut Context<'_, T>) + Send + 'static) {
        self.after(Duration::ZERO, f);
    }

    /// Cancel a timer of this worker (Swoole's `clearTimer`); `false` if it is not pending
    /// here (it ran already, was cleared, or was made on another thread: a timer made on
    /// another worker, say in `on_connect` when `on_close` runs elsewhere, is cleared only
    /// there).
    pub fn clear_timer(&self, id: TimerId) -> bool {
        self.timers.borrow_mut().clear(id)
    }

    /// Send a message to a worker's or task worker's `on_pipe_message` (Swoole's
    /// `sendMessage`). See [`ServerHandle::send_message`].
    pub fn send_message(
        &self,
        dst: Destination,
        message: impl std::any::Any + Send,
    ) -> Result<(), MessageError> {
        let src = MessageSource::Worker(self.worker_id);
        self.server
            .shared
            .send_message(src, dst, Message::new(message))
    }

    /// Send one datagram to `peer` from datagram listener `listener` (Swoole's `sendto`).
    /// See [`ServerHandle::sendto`].
    pub fn sendto(
        &self,
        listener: usize,
        peer: &PacketPeer,
        data: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendToError> {
        self.server.sendto(listener, peer, data)
    }

    /// What the default `on_packet` does: count the datagram, and log the first.
    pub(crate) fn unhandled_packet(&self, packet: &[u8], from: &PacketInfo) {
        self.server.unhandled_packet(packet.len(), from);
    }

    /// Whether this is a task worker's thread: always `false` here (see
    /// [`TaskContext`](crate::TaskContext)).
    pub fn is_task_worker(&self) -> bool {
        false
    }

    fn pool(&self) -> Result<&'a TaskPool<T>, TaskError> {
        self.tasks.ok_or(TaskError::NoTaskWorkers)
    }

    fn submit(
        &self,
        target: Option<usize>,
        payload: T::Task,
        callback: Option<WorkerCallback<T>>,
    ) -> Result<TaskId, TaskError> {
        let reply = Reply::Worker {
            worker: self.worker_id,
            callback: callback.map(|c| Box::new(c) as crate::task::Callback),
        };
        let src = TaskSource::Worker(self.worker_id);
        let pool = self.pool()?;
        let me = &self.server.shared.workers[self.worker_id];
        if me.results_closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(TaskError::ShuttingDown);
        }
        let id = pool.submit(target, src, payload, reply)?;
        pool.outstanding[self.worker_id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(id)
    }

    /// Queue a task (Swoole's `task`): returns its id at once, or why it was not queued
    /// ([`TaskError::QueueFull`], [`TaskError::ShuttingDown`], …). An idle task worker is
    /// preferred, then the shortest queue. Its results arrive in
    /// [`on_finish`](crate::EventHandler::on_finish) on this worker, one per result sent,
    /// and a panic in it as an `Err` there.
    pub fn task(&self, payload: T::Task) -> Result<TaskId, TaskError> {
        self.submit(None, payload, None)
    }

    /// Queue a task on task worker `task_worker` (`dst_worker_id`); its queue is FIFO.
    pub fn task_to(&self, task_worker: usize, payload: T::Task) -> Result<TaskId, TaskError> {
        self.submit(Some(task_worker), payload, None)
    }

    /// Queue a task whose first result goes to `callback`, run on this worker, instead of
    /// `on_finish` (Swoole's `task($data, -1, $callback)`). The callback runs once: with the
    /// result, or with the error that ended the task without one ([`TaskError::NoResult`],
    /// [`TaskError::Panicked`]); only a task still unfinished when its worker stops at the
    /// shutdown deadline never calls back (it is counted in the shutdown report instead).
    /// Further results of the task go to `on_finish`.
    pub fn task_then(
        &self,
        payload: T::Task,
        callback: impl FnOnce(&mut Context<'_, T>, TaskId, Result<T::Output, TaskError>)
            + Send
            + 'static,
    ) -> Result<TaskId, TaskError> {
        self.submit(None, payload, Some(Box::new(callback)))
    }

    /// Run a task and block this worker until its result or `timeout` (Swoole's `taskwait`),
    /// measured on a monotonic clock from the call.
    ///
    /// The result is this task's own: a late result of an earlier wait that timed out is
    /// dropped and counted (`task_late`), never returned here. A task that panics gives
    /// [`TaskError::Panicked`] with its message; one that ends without a result gives
    /// [`TaskError::NoResult`] at once rather than at the deadline.
    pub fn task_wait(&self, payload: T::Task, timeout: Duration) -> Result<T::Output, TaskError> {
        wait_one(
            self.pool()?,
            &self.server.shared.outlet,
            TaskSource::Worker(self.worker_id),
            payload,
            timeout,
        )
    }

    /// Run tasks at once and block until every result is in or `timeout` passes (Swoole's
    /// `taskWaitMulti`). One entry per payload, in the payloads' order: its result, or its
    /// own error (`Timeout`, `Panicked`, `QueueFull`, …). At most [`MAX_MULTI`] payloads
    /// (otherwise [`TaskError::TooMany`] and nothing is queued).
    ///
    /// Unlike Swoole, a task that timed out keeps its place (as `Err(Timeout)`) instead of
    /// being left out, so results never shift position.
    ///
    /// [`MAX_MULTI`]: crate::MAX_MULTI
    pub fn task_wait_multi(
        &self,
        payloads: impl IntoIterator<Item = T::Task>,
        timeout: Duration,
    ) -> Result<Vec<Result<T::Output, TaskError>>, TaskError> {
        wait_all(
            self.pool()?,
            &self.server.shared.outlet,
            TaskSource::Worker(self.worker_id),
            payloads,
            timeout,
        )
    }

    /// The same as [`task_wait_multi`](Self::task_wait_multi), under Swoole's coroutine name
    /// (`taskCo`). eddy's workers are threads, not coroutines, so both block the calling
    /// worker and behave identically; both names exist so Swoole code maps one to one.
    pub fn task_co(
        &self,
        payloads: impl IntoIterator<Item = T::Task>,
        timeout: Duration,
    ) -> Result<Vec<Result<T::Output, TaskError>>, TaskError> {
        self.task_wait_multi(payloads, timeout)
    }

    fn conn(&self, conn: ConnId) -> Option<Arc<Conn>> {
        match self.current {
            Some(current) if current.id == conn => Some(current.clone()),
            _ => self.server.shared.table.get(conn),
        }
    }

    /// The record of `conn`, or `NotFound`.
    fn known(&self, conn: ConnId) -> Result<Arc<Conn>, SendError> {
        self.conn(conn).ok_or(SendError::NotFound)
    }

    /// This worker's id, `0..worker_num`.
    pub fn worker_id(&self) -> usize {
        self.worker_id
    }

    /// The server, to reach anything beyond this event.
    pub fn server(&self) -> &'a ServerHandle {
        self.server
    }

    /// Send bytes to a connection (one message on a WebSocket). See [`ServerHandle::send`].
    pub fn send(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        self.send_with(conn, data.len(), |outlet, conn| outlet.send(conn, data))
    }

    /// Send one WebSocket text message. See [`ServerHandle::send_text`].
    pub fn send_text(&self, conn: ConnId, text: impl AsRef<str>) -> Result<SendStatus, SendError> {
        self.send_opcode(conn, Opcode::Text, text.as_ref().as_bytes())
    }

    /// Send one WebSocket binary message. See [`ServerHandle::send_binary`].
    pub fn send_binary(
        &self,
        conn: ConnId,
        data: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        self.send_opcode(conn, Opcode::Binary, data.as_ref())
    }

    /// Send one WebSocket message of `opcode`. See [`ServerHandle::send_opcode`].
    pub fn send_opcode(
        &self,
        conn: ConnId,
        opcode: Opcode,
        data: &[u8],
    ) -> Result<SendStatus, SendError> {
        self.send_with(conn, data.len(), |outlet, conn| {
            outlet.send_ws(conn, opcode, data)
        })
    }

    /// Swoole's name for [`send`](Self::send) on a WebSocket.
    pub fn push(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        self.send(conn, data)
    }

    /// Send bytes as they are, past the protocol. See [`ServerHandle::send_raw`].
    pub fn send_raw(&self, conn: ConnId, data: impl AsRef<[u8]>) -> Result<SendStatus, SendError> {
        let data = data.as_ref();
        self.send_with(conn, data.len(), |outlet, conn| outlet.send_raw(conn, data))
    }

    /// Send part of a file, zero-copy. See [`ServerHandle::sendfile`].
    pub fn sendfile(
        &self,
        conn: ConnId,
        path: impl AsRef<std::path::Path>,
        offset: u64,
        len: Option<u64>,
    ) -> Result<SendStatus, SendFileError> {
        self.server.sendfile(conn, path, offset, len)
    }

    /// Send, then block this worker until the bytes are in the kernel's buffer or `timeout`
    /// passes. See [`ServerHandle::sendwait`].
    pub fn sendwait(
        &self,
        conn: ConnId,
        data: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<SendStatus, SendError> {
        self.server.sendwait(conn, data, timeout)
    }

    /// Close a WebSocket with a close frame. See [`ServerHandle::disconnect`].
    pub fn disconnect(&self, conn: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
        self.server.disconnect(conn, code, reason)
    }

    /// Whether a WebSocket is open. See [`ServerHandle::is_established`].
    pub fn is_established(&self, conn: ConnId) -> bool {
        self.server.is_established(conn)
    }

    /// Send through `send` to `conn` (the event's own connection needs no table lookup),
    /// counting `len` bytes on this worker when it went.
    fn send_with(
        &self,
        conn: ConnId,
        len: usize,
        send: impl FnOnce(&Outlet, &Arc<Conn>) -> Result<SendStatus, SendError>,
    ) -> Result<SendStatus, SendError> {
        let shared = &self.server.shared;
        let result = match self.current {
            Some(current) if current.id == conn => send(&shared.outlet, current),
            _ => send(&shared.outlet, &self.known(conn)?),
        };
        if result.is_ok() {
            shared.stats.workers[self.worker_id].count_response(len);
        }
        result
    }

    /// Frame `body` with the listener's protocol and send it. See
    /// [`ServerHandle::send_framed`].
    pub fn send_framed(
        &self,
        conn: ConnId,
        body: impl AsRef<[u8]>,
    ) -> Result<SendStatus, SendError> {
        let body = body.as_ref();
        let shared = &self.server.shared;
        let result = shared.outlet.send_framed(&self.known(conn)?, body);
        if result.is_ok() {
            shared.stats.workers[self.worker_id].count_response(body.len());
        }
        result
    }

    /// Close a connection after flushing its queued output. See [`ServerHandle::close`].
    pub fn close(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.known(conn)?;
        self.server
            .shared
            .outlet
            .close(&conn, CloseReason::ServerClosed)
    }

    /// Close a connection at once with a reset, dropping queued output.
    pub fn close_reset(&self, conn: ConnId) -> Result<(), SendError> {
        let conn = self.known(conn)?;
        self.server
            .shared
            .outlet
            .close(&conn, CloseReason::ServerReset)
    }

    /// Bind a connection to a user id. See [`ServerHandle::bind`].
    pub fn bind(&self, conn: ConnId, uid: impl Into<Uid>) -> Result<(), SendError> {
        let conn = self.known(conn)?;
        self.server.shared.uids.bind(&conn, Some(uid.into()))
    }

    /// Whether the connection is open. See [`ServerHandle::exists`].
    pub fn exists(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|conn| conn.is_open())
    }

    /// What is known of a connection; answers inside `on_close` too.
    pub fn client_info(&self, conn: ConnId) -> Option<ClientInfo> {
        self.conn(conn)
            .map(|conn| ClientInfo::of(&conn, &self.server.shared))
    }
}
