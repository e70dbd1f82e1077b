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
        // Clients send the name without the root's dot (RFC 6066 §3).
        let bare = name.strip_suffix('.').unwrap_or(name);
        let dns = DnsName::try_from(bare)
            .map_err(|_| TlsError::Settings(format!("SNI name {name:?} is not a DNS name")))?;
        let lower = dns.as_ref().to_ascii_lowercase();
        if by_name.contains_key(&lower) {
            return Err(TlsError::Settings(format!(
                "SNI name {name:?} is given twice (names match ignoring case)"
            )));
        }
        by_name.insert(lower, Arc::new(certified(cert, key, &provider)?));
    }
    check_alpn(&settings.alpn)?;
    let resolver = Certificates {
        default: Arc::new(certified(&settings.cert, &settings.key, &provider)?),
        by_name,
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = settings.alpn.clone();
    Ok(Arc::new(config))
}

/// ALPN protocol names are 1 to 255 bytes (RFC 7301 §3.1), each offered once.
fn check_alpn(protocols: &[Vec<u8>]) -> Result<(), TlsError> {
    for (i, protocol) in protocols.iter().enumerate() {
        let shown = String::from_utf8_lossy(protocol);
        let problem = if protocol.is_empty() {
            "is empty"
        } else if protocol.len() > 255 {
            "is over 255 bytes"
        } else if protocols[..i].contains(protocol) {
            "is offered twice"
        } else {
            continue;
        };
        return Err(TlsError::Settings(format!(
            "ALPN protocol {i} ({shown:?}) {problem}"
        )));
    }
    Ok(())
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
    let bytes = read(key)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound if encrypted(&bytes) => invalid(
            key,
            "the private key is encrypted with a passphrase: give it decrypted \
             (`openssl pkey -in KEY -out PLAIN`)",
        ),
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

/// Whether a PEM document holds an encrypted private key (PKCS#8's, or OpenSSL's legacy
/// `Proc-Type: 4,ENCRYPTED` header), which rustls does not read.
fn encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
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

#[cfg(test)]
mod tests {
    use super::server_config;
    use crate::tls::{TlsConfig, TlsError};

    fn refusal(config: &TlsConfig) -> String {
        match server_config(config) {
            Err(err @ (TlsError::Settings(_) | TlsError::Invalid { .. })) => err.to_string(),
            other => panic!("not refused as a setting or a file: {other:?}"),
        }
    }

    #[test]
    fn bad_alpn_names_sni_names_given_twice_and_encrypted_keys_are_refused_saying_why() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
        let base = TlsConfig::from_pem(cert.clone(), key.clone());
        assert!(server_config(&base.clone().alpn(["h2", "http/1.1"])).is_ok());
        for (alpn, problem) in [
            (
                vec![b"h2".to_vec(), Vec::new()],
                "ALPN protocol 1 (\"\") is empty",
            ),
            (vec![vec![b'x'; 256]], "is over 255 bytes"),
            (
                vec![b"h2".to_vec(), b"h2".to_vec()],
                "ALPN protocol 1 (\"h2\") is offered twice",
            ),
        ] {
            let text = refusal(&base.clone().alpn(alpn));
            assert!(text.contains(problem), "{text}");
        }
        // A name with the root's dot is the name; the same name twice (any case) is refused.
        let dotted = base
            .clone()
            .sni_pem("api.example.com.", cert.clone(), key.clone());
        assert!(server_config(&dotted).is_ok());
        let twice = dotted.sni_pem("API.example.com", cert.clone(), key.clone());
        assert!(refusal(&twice).contains("is given twice"));
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let text = refusal(&TlsConfig::from_pem(cert, encrypted));
        assert!(text.contains("encrypted with a passphrase"), "{text}");
    }
}
