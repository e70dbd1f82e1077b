//! The callbacks a worker runs, by name.

/// Which callback a worker runs (named in logs and in `WorkerError::callback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Callback {
    WorkerStart,
    WorkerStop,
    WorkerError,
    Connect,
    Receive,
    Close,
    BufferFull,
    BufferDrain,
    Finish,
    TaskThen,
    PipeMessage,
    Timer,
    Handshake,
    Open,
    Message,
    Request,
    Packet,
}

impl Callback {
    /// The name users know it by.
    pub(super) fn name(self) -> &'static str {
        match self {
            Callback::WorkerStart => "on_worker_start",
            Callback::WorkerStop => "on_worker_stop",
            Callback::WorkerError => "on_worker_error",
            Callback::Connect => "on_connect",
            Callback::Receive => "on_receive",
            Callback::Close => "on_close",
            Callback::BufferFull => "on_buffer_full",
            Callback::BufferDrain => "on_buffer_drain",
            Callback::Finish => "on_finish",
            Callback::TaskThen => "task callback",
            Callback::PipeMessage => "on_pipe_message",
            Callback::Timer => "timer",
            Callback::Handshake => "on_handshake",
            Callback::Open => "on_open",
            Callback::Message => "on_message",
            Callback::Request => "on_request",
            Callback::Packet => "on_packet",
        }
    }

    /// A lifecycle callback's panic is logged only: it rebuilds nothing and closes nothing
    /// (its caller retries or carries on).
    pub(super) fn is_lifecycle(self) -> bool {
        matches!(
            self,
            Callback::WorkerStart | Callback::WorkerStop | Callback::WorkerError
        )
    }
}
