//! `--serve` entry point: bind, announce the address, serve.
//!
//! Shared by the `eddy-baseline` binary and the `echo` bench, which
//! re-executes itself with `--serve …` to run each server as a child.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use eddy_server::BuildError;

use crate::eddy_echo::{self, EddyConfig};
use crate::frames::Framing;
use crate::listen::{self, BACKLOG};
use crate::{epoll_echo, tokio_echo, tokio_tls_echo, tokio_udp_echo, tokio_ws_echo};

/// Usage text of `--serve`.
pub const USAGE: &str = "\
usage: eddy-baseline --serve eddy|tokio|epoll [--listen ADDR] [--framing length|line|ws|udp]
                     [--deflate] [--dispatch fd|reactor] [--reactors N] [--workers N]
                     [--threads N] [--tls-cert CERT.pem --tls-key KEY.pem]

  --serve eddy|tokio|epoll  eddy echo, tokio multi-thread echo, or single-thread raw epoll echo
  --listen ADDR             address to bind (default 127.0.0.1:0)
  --framing length|line|ws|udp
                            packet framing (default length); ws: a WebSocket echo of every
                            message (eddy's WebSocket listener, or tokio-tungstenite with
                            tokio; epoll has none); udp: a UDP echo of every datagram
                            (eddy's listen_udp + on_packet, or a tokio UdpSocket with one
                            recv_from/send_to task per runtime worker; epoll has none)
  --deflate                 eddy with ws only: accept permessage-deflate (tokio-tungstenite
                            has none)
  --dispatch fd|reactor     eddy only: dispatch mode (default fd)
  --reactors N              eddy only: reactor threads (default: eddy's, one per core)
  --workers N               eddy only: worker threads (default: eddy's, one per core)
  --threads N               tokio only: worker threads, 0 = one per core (default 0)
  --tls-cert CERT.pem --tls-key KEY.pem
                            eddy and tokio, length and line framing: serve the echo over
                            TLS 1.3 (rustls on ring) with this certificate chain and key:
                            eddy's `.tls(TlsConfig::from_pem_files(..))`, or tokio-rustls

All listen with a backlog of 1024. Prints `listening on ADDR` on stdout once
bound, then serves until killed.
";

/// Which echo server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// [`eddy_echo`]: an eddy server with an echo handler.
    Eddy,
    /// [`tokio_echo`]: multi-threaded tokio runtime, a task per connection.
    Tokio,
    /// [`epoll_echo`]: one thread, level-triggered epoll.
    Epoll,
}

impl FromStr for ServerKind {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "eddy" => Ok(ServerKind::Eddy),
            "tokio" => Ok(ServerKind::Tokio),
            "epoll" => Ok(ServerKind::Epoll),
            other => Err(ServeError::Usage(format!(
                "unknown server {other:?} (expected `eddy`, `tokio` or `epoll`)"
            ))),
        }
    }
}

/// Parsed `--serve` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Server to run.
    pub server: ServerKind,
    /// Address to bind.
    pub listen: String,
    /// Packet framing.
    pub framing: Framing,
    /// eddy's dispatch mode, thread counts and WebSocket deflate; ignored by
    /// the baselines.
    pub eddy: EddyConfig,
    /// Tokio worker threads (0 = one per core); ignored by the others.
    pub threads: usize,
    /// Serve over TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Errors of [`serve_main`].
#[derive(Debug)]
pub enum ServeError {
    /// Bad command line; the message says why. `--help` also lands here
    /// with [`USAGE`] as message.
    Usage(String),
    /// The eddy server could not be built.
    Build(BuildError),
    /// Binding or serving failed.
    Io(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Usage(msg) => f.write_str(msg),
            ServeError::Build(e) => write!(f, "building the eddy server: {e}"),
            ServeError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Io(e) => Some(e),
            ServeError::Build(e) => Some(e),
            ServeError::Usage(_) => None,
        }
    }
}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Io(e)
    }
}

impl From<BuildError> for ServeError {
    fn from(e: BuildError) -> Self {
        ServeError::Build(e)
    }
}

impl From<lexopt::Error> for ServeError {
    fn from(e: lexopt::Error) -> Self {
        ServeError::Usage(e.to_string())
    }
}

/// Parses `--serve` arguments (without the program name).
pub fn parse_serve_args<I>(args: I) -> Result<ServeOptions, ServeError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut server = None;
    let mut opts = ServeOptions {
        server: ServerKind::Tokio,
        listen: "127.0.0.1:0".to_owned(),
        framing: Framing::Length,
        eddy: EddyConfig::default(),
        threads: 0,
        tls: None,
    };
    let (mut cert, mut key) = (None::<PathBuf>, None::<PathBuf>);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("serve") => server = Some(parser.value()?.parse()?),
            Long("listen") => opts.listen = parser.value()?.string()?,
            Long("framing") => opts.framing = parser.value()?.parse()?,
            Long("deflate") => opts.eddy.deflate = true,
            Long("dispatch") => opts.eddy.dispatch = parser.value()?.parse()?,
            Long("reactors") => opts.eddy.reactors = Some(parser.value()?.parse()?),
            Long("workers") => opts.eddy.workers = Some(parser.value()?.parse()?),
            Long("threads") => opts.threads = parser.value()?.parse()?,
            Long("tls-cert") => cert = Some(parser.value()?.into()),
            Long("tls-key") => key = Some(parser.value()?.into()),
            Long("help") | Short('h') => return Err(ServeError::Usage(USAGE.to_owned())),
            _ => return Err(arg.unexpected().into()),
        }
    }
    opts.server = server.ok_or_else(|| ServeError::Usage("--serve is required".into()))?;
    opts.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            return Err(ServeError::Usage(
                "--tls-cert and --tls-key go together".into(),
            ))
        }
    };
    if opts.tls.is_some() {
        if opts.server == ServerKind::Epoll {
            return Err(ServeError::Usage(
                "the epoll baseline has no TLS (use eddy or tokio)".into(),
            ));
        }
        if !matches!(opts.framing, Framing::Length | Framing::Line) {
            return Err(ServeError::Usage(
                "TLS is served with length and line framing only".into(),
            ));
        }
    }
    match (opts.server, opts.framing, opts.eddy.deflate) {
        (ServerKind::Epoll, Framing::WebSocket, _) => Err(ServeError::Usage(
            "the epoll baseline has no WebSocket framing (use eddy or tokio)".into(),
        )),
        (ServerKind::Epoll, Framing::Udp, _) => Err(ServeError::Usage(
            "the epoll baseline has no UDP echo (use eddy or tokio)".into(),
        )),
        (_, framing, true) if framing != Framing::WebSocket => {
            Err(ServeError::Usage("--deflate needs --framing ws".into()))
        }
        (ServerKind::Tokio, _, true) => Err(ServeError::Usage(
            "tokio-tungstenite has no permessage-deflate: --deflate is eddy only".into(),
        )),
        _ => Ok(opts),
    }
}

/// Parses `args`, binds, prints exactly `listening on ADDR` (the bound
/// address) on stdout, flushes, then serves until the process is killed
/// (eddy also stops on SIGTERM or SIGINT).
pub fn serve_main<I>(args: I) -> Result<(), ServeError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let opts = parse_serve_args(args)?;
    let tls = opts.tls.as_ref();
    match (opts.server, tls) {
        (ServerKind::Eddy, tls) => {
            let tls = tls.map(|t| (t.cert.as_path(), t.key.as_path()));
            let server = eddy_echo::build_with(&opts.listen, opts.framing, opts.eddy, tls)?;
            announce(server.local_addr())?;
            server.run()?;
        }
        (ServerKind::Tokio, Some(tls)) => {
            let config = tokio_tls_echo::server_config(&tls.cert, &tls.key)?;
            let listener = listen::bind(&opts.listen, BACKLOG)?;
            announce(listener.local_addr()?)?;
            tokio_tls_echo::run(listener, opts.framing, opts.threads, config)?;
        }
        (ServerKind::Tokio, None) if opts.framing == Framing::Udp => {
            let socket = std::net::UdpSocket::bind(&opts.listen)?;
            announce(socket.local_addr()?)?;
            tokio_udp_echo::run(socket, opts.threads)?;
        }
        (ServerKind::Tokio, None) if opts.framing == Framing::WebSocket => {
            let listener = listen::bind(&opts.listen, BACKLOG)?;
            announce(listener.local_addr()?)?;
            tokio_ws_echo::run(listener, opts.threads)?;
        }
        (ServerKind::Tokio, None) => {
            let listener = listen::bind(&opts.listen, BACKLOG)?;
            announce(listener.local_addr()?)?;
            tokio_echo::run(listener, opts.framing, opts.threads)?;
        }
        (ServerKind::Epoll, _) => {
            let listener = listen::bind(&opts.listen, BACKLOG)?;
            announce(listener.local_addr()?)?;
            epoll_echo::run(listener, opts.framing)?;
        }
    }
    Ok(())
}

/// Runs [`serve_main`] on `args` and turns the outcome into an exit code,
/// printing usage or errors prefixed with `program`.
pub fn serve_exit<I>(program: &str, args: I) -> ExitCode
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    match serve_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Usage(msg)) if msg == USAGE => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(ServeError::Usage(msg)) => {
            eprintln!("{program}: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `listening on ADDR` and flushes: the child-process handshake.
fn announce(addr: impl fmt::Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}{addr}", crate::child::LISTENING_PREFIX)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eddy_echo::Dispatch;

    #[test]
    fn parses_options() {
        let o = parse_serve_args([
            "--serve",
            "epoll",
            "--listen",
            "127.0.0.1:9",
            "--framing",
            "line",
            "--threads",
            "3",
        ])
        .expect("parses");
        assert_eq!(
            o,
            ServeOptions {
                server: ServerKind::Epoll,
                listen: "127.0.0.1:9".into(),
                framing: Framing::Line,
                eddy: EddyConfig::default(),
                threads: 3,
                tls: None,
            }
        );
        assert!(parse_serve_args(["--listen", "x"]).is_err());
        assert!(parse_serve_args(["--serve", "nginx"]).is_err());
    }

    #[test]
    fn parses_eddy_options() {
        let o = parse_serve_args([
            "--serve",
            "eddy",
            "--dispatch",
            "reactor",
            "--reactors",
            "2",
            "--workers",
            "2",
        ])
        .expect("parses");
        assert_eq!(o.server, ServerKind::Eddy);
        assert_eq!(
            o.eddy,
            EddyConfig {
                dispatch: Dispatch::Reactor,
                reactors: Some(2),
                workers: Some(2),
                deflate: false,
            }
        );
        assert!(parse_serve_args(["--serve", "eddy", "--dispatch", "idle"]).is_err());
    }

    #[test]
    fn parses_tls_options() {
        let o = parse_serve_args([
            "--serve",
            "tokio",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--framing",
            "line",
        ])
        .expect("parses");
        let files = TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert_eq!(o.tls, Some(files));
        for bad in [
            &["--serve", "eddy", "--tls-cert", "c.pem"][..],
            &["--serve", "tokio", "--tls-key", "k.pem"],
            &["--serve", "epoll", "--tls-cert", "c", "--tls-key", "k"],
            &[
                "--serve",
                "eddy",
                "--framing",
                "ws",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
            ],
            &[
                "--serve",
                "tokio",
                "--framing",
                "udp",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
            ],
        ] {
            let err = parse_serve_args(bad.iter().copied()).expect_err("refused");
            assert!(matches!(err, ServeError::Usage(_)), "{bad:?}");
        }
    }

    #[test]
    fn parses_websocket_options() {
        let o =
            parse_serve_args(["--serve", "eddy", "--framing", "ws", "--deflate"]).expect("parses");
        assert_eq!((o.framing, o.eddy.deflate), (Framing::WebSocket, true));
        let o = parse_serve_args(["--serve", "tokio", "--framing", "ws"]).expect("parses");
        assert_eq!(
            (o.server, o.framing),
            (ServerKind::Tokio, Framing::WebSocket)
        );
        let o = parse_serve_args(["--serve", "tokio", "--framing", "udp"]).expect("parses");
        assert_eq!((o.server, o.framing), (ServerKind::Tokio, Framing::Udp));
        for bad in [
            &["--serve", "epoll", "--framing", "udp"][..],
            &["--serve", "eddy", "--framing", "udp", "--deflate"],
            &["--serve", "epoll", "--framing", "ws"],
            &["--serve", "tokio", "--framing", "ws", "--deflate"],
            &["--serve", "eddy", "--deflate"],
        ] {
            let err = parse_serve_args(bad.iter().copied()).expect_err("refused");
            assert!(matches!(err, ServeError::Usage(_)), "{bad:?}");
        }
    }
}
