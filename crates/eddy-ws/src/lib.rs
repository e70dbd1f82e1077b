//! WebSocket for eddy, the server side: RFC 6455 (handshake, frames, closing) and RFC 7692
//! (permessage-deflate).
//!
//! This crate is pure: no sockets, no threads. A reactor keeps the bytes it has read for one
//! connection in a buffer and hands them over:
//!
//! 1. [`handshake::parse_request`] until the request head is whole; its
//!    [`kind`](handshake::Request::kind) tells a WebSocket upgrade from plain HTTP and from a
//!    broken upgrade. [`deflate::negotiate`] picks a permessage-deflate offer, and
//!    [`handshake::response_101`] writes the answer.
//! 2. A [`Decoder`] per connection then turns what the client sends into [`Event`]s:
//!    whole messages (fragments joined, unmasked in place, inflated, UTF-8 checked), pings,
//!    pongs and closes. A [`ProtocolError`] names the close code that fails the connection.
//! 3. An [`Encoder`] per connection writes messages, compressed when negotiated;
//!    [`encode_message`] writes one frame once for every connection without compression.
//!
//! ```
//! use bytes::BytesMut;
//! use eddy_ws::{encode_message, Decoder, DecoderConfig, Event, MessageKind};
//!
//! let mut decoder = Decoder::new(DecoderConfig::default());
//! // RFC 6455 §5.7: a masked "Hello".
//! let mut buf = BytesMut::from(
//!     &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..],
//! );
//! let Some(Event::Message(message)) = decoder.decode(&mut buf)? else { unreachable!() };
//! assert_eq!(message.as_text(), Some("Hello"));
//! let echo = encode_message(message.kind, &message.data);
//! assert_eq!(&echo[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
//! # Ok::<(), eddy_ws::ProtocolError>(())
//! ```

pub mod decoder;
pub mod deflate;
pub mod encoder;
mod error;
pub mod frame;
pub mod fuzzing;
pub mod handshake;
mod message;
pub mod utf8;

pub use decoder::{Decoder, DecoderConfig};
pub use encoder::{encode_close, encode_control, encode_message, Encoder};
pub use error::{DeflateError, HandshakeError, ProtocolError, UpgradeError};
pub use frame::{close_code, CloseFrame, OpCode};
pub use message::{Event, Message, MessageKind};
