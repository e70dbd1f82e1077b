//! The per-connection state machine that turns a client's bytes into [`Event`]s.

use bytes::{Buf, Bytes, BytesMut};

use crate::deflate::{DeflateParams, Inflater};
use crate::frame::{self, apply_mask, parse_close_payload, FrameHeader, OpCode};
use crate::utf8::Utf8Validator;
use crate::{Event, Message, MessageKind, ProtocolError};

/// Limits and negotiated extensions for one connection's [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// The largest frame payload accepted, checked from the header before the body is
    /// buffered. Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest message accepted (fragments joined, after inflating), checked before each
    /// fragment is added. Default 64 MiB.
    pub max_message_size: usize,
    /// permessage-deflate, when the handshake negotiated it.
    pub deflate: Option<DeflateParams>,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            deflate: None,
        }
    }
}

/// A frame whose header is consumed and whose payload is unmasked up to `done`.
#[derive(Clone, Copy, Debug)]
struct Pending {
    header: FrameHeader,
    len: usize,
    done: usize,
}

/// A data message waiting for more fragments.
#[derive(Debug)]
struct Partial {
    kind: MessageKind,
    compressed: bool,
    data: Vec<u8>,
    utf8: Utf8Validator,
}

/// Decodes the frames a client sends after the handshake, one connection each.
///
/// The reactor appends what it reads to one `BytesMut` and calls [`decode`](Self::decode)
/// until it answers `Ok(None)`. The decoder takes bytes off the front as it goes: each frame
/// header at once, each payload when it is whole. A partial payload stays in the buffer,
/// unmasked in place (and, for text, checked) as far as it has arrived: so keep feeding the
/// same buffer, only appending to it, or call [`reset`](Self::reset).
///
/// A message in one frame is handed out without a copy (the payload is split off the
/// buffer); fragments are joined into one allocation; control frames may come between them.
///
/// ```
/// use bytes::BytesMut;
/// use eddy_ws::{Decoder, DecoderConfig, Event, MessageKind};
///
/// let mut decoder = Decoder::new(DecoderConfig::default());
/// // RFC 6455 §5.7: "Hel" then "lo", masked, the second half not read yet.
/// let stream = [
///     0x01, 0x83, 1, 2, 3, 4, 0x49, 0x67, 0x6f, 0x80, 0x82, 5, 6, 7, 8, 0x69, 0x69,
/// ];
/// let mut buf = BytesMut::from(&stream[..12]);
/// assert_eq!(decoder.decode(&mut buf), Ok(None));
/// buf.extend_from_slice(&stream[12..]);
/// let Some(Event::Message(message)) = decoder.decode(&mut buf).unwrap() else { panic!() };
/// assert_eq!((message.kind, message.as_text()), (MessageKind::Text, Some("Hello")));
/// assert!(buf.is_empty());
/// ```
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    /// Made on the first compressed message.
    inflater: Option<Inflater>,
    frame: Option<Pending>,
    message: Option<Partial>,
    error: Option<ProtocolError>,
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            config,
            inflater: None,
            frame: None,
            message: None,
            error: None,
        }
    }

    /// The limits and extensions it was made with.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Whether a fragmented message has begun and not ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// How many bytes the buffer given to [`decode`](Self::decode) must hold to finish the
    /// frame in progress (its payload: the header is already taken off), if a frame's header
    /// has been read and its payload has not all come. A reader can size its buffer for the
    /// frame from it, where growing it read by read would copy a large frame many times.
    pub fn frame_wanted(&self) -> Option<usize> {
        self.frame.as_ref().map(|pending| pending.len)
    }

    /// Forget the frame and message in progress, and any error (the compression context is
    /// kept). For a buffer that was replaced.
    pub fn reset(&mut self) {
        self.frame = None;
        self.message = None;
        self.error = None;
    }

    /// Take the next event off the front of `buf`: `Ok(None)` when more bytes are needed.
    ///
    /// An error fails the connection (send a Close frame with its
    /// [`close_code`](ProtocolError::close_code)); it is returned again by every later call.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        let result = self.next_event(buf);
        if let Err(err) = &result {
            self.error = Some(err.clone());
        }
        result
    }

    fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            let mut pending = match self.frame.take() {
                Some(pending) => pending,
                None => {
                    let allow_rsv1 = self.config.deflate.is_some();
                    let Some((header, header_len)) = frame::decode_header(buf, allow_rsv1)? else {
                        return Ok(None);
                    };
                    let len = self.admit(&header)?;
                    buf.advance(header_len);
                    Pending {
                        header,
                        len,
                        done: 0,
                    }
                }
            };
            let arrived = buf.len().min(pending.len);
            if arrived > pending.done {
                let piece = &mut buf[pending.done..arrived];
                apply_mask(piece, pending.header.mask, pending.done);
                if let Some(utf8) = self.validating(pending.header.opcode) {
                    utf8.feed(piece).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                pending.done = arrived;
            }
            if pending.done < pending.len {
                self.frame = Some(pending);
                return Ok(None);
            }
            let payload = buf.split_to(pending.len);
            let event = match pending.header.opcode {
                OpCode::Ping => Some(Event::Ping(payload.freeze())),
                OpCode::Pong => Some(Event::Pong(payload.freeze())),
                OpCode::Close => Some(Event::Close(parse_close_payload(&payload)?)),
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    self.data_frame(pending.header.fin, payload)?
                }
            };
            if event.is_some() {
                return Ok(event);
            }
        }
    }

    /// Check a new frame against the limits and the message in progress (starting one for a
    /// text or binary frame): its payload length.
    fn admit(&mut self, header: &FrameHeader) -> Result<usize, ProtocolError> {
        let max_frame = self.config.max_frame_size;
        if header.payload_len > max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: header.payload_len,
                max: max_frame,
            });
        }
        let len = header.payload_len as usize;
        let max = self.config.max_message_size;
        let so_far = match (header.opcode, &self.message) {
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(message)) if !message.compressed => message.data.len(),
            _ => 0,
        };
        if header.opcode == OpCode::Text || header.opcode == OpCode::Binary {
            self.message = Some(Partial {
                kind: if header.opcode == OpCode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                },
                compressed: header.rsv1,
                data: Vec::new(),
                utf8: Utf8Validator::new(),
            });
        }
        // The compressed size says little; inflating checks the real one.
        let compressed = self.message.as_ref().is_some_and(|m| m.compressed);
        if !header.opcode.is_control() && !compressed && so_far.saturating_add(len) > max {
            return Err(ProtocolError::MessageTooLarge { max });
        }
        Ok(len)
    }

    /// The UTF-8 check that a data frame's raw payload goes through, if any: text that is not
    /// compressed.
    fn validating(&mut self, opcode: OpCode) -> Option<&mut Utf8Validator> {
        match &mut self.message {
            Some(m) if !opcode.is_control() && m.kind == MessageKind::Text && !m.compressed => {
                Some(&mut m.utf8)
            }
            _ => None,
        }
    }

    /// A whole text, binary or continuation frame: the message, if it was the last one.
    fn data_frame(&mut self, fin: bool, payload: BytesMut) -> Result<Option<Event>, ProtocolError> {
        let max = self.config.max_message_size;
        let Some(message) = self.message.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        let mut whole = None;
        if message.compressed {
            let params = self.config.deflate.unwrap_or_default();
            let inflater = self.inflater.get_or_insert_with(|| params.inflater());
            let before = message.data.len();
            inflater.inflate(&payload, &mut message.data, max)?;
            if fin {
                inflater.finish(&mut message.data, max)?;
            }
            if message.kind == MessageKind::Text {
                message
                    .utf8
                    .feed(&message.data[before..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        } else if fin && message.data.is_empty() {
            whole = Some(payload.freeze());
        } else {
            message.data.extend_from_slice(&payload);
        }
        if !fin {
            return Ok(None);
        }
        let Some(mut message) = self.message.take() else {
            unreachable!("checked above")
        };
        message
            .utf8
            .finish()
            .map_err(|_| ProtocolError::InvalidUtf8)?;
        let data = whole.unwrap_or_else(|| Bytes::from(message.data));
        Ok(Some(Event::Message(Message {
            kind: message.kind,
            data,
        })))
    }
}

#[cfg(test)]
mod tests;
