//! What a TLS handshake negotiated, and what can go wrong: a connection's session, or a
//! listener's configuration.

use std::{fmt, io};

use rustls::ServerConnection;

use super::TlsVersion;

/// What a connection's TLS handshake negotiated (in
/// [`ClientInfo::tls`](crate::ClientInfo::tls)).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version.
    pub version: Option<TlsVersion>,
    /// The cipher suite, by its IANA name (`TLS13_AES_128_GCM_SHA256`).
    pub cipher_suite: String,
    /// The application protocol chosen through ALPN (`h2`, `http/1.1`, …).
    pub alpn: Option<String>,
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The subject of the client's certificate (mutual TLS), as `CN=alice, O=Example`.
    pub peer_subject: Option<String>,
}

impl TlsInfo {
    pub(crate) fn of(conn: &ServerConnection) -> Self {
        let version = conn.protocol_version().and_then(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        });
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|suite| format!("{:?}", suite.suite()))
            .unwrap_or_default();
        let peer_subject = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert.subject().to_string());
        TlsInfo {
            version,
            cipher_suite,
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            server_name: conn.server_name().map(str::to_owned),
            peer_subject,
        }
    }
}

/// Why a connection's TLS session ended without a clean close (in
/// [`CloseReason::Tls`](crate::CloseReason::Tls)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The peer closed the connection without sending close_notify: what it sent last may
    /// have been cut short. What did arrive was handled and answered.
    Truncated,
    /// The handshake failed: not a ClientHello, a handshake message over 64 KiB, nothing in
    /// common (version, cipher, ALPN), a client certificate missing or not trusted, or the
    /// peer's fatal alert. The text is rustls's.
    Handshake(String),
    /// The session failed after the handshake: a record that does not decrypt or is over
    /// the size limit, a second renegotiation attempt (the first is refused with a
    /// `no_renegotiation` warning), or the peer's fatal alert.
    Session(String),
    /// The session's key made as many records as its cipher allows (2^24 for AES-GCM in
    /// TLS 1.2; TLS 1.3 changes keys instead). What was accepted before went out; the send
    /// that would have passed the limit was refused, and the client must connect again.
    RecordLimit,
}

impl TlsFailure {
    pub(crate) fn from_rustls(err: &rustls::Error, handshaking: bool) -> Self {
        if handshaking {
            TlsFailure::Handshake(err.to_string())
        } else {
            TlsFailure::Session(err.to_string())
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::Truncated => f.write_str("closed by peer without TLS close_notify"),
            TlsFailure::Handshake(err) => write!(f, "TLS handshake failed: {err}"),
            TlsFailure::Session(err) => write!(f, "TLS session failed: {err}"),
            TlsFailure::RecordLimit => f.write_str("TLS 1.2 key's record limit reached"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// Why a TLS configuration was refused, at `build` or by a reload (which then keeps the
/// configuration it had). Each names the file and the problem.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        file: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file is not what it should hold: no PEM certificate, no private key, broken PEM,
    /// a key type rustls cannot sign with, a CA certificate it cannot use.
    Invalid {
        /// The file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The private key does not belong to the certificate.
    KeyMismatch {
        /// The certificate chain's file.
        cert: String,
        /// The key's file.
        key: String,
    },
    /// The settings cannot make a configuration (no protocol version, say).
    Settings(String),
    /// `reload_tls` was asked for a listener that does not exist or has no TLS.
    NotTls {
        /// The listener's index.
        listener: usize,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { file, source } => write!(f, "cannot read {file}: {source}"),
            TlsError::Invalid { file, problem } => write!(f, "{file}: {problem}"),
            TlsError::KeyMismatch { cert, key } => {
                write!(
                    f,
                    "the private key in {key} does not match the certificate in {cert}"
                )
            }
            TlsError::Settings(problem) => write!(f, "TLS settings refused: {problem}"),
            TlsError::NotTls { listener } => write!(f, "listener {listener} does not use TLS"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}
