use std::fmt;

use crate::close_code;

/// Why the bytes a client sent after the handshake break RFC 6455 (or RFC 7692).
///
/// Each variant fails the connection: send a Close frame with [`close_code`](Self::close_code)
/// (1002 protocol error, 1007 invalid data, 1009 too big), then close the socket. A
/// [`Decoder`](crate::Decoder) that returned one returns it again on every later call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client frame without a mask (RFC 6455 §5.1: every client frame is masked).
    Unmasked,
    /// A reserved bit is set that nothing negotiated: RSV2 or RSV3, RSV1 without
    /// permessage-deflate, or RSV1 on a control or continuation frame. Says which.
    ReservedBits(&'static str),
    /// An opcode RFC 6455 reserves (3 to 7, 0xB to 0xF).
    ReservedOpcode(u8),
    /// A control frame (close, ping, pong) with a payload over 125 bytes.
    ControlTooLong(u64),
    /// A control frame with FIN clear: control frames cannot be fragmented.
    ControlFragmented,
    /// A continuation frame with no fragmented message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message still waits for its end.
    ExpectedContinuation,
    /// A payload length that breaks the encoding rules: not the shortest form, or a 64-bit
    /// length with its most significant bit set. Says which.
    InvalidLength(&'static str),
    /// One frame's payload is `len` bytes, over the `max` allowed (known from the header).
    FrameTooLarge {
        /// The frame's payload length, from its header.
        len: u64,
        /// The largest frame payload allowed.
        max: usize,
    },
    /// The message (after decompression, when compressed) would exceed `max` bytes.
    MessageTooLarge {
        /// The largest message allowed.
        max: usize,
    },
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A close frame whose status code may not be sent on the wire (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A close frame whose payload is one byte: too short for a status code.
    InvalidClosePayload,
    /// A close frame whose reason is not UTF-8.
    InvalidCloseReason,
    /// A compressed message that does not inflate.
    Deflate(DeflateError),
}

impl ProtocolError {
    /// The status code of the Close frame that fails the connection for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                close_code::TOO_BIG
            }
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                close_code::INVALID_DATA
            }
            ProtocolError::Deflate(err) => err.close_code(),
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Unmasked => write!(f, "client frame is not masked"),
            ProtocolError::ReservedBits(why) => write!(f, "reserved bits set: {why}"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ControlTooLong(len) => {
                write!(f, "control frame of {len} bytes (at most 125)")
            }
            ProtocolError::ControlFragmented => write!(f, "fragmented control frame"),
            ProtocolError::UnexpectedContinuation => {
                write!(f, "continuation frame outside a fragmented message")
            }
            ProtocolError::ExpectedContinuation => {
                write!(f, "new data frame inside a fragmented message")
            }
            ProtocolError::InvalidLength(why) => write!(f, "invalid payload length: {why}"),
            ProtocolError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            ProtocolError::MessageTooLarge { max } => {
                write!(f, "message exceeds the maximum of {max} bytes")
            }
            ProtocolError::InvalidUtf8 => write!(f, "text message is not valid UTF-8"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidClosePayload => write!(f, "close payload of one byte"),
            ProtocolError::InvalidCloseReason => write!(f, "close reason is not valid UTF-8"),
            ProtocolError::Deflate(err) => write!(f, "permessage-deflate: {err}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<DeflateError> for ProtocolError {
    fn from(err: DeflateError) -> Self {
        match err {
            DeflateError::TooLarge { max } => ProtocolError::MessageTooLarge { max },
            other => ProtocolError::Deflate(other),
        }
    }
}

/// Why permessage-deflate failed on one message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateError {
    /// The compressed data is not a valid DEFLATE stream (zlib's message).
    Corrupt(String),
    /// Inflating would produce more than `max` bytes (a "zip bomb" is stopped here).
    TooLarge {
        /// The largest output allowed.
        max: usize,
    },
    /// The compressor failed (zlib's message); it never does on valid settings.
    Compress(String),
}

impl DeflateError {
    /// 1009 for [`TooLarge`](Self::TooLarge), 1007 (invalid data) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            DeflateError::TooLarge { .. } => close_code::TOO_BIG,
            _ => close_code::INVALID_DATA,
        }
    }
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateError::Corrupt(why) => write!(f, "corrupt compressed data: {why}"),
            DeflateError::TooLarge { max } => {
                write!(f, "inflated message exceeds the maximum of {max} bytes")
            }
            DeflateError::Compress(why) => write!(f, "compression failed: {why}"),
        }
    }
}

impl std::error::Error for DeflateError {}

/// Why an HTTP request head could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is longer than `max` bytes (or still incomplete past them). Answer 431.
    TooLarge {
        /// The cap that was given.
        max: usize,
    },
    /// More header lines than [`MAX_HEADERS`](crate::handshake::MAX_HEADERS). Answer 431.
    TooManyHeaders,
    /// Not HTTP/1.x (httparse's reason). Answer 400.
    Malformed(&'static str),
}

impl HandshakeError {
    /// The HTTP status to answer with before closing: 431 or 400.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::TooLarge { .. } | HandshakeError::TooManyHeaders => 431,
            HandshakeError::Malformed(_) => 400,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::TooLarge { max } => {
                write!(f, "request head exceeds the maximum of {max} bytes")
            }
            HandshakeError::TooManyHeaders => write!(f, "too many header lines"),
            HandshakeError::Malformed(why) => write!(f, "malformed request: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why a request that asks for `Upgrade: websocket` cannot be upgraded.
///
/// Answer with [`response`](Self::response) (400, or 426 for a version this server does not
/// speak) and close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The method is not GET.
    NotGet,
    /// The request is not HTTP/1.1.
    NotHttp11,
    /// `Connection` does not list the `upgrade` token.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (the value, when there is one).
    UnsupportedVersion(Option<String>),
    /// No `Sec-WebSocket-Key`.
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not 16 bytes in base64.
    InvalidKey,
    /// No `Host` header (RFC 6455 §4.2.1 item 2).
    MissingHost,
    /// A header that must come once came more than once (`Host`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`): which one.
    Repeated(&'static str),
}

impl UpgradeError {
    /// 426 Upgrade Required for a version mismatch (RFC 6455 §4.4), 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::UnsupportedVersion(_) => 426,
            _ => 400,
        }
    }

    /// The whole HTTP response to send: the status, `Sec-WebSocket-Version: 13` for a version
    /// mismatch, `Connection: close`, and this error's message as a plain-text body.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{self}\n");
        let (reason, version): (&str, &[(&str, &str)]) = match self.status() {
            426 => ("Upgrade Required", &[("Sec-WebSocket-Version", "13")]),
            _ => ("Bad Request", &[]),
        };
        let mut headers = vec![("Content-Type", "text/plain"), ("Connection", "close")];
        headers.extend_from_slice(version);
        crate::handshake::http_response(self.status(), reason, &headers, body.as_bytes())
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::NotGet => write!(f, "a WebSocket upgrade must be a GET"),
            UpgradeError::NotHttp11 => write!(f, "a WebSocket upgrade must be HTTP/1.1"),
            UpgradeError::NoConnectionUpgrade => {
                write!(f, "the Connection header does not list `upgrade`")
            }
            UpgradeError::UnsupportedVersion(Some(v)) => {
                write!(
                    f,
                    "unsupported Sec-WebSocket-Version `{v}` (this server speaks 13)"
                )
            }
            UpgradeError::UnsupportedVersion(None) => {
                write!(f, "missing Sec-WebSocket-Version (this server speaks 13)")
            }
            UpgradeError::MissingKey => write!(f, "missing Sec-WebSocket-Key"),
            UpgradeError::InvalidKey => {
                write!(f, "Sec-WebSocket-Key is not 16 bytes in base64")
            }
            UpgradeError::MissingHost => write!(f, "missing Host"),
            UpgradeError::Repeated(name) => write!(f, "{name} is given more than once"),
        }
    }
}

impl std::error::Error for UpgradeError {}
