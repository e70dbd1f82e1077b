//! TLS on stream listeners: the settings ([`TlsConfig`]), what a handshake negotiated
//! ([`TlsInfo`], in `client_info`), why a connection's session failed ([`TlsFailure`]) and
//! why a configuration was refused ([`TlsError`]).
//!
//! rustls does the protocol, on the ring provider, driven sans-IO by the reactor (`session`):
//! handlers and codecs see plaintext. Each TLS listener has an acceptor (`acceptor`) holding
//! the current rustls configuration, built from PEM files (`load`) and swapped whole by
//! `ServerHandle::reload_tls`, so open connections keep the certificate they started with.

mod acceptor;
mod config;
mod info;
mod load;
mod records;
mod session;

pub(crate) use acceptor::TlsAcceptor;
pub use config::{ClientAuth, TlsConfig, TlsVersion};
pub use info::{TlsError, TlsFailure, TlsInfo};
pub(crate) use records::RECORD_PLAINTEXT;
pub(crate) use session::{failure_of, TlsEvents, TlsSession, READ_OVERSHOOT};
