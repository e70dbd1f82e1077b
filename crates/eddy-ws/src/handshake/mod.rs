//! The opening handshake (RFC 6455 §4): read the client's HTTP request, tell a WebSocket
//! upgrade from plain HTTP and from a broken upgrade, write the answer.
//!
//! ```
//! use eddy_ws::handshake::{parse_request, response_101, RequestKind};
//!
//! let buf = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
//!             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
//! let Some((request, used)) = parse_request(buf, 8192)? else {
//!     return Ok(()); // read more
//! };
//! let answer = match request.kind() {
//!     RequestKind::WebSocket => response_101(request.key().unwrap(), None, None),
//!     RequestKind::BadUpgrade(err) => err.response(), // then close
//!     RequestKind::Http => unimplemented!("the server's request hook"),
//! };
//! assert!(answer.starts_with(b"HTTP/1.1 101"));
//! assert_eq!(used, buf.len()); // what follows `used` is the client's first frames
//! # Ok::<(), eddy_ws::HandshakeError>(())
//! ```

mod request;
mod response;

pub use request::{parse_request, Request, RequestKind, MAX_HEADERS};
pub use response::{accept_key, http_response, response_101, WEBSOCKET_GUID};
