//! The servers under test and how to start one as a child process.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::ServerChild;

/// How long a child may take to print `listening on ADDR`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One server of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSpec {
    /// Name in the table.
    pub name: &'static str,
    /// `--serve` arguments selecting it (listen address and framing are
    /// added by [`spawn`]).
    pub args: &'static [&'static str],
}

impl ServerSpec {
    /// An eddy server (rather than a baseline).
    pub fn is_eddy(&self) -> bool {
        self.name.starts_with("eddy")
    }
}

/// Table name of the tokio baseline.
pub const TOKIO: &str = "tokio";
/// Table name of the tokio-tungstenite baseline (the WebSocket rows' tokio).
pub const TOKIO_WS: &str = "tokio-tungstenite";
/// Table name of the tokio-rustls baseline (the TLS rows' tokio).
pub const TOKIO_RUSTLS: &str = "tokio-rustls";
/// Table name of the epoll baseline.
pub const EPOLL: &str = "epoll";

/// Every server, in table order. eddy and tokio use their defaults (a
/// thread per core each for reactors, workers, runtime workers); epoll is
/// single-threaded by design.
pub const SERVERS: [ServerSpec; 4] = [
    ServerSpec {
        name: "eddy fd",
        args: &["--serve", "eddy", "--dispatch", "fd"],
    },
    ServerSpec {
        name: "eddy reactor",
        args: &["--serve", "eddy", "--dispatch", "reactor"],
    },
    ServerSpec {
        name: TOKIO,
        args: &["--serve", "tokio"],
    },
    ServerSpec {
        name: EPOLL,
        args: &["--serve", "epoll"],
    },
];

/// The WebSocket servers, in table order: eddy's WebSocket listener in both
/// dispatch modes, and tokio-tungstenite on the tokio runtime. They are
/// started with `--framing ws` (and `--deflate` where a scenario asks).
pub const WS_SERVERS: [ServerSpec; 3] = [
    SERVERS[0],
    SERVERS[1],
    ServerSpec {
        name: TOKIO_WS,
        args: &["--serve", "tokio"],
    },
];

/// The UDP servers, in table order: eddy's `listen_udp` in both dispatch
/// modes, and a tokio `UdpSocket` echo (one task per runtime worker). They
/// are started with `--framing udp`.
pub const UDP_SERVERS: [ServerSpec; 3] = [SERVERS[0], SERVERS[1], SERVERS[2]];

/// The TLS servers, in table order: eddy with `.tls(..)` in both dispatch modes, and a
/// tokio-rustls echo on the tokio runtime. They are started with `--tls-cert C --tls-key K`
/// (TLS 1.3, rustls on ring on both sides) and the scenario's framing.
pub const TLS_SERVERS: [ServerSpec; 3] = [
    SERVERS[0],
    SERVERS[1],
    ServerSpec {
        name: TOKIO_RUSTLS,
        args: &["--serve", "tokio"],
    },
];

/// A server that did not come up.
#[derive(Debug)]
pub struct StartError {
    server: &'static str,
    command: String,
    source: std::io::Error,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server `{}` failed to start (`{}`): {}",
            self.server, self.command, self.source
        )
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Starts `spec` as a child of `program` (a binary that understands
/// `--serve`) on a free loopback port with length framing, and waits for
/// its `listening on ADDR` line. The child's stderr is inherited, so its
/// own error message shows up above ours.
pub fn spawn(program: &Path, spec: &ServerSpec) -> Result<ServerChild, StartError> {
    spawn_with(program, spec, &["--framing", "length"])
}

/// [`spawn`] with `framing` (e.g. `--framing ws --deflate`) instead of
/// length framing.
pub fn spawn_with(
    program: &Path,
    spec: &ServerSpec,
    framing: &[&str],
) -> Result<ServerChild, StartError> {
    let mut tail = vec!["--listen", "127.0.0.1:0"];
    tail.extend_from_slice(framing);
    let mut cmd = Command::new(program);
    cmd.args(spec.args)
        .args(&tail)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    ServerChild::spawn(&mut cmd, START_TIMEOUT).map_err(|source| StartError {
        server: spec.name,
        command: format!(
            "{} {} {}",
            program.display(),
            spec.args.join(" "),
            tail.join(" ")
        ),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_a_clear_error() {
        let err =
            spawn(Path::new("/nonexistent/eddy-bench"), &SERVERS[0]).expect_err("cannot start");
        let text = err.to_string();
        assert!(text.contains("`eddy fd` failed to start"), "{text}");
        assert!(text.contains("--dispatch fd"), "{text}");
    }

    #[test]
    fn a_child_that_prints_nothing_fails_cleanly() {
        let err = spawn(Path::new("/bin/true"), &SERVERS[2]).expect_err("no address");
        assert!(err.to_string().contains("`tokio` failed to start"));
    }

    #[test]
    fn baselines_are_not_eddy() {
        let eddy: Vec<_> = SERVERS.iter().filter(|s| s.is_eddy()).collect();
        assert_eq!(eddy.len(), 2);
        assert_eq!(WS_SERVERS.iter().filter(|s| s.is_eddy()).count(), 2);
        assert!(!WS_SERVERS[2].is_eddy());
    }

    #[test]
    fn a_websocket_start_failure_names_its_framing() {
        let err = spawn_with(
            Path::new("/nonexistent/x"),
            &WS_SERVERS[2],
            &["--framing", "ws"],
        )
        .expect_err("cannot start");
        let text = err.to_string();
        assert!(
            text.contains("`tokio-tungstenite` failed to start"),
            "{text}"
        );
        assert!(text.contains("--framing ws"), "{text}");
    }
}
