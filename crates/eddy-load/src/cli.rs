//! Command-line parsing for the `eddy-load` binary.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use crate::config::LoadConfig;
use crate::tls::TlsClient;

/// Usage text printed by `--help` and on usage errors.
pub const USAGE: &str = "\
usage: eddy-load [options]

  --addr HOST:PORT      loopback target (default 127.0.0.1:9501)
  --connections C       connections (default 50)
  --depth D             packets in flight per connection, 1 = ping-pong (default 1)
  --size BYTES          body size (default 64)
  --framing length|line|ws|udp
                        4-byte big-endian length + body, body + '\\n', or WebSocket:
                        an HTTP/1.1 upgrade, then each body as a binary message in a
                        frame masked with a fresh random key, or udp: each connection
                        a connected UDP socket, each packet one datagram of --size
                        bytes (8 to 65507) starting with its sequence number
                        (default length)
  --udp-timeout MS      udp only: a datagram not echoed within MS milliseconds counts
                        as lost and is replaced (default 200)
  --deflate             ws only: offer permessage-deflate, compress what is sent and
                        inflate the echoes (fails if the server declines)
  --payload pattern|json
                        body filler: a rotating alphabet (compresses to nothing) or
                        JSON-like records, partly compressible (default pattern)
  --tls                 length or line framing only: every connection a TLS client
                        (rustls, ring), trusting the certificates of --tls-ca; the
                        handshakes are done before the clock starts and reported apart
  --tls-ca PATH         PEM file of the CA (or self-signed server certificate) to trust
  --tls-name NAME       server name to ask for and verify (default localhost)
  --mode echo|handshakes
                        echo: connections stay open and echo (default); handshakes: each
                        of the --connections slots connects, completes the TLS handshake
                        (with --tls), echoes one packet, closes, and starts over; the
                        throughput is handshakes (or connections) per second
  --duration SECS       measured phase length (default 10, or unlimited with --count)
  --count N             measured packets over all connections
  --warmup SECS         unmeasured warm-up (default 1)
  --threads N           load threads, each with its own poller (default 1)
  --json                print the report as one JSON object on stdout
  --quiet               no progress lines on stderr
  -h, --help            this text
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
// Parsed once per process: boxing the configuration would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a load.
    Run {
        /// The load to run.
        config: LoadConfig,
        /// Print JSON instead of the table.
        json: bool,
    },
    /// Print [`USAGE`].
    Help,
}

/// A command-line error.
#[derive(Debug)]
pub struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Parses arguments (without the program name).
pub fn parse_args<I>(args: I) -> Result<Command, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut config = LoadConfig {
        progress: true,
        ..LoadConfig::default()
    };
    let mut duration_set = false;
    let mut json = false;
    let (mut tls, mut tls_ca, mut tls_name) = (false, None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("addr") => config.addr = parser.value()?.string()?,
            Long("connections") | Short('c') => config.connections = parser.value()?.parse()?,
            Long("depth") | Short('d') => config.depth = parser.value()?.parse()?,
            Long("size") | Short('s') => config.size = parser.value()?.parse()?,
            Long("framing") => config.framing = parser.value()?.parse()?,
            Long("deflate") => config.deflate = true,
            Long("udp-timeout") => {
                config.udp_timeout = Duration::from_millis(parser.value()?.parse()?);
            }
            Long("payload") => {
                config.payload = parser.value()?.string()?.parse().map_err(CliError)?;
            }
            Long("duration") => {
                config.duration = Some(secs(&parser.value()?.string()?)?);
                duration_set = true;
            }
            Long("count") | Short('n') => config.count = Some(parser.value()?.parse()?),
            Long("warmup") => config.warmup = secs(&parser.value()?.string()?)?,
            Long("threads") | Short('t') => config.threads = parser.value()?.parse()?,
            Long("tls") => tls = true,
            Long("tls-ca") => tls_ca = Some(parser.value()?),
            Long("tls-name") => tls_name = Some(parser.value()?.string()?),
            Long("mode") => config.mode = parser.value()?.string()?.parse().map_err(CliError)?,
            Long("json") => json = true,
            Long("quiet") | Short('q') => config.progress = false,
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(arg.unexpected().into()),
        }
    }
    config.tls = match (tls, tls_ca, tls_name) {
        (true, Some(ca), name) => Some(TlsClient {
            server_name: name.unwrap_or_else(|| crate::tls::DEFAULT_SERVER_NAME.to_owned()),
            ..TlsClient::from_ca_file(ca)
        }),
        (true, None, _) => return Err(CliError("--tls needs --tls-ca PATH".into())),
        (false, None, None) => None,
        (false, _, _) => return Err(CliError("--tls-ca and --tls-name need --tls".into())),
    };
    if config.count.is_some() && !duration_set {
        config.duration = None;
    }
    config.validate().map_err(|e| CliError(e.to_string()))?;
    Ok(Command::Run { config, json })
}

/// Parses a non-negative number of seconds, fractions allowed.
fn secs(s: &str) -> Result<Duration, CliError> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| CliError(format!("invalid number of seconds: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Framing, Payload};

    fn run(args: &[&str]) -> (LoadConfig, bool) {
        match parse_args(args.iter().copied()).expect("parses") {
            Command::Run { config, json } => (config, json),
            Command::Help => panic!("unexpected help"),
        }
    }

    #[test]
    fn defaults() {
        let (c, json) = run(&[]);
        assert_eq!(c.addr, "127.0.0.1:9501");
        assert_eq!((c.connections, c.depth, c.size, c.threads), (50, 1, 64, 1));
        assert_eq!(c.duration, Some(Duration::from_secs(10)));
        assert_eq!(c.warmup, Duration::from_secs(1));
        assert!(c.progress && !json);
        assert!(!c.deflate);
        assert_eq!(c.payload, Payload::Pattern);
    }

    #[test]
    fn websocket_flags() {
        let (c, _) = run(&["--framing", "ws", "--deflate", "--payload", "json"]);
        assert_eq!(c.framing, Framing::WebSocket);
        assert!(c.deflate);
        assert_eq!(c.payload, Payload::Json);
        let (c, _) = run(&["--framing=websocket"]);
        assert_eq!((c.framing, c.deflate), (Framing::WebSocket, false));
    }

    #[test]
    fn udp_flags() {
        let (c, _) = run(&["--framing", "udp", "--udp-timeout", "50"]);
        assert_eq!(c.framing, Framing::Udp);
        assert_eq!(c.udp_timeout, Duration::from_millis(50));
        let (c, _) = run(&["--framing=udp"]);
        assert_eq!(c.udp_timeout, Duration::from_millis(200));
        for bad in [
            &["--framing", "udp", "--size", "4"][..],
            &["--framing", "udp", "--udp-timeout", "0"],
            &["--framing", "udp", "--deflate"],
        ] {
            assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn all_flags() {
        let (c, json) = run(&[
            "--addr=127.0.0.2:1",
            "--connections",
            "8",
            "--depth",
            "16",
            "--size",
            "100",
            "--framing",
            "line",
            "--duration",
            "2.5",
            "--count",
            "1000",
            "--warmup",
            "0",
            "--threads",
            "2",
            "--json",
            "--quiet",
        ]);
        assert_eq!(c.addr, "127.0.0.2:1");
        assert_eq!((c.connections, c.depth, c.size, c.threads), (8, 16, 100, 2));
        assert_eq!(c.framing, Framing::Line);
        assert_eq!(c.duration, Some(Duration::from_millis(2500)));
        assert_eq!(c.count, Some(1000));
        assert_eq!(c.warmup, Duration::ZERO);
        assert!(json && !c.progress);
    }

    #[test]
    fn tls_flags() {
        use crate::config::Mode;
        use crate::tls::TlsTrust;
        let (c, _) = run(&["--tls", "--tls-ca", "ca.pem", "--mode", "handshakes"]);
        let tls = c.tls.expect("tls");
        assert_eq!(tls.trust, TlsTrust::File("ca.pem".into()));
        assert_eq!(tls.server_name, "localhost");
        assert_eq!(c.mode, Mode::Handshakes);
        let (c, _) = run(&[
            "--tls",
            "--tls-ca=x",
            "--tls-name",
            "eddy.test",
            "--framing=line",
        ]);
        assert_eq!(c.tls.map(|t| t.server_name), Some("eddy.test".to_owned()));
        let (c, _) = run(&["--mode", "handshakes"]);
        assert_eq!((c.mode, c.tls), (Mode::Handshakes, None));
        for bad in [
            &["--tls"][..],
            &["--tls-ca", "ca.pem"],
            &["--tls-name", "localhost"],
            &["--tls", "--tls-ca", "ca.pem", "--framing", "ws"],
            &["--mode", "flood"],
            &["--mode", "handshakes", "--depth", "4"],
        ] {
            assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn count_alone_disables_duration() {
        let (c, _) = run(&["--count", "10"]);
        assert_eq!((c.duration, c.count), (None, Some(10)));
    }

    #[test]
    fn errors() {
        for bad in [
            &["--depth", "0"][..],
            &["--framing", "xml"],
            &["--duration", "-1"],
            &["--bogus"],
            &["--size"],
            &["--deflate"],
            &["--framing", "ws", "--payload", "xml"],
        ] {
            assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
        }
        assert_eq!(parse_args(["--help"]).ok(), Some(Command::Help));
    }
}
