//! The event-handler trait users implement.
//!
//! Above `context`, which every callback gets.

use bytes::Bytes;

use crate::{
    conn::{CloseReason, ConnId},
    context::Context,
    error::TaskError,
    message::{Message, MessageSource},
    net::PacketInfo,
    shared::{ServerHandle, WorkerError},
    task::{NoTasks, TaskHandler, TaskId},
    ws::{Handshake, HttpRequest, HttpResponse, WsMessage},
};

/// What a server does on each event: Swoole's `on('receive', …)` and friends as one trait.
///
/// `T` is the server's [`TaskHandler`], which types the tasks its workers send and the
/// results [`on_finish`](EventHandler::on_finish) receives; a server without task workers
/// implements plain `EventHandler` (`T` is [`NoTasks`]).
///
/// Only [`on_receive`](EventHandler::on_receive) is required; every other method defaults to
/// doing nothing. The server makes **one instance per worker thread** with the factory given to
/// [`ServerBuilder::build`](crate::ServerBuilder::build), so per-worker state needs no locks;
/// one more instance, on the thread that runs the server, receives
/// [`on_start`](EventHandler::on_start) and [`on_shutdown`](EventHandler::on_shutdown).
///
/// # Order of events
/// For one connection, `on_connect` happens before every `on_receive`, and `on_close` after
/// every `on_receive` has returned, in every dispatch mode. In stateful modes
/// ([`DispatchMode::is_stateful`](crate::DispatchMode::is_stateful)) all of a connection's
/// events run on one worker, in byte order. In stateless modes packets of one connection may
/// run on several workers at once. A panic in a callback is caught and logged; the worker
/// carries on with a handler rebuilt from the factory (see
/// [`on_worker_error`](EventHandler::on_worker_error)).
pub trait EventHandler<T: TaskHandler = NoTasks>: Send + 'static {
    /// The server is up (every thread started), before the first connection is accepted.
    /// Runs on the thread that called `run`.
    fn on_start(&mut self, server: &ServerHandle) {
        let _ = server;
    }

    /// A worker thread starts, before it handles any event.
    fn on_worker_start(&mut self, ctx: &mut Context<'_, T>) {
        let _ = ctx;
    }

    /// A worker thread stops, after its last event (at shutdown).
    fn on_worker_stop(&mut self, ctx: &mut Context<'_, T>) {
        let _ = ctx;
    }

    /// A connection was accepted.
    fn on_connect(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// A whole packet arrived, framing included (the length header or delimiter, as in
    /// Swoole). The bytes are shared with no copy: a packet is a slice of the block its read
    /// landed in (up to 256 KiB, shared with the packets read beside it), which stays
    /// allocated while any of them is kept. To keep a small packet long (a chat history, a
    /// cache), keep a copy (`Bytes::copy_from_slice`).
    fn on_receive(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, packet: Bytes);

    /// A WebSocket client asks to upgrade (Swoole's `onHandshake`): look at its path,
    /// headers, origin and subprotocols, and accept (with a subprotocol it offered, or none)
    /// or reject with an HTTP status. Default: accept, with no subprotocol. Nothing is read
    /// from the connection until this returns; after an accept, `on_open` runs, then
    /// messages come.
    fn on_handshake(
        &mut self,
        ctx: &mut Context<'_, T>,
        conn: ConnId,
        request: &HttpRequest,
    ) -> Handshake {
        let _ = (ctx, conn, request);
        Handshake::accept()
    }

    /// A WebSocket connection is open (Swoole's `onOpen`): the 101 went out, `send` sends
    /// messages from now on.
    fn on_open(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// A whole WebSocket message (Swoole's `onMessage`). Default: its payload goes to
    /// [`on_receive`](Self::on_receive), so one handler serves TCP and WebSocket listeners
    /// alike (as Workerman's `onMessage` does).
    fn on_message(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, message: WsMessage) {
        self.on_receive(ctx, conn, message.data);
    }

    /// A plain HTTP request (no upgrade) on a WebSocket listener (Swoole's `onRequest`), so
    /// one port serves a page and its socket. The answer is sent, then the connection closes.
    /// Default: `426 Upgrade Required`.
    fn on_request(
        &mut self,
        ctx: &mut Context<'_, T>,
        conn: ConnId,
        request: &HttpRequest,
    ) -> HttpResponse {
        let _ = (ctx, conn, request);
        HttpResponse::upgrade_required()
    }

    /// A datagram arrived on a UDP or unix datagram listener (Swoole's `onPacket`): one
    /// datagram is one packet. Answer with [`Context::sendto`] to `from.peer` on
    /// `from.listener`. Default: logged (the first time on each worker) and counted in
    /// [`Stats::packet_unhandled`](crate::Stats::packet_unhandled), never silently dropped.
    fn on_packet(&mut self, ctx: &mut Context<'_, T>, packet: Bytes, from: PacketInfo) {
        ctx.unhandled_packet(&packet, &from);
    }

    /// The connection closed. [`Context::client_info`] still answers for it here; its id
    /// stops resolving once this returns.
    fn on_close(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, reason: CloseReason) {
        let _ = (ctx, conn, reason);
    }

    /// The connection's output buffer reached the high watermark. If output backpressure is on
    /// (the default) eddy stops reading from the connection until it drains.
    fn on_buffer_full(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// The output buffer drained to the low watermark after a `on_buffer_full`; reading
    /// resumes. Exactly one drain follows each full.
    fn on_buffer_drain(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// A result of a task this worker sent with [`Context::task`] (Swoole's `onFinish`): once
    /// per result the task sent, or once with the error that ended it (a panic, or
    /// [`TaskError::Abandoned`] at shutdown). A task that ends without any result, cleanly,
    /// calls nothing.
    fn on_finish(
        &mut self,
        ctx: &mut Context<'_, T>,
        task: TaskId,
        result: Result<T::Output, TaskError>,
    ) {
        let _ = (ctx, task, result);
    }

    /// A message sent to this worker with `send_message` (Swoole's `onPipeMessage`). Messages
    /// from one sender arrive in the order sent.
    fn on_pipe_message(&mut self, ctx: &mut Context<'_, T>, src: MessageSource, message: Message) {
        let _ = (ctx, src, message);
    }

    /// A callback of this worker panicked (Swoole's `onWorkerError`). Runs on the worker's new
    /// handler, rebuilt from the factory after the panic, before its next event.
    fn on_worker_error(&mut self, ctx: &mut Context<'_, T>, error: &WorkerError) {
        let _ = (ctx, error);
    }

    /// A reload ([`ServerHandle::reload`], SIGUSR1 or SIGUSR2) begins. Runs on the thread
    /// that called `run`, on the same instance as `on_start`; the server still serves.
    fn on_before_reload(&mut self, server: &ServerHandle) {
        let _ = server;
    }

    /// A reload is over: every handler it concerned was rebuilt (or `max_wait_time` passed).
    /// Runs on the thread that called `run`.
    fn on_after_reload(&mut self, server: &ServerHandle) {
        let _ = server;
    }

    /// A shutdown begins (a handle's `shutdown`, SIGTERM or SIGINT), while the server still
    /// serves: the first phase of a graceful shutdown. Then accepting stops, the workers drain
    /// and stop (`on_worker_stop` each), the task workers finish, and `on_shutdown` runs.
    /// Runs on the thread that called `run`; the shutdown waits for it to return (the
    /// `max_wait_time` deadline starts after it).
    fn on_before_shutdown(&mut self, server: &ServerHandle) {
        let _ = server;
    }

    /// The server has stopped: every worker has stopped and every connection is closed. Runs
    /// on the thread that called `run`, last of all.
    fn on_shutdown(&mut self, server: &ServerHandle) {
        let _ = server;
    }
}

/// A boxed handler is a handler (the workers hold theirs boxed).
impl<T: TaskHandler, H: EventHandler<T> + ?Sized> EventHandler<T> for Box<H> {
    fn on_start(&mut self, server: &ServerHandle) {
        (**self).on_start(server)
    }
    fn on_worker_start(&mut self, ctx: &mut Context<'_, T>) {
        (**self).on_worker_start(ctx)
    }
    fn on_worker_stop(&mut self, ctx: &mut Context<'_, T>) {
        (**self).on_worker_stop(ctx)
    }
    fn on_connect(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        (**self).on_connect(ctx, conn)
    }
    fn on_receive(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, packet: Bytes) {
        (**self).on_receive(ctx, conn, packet)
    }
    fn on_close(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, reason: CloseReason) {
        (**self).on_close(ctx, conn, reason)
    }
    fn on_handshake(
        &mut self,
        ctx: &mut Context<'_, T>,
        conn: ConnId,
        request: &HttpRequest,
    ) -> Handshake {
        (**self).on_handshake(ctx, conn, request)
    }
    fn on_open(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        (**self).on_open(ctx, conn)
    }
    fn on_packet(&mut self, ctx: &mut Context<'_, T>, packet: Bytes, from: PacketInfo) {
        (**self).on_packet(ctx, packet, from)
    }
    fn on_message(&mut self, ctx: &mut Context<'_, T>, conn: ConnId, message: WsMessage) {
        (**self).on_message(ctx, conn, message)
    }
    fn on_request(
        &mut self,
        ctx: &mut Context<'_, T>,
        conn: ConnId,
        request: &HttpRequest,
    ) -> HttpResponse {
        (**self).on_request(ctx, conn, request)
    }
    fn on_buffer_full(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        (**self).on_buffer_full(ctx, conn)
    }
    fn on_buffer_drain(&mut self, ctx: &mut Context<'_, T>, conn: ConnId) {
        (**self).on_buffer_drain(ctx, conn)
    }
    fn on_finish(
        &mut self,
        ctx: &mut Context<'_, T>,
        task: TaskId,
        result: Result<T::Output, TaskError>,
    ) {
        (**self).on_finish(ctx, task, result)
    }
    fn on_pipe_message(&mut self, ctx: &mut Context<'_, T>, src: MessageSource, message: Message) {
        (**self).on_pipe_message(ctx, src, message)
    }
    fn on_worker_error(&mut self, ctx: &mut Context<'_, T>, error: &WorkerError) {
        (**self).on_worker_error(ctx, error)
    }
    fn on_before_reload(&mut self, server: &ServerHandle) {
        (**self).on_before_reload(server)
    }
    fn on_after_reload(&mut self, server: &ServerHandle) {
        (**self).on_after_reload(server)
    }
    fn on_before_shutdown(&mut self, server: &ServerHandle) {
        (**self).on_before_shutdown(server)
    }
    fn on_shutdown(&mut self, server: &ServerHandle) {
        (**self).on_shutdown(server)
    }
}
