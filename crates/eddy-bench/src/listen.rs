//! Binding the baselines' listeners with an explicit accept backlog.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog of the baselines: the same as eddy's default, so that
/// 1,000 connections opened at once all get through.
pub const BACKLOG: i32 = 1024;

/// Binds a TCP listener on `addr` (`SO_REUSEADDR`, close-on-exec) and
/// listens with `backlog`. Tries each address `addr` resolves to in turn.
pub fn bind(addr: &str, backlog: i32) -> io::Result<TcpListener> {
    let mut last = None;
    for resolved in addr.to_socket_addrs()? {
        match bind_one(resolved, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr:?} resolves to no address"),
        )
    }))
}

fn bind_one(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    // socket2 sets SOCK_CLOEXEC, so re-exec'd children do not inherit it.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_a_free_port() {
        let listener = bind("127.0.0.1:0", BACKLOG).expect("bind");
        assert_ne!(listener.local_addr().expect("addr").port(), 0);
        assert!(bind("no port", BACKLOG).is_err());
    }
}
