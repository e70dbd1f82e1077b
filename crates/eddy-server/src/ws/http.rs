//! The handshake decision (`on_handshake`) and the answer to a plain HTTP request
//! (`on_request`).

/// What `on_handshake` decides about an upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handshake {
    /// Upgrade, speaking this subprotocol (one the client offered), or none.
    Accept {
        /// The `Sec-WebSocket-Protocol` to answer with.
        subprotocol: Option<String>,
    },
    /// Refuse with this HTTP status and body; the connection closes after the answer.
    Reject {
        /// An HTTP status (400 to 599).
        status: u16,
        /// The answer's body (plain text).
        body: String,
    },
}

impl Handshake {
    /// Accept, with no subprotocol (the default).
    pub fn accept() -> Self {
        Handshake::Accept { subprotocol: None }
    }

    /// Accept, speaking `subprotocol`.
    pub fn accept_protocol(subprotocol: impl Into<String>) -> Self {
        Handshake::Accept {
            subprotocol: Some(subprotocol.into()),
        }
    }

    /// Refuse with `status` (clamped to 400..=599) and `body`.
    pub fn reject(status: u16, body: impl Into<String>) -> Self {
        Handshake::Reject {
            status: refusal_status(status),
            body: body.into(),
        }
    }
}

/// The status a refused upgrade is answered with: `status`, within 400..=599 (a 101 or a 200
/// would tell the client the upgrade went through).
pub(crate) fn refusal_status(status: u16) -> u16 {
    status.clamp(400, 599)
}

/// An answer to a plain HTTP request on a WebSocket listener (one response, then the
/// connection closes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: String,
    /// More headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with this status, type and body.
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `200 OK` with an HTML page.
    pub fn html(body: impl Into<Vec<u8>>) -> Self {
        HttpResponse::new(200, "text/html; charset=utf-8", body)
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }

    /// `426 Upgrade Required`: the default answer of a WebSocket listener to plain HTTP.
    pub fn upgrade_required() -> Self {
        let mut response = HttpResponse::text(426, "this port speaks WebSocket\n");
        response
            .headers
            .push(("Upgrade".into(), "websocket".into()));
        response
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response as bytes, with `Content-Length` and `Connection: close`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut headers: Vec<(&str, &str)> = vec![
            ("Content-Type", &self.content_type),
            ("Connection", "close"),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        eddy_ws::handshake::http_response(
            self.status,
            reason_phrase(self.status),
            &headers,
            &self.body,
        )
    }
}

/// The standard reason phrase of a status.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
