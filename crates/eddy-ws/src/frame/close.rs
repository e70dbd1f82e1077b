use crate::ProtocolError;

/// Status codes of RFC 6455 §7.4.1 (and the IANA registry's 1012 to 1014).
pub mod close_code {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page left).
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a message of a type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1005: no status code was in the Close frame. Reported locally, never sent.
    pub const NO_STATUS: u16 = 1005;
    /// 1006: the connection closed without a Close frame. Reported locally, never sent.
    pub const ABNORMAL: u16 = 1006;
    /// 1007: data inconsistent with the message type (text that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// 1009: a message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// 1010: (client only) the server did not negotiate an extension the client needs.
    pub const MANDATORY_EXTENSION: u16 = 1010;
    /// 1011: an unexpected condition prevented the server from fulfilling the request.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// 1014: a gateway got an invalid response upstream.
    pub const BAD_GATEWAY: u16 = 1014;
}

/// The longest close reason that fits a control frame: 125 bytes less the 2-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// The payload of a Close frame that has one: a status code and a UTF-8 reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// The status code (see [`close_code`]).
    pub code: u16,
    /// Why, for people; may be empty.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with this code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Append the frame's payload to `out`: the code in network order, then the reason cut
    /// to [`MAX_CLOSE_REASON`] bytes at a character boundary.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.to_be_bytes());
        let mut end = self.reason.len().min(MAX_CLOSE_REASON);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        out.extend_from_slice(&self.reason.as_bytes()[..end]);
    }
}

/// Read a Close frame's (unmasked) payload: `None` when it is empty (no status code).
///
/// A one-byte payload is [`ProtocolError::InvalidClosePayload`], a code no peer may send
/// [`ProtocolError::InvalidCloseCode`], a reason that is not UTF-8
/// [`ProtocolError::InvalidCloseReason`].
///
/// ```
/// use eddy_ws::frame::{parse_close_payload, CloseFrame};
///
/// assert_eq!(parse_close_payload(b""), Ok(None));
/// assert_eq!(parse_close_payload(b"\x03\xe8bye"), Ok(Some(CloseFrame::new(1000, "bye"))));
/// assert!(parse_close_payload(b"\x03\xed").is_err()); // 1005 is never sent
/// ```
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code, true) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?
                .to_owned();
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Whether `code` may travel in a Close frame (RFC 6455 §7.4).
///
/// `from_peer: true` checks a code a client sent: 1000 to 1003, 1007 to 1014 (1012 to 1014
/// are registered with IANA, and Autobahn accepts them) and 3000 to 4999. `false` checks a
/// code this server is about to send: the same, less 1010, which only a client sends (a
/// server that lacks an extension fails the handshake instead). 1004, 1005, 1006 and 1015
/// (reserved, or for local reporting only), codes under 1000 and from 5000 are never valid.
pub fn is_valid_close_code(code: u16, from_peer: bool) -> bool {
    match code {
        1000..=1003 | 1007..=1009 | 1011..=1014 | 3000..=4999 => true,
        close_code::MANDATORY_EXTENSION => from_peer,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_per_rfc_6455_section_7_4() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014,
        ] {
            assert!(is_valid_close_code(code, true), "{code}");
            assert!(is_valid_close_code(code, false), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!is_valid_close_code(code, true), "{code}");
            assert!(!is_valid_close_code(code, false), "{code}");
        }
        assert!(is_valid_close_code(3000, true) && is_valid_close_code(4999, false));
        assert!(is_valid_close_code(1010, true));
        assert!(!is_valid_close_code(1010, false));
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8"),
            Ok(Some(CloseFrame::new(1000, "")))
        );
        assert_eq!(
            parse_close_payload(b"\x0b\xb8caf\xc3\xa9"),
            Ok(Some(CloseFrame::new(3000, "café")))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xee"),
            Err(ProtocolError::InvalidCloseCode(1006))
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn encoded_reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let mut out = Vec::new();
        CloseFrame::new(1000, long).encode_payload(&mut out);
        assert_eq!(out.len(), 2 + 122);
        assert!(parse_close_payload(&out).is_ok());
    }
}
