//! Swoole's accessors, eddy's way: listener sockets, process and thread ids, peer
//! credentials of unix stream connections.

use std::os::unix::net::UnixStream;

use eddy::{Bytes, ConnId, Context, EventHandler, Server};

use crate::util::*;

struct Quiet;

impl EventHandler for Quiet {
    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

#[test]
fn sockets_pids_and_peer_credentials_are_at_hand() {
    let dir = std::env::temp_dir().join(format!("eddy-acc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .listen_udp("127.0.0.1:0")
        .listen(format!("unix:{}", path.display()))
        .worker_num(2)
        .handle_signals(false)
        .build(|| Quiet)
        .unwrap();
    // getSocket: set an option on a listener before running.
    let tcp = server.listener_socket(0).expect("the TCP listener");
    tcp.set_recv_buffer_size(256 * 1024).unwrap();
    assert!(tcp.recv_buffer_size().unwrap() >= 256 * 1024);
    assert!(server.listener_socket(1).is_some() && server.listener_socket(3).is_none());
    let server = server.start().unwrap();
    let handle = server.handle();
    assert!(handle.datagram_socket(1).is_some() && handle.datagram_socket(0).is_none());
    assert_eq!(handle.master_pid(), std::process::id());
    assert_eq!(handle.manager_pid(), std::process::id());
    let tids: Vec<i32> = (0..2)
        .map(|w| {
            handle
                .worker_pid(w)
                .expect("a running worker has a thread id")
        })
        .collect();
    assert_ne!(tids[0], tids[1]);
    assert!(tids.iter().all(|tid| *tid as u32 != std::process::id()));
    assert_eq!(handle.worker_pid(2), None);
    // A unix stream peer's credentials: ours.
    let _client = UnixStream::connect(&path).unwrap();
    wait_until("the unix connection", || handle.connection_count() == 1);
    let conn = handle.connections().next().unwrap();
    let cred = handle.client_info(conn).unwrap().peer_credentials.unwrap();
    assert_eq!(cred.pid as u32, std::process::id());
    // SAFETY: getuid has no preconditions.
    assert_eq!(cred.uid, unsafe { libc::getuid() });
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
