//! eddy's runtime: listeners (TCP, unix, WebSocket), reactor threads, dispatch, worker
//! threads, the send path and graceful shutdown. Most users reach it through the `eddy` crate.
//!
//! # Architecture
//!
//! ```text
//!  listeners ──accept──► supervisor (the thread in `run`: accept, signals, shutdown)
//!                            │ spreads connections evenly
//!                            ▼
//!  reactor threads (reactor_num), each with a poller and a slab of its sockets
//!     read → codec → packet ─dispatch mode─► worker queue (bounded, FIFO)
//!     flush queued output on writability                     │
//!            ▲                                               ▼
//!            │ commands (queued output, close, resume)   worker threads (worker_num)
//!            └──────────────────────────────────────────  one handler each: on_receive …
//!                                                          send(): straight to the socket
//!  connection table (ids → records, any thread)            when nothing is queued
//!                                                            │ task ▲ results
//!                                                            ▼      │
//!                                           task worker threads (task_worker_num)
//! ```
//!
//! - A reactor owns its sockets: only it reads them, and only it closes them.
//! - Sending costs no hop: a worker writes straight to the socket when the connection's output
//!   buffer is empty, and queues behind it otherwise. Bytes on a connection never reorder.
//! - Queues are bounded and pressure flows back to the client: a full worker queue pauses
//!   reading on the connections that feed it; an output buffer over its high watermark pauses
//!   reading on its connection.
//! - Nothing polls on a timer: an idle server uses no CPU.
//! - Task workers (see [`TaskHandler`]) run slow work for the workers: tasks and results move
//!   as typed values through bounded queues; nothing is lost without an error or a count.
//! - Handlers are disposable, connections are not: a reload (`reload`, SIGUSR1),
//!   `max_request` or a panic rebuilds a worker's handler between two events while its
//!   connections stay open in the reactors. Timers (`Context::tick`), messages
//!   (`send_message`), user threads (`ServerBuilder::add_process`) and admin commands
//!   (`ServerHandle::command`) keep a long-running server controllable.
//! - WebSocket listeners ([`ServerBuilder::listen_ws`]) speak RFC 6455 with permessage-deflate
//!   in the reactor: workers see [`EventHandler::on_handshake`], `on_open`, one
//!   [`EventHandler::on_message`] per whole message and `on_request` for plain HTTP; `send`
//!   on such a connection sends one message, encoded once per broadcast.
//!
//! ```no_run
//! use eddy_server::{ConnId, Context, EventHandler, Server, WsMessage};
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
//!         let _ = ctx.send_opcode(conn, message.opcode, &message.data);
//!     }
//!     fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: bytes::Bytes) {}
//! }
//!
//! let server = Server::builder().listen_ws("127.0.0.1:9504").build(|| Echo)?;
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - Datagram listeners ([`ServerBuilder::listen_udp`], [`ServerBuilder::listen_unix_dgram`])
//!   are read by a reactor a batch at a time; each datagram goes to
//!   [`EventHandler::on_packet`], answered with [`ServerHandle::sendto`] from any thread. A
//!   flood the workers cannot keep up with is dropped and counted, never buffered.
//! - [`ServerHandle::sendfile`] queues file ranges (zero-copy) in order with other output;
//!   [`ServerHandle::sendwait`] blocks its caller until its bytes are in the kernel.
//! - Groups ([`ServerHandle::join_group`], [`ServerHandle::send_to_group`]) are named sets
//!   of connections, left on close. With the cargo feature `cluster`,
//!   `ServerBuilder::cluster` makes the server one node of several that share uids, groups
//!   and broadcasts through Redis (pub/sub for messages, expiring keys for presence):
//!   `send_to_uid` reaches a uid on whichever node holds it, `is_uid_online` and
//!   `uid_count` answer for the whole cluster, and local delivery never waits for Redis.
//!   Without a cluster the same calls answer for this node alone. Pub/sub is at-most-once:
//!   the docs of `ServerBuilder::cluster` say what can be lost and when.
//!
//! # Layers
//!
//! The modules form layers: each imports only modules of lower layers, never through a
//! crate-root re-export, and files inside a folder import each other without a circle
//! (`tests/layers.rs` reads this table and checks the code against it). A packet travels up
//! the table from `sys` to `worker`; a reply goes back down through `shared::send`.
//! `ARCHITECTURE.md` at the repository root walks both ways file by file.
//!
//! | layer | module | what it is | runs on |
//! |---|---|---|---|
//! | 0 | `sys` | system calls on borrowed descriptors, the epoll poller, the coarse clock, the idle rule | any |
//! | 1 | `message` | messages between threads, command targets | any |
//! | 2 | `error` | the error types | any |
//! | 3 | `ws` | WebSocket types for handlers and settings: messages, the handshake decision, HTTP answers | any |
//! | 4 | `tls` | TLS settings, each TLS listener's acceptor (reloadable), the rustls session a connection drives | any |
//! | 5 | `timer` | per-thread timers | workers, task workers |
//! | 6 | `net` | addresses, listeners, accepted streams | supervisor |
//! | 7 | `conn` | connection ids, the record any thread may hold, its output buffer and transport, close reasons | any |
//! | 8 | `dispatch` | dispatch modes and each reactor's picker | reactors |
//! | 9 | `config` | validated settings, each listener's protocol | read by all |
//! | 10 | `shared` | what threads share, split by owner: table, uid index, the send path, reactor and worker mailboxes, counters, reload state, `ServerHandle`'s state | any |
//! | 11 | `task` | the task pool, task worker threads, `TaskHandler`, `TaskContext` | task workers |
//! | 12 | `handle` | `ServerHandle`'s methods: send, broadcast, listing, flow, stats, control | any |
//! | 13 | `context` | the `Context` every worker callback gets | workers |
//! | 14 | `handler` | the `EventHandler` trait | workers |
//! | 15 | `reactor` | reactor threads: read, cut packets through the protocol, dispatch, flush, close | `eddy-reactor-N` |
//! | 16 | `worker` | worker threads: events to callbacks, task results, rebuilds | `eddy-worker-N` |
//! | 17 | `lifecycle` | supervisor (accept, heartbeat), signals, reload, user threads, shutdown | the thread in `run` |
//! | 18 | `cluster` | the cluster bus over Redis (feature `cluster`): presence, subscriber, delivery | `eddy-cluster-*` |
//! | 19 | `server` | `Server`: the shared state and mailboxes built, run, report | the thread in `run` |
//! | 20 | `builder` | `ServerBuilder`: settings, checked at `build` | the caller |
//!
//! A connection's bytes pass two seams on their way to dispatch, each an enum whose variants
//! are the implementations: the transport (`conn::Transport`: plain or TLS) and the
//! listener's protocol (`config::Protocol` with the reactor's per-connection state: framing
//! codecs today, WebSocket next).
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use eddy_server::{ConnId, Context, EventHandler, Server};
//! use eddy_codec::LengthCodec;
//!
//! struct Echo;
//!
//! impl EventHandler for Echo {
//!     fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
//!         let _ = ctx.send(conn, &packet);
//!     }
//! }
//!
//! let server = Server::builder()
//!     .listen("127.0.0.1:9501")
//!     .codec(LengthCodec::new())
//!     .build(|| Echo)?;
//! server.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
#[cfg(feature = "cluster")]
mod cluster;
mod config;
mod conn;
mod context;
mod dispatch;
mod error;
mod handle;
mod handler;
mod lifecycle;
mod message;
mod net;
mod reactor;
mod server;
mod shared;
mod sys;
mod task;
mod timer;
mod tls;
mod worker;
mod ws;

pub use builder::ServerBuilder;
#[cfg(feature = "cluster")]
pub use cluster::{ClusterConfig, StartMode};
pub use conn::{CloseReason, ConnId, Uid};
pub use context::Context;
pub use dispatch::{DispatchFn, DispatchInfo, DispatchMode};
pub use error::{
    BuildError, ClusterError, CommandError, ConfigError, SendError, SendFileError, SendStatus,
    SendToError, TaskError,
};
pub use handle::{ClientInfo, Connections, Cursor, Delivery, PeerCredentials, Stats, Target};
pub use handler::EventHandler;
pub use lifecycle::{ProcessContext, ShutdownReport};
pub use message::{CommandTarget, Destination, Message, MessageError, MessageSource};
pub use net::{ListenAddr, PacketInfo, PacketPeer, PeerAddr};
pub use server::{RunningServer, Server};
pub use shared::{
    ClusterState, ClusterStats, CommandContext, ReloadError, ReloadScope, ServerHandle,
    WorkerError, WorkerStatus,
};
pub use task::{NoTasks, Task, TaskContext, TaskHandler, TaskId, TaskSource, Tasks, MAX_MULTI};
pub use timer::{TimerError, TimerId, MIN_TICK};
pub use tls::{ClientAuth, TlsConfig, TlsError, TlsFailure, TlsInfo, TlsVersion};
pub use ws::{
    DeflateConfig, Handshake, HttpRequest, HttpResponse, Opcode, WebSocketConfig, WsMessage,
    WsStatus,
};
