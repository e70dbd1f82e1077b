//! A throwaway certificate for the TLS benchmarks and tests: self-signed for `localhost`
//! (ECDSA P-256, rcgen's default), written to a fresh temporary folder for the server
//! children, its PEM kept in memory for the in-process client.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Makes the folders of one process distinct.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A self-signed certificate and key on disk; the folder is removed on drop.
#[derive(Debug)]
pub struct TestCert {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    pem: String,
}

impl TestCert {
    /// Generates a certificate for `localhost`, `127.0.0.1` and `::1` and writes
    /// `cert.pem` and `key.pem` into a new folder under the system's temporary folder.
    pub fn generate() -> io::Result<Self> {
        let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let made = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("eddy-bench-tls-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let pem = made.cert.pem();
        let written =
            fs::write(&cert, &pem).and_then(|()| fs::write(&key, made.signing_key.serialize_pem()));
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(TestCert {
            dir,
            cert,
            key,
            pem,
        })
    }

    /// The certificate's PEM file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The private key's PEM file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The certificate as PEM text: what a client trusts.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// `--tls-cert CERT --tls-key KEY`, for a `--serve` child.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_files_and_cleans_up() {
        let cert = TestCert::generate().expect("generate");
        let other = TestCert::generate().expect("generate");
        assert_ne!(cert.cert_path(), other.cert_path());
        let on_disk = fs::read_to_string(cert.cert_path()).expect("cert");
        assert_eq!(on_disk, cert.pem());
        assert!(fs::read_to_string(cert.key_path())
            .expect("key")
            .contains("PRIVATE KEY"));
        assert_eq!(cert.serve_args().len(), 4);
        let dir = cert.dir.clone();
        drop(cert);
        assert!(!dir.exists());
    }
}
