//! Finding complete packets in a receive buffer, for the echo baselines.
//!
//! An echo server for either framing returns its input verbatim, one whole
//! packet at a time; so it only needs to know where the last complete
//! packet in its buffer ends, and can write that prefix in one call.

use std::io;

pub use eddy_load::Framing;

/// Largest packet body the baselines accept (16 MiB); bigger is an error.
pub const MAX_BODY: usize = eddy_load::frame::MAX_BODY;

/// Length of the prefix of `buf` made of complete packets.
///
/// `scanned` is how many leading bytes of `buf` are already known to hold
/// no complete packet end (the previous buffer length); line framing only
/// searches the bytes after it. Fails with `InvalidData` on a length header
/// or line over [`MAX_BODY`], and with `InvalidInput` for
/// [`Framing::WebSocket`] and [`Framing::Udp`], which these stream baselines
/// do not speak (see [`tokio_ws_echo`](crate::tokio_ws_echo) and
/// [`tokio_udp_echo`](crate::tokio_udp_echo)).
pub fn complete_prefix(framing: Framing, buf: &[u8], scanned: usize) -> io::Result<usize> {
    match framing {
        Framing::WebSocket => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "WebSocket framing needs a WebSocket server",
        )),
        Framing::Udp => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "UDP datagrams need a UDP server",
        )),
        Framing::Length => {
            let mut end = 0;
            while let Some(header) = buf.get(end..end + 4) {
                let body = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                let body = body as usize;
                if body > MAX_BODY {
                    return Err(too_big());
                }
                if buf.len() - end - 4 < body {
                    break;
                }
                end += 4 + body;
            }
            Ok(end)
        }
        Framing::Line => {
            let from = scanned.min(buf.len());
            match buf[from..].iter().rposition(|&b| b == b'\n') {
                Some(i) => Ok(from + i + 1),
                None if buf.len() > MAX_BODY => Err(too_big()),
                None => Ok(0),
            }
        }
    }
}

fn too_big() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "packet larger than 16 MiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_stops_at_partial_packet() {
        let mut buf = vec![0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 3, b'x'];
        assert_eq!(complete_prefix(Framing::Length, &buf, 0).ok(), Some(10));
        buf.extend_from_slice(b"yz");
        assert_eq!(complete_prefix(Framing::Length, &buf, 0).ok(), Some(17));
        assert_eq!(complete_prefix(Framing::Length, &buf[..3], 0).ok(), Some(0));
    }

    #[test]
    fn length_rejects_huge_header() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert!(complete_prefix(Framing::Length, &buf, 0).is_err());
    }

    #[test]
    fn websocket_is_refused() {
        let err = complete_prefix(Framing::WebSocket, b"", 0).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn line_prefix_ends_after_last_newline() {
        assert_eq!(
            complete_prefix(Framing::Line, b"ab\ncd\nef", 0).ok(),
            Some(6)
        );
        assert_eq!(complete_prefix(Framing::Line, b"abcdef", 0).ok(), Some(0));
        assert_eq!(
            complete_prefix(Framing::Line, b"ab\ncd\nef", 7).ok(),
            Some(0)
        );
        assert_eq!(complete_prefix(Framing::Line, b"abc\n", 2).ok(), Some(4));
    }
}
