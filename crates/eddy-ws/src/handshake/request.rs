use base64::Engine;

use crate::{HandshakeError, UpgradeError};

/// The most header lines a request may have.
pub const MAX_HEADERS: usize = 64;

/// An HTTP/1.x request head, owned: method, target, version and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A valid WebSocket upgrade: answer [`response_101`](crate::handshake::response_101).
    WebSocket,
    /// A plain HTTP request (no `Upgrade: websocket`): for the server's request hook.
    Http,
    /// An upgrade attempt that breaks RFC 6455 §4.2.1: answer its
    /// [`response`](UpgradeError::response) (400, or 426 for another version) and close.
    BadUpgrade(UpgradeError),
}

/// Read an HTTP/1.x request head from the front of `buf`: the request and the length of its
/// head (bytes after it are the body, or the client's first WebSocket frames), or `Ok(None)`
/// while the head is incomplete.
///
/// Call it again with more bytes (the whole buffer, from the start) until it answers. A head
/// longer than `max_header_bytes`, or still incomplete past them, is
/// [`HandshakeError::TooLarge`]; more than [`MAX_HEADERS`] lines is
/// [`HandshakeError::TooManyHeaders`]; bytes that are not HTTP are
/// [`HandshakeError::Malformed`] as soon as they show it.
///
/// ```
/// use eddy_ws::handshake::{parse_request, RequestKind};
///
/// let head = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// assert_eq!(parse_request(&head[..20], 8192), Ok(None));
/// let (request, len) = parse_request(head, 8192).unwrap().unwrap();
/// assert_eq!((request.path(), len), ("/chat", head.len()));
/// assert_eq!(request.kind(), RequestKind::WebSocket);
/// ```
pub fn parse_request(
    buf: &[u8],
    max_header_bytes: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let too_large = HandshakeError::TooLarge {
        max: max_header_bytes,
    };
    // Only the allowed bytes are parsed: a complete head past the cap is too large all the
    // same, and a huge buffer costs no more than the cap.
    let window = &buf[..buf.len().min(max_header_bytes)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_header_bytes => return Err(too_large),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(err) => return Err(HandshakeError::Malformed(reason(err))),
    };
    let (Some(method), Some(path), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HandshakeError::Malformed("incomplete request line"));
    };
    let request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        version,
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    };
    Ok(Some((request, len)))
}

fn reason(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

impl Request {
    /// The method (`GET`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target (`/chat?room=1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Every header line, in order: name as sent, raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The first header named `name` (ignoring case), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The raw value of the first header named `name` (ignoring case).
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every UTF-8 value of the headers named `name` (ignoring case), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The comma-separated tokens of every header named `name`, trimmed, empty ones dropped.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.header_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// What the request asks for: a WebSocket upgrade, plain HTTP, or a broken upgrade.
    ///
    /// A request is an upgrade attempt when its `Upgrade` header lists `websocket`; it is
    /// valid when it is also a GET in HTTP/1.1 whose `Connection` lists `upgrade`, with one
    /// `Host`, one `Sec-WebSocket-Version: 13` and one `Sec-WebSocket-Key` of 16 bytes in
    /// base64.
    pub fn kind(&self) -> RequestKind {
        if !self.has_token("upgrade", "websocket") {
            return RequestKind::Http;
        }
        match self.check_upgrade() {
            Ok(()) => RequestKind::WebSocket,
            Err(err) => RequestKind::BadUpgrade(err),
        }
    }

    fn check_upgrade(&self) -> Result<(), UpgradeError> {
        if self.method != "GET" {
            return Err(UpgradeError::NotGet);
        }
        if self.version != 1 {
            return Err(UpgradeError::NotHttp11);
        }
        if !self.has_token("connection", "upgrade") {
            return Err(UpgradeError::NoConnectionUpgrade);
        }
        for name in ["Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"] {
            if self.header_all(name).nth(1).is_some() {
                return Err(UpgradeError::Repeated(name));
            }
        }
        if self.header_bytes("host").is_none() {
            return Err(UpgradeError::MissingHost);
        }
        match self.header("sec-websocket-version").map(str::trim) {
            Some("13") => {}
            other => return Err(UpgradeError::UnsupportedVersion(other.map(str::to_owned))),
        }
        let key = self.key().ok_or(UpgradeError::MissingKey)?;
        let mut decoded = [0u8; 18];
        match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
            Ok(16) => Ok(()),
            _ => Err(UpgradeError::InvalidKey),
        }
    }

    /// Whether this is a valid WebSocket upgrade ([`RequestKind::WebSocket`]).
    pub fn is_upgrade(&self) -> bool {
        self.kind() == RequestKind::WebSocket
    }

    /// `Sec-WebSocket-Key`, trimmed.
    pub fn key(&self) -> Option<&str> {
        self.header("sec-websocket-key").map(str::trim)
    }

    /// `Origin`, as sent by browsers.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`, every header line,
    /// comma-separated), in its order of preference.
    pub fn subprotocols(&self) -> Vec<&str> {
        self.tokens("sec-websocket-protocol").collect()
    }

    /// The raw `Sec-WebSocket-Extensions` values, for
    /// [`deflate::negotiate`](crate::deflate::negotiate).
    pub fn extensions(&self) -> Vec<&str> {
        self.header_all("sec-websocket-extensions").collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        upgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Protocol: v2\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn parse(head: &[u8]) -> Request {
        parse_request(head, 8192).unwrap().unwrap().0
    }

    fn with(replace: &str, by: &str) -> Request {
        let text = std::str::from_utf8(UPGRADE).unwrap().replace(replace, by);
        parse(text.as_bytes())
    }

    #[test]
    fn a_good_upgrade() {
        let (r, len) = parse_request(UPGRADE, 8192).unwrap().unwrap();
        assert_eq!(len, UPGRADE.len());
        assert_eq!((r.method(), r.path(), r.version()), ("GET", "/chat?x=1", 1));
        assert!(r.is_upgrade());
        assert_eq!(r.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r.origin(), Some("http://example.com"));
        assert_eq!(r.subprotocols(), ["chat", "superchat", "v2"]);
        assert_eq!(
            r.extensions(),
            ["permessage-deflate; client_max_window_bits"]
        );
        assert_eq!(r.header("HOST"), Some("server.example.com"));
        assert_eq!(r.headers().count(), 9);
    }

    #[test]
    fn split_at_every_byte() {
        for cut in 0..UPGRADE.len() {
            assert_eq!(parse_request(&UPGRADE[..cut], 8192), Ok(None), "cut {cut}");
        }
        let mut more = UPGRADE.to_vec();
        more.extend_from_slice(b"\x81\x80");
        assert_eq!(
            parse_request(&more, 8192).unwrap().unwrap().1,
            UPGRADE.len()
        );
    }

    #[test]
    fn a_plain_get_is_http() {
        let r = parse(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.kind(), RequestKind::Http);
        let r = parse(b"POST /x HTTP/1.0\r\nUpgrade: h2c\r\n\r\n");
        assert_eq!(r.kind(), RequestKind::Http);
        assert!(!r.is_upgrade());
    }

    #[test]
    fn broken_upgrades() {
        let bad = |r: Request| match r.kind() {
            RequestKind::BadUpgrade(e) => e,
            other => panic!("{other:?}"),
        };
        let e = bad(with("GET", "POST"));
        assert_eq!((e.clone(), e.status()), (UpgradeError::NotGet, 400));
        assert_eq!(bad(with("HTTP/1.1", "HTTP/1.0")), UpgradeError::NotHttp11);
        assert_eq!(
            bad(with("keep-alive, Upgrade", "keep-alive")),
            UpgradeError::NoConnectionUpgrade
        );
        let e = bad(with("Version: 13", "Version: 8"));
        assert_eq!(e, UpgradeError::UnsupportedVersion(Some("8".into())));
        assert_eq!(e.status(), 426);
        let response = String::from_utf8(e.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert_eq!(
            bad(with("Sec-WebSocket-Version: 13\r\n", "")),
            UpgradeError::UnsupportedVersion(None)
        );
        assert_eq!(
            bad(with("Key: dGhlIHNhbXBsZSBub25jZQ==", "Foo: x")),
            UpgradeError::MissingKey
        );
        for key in [
            "dGhlIHNhbXBsZQ==",
            "not base64!!",
            "dGhlIHNhbXBsZSBub25jZSEh",
        ] {
            let e = bad(with("dGhlIHNhbXBsZSBub25jZQ==", key));
            assert_eq!(
                (e.clone(), e.status()),
                (UpgradeError::InvalidKey, 400),
                "{key}"
            );
            assert!(e.response().starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        }
        assert_eq!(
            bad(with("Host: server.example.com\r\n", "")),
            UpgradeError::MissingHost
        );
        for (line, name) in [
            ("Host: server.example.com\r\n", "Host"),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key",
            ),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version"),
        ] {
            let e = bad(with(line, &format!("{line}{line}")));
            assert_eq!((e.clone(), e.status()), (UpgradeError::Repeated(name), 400));
        }
    }

    #[test]
    fn limits_and_garbage() {
        let max = UPGRADE.len() - 1;
        assert_eq!(
            parse_request(UPGRADE, max),
            Err(HandshakeError::TooLarge { max })
        );
        assert_eq!(parse_request(&UPGRADE[..max - 1], max), Ok(None));
        assert_eq!(
            parse_request(&UPGRADE[..max], max),
            Err(HandshakeError::TooLarge { max })
        );
        assert_eq!(
            parse_request(UPGRADE, UPGRADE.len()).unwrap().unwrap().1,
            UPGRADE.len()
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&many, 1 << 20),
            Err(HandshakeError::TooManyHeaders)
        );
        let e = parse_request(b"\x16\x03\x01\x02\x00", 8192).unwrap_err();
        assert!(matches!(e, HandshakeError::Malformed(_)));
        assert_eq!(e.status(), 400);
        assert!(parse_request(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 8192).is_err());
    }
}
