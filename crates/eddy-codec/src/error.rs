use std::fmt;

/// Why a connection's bytes could not be cut into a packet.
///
/// Each variant means the stream cannot be resynchronised: the connection that sent it is
/// closed, and only that one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The packet (framing included) would be `length` bytes, more than the `max` allowed.
    /// For length-prefixed framing this is known from the header alone.
    TooLarge {
        /// The packet's length, as announced or as buffered so far.
        length: u64,
        /// The largest packet allowed.
        max: usize,
    },
    /// The bytes do not follow the framing (a negative length, a length smaller than the
    /// header, …).
    Malformed(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { length, max } => {
                write!(
                    f,
                    "packet of {length} bytes exceeds the maximum of {max} bytes"
                )
            }
            FrameError::Malformed(why) => write!(f, "malformed packet: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A codec setting that can never work, found when the codec is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecConfigError {
    /// The setting, by its name in the docs (`package_eof`, `package_length_offset`, …).
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CodecConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid codec setting `{}`: {}",
            self.setting, self.reason
        )
    }
}

impl std::error::Error for CodecConfigError {}
