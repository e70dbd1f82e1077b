//! The examples' TLS flags: `--tls-cert CERT.pem --tls-key KEY.pem` (or `--tls-self-signed`:
//! a certificate for `localhost` made at start with rcgen, written to a temporary folder so
//! a client can be pointed at it), `--tls-alpn LIST` (comma-separated, in order of
//! preference), `--tls-sni NAME:CERT.pem:KEY.pem` (repeatable) and `--tls-client-ca CA.pem`
//! (clients must present a certificate it signed).

use std::path::PathBuf;

use eddy::{ClientAuth, TlsConfig};

/// What the TLS flags asked for.
#[derive(Default)]
pub(crate) struct TlsFlags {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: bool,
    alpn: Vec<String>,
    sni: Vec<(String, PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
}

impl TlsFlags {
    /// Take `flag` (and its value, from `args`) if it is a TLS flag; whether it was.
    pub(crate) fn take(
        &mut self,
        flag: &str,
        args: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag {
            "--tls-cert" => self.cert = Some(value()?.into()),
            "--tls-key" => self.key = Some(value()?.into()),
            "--tls-self-signed" => self.self_signed = true,
            "--tls-alpn" => self.alpn = value()?.split(',').map(str::to_owned).collect(),
            "--tls-client-ca" => self.client_ca = Some(value()?.into()),
            "--tls-sni" => {
                let spec = value()?;
                let mut parts = spec.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(name), Some(cert), Some(key)) => {
                        self.sni.push((name.into(), cert.into(), key.into()))
                    }
                    _ => return Err(format!("--tls-sni: `{spec}` is not NAME:CERT:KEY")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The TLS settings and the default certificate's path (to print), if TLS was asked for.
    pub(crate) fn config(&self) -> Result<Option<(TlsConfig, PathBuf)>, String> {
        let (tls, cert) = match (&self.cert, &self.key, self.self_signed) {
            (None, None, false) if self.is_unused() => return Ok(None),
            (None, None, false) => {
                return Err(
                    "the TLS flags need --tls-cert and --tls-key, or --tls-self-signed".into(),
                )
            }
            (Some(cert), Some(key), false) => (TlsConfig::from_pem_files(cert, key), cert.clone()),
            (None, None, true) => {
                let (cert, key) = self_signed()?;
                (TlsConfig::from_pem_files(&cert, key), cert)
            }
            (_, _, true) => {
                return Err("--tls-self-signed replaces --tls-cert and --tls-key".into())
            }
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        let mut tls = tls.alpn(self.alpn.iter().map(String::as_bytes));
        for (name, cert, key) in &self.sni {
            tls = tls.sni_files(name, cert, key);
        }
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_file(ca, ClientAuth::Required);
        }
        Ok(Some((tls, cert)))
    }

    fn is_unused(&self) -> bool {
        self.alpn.is_empty() && self.sni.is_empty() && self.client_ca.is_none()
    }
}

/// A self-signed certificate for `localhost`, `127.0.0.1` and `::1`, written as `cert.pem`
/// and `key.pem` in a new temporary folder.
fn self_signed() -> Result<(PathBuf, PathBuf), String> {
    let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("eddy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(&key, made.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((cert, key))
}

/// The ready line: `listening on ADDR`, and the certificate's path when serving TLS.
pub(crate) fn listening_line(
    addr: impl std::fmt::Display,
    cert: Option<&std::path::Path>,
) -> String {
    match cert {
        None => format!("listening on {addr}"),
        Some(cert) => format!("listening on {addr} (TLS, certificate {})", cert.display()),
    }
}
