//! Admin commands (Swoole's `addCommand` / `command`): named calls, registered at build time,
//! run on a chosen worker, task worker or the supervisor, answered with a serde value.

use std::{
    collections::HashMap,
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use crossbeam_channel::Sender;
use serde_json::Value;

use crate::{panic_message, ServerHandle};

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandTarget {
    /// The thread that called `run`.
    Supervisor,
    /// Worker `id`, between two events.
    Worker(usize),
    /// Task worker `id`, between two tasks.
    TaskWorker(usize),
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

/// Why a command gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No command of that name was added with `add_command`.
    Unknown(String),
    /// No such worker or task worker.
    NoSuchTarget(CommandTarget),
    /// The target's queue is full.
    QueueFull,
    /// No answer within the timeout (the target is busy; a worker asking itself always
    /// times out).
    Timeout,
    /// The command panicked; the message is the panic's.
    Panicked(String),
    /// The arguments could not be turned into JSON.
    BadArguments(String),
    /// The server is shutting down.
    ShuttingDown,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(name) => write!(f, "no command named `{name}`"),
            CommandError::NoSuchTarget(target) => write!(f, "no such target: {target:?}"),
            CommandError::QueueFull => f.write_str("the target's queue is full"),
            CommandError::Timeout => f.write_str("no answer in time"),
            CommandError::Panicked(message) => write!(f, "command panicked: {message}"),
            CommandError::BadArguments(err) => write!(f, "bad arguments: {err}"),
            CommandError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

impl std::error::Error for CommandError {}

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
