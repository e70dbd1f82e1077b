//! eddy's runtime: listeners, reactor threads, dispatch, worker threads, the send path and
//! graceful shutdown. Most users reach it through the `eddy` crate.
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
mod command;
mod config;
mod conn;
mod context;
mod dispatch;
mod error;
mod flow;
mod handle;
mod handler;
mod id;
mod idle;
mod listing;
mod message;
mod net;
mod process;
mod reactor;
mod reload;
mod routing;
mod server;
mod stats;
mod supervisor;
mod sys;
mod table;
mod task;
mod timer;
mod worker;

pub use builder::ServerBuilder;
pub use command::{CommandContext, CommandError, CommandTarget};
pub use context::Context;
pub use dispatch::{DispatchFn, DispatchInfo, DispatchMode};
pub use error::{BuildError, ConfigError, SendError, SendStatus, TaskError};
pub use handle::{ClientInfo, ServerHandle};
pub use handler::{CloseReason, EventHandler};
pub use id::{ConnId, Uid};
pub use listing::{Connections, Cursor};
pub use message::{Destination, Message, MessageError, MessageSource};
pub use net::{ListenAddr, PeerAddr};
pub use process::ProcessContext;
pub use reload::{ReloadError, ReloadScope, WorkerError, WorkerStatus};
pub use routing::{Delivery, Target};
pub use server::{RunningServer, Server, ShutdownReport};
pub use stats::Stats;
pub use task::{NoTasks, Task, TaskContext, TaskHandler, TaskId, TaskSource, Tasks, MAX_MULTI};
pub use timer::{TimerError, TimerId, MIN_TICK};

pub(crate) use worker::panic_message;
