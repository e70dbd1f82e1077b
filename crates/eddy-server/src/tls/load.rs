//! Building a rustls configuration from a listener's settings: PEM files read and checked,
//! certificates picked by SNI, client certificates verified against a CA.

use std::{collections::HashMap, sync::Arc};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, DnsName, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
    RootCertStore, ServerConfig, SupportedProtocolVersion,
};

use super::{
    config::{ClientAuth, Pem},
    TlsConfig, TlsError, TlsVersion,
};

/// The rustls configuration these settings describe, every file read and checked now.
pub(super) fn server_config(settings: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static SupportedProtocolVersion> = settings
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    if versions.is_empty() {
        return Err(TlsError::Settings("no protocol version is enabled".into()));
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|err| TlsError::Settings(err.to_string()))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some((ca, auth)) => {
            let roots = Arc::new(roots(ca)?);
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if *auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|err| TlsError::Invalid {
                file: ca.to_string(),
                problem: format!("cannot verify clients with it: {err}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut by_name = HashMap::new();
    for (name, cert, key) in &settings.sni {
        let dns = DnsName::try_from(name.as_str())
            .map_err(|_| TlsError::Settings(format!("SNI name {name:?} is not a DNS name")))?;
        let name = dns.as_ref().to_ascii_lowercase();
        by_name.insert(name, Arc::new(certified(cert, key, &provider)?));
    }
    let resolver = Certificates {
        default: Arc::new(certified(&settings.cert, &settings.key, &provider)?),
        by_name,
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = settings.alpn.clone();
    Ok(Arc::new(config))
}

/// The PEM document's bytes.
fn read(pem: &Pem) -> Result<std::borrow::Cow<'_, [u8]>, TlsError> {
    match pem {
        Pem::File(path) => std::fs::read(path)
            .map(Into::into)
            .map_err(|source| TlsError::Read {
                file: pem.to_string(),
                source,
            }),
        Pem::Memory(_, bytes) => Ok(bytes.as_slice().into()),
    }
}

fn invalid(pem: &Pem, problem: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        file: pem.to_string(),
        problem: problem.to_string(),
    }
}

/// Every certificate in a PEM document, in order; at least one.
fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(pem)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(pem, format!("broken PEM: {err}")))?;
    if chain.is_empty() {
        return Err(invalid(pem, "no PEM certificate found"));
    }
    Ok(chain)
}

/// A certificate chain and the key that signs for it, checked to belong together.
fn certified(cert: &Pem, key: &Pem, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(key, "no PEM private key found"),
        err => invalid(key, format!("broken PEM: {err}")),
    })?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|err| invalid(key, format!("unusable private key: {err}")))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_string(),
            key: key.to_string(),
        }),
        Err(err) => Err(invalid(cert, format!("unusable certificate: {err}"))),
    }
}

/// The CA certificates client certificates must chain to.
fn roots(ca: &Pem) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|err| invalid(ca, format!("unusable CA certificate: {err}")))?;
    }
    Ok(roots)
}

/// The certificate for a client: the one named by its SNI, else the default.
#[derive(Debug)]
struct Certificates {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        Some(named.unwrap_or(&self.default).clone())
    }
}
