//! Connections: their ids, the record every thread may hold, its output buffer, its
//! transport, and why it closed.
//!
//! Above `net`. Any thread may hold a record (`Arc<Conn>`); only its reactor reads
//! the socket and closes it. Writing through a record (the send path) is one layer up, in
//! `shared::send`, because it must be able to wake the owning reactor.

mod close;
mod id;
mod output;
mod record;
mod tail;
mod transport;

pub use close::CloseReason;
pub(crate) use id::FnvHasher;
pub use id::{ConnId, Uid};
pub(crate) use output::{OutState, Output, WsOut};
pub(crate) use record::{inflight, Conn};
pub(crate) use transport::Transport;
