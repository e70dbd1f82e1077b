//! A TLS listener's settings, as the application gives them.

use std::{fmt, path::PathBuf, time::Duration};

/// Where a PEM document comes from: a file (read again by each reload) or memory.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Pem {
    File(PathBuf),
    Memory(&'static str, Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => write!(f, "{}", path.display()),
            Pem::Memory(what, _) => write!(f, "the in-memory {what}"),
        }
    }
}

/// The TLS protocol versions a listener may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    #[serde(rename = "TLSv1.2")]
    Tls12,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// Whether a client must present a certificate signed by the configured CA (mutual TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A client without a valid certificate is refused during the handshake.
    Required,
    /// A client may present no certificate; one it presents must be valid.
    Optional,
}

/// The default `handshake_timeout`.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings for one stream listener (Swoole's `ssl_cert_file`, `ssl_key_file`,
/// `ssl_protocols`, `ssl_verify_peer`, `ssl_client_cert_file`, `ssl_sni_certs`,
/// `open_http2_protocol`'s ALPN), given to [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// Every file is read, parsed and checked at `build` (a bad file, or a key that does not
/// match its certificate, is refused there with the file's name and the problem), and read
/// again by [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls).
///
/// ```no_run
/// use std::time::Duration;
/// use eddy_server::{ClientAuth, TlsConfig, TlsVersion};
///
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")
///     .sni_files("api.example.com", "api-cert.pem", "api-key.pem")
///     .alpn(["h2", "http/1.1"])
///     .versions(&[TlsVersion::Tls13])
///     .client_ca_file("clients-ca.pem", ClientAuth::Required)
///     .handshake_timeout(Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub(crate) cert: Pem,
    pub(crate) key: Pem,
    /// Certificates picked by the name the client asks for (SNI): (name, chain, key).
    pub(crate) sni: Vec<(String, Pem, Pem)>,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) versions: Vec<TlsVersion>,
    pub(crate) client_ca: Option<(Pem, ClientAuth)>,
    pub(crate) handshake_timeout: Duration,
}

impl TlsConfig {
    /// The certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1) in these
    /// PEM files: what every client gets unless an SNI certificate matches.
    pub fn from_pem_files(cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig::with(Pem::File(cert_chain.into()), Pem::File(key.into()))
    }

    /// The same from PEM text in memory (a reload uses it again as it is).
    pub fn from_pem(cert_chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        TlsConfig::with(
            Pem::Memory("certificate chain", cert_chain.into()),
            Pem::Memory("private key", key.into()),
        )
    }

    fn with(cert: Pem, key: Pem) -> Self {
        TlsConfig {
            cert,
            key,
            sni: Vec::new(),
            alpn: Vec::new(),
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            client_ca: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Serve this certificate chain and key to clients asking for `server_name` (SNI; the
    /// name is matched exactly, ignoring case and a trailing dot; a name given twice is
    /// refused at build).
    pub fn sni_files(
        mut self,
        server_name: impl Into<String>,
        cert_chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        let (cert, key) = (Pem::File(cert_chain.into()), Pem::File(key.into()));
        self.sni.push((server_name.into(), cert, key));
        self
    }

    /// [`sni_files`](Self::sni_files) from PEM text in memory.
    pub fn sni_pem(
        mut self,
        server_name: impl Into<String>,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        let cert = Pem::Memory("SNI certificate chain", cert_chain.into());
        let key = Pem::Memory("SNI private key", key.into());
        self.sni.push((server_name.into(), cert, key));
        self
    }

    /// The application protocols offered through ALPN, in the server's order of preference
    /// (a client that offers none of them is refused; one that uses no ALPN is served). Each
    /// is 1 to 255 bytes and given once, or the build refuses it.
    pub fn alpn<P: Into<Vec<u8>>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The protocol versions to speak (default: TLS 1.2 and 1.3).
    pub fn versions(mut self, versions: &[TlsVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Verify client certificates against the CA certificates in this PEM file (mutual TLS);
    /// the subject of a client's certificate is in `client_info`.
    pub fn client_ca_file(mut self, ca: impl Into<PathBuf>, auth: ClientAuth) -> Self {
        self.client_ca = Some((Pem::File(ca.into()), auth));
        self
    }

    /// [`client_ca_file`](Self::client_ca_file) from PEM text in memory.
    pub fn client_ca_pem(mut self, ca: impl Into<Vec<u8>>, auth: ClientAuth) -> Self {
        self.client_ca = Some((Pem::Memory("client CA", ca.into()), auth));
        self
    }

    /// How long a client has from its connection to the end of its TLS handshake
    /// (default 10 s; 10 ms to 1 h, checked at build time as `tls_handshake_timeout`); a
    /// late one is closed with `CloseReason::HandshakeTimeout`.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}
