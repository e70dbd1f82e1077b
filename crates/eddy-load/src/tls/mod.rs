//! TLS on every connection: a rustls client on the ring provider, driven sans-IO in
//! eddy-load's own event loops (`read_tls` / `process_new_packets` / reader / writer /
//! `write_tls` on non-blocking sockets, never a blocking call).
//!
//! [`TlsClient`] says what to trust (a CA or self-signed certificate, from a PEM file or from
//! memory) and which server name to ask for and verify (default `localhost`). Each connection
//! makes a full handshake: the client keeps no session cache, so nothing is resumed and every
//! handshake costs both sides the same key exchange and signature.

mod phase;
mod session;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::error::LoadError;

pub(crate) use phase::handshake_all;
pub(crate) use session::Session;

/// The server name asked for (SNI) and verified by default.
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// Where the certificates to trust come from.
#[derive(Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// A PEM file of one or more certificates (read when the run starts).
    File(PathBuf),
    /// PEM text in memory.
    Pem(Vec<u8>),
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsTrust::File(path) => write!(f, "File({})", path.display()),
            TlsTrust::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
        }
    }
}

/// The client side of TLS: what to trust and which name to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClient {
    /// Certificates the server's chain must lead to (a CA, or the server's own self-signed
    /// certificate).
    pub trust: TlsTrust,
    /// Server name sent in the ClientHello and checked against the certificate.
    pub server_name: String,
}

impl TlsClient {
    /// Trust the certificates of the PEM file at `path`; server name `localhost`.
    pub fn from_ca_file(path: impl Into<PathBuf>) -> Self {
        TlsClient {
            trust: TlsTrust::File(path.into()),
            server_name: DEFAULT_SERVER_NAME.to_owned(),
        }
    }

    /// Trust the certificates of this PEM text; server name `localhost`.
    pub fn from_pem(pem: impl Into<Vec<u8>>) -> Self {
        TlsClient {
            trust: TlsTrust::Pem(pem.into()),
            server_name: DEFAULT_SERVER_NAME.to_owned(),
        }
    }

    /// The rustls configuration: ring, TLS 1.2 and 1.3, these roots, no client certificate,
    /// no resumption.
    pub(crate) fn config(&self) -> Result<Arc<ClientConfig>, LoadError> {
        let bad = |reason: String| LoadError::Tls { conn: None, reason };
        let pem = match &self.trust {
            TlsTrust::File(path) => std::fs::read(path)
                .map_err(|e| bad(format!("reading CA file {}: {e}", path.display())))?,
            TlsTrust::Pem(pem) => pem.clone(),
        };
        let what = match &self.trust {
            TlsTrust::File(path) => path.display().to_string(),
            TlsTrust::Pem(_) => "the in-memory CA".to_owned(),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("{what}: broken PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("{what}: unusable certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad(format!("{what}: no PEM certificate found")));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// The server name, checked.
    pub(crate) fn name(&self) -> Result<ServerName<'static>, LoadError> {
        ServerName::try_from(self.server_name.clone()).map_err(|_| LoadError::Tls {
            conn: None,
            reason: format!("{:?} is not a valid server name", self.server_name),
        })
    }
}

/// A run's TLS client, ready to open sessions.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Connector {
    /// Reads and checks what `client` names.
    pub(crate) fn new(client: &TlsClient) -> Result<Self, LoadError> {
        Ok(Connector {
            config: client.config()?,
            name: client.name()?,
        })
    }

    /// A fresh client session for connection `conn`, its ClientHello queued.
    pub(crate) fn session(&self, conn: u32) -> Result<Session, LoadError> {
        Session::new(self.config.clone(), self.name.clone()).map_err(|e| LoadError::Tls {
            conn: Some(conn),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_it_cannot_trust() {
        for pem in [
            &b""[..],
            b"not pem at all",
            b"-----BEGIN CERTIFICATE-----\n!!\n",
        ] {
            let err = TlsClient::from_pem(pem).config().expect_err("refused");
            assert!(matches!(err, LoadError::Tls { conn: None, .. }), "{err}");
        }
        let err = TlsClient::from_ca_file("/nonexistent/ca.pem")
            .config()
            .expect_err("refused");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn refuses_a_bad_server_name() {
        let client = TlsClient {
            server_name: "not a name!".into(),
            ..TlsClient::from_pem(Vec::new())
        };
        assert!(client.name().is_err());
        assert!(TlsClient::from_pem(Vec::new()).name().is_ok());
    }
}
