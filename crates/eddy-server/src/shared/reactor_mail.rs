//! A reactor's mailbox: what other threads ask of it, and the poller to wake it with.

use std::{
    sync::{atomic::AtomicUsize, Arc},
    time::Instant,
};

use crossbeam_channel::Sender;

use crate::{
    conn::{CloseReason, Conn},
    net::Listener,
    sys::Poller,
};

/// What other threads ask of a reactor, by intent. The reactor alone knows how it carries
/// them out (its pause bits, its slab keys).
#[derive(Debug)]
pub(crate) enum Command {
    /// Take ownership of a freshly accepted connection.
    Register(Arc<Conn>),
    /// Output was queued, or the high watermark crossed: look at the output buffer.
    Output(Arc<Conn>),
    /// A broadcast queued output on these connections: write it now.
    Flush(Vec<Arc<Conn>>),
    /// The events in flight for this connection reached zero, and the reactor asked to hear
    /// of it (reading paused at `max_queued_bytes`, or a close waiting for the workers).
    Idle(Arc<Conn>),
    /// `on_connect` returned (stateless dispatch modes read nothing before it does).
    OpenGate(Arc<Conn>),
    /// The WebSocket handshake was accepted (the 101 went out, `on_open` returned): read
    /// frames.
    Upgraded(Arc<Conn>),
    /// Close for this reason: after flushing (`ServerClosed`) or at once (the others).
    Close(Arc<Conn>, CloseReason),
    /// The application paused reading (`pause`).
    Pause(Arc<Conn>),
    /// The application resumed reading (`resume`, `confirm`).
    Resume(Arc<Conn>),
    /// Datagrams were queued on this datagram listener: flush them when it is writable.
    DatagramOutput(usize),
    /// Start accepting on these stream listeners (by listener index); sent once the server
    /// has started (`on_start` returned).
    Accept(Arc<[(usize, Arc<Listener>)]>),
    /// Stop reading, let in-flight work finish and output flush, close everything, exit by
    /// the deadline.
    Shutdown(Instant),
}

/// A reactor's command channel, and the poller to wake it with.
#[derive(Debug)]
pub(crate) struct ReactorHandle {
    tx: Sender<Command>,
    pub(crate) poller: Arc<Poller>,
    /// Connections placed on it and not closed yet (how accepting reactors spread them).
    pub(crate) open: AtomicUsize,
}

impl ReactorHandle {
    pub(crate) fn new(tx: Sender<Command>, poller: Arc<Poller>) -> Self {
        ReactorHandle {
            tx,
            poller,
            open: AtomicUsize::new(0),
        }
    }

    /// Queue a command and wake the reactor (wake-ups coalesce while it is busy).
    pub(crate) fn command(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            self.poller.notify();
        }
    }
}
