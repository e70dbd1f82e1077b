//! A WebSocket listener's settings.

use std::time::Duration;

use eddy_ws::deflate::DeflateConfig;

use super::Opcode;
use crate::error::ConfigError;

/// The settings of WebSocket listeners (`ServerBuilder::websocket`), each with its default.
///
/// ```
/// use std::time::Duration;
/// use eddy_server::{Opcode, WebSocketConfig};
///
/// let ws = WebSocketConfig::default()
///     .max_message_size(1 << 20)
///     .handshake_timeout(Duration::from_secs(5))
///     .deflate(false)
///     .default_opcode(Opcode::Binary);
/// assert_eq!(ws.max_message_size_limit(), 1 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSocketConfig {
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) max_handshake_bytes: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) deflate: DeflateConfig,
    pub(crate) default_opcode: Opcode,
    pub(crate) ping_idle: bool,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_handshake_bytes: 8 * 1024,
            handshake_timeout: Duration::from_secs(10),
            // Off, as in Swoole: measured on the echo bench, a 4 KiB JSON message costs about
            // 100 µs of server CPU compressed against 7 µs plain (BENCHMARKS.md), for a 3x
            // smaller wire size; worth it only where bandwidth is scarce.
            deflate: DeflateConfig::default(),
            default_opcode: Opcode::Text,
            ping_idle: true,
        }
    }
}

impl WebSocketConfig {
    /// The largest message, reassembled and inflated, a client may send; a larger one closes
    /// its connection with 1009, detected before it is buffered. Default 16 MiB. Range 1 B
    /// to 1 GiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self.max_frame_size = self.max_frame_size.min(bytes).max(1);
        self
    }

    /// The largest single frame. Default 16 MiB (at most `max_message_size`).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// The largest upgrade request head (request line and headers); a larger one is answered
    /// 431 and closed. Default 8 KiB. Range 256 B to 1 MiB.
    pub fn max_handshake_bytes(mut self, bytes: usize) -> Self {
        self.max_handshake_bytes = bytes;
        self
    }

    /// How long a client has to complete its upgrade request after it connects; then it is
    /// closed (`CloseReason::HandshakeTimeout`). The server's own time does not count: a
    /// connection it holds unread when the time is up (`on_connect` still running, a worker
    /// backlog, `enable_delay_receive`, `pause`, a TLS handshake) is given the timeout again.
    /// Default 10 s. Range 10 ms to 1 hour.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Accept permessage-deflate (RFC 7692) when a client offers it. Default off: it costs
    /// about 14 times the CPU per 4 KiB message for a wire size 3 times smaller (see
    /// BENCHMARKS.md); turn it on where bandwidth is scarcer than CPU.
    pub fn deflate(mut self, on: bool) -> Self {
        self.deflate.enabled = on;
        self
    }

    /// Every permessage-deflate setting (window bits, context takeover, level, the smallest
    /// message worth compressing).
    pub fn deflate_config(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = deflate;
        self
    }

    /// The opcode `send` (and `push`, `broadcast`, `send_to_uid`) uses on WebSocket
    /// connections. Default [`Opcode::Text`]: a text send that is not UTF-8 is refused with
    /// `SendError::Unframable` (use `send_binary`).
    pub fn default_opcode(mut self, opcode: Opcode) -> Self {
        self.default_opcode = opcode;
        self
    }

    /// With a heartbeat (`heartbeat_idle_time`), ping a connection that has been quiet for
    /// half its idle time, so a live client's pong keeps it open and a dead one is closed at
    /// the idle time (or, if the ping went out late, once it had half the idle time to be
    /// answered). Default on.
    pub fn ping_idle(mut self, on: bool) -> Self {
        self.ping_idle = on;
        self
    }

    /// The `max_message_size` set.
    pub fn max_message_size_limit(&self) -> usize {
        self.max_message_size
    }

    /// Refuse values out of range, naming the setting.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let within = |setting, value: usize, (lo, hi): (usize, usize)| {
            if value < lo || value > hi {
                Err(ConfigError::new(
                    setting,
                    format!("{value} is out of range ({lo} to {hi})"),
                ))
            } else {
                Ok(())
            }
        };
        within("ws_max_message_size", self.max_message_size, (1, 1 << 30))?;
        within(
            "ws_max_frame_size",
            self.max_frame_size,
            (1, self.max_message_size),
        )?;
        within(
            "ws_max_handshake_bytes",
            self.max_handshake_bytes,
            (256, 1 << 20),
        )?;
        let (lo, hi) = (Duration::from_millis(10), Duration::from_secs(3600));
        if self.handshake_timeout < lo || self.handshake_timeout > hi {
            return Err(ConfigError::new(
                "ws_handshake_timeout",
                format!(
                    "{:?} is out of range ({lo:?} to {hi:?})",
                    self.handshake_timeout
                ),
            ));
        }
        let bits = [
            self.deflate.server_max_window_bits,
            self.deflate.client_max_window_bits,
        ];
        if bits.iter().any(|b| !(8..=15).contains(b)) {
            return Err(ConfigError::new(
                "ws_deflate",
                format!("window bits {bits:?} must be 8 to 15"),
            ));
        }
        if self.deflate.level > 9 {
            return Err(ConfigError::new(
                "ws_deflate",
                format!("level {} must be 0 to 9", self.deflate.level),
            ));
        }
        Ok(())
    }
}
