use base64::Engine;

/// The GUID RFC 6455 §1.3 appends to the client's key.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64 of the SHA-1 of the key
/// followed by [`WEBSOCKET_GUID`].
///
/// ```
/// assert_eq!(
///     eddy_ws::handshake::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.digest().bytes())
}

/// The `101 Switching Protocols` response that accepts an upgrade whose key is `key`, with the
/// chosen subprotocol and extension (the value [`deflate::negotiate`](crate::deflate::negotiate)
/// gave) when there are.
///
/// ```
/// let response = eddy_ws::handshake::response_101("dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), None);
/// assert_eq!(
///     response,
///     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
/// );
/// ```
pub fn response_101(key: &str, subprotocol: Option<&str>, extension: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = subprotocol {
        header(&mut out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extension) = extension {
        header(&mut out, "Sec-WebSocket-Extensions", extension);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A whole HTTP/1.1 response: status line, `headers`, `Content-Length`, then `body`.
///
/// Add `("Connection", "close")` to `headers` when the connection closes after it.
///
/// ```
/// let r = eddy_ws::handshake::http_response(404, "Not Found", &[("Connection", "close")], b"no");
/// assert_eq!(r, b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno");
/// ```
pub fn http_response(status: u16, reason: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {reason}\r\n").as_bytes());
    for (name, value) in headers {
        header(&mut out, name, value);
    }
    header(&mut out, "Content-Length", &body.len().to_string());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// One header line. CR and LF in a value would split the response: they become spaces.
fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(
        value
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn responses() {
        let r = response_101("dGhlIHNhbXBsZSBub25jZQ==", None, Some("permessage-deflate"));
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
        assert!(!text.contains("Sec-WebSocket-Protocol"));
        let r = http_response(200, "OK", &[("X", "a\r\nInjected: 1")], b"");
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nX: a  Injected: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
