//! eddy's own echo server, built the way an application would build it,
//! for comparison with the baselines.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use eddy_codec::{EofCodec, LengthCodec};
use eddy_server::{BuildError, ConnId, Context, DispatchMode, EventHandler, Server};

use crate::frames::Framing;

/// The dispatch modes the benchmark compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// [`DispatchMode::Fd`]: reactor threads hand packets to worker threads.
    #[default]
    Fd,
    /// [`DispatchMode::Reactor`]: each reactor thread runs the handler itself.
    Reactor,
}

impl Dispatch {
    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dispatch::Fd => "fd",
            Dispatch::Reactor => "reactor",
        }
    }
}

impl fmt::Display for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dispatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fd" => Ok(Dispatch::Fd),
            "reactor" => Ok(Dispatch::Reactor),
            other => Err(format!(
                "unknown dispatch mode {other:?} (expected `fd` or `reactor`)"
            )),
        }
    }
}

impl From<Dispatch> for DispatchMode {
    fn from(d: Dispatch) -> Self {
        match d {
            Dispatch::Fd => DispatchMode::Fd,
            Dispatch::Reactor => DispatchMode::Reactor,
        }
    }
}

/// How to build the eddy echo server; `None` keeps eddy's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EddyConfig {
    /// Dispatch mode.
    pub dispatch: Dispatch,
    /// Reactor threads (`reactor_num`).
    pub reactors: Option<usize>,
    /// Worker threads (`worker_num`).
    pub workers: Option<usize>,
}

/// Echoes every packet back whole.
#[derive(Debug)]
struct Echo;

impl EventHandler for Echo {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        // A failed send means the connection is closing: nothing to do.
        let _ = ctx.send(conn, &packet);
    }
}

/// Binds an eddy echo server on `listen` with `framing` (eddy's
/// `LengthCodec` or `EofCodec::line()`), a backlog of 1024 and otherwise
/// eddy's defaults. Start it with [`Server::run`].
pub fn build(listen: &str, framing: Framing, config: EddyConfig) -> Result<Server, BuildError> {
    let mut builder = Server::builder()
        .listen(listen)
        .dispatch_mode(config.dispatch.into())
        .backlog(1024);
    builder = match framing {
        Framing::Length => builder.codec(LengthCodec::new()),
        Framing::Line => builder.codec(EofCodec::line()),
    };
    if let Some(n) = config.reactors {
        builder = builder.reactor_num(n);
    }
    if let Some(n) = config.workers {
        builder = builder.worker_num(n);
    }
    builder.build(|| Echo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_names_round_trip() {
        for d in [Dispatch::Fd, Dispatch::Reactor] {
            assert_eq!(d.as_str().parse::<Dispatch>(), Ok(d));
        }
        assert!("idle".parse::<Dispatch>().is_err());
    }

    #[test]
    fn builds_with_both_framings() {
        for framing in [Framing::Length, Framing::Line] {
            let config = EddyConfig {
                dispatch: Dispatch::Reactor,
                workers: Some(1),
                ..EddyConfig::default()
            };
            let server = build("127.0.0.1:0", framing, config).expect("build");
            assert!(server.local_addr().to_string().starts_with("127.0.0.1:"));
        }
    }
}
