//! Running a server as a child process and learning its address from its
//! `listening on ADDR` line.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::proc_cpu;

/// The line prefix a server prints once it is bound.
pub const LISTENING_PREFIX: &str = "listening on ";

/// A server child process; killed and reaped on drop.
#[derive(Debug)]
pub struct ServerChild {
    child: Child,
    addr: SocketAddr,
}

impl ServerChild {
    /// Spawns `cmd` with stdout piped and waits up to `timeout` for its
    /// first stdout line, which must be `listening on ADDR`. The rest of
    /// stdout is drained in the background.
    pub fn spawn(cmd: &mut Command, timeout: Duration) -> io::Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child stdout not captured"))?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("server-child-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let _ = tx.send(reader.read_line(&mut line).map(|_| line));
                let _ = io::copy(&mut reader, &mut io::sink());
            })?;
        let line = match rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "server did not print its address in time",
            )),
        };
        let addr = line.and_then(|l| parse_listening(&l));
        match addr {
            Ok(addr) => Ok(ServerChild { child, addr }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The address the server announced.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the child has used so far.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        proc_cpu::cpu_time(self.pid())
    }

    /// The child's resident memory in bytes.
    pub fn rss_bytes(&self) -> io::Result<u64> {
        proc_cpu::rss_bytes(self.pid())
    }

    /// Number of file descriptors the child has open.
    pub fn open_fds(&self) -> io::Result<usize> {
        proc_cpu::open_fds(self.pid())
    }

    /// Kills the child and waits for it.
    pub fn kill(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait().map(drop)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Parses a `listening on ADDR` line.
pub fn parse_listening(line: &str) -> io::Result<SocketAddr> {
    line.trim_end()
        .strip_prefix(LISTENING_PREFIX)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected `listening on ADDR`, got {line:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_line() {
        let a = parse_listening("listening on 127.0.0.1:4242\n").expect("parses");
        assert_eq!(a.port(), 4242);
        assert!(parse_listening("listening on [::1]:7").is_ok());
        assert!(parse_listening("ready").is_err());
        assert!(parse_listening("").is_err());
    }
}
