//! Integration tests: real servers on 127.0.0.1:0, real sockets, real threads.

#![allow(unreachable_pub, missing_docs)]

mod accessors;
mod backpressure;
mod browser;
mod chat_example;
mod cluster;
mod commands;
mod connections;
mod datagram;
mod dispatch;
mod echo_example;
mod framing;
mod lifecycle;
mod messages;
mod pki;
mod processes;
mod redis;
mod reload;
mod sendfile;
mod table;
mod tasks;
mod tasks_example;
mod timers;
mod tls;
mod tls_edges;
mod tls_peers;
mod user_code;
mod util;
mod websocket;
mod ws_peers;
