//! A WebSocket connection's read state: where its handshake is, and its frame decoder; and
//! what one look at its buffer finds (`Step`), for `websocket` to act on.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use eddy_ws::{
    deflate::{self, DeflateParams},
    handshake::{self, RequestKind},
    Decoder, DecoderConfig, Event as WsEvent, ProtocolError,
};

use crate::{
    shared::PendingHandshake,
    ws::{HttpRequest, Opcode, WebSocketConfig},
};

/// A WebSocket connection's read state.
#[derive(Debug)]
pub(super) struct WsRead {
    pub(super) config: Arc<WebSocketConfig>,
    pub(super) phase: Phase,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// Reading the upgrade request.
    Request,
    /// The handler decides; reading waits. The deflate parameters agreed, if any.
    Deciding(Option<DeflateParams>),
    /// Frames.
    Open(Box<Decoder>),
    /// Closed, or answered as plain HTTP: what comes is dropped.
    Done,
}

/// What one look at the buffer found.
pub(super) enum Step {
    /// Nothing whole yet.
    Wait,
    Upgrade(Box<PendingHandshake>),
    Http(Box<HttpRequest>),
    /// Answer with this HTTP response and close.
    Refuse(u16, Vec<u8>),
    Message(Opcode, Bytes),
    Ping(Bytes),
    Pong,
    /// The peer's close frame: its code (1005 when it gave none) and reason.
    Close(u16, String),
    Fail(ProtocolError),
}

impl WsRead {
    pub(super) fn new(config: Arc<WebSocketConfig>) -> Self {
        WsRead {
            config,
            phase: Phase::Request,
        }
    }

    /// Whether the client has not sent its whole request yet (the handshake timeout applies).
    pub(super) fn is_handshaking(&self) -> bool {
        // Only the client's part: once the request is whole, the server's own time
        // (`on_handshake`, `on_open`) does not count.
        matches!(self.phase, Phase::Request)
    }

    /// Whether frames are being decoded (bytes left after a pause are worth a look).
    pub(super) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// How many bytes the buffer must hold to finish the frame being read, if one is.
    pub(super) fn frame_wanted(&self) -> Option<usize> {
        match &self.phase {
            Phase::Open(decoder) => decoder.frame_wanted(),
            _ => None,
        }
    }

    pub(super) fn step(&mut self, buf: &mut bytes::BytesMut) -> Step {
        match &mut self.phase {
            Phase::Request => self.request(buf),
            Phase::Deciding(_) => Step::Wait,
            Phase::Open(decoder) => match decoder.decode(buf) {
                Ok(None) => Step::Wait,
                Ok(Some(WsEvent::Message(m))) => Step::Message(Opcode::of(m.kind), m.data),
                Ok(Some(WsEvent::Ping(payload))) => Step::Ping(payload),
                Ok(Some(WsEvent::Pong(_))) => Step::Pong,
                Ok(Some(WsEvent::Close(frame))) => match frame {
                    Some(frame) => Step::Close(frame.code, frame.reason),
                    None => Step::Close(eddy_ws::close_code::NO_STATUS, String::new()),
                },
                Err(err) => Step::Fail(err),
            },
            Phase::Done => {
                buf.clear();
                Step::Wait
            }
        }
    }

    /// Parse the upgrade request once its head is whole.
    fn request(&mut self, buf: &mut bytes::BytesMut) -> Step {
        let (request, len) = match handshake::parse_request(buf, self.config.max_handshake_bytes) {
            Ok(None) => return Step::Wait,
            Ok(Some(found)) => found,
            Err(err) => {
                let status = err.status();
                let body = format!("{err}\n");
                let response = handshake::http_response(
                    status,
                    crate::ws::reason_phrase(status),
                    &[("Connection", "close")],
                    body.as_bytes(),
                );
                return Step::Refuse(status, response);
            }
        };
        buf.advance(len);
        match request.kind() {
            RequestKind::WebSocket => {
                let offers = request.extensions();
                let agreed = deflate::negotiate(&offers, &self.config.deflate);
                let (deflate, extension) = agreed.unzip();
                self.phase = Phase::Deciding(deflate);
                Step::Upgrade(Box::new(PendingHandshake {
                    request,
                    extension,
                    deflate,
                }))
            }
            RequestKind::Http => {
                self.phase = Phase::Done;
                Step::Http(Box::new(request))
            }
            RequestKind::BadUpgrade(err) => Step::Refuse(err.status(), err.response()),
        }
    }

    /// The handler accepted: decode frames from now on.
    pub(super) fn open(&mut self) -> bool {
        let Phase::Deciding(deflate) = self.phase else {
            return false;
        };
        let config = DecoderConfig {
            max_frame_size: self.config.max_frame_size,
            max_message_size: self.config.max_message_size,
            deflate,
        };
        self.phase = Phase::Open(Box::new(Decoder::new(config)));
        true
    }
}
