//! What the threads of a server share, split by owner: the connection table, the uid and
//! group indexes (with the cluster bus's seam),
//! the send path, each reactor's and worker's mailbox, the counters, the reload state, and
//! the `Shared` root that ties them together behind a [`ServerHandle`].
//!
//! Above `config`, below `task`. Nothing here runs a loop of its own; the threads
//! that do (reactor, worker, supervisor) import it, never the other way.

mod admit;
mod bus;
mod counters;
mod datagram;
mod groups;
mod members;
mod reactor_mail;
mod reload;
mod send;
mod send_file;
mod send_ws;
mod server;
mod table;
mod tasks;
mod uids;
mod worker_mail;

pub(crate) use bus::Watch;
pub use bus::{ClusterState, ClusterStats};
pub(crate) use counters::{Counter, Counters, ReactorCounters};
pub(crate) use datagram::{DatagramCounters, DatagramPort};
pub(crate) use groups::GroupIndex;
pub(crate) use reactor_mail::{Command, ReactorHandle};
pub(crate) use reload::{jittered, Rebuild, FIRST_BACKOFF, MAX_BACKOFF};
pub use reload::{ReloadError, ReloadScope, WorkerError, WorkerStatus};
pub(crate) use send::Outlet;
pub(crate) use send_ws::SharedMessage;
pub(crate) use server::{ClusterBus, CommandCall, CommandFn, Commands, Shared, SupervisorCommands};
pub use server::{CommandContext, ServerHandle};
pub(crate) use table::ConnTable;
pub(crate) use tasks::{PoolControl, TaskSnapshot};
pub(crate) use uids::UidIndex;
pub(crate) use worker_mail::{
    Datagram, Event, Mail, PendingHandshake, WakeWorker, WorkerRun, WorkerShared,
};
