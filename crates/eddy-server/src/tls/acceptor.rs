//! A TLS listener's acceptor: the configuration new connections start their session with,
//! swapped whole by a reload.

use std::{sync::Arc, time::Duration};

use parking_lot::RwLock;
use rustls::ServerConfig;

use super::{load, TlsConfig, TlsError, TlsSession};

/// One TLS listener's settings and current rustls configuration.
#[derive(Debug)]
pub(crate) struct TlsAcceptor {
    settings: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Read and check every file the settings name.
    pub(crate) fn new(settings: TlsConfig) -> Result<Self, TlsError> {
        let current = RwLock::new(load::server_config(&settings)?);
        Ok(TlsAcceptor { settings, current })
    }

    /// A session for a connection just accepted, on the current configuration.
    pub(crate) fn session(&self) -> Result<TlsSession, rustls::Error> {
        TlsSession::new(self.current.read().clone())
    }

    /// Read the files again and use them for the connections accepted from now on; open
    /// connections keep their session. On an error the current configuration stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = load::server_config(&self.settings)?;
        *self.current.write() = config;
        Ok(())
    }

    /// How long a client has to finish its handshake.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.settings.handshake_timeout
    }
}
