//! Small client-side helpers for the connection rows: a blocking ping,
//! and raising this process's file limit.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// A length-framed packet with a 1-byte body.
const PING: [u8; 5] = [0, 0, 0, 1, b'p'];
/// How long a ping may take before the row fails.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `addr` with a read timeout set for [`ping`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PING_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends one length-framed packet and waits for its echo: proof that the
/// server has accepted the connection and serves it.
pub fn ping(mut stream: &TcpStream) -> io::Result<()> {
    stream.write_all(&PING)?;
    let mut echo = [0u8; PING.len()];
    stream.read_exact(&mut echo)?;
    if echo != PING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ping echoed {echo:?}"),
        ));
    }
    Ok(())
}

/// Connects, pings, half-closes and waits for the server to close its end:
/// once this returns, the server has served and closed a whole connection.
pub fn ping_and_close(addr: SocketAddr) -> io::Result<()> {
    let mut stream = connect(addr)?;
    ping(&stream)?;
    stream.shutdown(Shutdown::Write)?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte)? {
        0 => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected data after the ping",
        )),
    }
}

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit (child
/// processes inherit it) and returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit to read.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn ping_round_trips_through_an_echo() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let echo = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("read");
            s.write_all(&buf).expect("write");
            assert_eq!(s.read(&mut buf).expect("eof"), 0);
        });
        ping_and_close(addr).expect("ping and close");
        echo.join().expect("echo thread");
    }

    #[test]
    fn nofile_limit_is_raised_to_hard() {
        let soft = raise_nofile().expect("raise");
        assert!(soft >= 1024);
    }
}
