use bytes::Bytes;

use crate::frame::{CloseFrame, OpCode};

/// The two kinds of data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (checked by the decoder).
    Text,
    /// Bytes.
    Binary,
}

impl MessageKind {
    /// The opcode of the message's first frame.
    pub const fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// A whole data message: every fragment joined, unmasked, inflated when it was compressed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// Text or binary.
    pub kind: MessageKind,
    /// The payload; for [`MessageKind::Text`], valid UTF-8.
    pub data: Bytes,
}

impl Message {
    /// The payload as text, for a text message (`None` for binary).
    pub fn as_text(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Text => std::str::from_utf8(&self.data).ok(),
            MessageKind::Binary => None,
        }
    }
}

/// What a [`Decoder`](crate::Decoder) found in a client's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole text or binary message.
    Message(Message),
    /// A ping: answer it with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The client starts (or answers) the closing handshake; `None` when its Close frame has
    /// no status code (report 1005). Answer with a Close frame, then close the socket.
    Close(Option<CloseFrame>),
}
