//! How many records a session may still encrypt under its key. rustls, past a TLS 1.2
//! AES-GCM suite's confidentiality limit (2^24 records; TLS 1.3 updates its keys instead),
//! sends close_notify and drops the plaintext it is given while reporting it taken: a
//! long-lived connection would lose replies said to be sent. The session counts the records
//! it has rustls make and refuses, failing the session, a write that could pass the limit.

use rustls::{ServerConnection, SupportedCipherSuite};

/// The plaintext of a full record (rustls's largest fragment): about what one more socket
/// read can add.
pub(crate) const RECORD_PLAINTEXT: usize = 16 * 1024;

/// Records kept below the suite's limit: the handshake's and the alerts' records, which are
/// not counted, and the close_notify at the end.
const MARGIN: u64 = 1 << 12;

/// The records made and the most that may be (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct RecordBudget {
    spent: u64,
    /// Known once the handshake has chosen the cipher suite.
    limit: Option<u64>,
}

impl RecordBudget {
    /// Whether `len` bytes of plaintext, encrypted in one write to rustls, stay under the
    /// limit (with a record to spare for a write made of two slices).
    pub(super) fn fits(&mut self, conn: &ServerConnection, len: usize) -> bool {
        let limit = match self.limit {
            Some(limit) => limit,
            None if conn.is_handshaking() => return true,
            None => *self.limit.insert(limit_of(conn.negotiated_cipher_suite())),
        };
        self.spent.saturating_add(records(len)) < limit.saturating_sub(1)
    }

    /// Count the records of `len` bytes of plaintext written to rustls in one write.
    pub(super) fn spend(&mut self, len: usize) {
        self.spent += records(len);
    }

    /// Pretend `n` records were made (a test reaching the limit without making them).
    #[cfg(test)]
    pub(super) fn spend_records(&mut self, n: u64) {
        self.spent += n;
    }

    /// The records counted so far.
    #[cfg(test)]
    pub(super) fn spent(&self) -> u64 {
        self.spent
    }
}

/// The records `len` bytes of plaintext, written in one write, are encrypted into.
fn records(len: usize) -> u64 {
    len.div_ceil(RECORD_PLAINTEXT).max(1) as u64
}

/// The records a session on `suite` may make under one key.
fn limit_of(suite: Option<SupportedCipherSuite>) -> u64 {
    match suite {
        Some(SupportedCipherSuite::Tls12(suite)) => {
            suite.common.confidentiality_limit.saturating_sub(MARGIN)
        }
        // TLS 1.3: rustls updates the keys before their limit.
        _ => u64::MAX,
    }
}
