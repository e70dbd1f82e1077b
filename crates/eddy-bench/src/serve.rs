//! `eddy-baseline` entry point: bind, announce the address, serve.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::net::TcpListener;
use std::str::FromStr;

use crate::frames::Framing;
use crate::{epoll_echo, tokio_echo};

/// Usage text of `eddy-baseline`.
pub const USAGE: &str = "\
usage: eddy-baseline --serve tokio|epoll [--listen ADDR] [--framing length|line] [--threads N]

  --serve tokio|epoll    tokio multi-thread echo, or single-thread raw epoll echo
  --listen ADDR          address to bind (default 127.0.0.1:0)
  --framing length|line  packet framing (default length)
  --threads N            tokio worker threads, 0 = one per core (default 0)

Prints `listening on ADDR` on stdout once bound, then serves until killed.
";

/// Which baseline server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// [`tokio_echo`]: multi-threaded tokio runtime, a task per connection.
    Tokio,
    /// [`epoll_echo`]: one thread, level-triggered epoll.
    Epoll,
}

impl FromStr for Baseline {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tokio" => Ok(Baseline::Tokio),
            "epoll" => Ok(Baseline::Epoll),
            other => Err(ServeError::Usage(format!(
                "unknown baseline {other:?} (expected `tokio` or `epoll`)"
            ))),
        }
    }
}

/// Parsed `eddy-baseline` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Server to run.
    pub baseline: Baseline,
    /// Address to bind.
    pub listen: String,
    /// Packet framing.
    pub framing: Framing,
    /// Tokio worker threads (0 = one per core); ignored by epoll.
    pub threads: usize,
}

/// Errors of [`serve_main`].
#[derive(Debug)]
pub enum ServeError {
    /// Bad command line; the message says why. `--help` also lands here
    /// with [`USAGE`] as message.
    Usage(String),
    /// Binding or serving failed.
    Io(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Usage(msg) => f.write_str(msg),
            ServeError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Io(e) => Some(e),
            ServeError::Usage(_) => None,
        }
    }
}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Io(e)
    }
}

impl From<lexopt::Error> for ServeError {
    fn from(e: lexopt::Error) -> Self {
        ServeError::Usage(e.to_string())
    }
}

/// Parses `eddy-baseline` arguments (without the program name).
pub fn parse_serve_args<I>(args: I) -> Result<ServeOptions, ServeError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut baseline = None;
    let mut opts = ServeOptions {
        baseline: Baseline::Tokio,
        listen: "127.0.0.1:0".to_owned(),
        framing: Framing::Length,
        threads: 0,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("serve") => baseline = Some(parser.value()?.parse()?),
            Long("listen") => opts.listen = parser.value()?.string()?,
            Long("framing") => opts.framing = parser.value()?.parse()?,
            Long("threads") => opts.threads = parser.value()?.parse()?,
            Long("help") | Short('h') => return Err(ServeError::Usage(USAGE.to_owned())),
            _ => return Err(arg.unexpected().into()),
        }
    }
    opts.baseline = baseline.ok_or_else(|| ServeError::Usage("--serve is required".into()))?;
    Ok(opts)
}

/// Parses `args`, binds, prints exactly `listening on ADDR` (the bound
/// address) on stdout, flushes, then serves until the process is killed.
pub fn serve_main<I>(args: I) -> Result<(), ServeError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let opts = parse_serve_args(args)?;
    let listener = TcpListener::bind(&opts.listen)?;
    let addr = listener.local_addr()?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);
    match opts.baseline {
        Baseline::Tokio => tokio_echo::run(listener, opts.framing, opts.threads)?,
        Baseline::Epoll => epoll_echo::run(listener, opts.framing)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
                baseline: Baseline::Epoll,
                listen: "127.0.0.1:9".into(),
                framing: Framing::Line,
                threads: 3,
            }
        );
        assert!(parse_serve_args(["--listen", "x"]).is_err());
        assert!(parse_serve_args(["--serve", "nginx"]).is_err());
    }
}
