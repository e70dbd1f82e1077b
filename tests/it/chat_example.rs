//! The chat example's contract: login, direct and broadcast messages across workers, /who,
//! /whoami, /stats, the idle heartbeat, the tick, the line limit, SIGTERM.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
};

use crate::util::*;

struct User {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl User {
    fn login(chat: &Example, uid: &str) -> User {
        let mut user = User::connect(chat);
        user.say(uid);
        assert_eq!(user.line(), format!("welcome {uid}"));
        user
    }

    fn connect(chat: &Example) -> User {
        let stream = connect(chat.addr);
        User {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn say(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line, without its newline; empty at end of stream.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .expect("a line within the deadline");
        line.trim_end_matches('\n').to_string()
    }

    /// The next line that is not a tick.
    fn message(&mut self) -> String {
        loop {
            let line = self.line();
            if !line.starts_with("time ") {
                return line;
            }
        }
    }
}

#[test]
fn users_talk_across_workers() {
    let chat = Example::start("chat", &["--workers", "4"]);
    let mut alice = User::login(&chat, "alice");
    let mut bob = User::login(&chat, "bob");
    let mut bob2 = User::login(&chat, "bob");
    alice.say("bob:hello there");
    assert_eq!(bob.message(), "alice: hello there");
    assert_eq!(
        bob2.message(),
        "alice: hello there",
        "every connection of a uid"
    );
    alice.say("carol:anyone?");
    assert_eq!(alice.message(), "offline carol");
    bob.say("all:hi all");
    for user in [&mut alice, &mut bob, &mut bob2] {
        assert_eq!(user.message(), "bob: hi all");
    }
    alice.say("/who");
    assert_eq!(alice.message(), "online alice bob");
    alice.say("/whoami");
    let me: serde_json::Value = serde_json::from_str(&alice.message()).unwrap();
    assert_eq!(me["uid"], "alice");
    assert_eq!(me["remote_port"], alice.writer.local_addr().unwrap().port());
    for key in [
        "id",
        "remote_ip",
        "reactor_id",
        "worker_id",
        "connect_time",
        "last_recv_time",
    ] {
        assert!(me.get(key).is_some(), "{key} in {me}");
    }
    alice.say("/stats");
    let stats: serde_json::Value = serde_json::from_str(&alice.message()).unwrap();
    assert_eq!(stats["connection_num"], 3);
    assert_eq!(stats["worker_num"], 4);
    for key in ["accept_count", "close_count", "request_count"] {
        assert!(stats.get(key).is_some(), "{key} in {stats}");
    }
    assert_eq!(chat.signal(libc::SIGTERM), 0);
}

#[test]
fn bad_uids_and_long_lines_close_the_connection() {
    let chat = Example::start("chat", &[]);
    let mut bad = User::connect(&chat);
    bad.say("no spaces allowed");
    assert!(bad.line().starts_with("error"));
    assert_eq!(bad.line(), "", "closed");
    let mut long = User::login(&chat, "long");
    long.writer.write_all(&vec![b'x'; 64 * 1024 + 10]).unwrap();
    assert_eq!(long.line(), "", "a line over 64 KiB closes the connection");
    let mut ok = User::login(&chat, "ok");
    ok.say(&format!("ok:{}", "y".repeat(1000)));
    assert_eq!(ok.message(), format!("ok: {}", "y".repeat(1000)));
}

#[test]
fn ticks_reach_logged_in_users() {
    let chat = Example::start("chat", &["--tick", "1"]);
    let mut user = User::login(&chat, "listener");
    let tick = user.line();
    let secs: u64 = tick
        .strip_prefix("time ")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a tick, got {tick:?}"));
    assert!(secs > 1_600_000_000);
}

#[test]
fn idle_users_are_closed_by_the_heartbeat() {
    let chat = Example::start("chat", &["--idle", "1"]);
    let mut user = User::login(&chat, "sleepy");
    // Saying nothing: the heartbeat closes the connection.
    assert_eq!(user.line(), "");
}

#[test]
fn bad_flags_fail_with_a_message() {
    for args in [&["--workers", "0"][..], &["--idle", "soon"], &["--bogus"]] {
        let out = std::process::Command::new(example_binary("chat"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("chat:"),
            "{args:?}"
        );
    }
}

#[test]
fn sigusr1_reloads_with_every_connection_kept() {
    let chat = Example::start("chat", &["--workers", "2"]);
    let mut alice = User::login(&chat, "alice");
    let mut bob = User::login(&chat, "bob");
    chat.notify(libc::SIGUSR1);
    wait_until("the reload to be counted", || {
        alice.say("/stats");
        let stats: serde_json::Value = serde_json::from_str(&alice.message()).unwrap();
        stats["reload_count"] == 1
    });
    alice.say("bob:still here");
    assert_eq!(bob.message(), "alice: still here");
    bob.say("/who");
    assert_eq!(bob.message(), "online alice bob");
    assert_eq!(chat.signal(libc::SIGTERM), 0);
}

#[test]
fn two_chat_servers_with_one_redis_are_one_chat() {
    let mut redis = crate::redis::Redis::start();
    let url = redis.url();
    let n1 = Example::start("chat", &["--redis", &url, "--node", "n1"]);
    let n2 = Example::start("chat", &["--redis", &url, "--node", "n2"]);
    let mut alice = User::login(&n1, "alice");
    let mut bob = User::login(&n2, "bob");
    // Presence follows a login within a moment: ask until both are listed.
    wait_until("/who to list both nodes' users", || {
        alice.say("/who");
        alice.message() == "online alice bob"
    });
    alice.say("bob:hello from n1");
    assert_eq!(bob.message(), "alice: hello from n1");
    bob.say("all:hi both");
    assert_eq!(bob.message(), "bob: hi both");
    assert_eq!(alice.message(), "bob: hi both");
    alice.say("carol:there?");
    assert_eq!(alice.message(), "offline carol");
    alice.say("/stats");
    let stats: serde_json::Value = serde_json::from_str(&alice.message()).unwrap();
    assert_eq!(stats["cluster"]["node_id"], "n1");
    assert_eq!(stats["cluster"]["state"], "up");
    assert_eq!(stats["cluster"]["published"], 1, "to bob's node");
    redis.stop();
    alice.say("bob:lost?");
    assert_eq!(
        alice.message(),
        "error: bob: the cluster's Redis is unavailable"
    );
    let mut alice2 = User::login(&n1, "alice2");
    alice2.say("alice:same node");
    assert_eq!(
        alice.message(),
        "alice2: same node",
        "local delivery goes on"
    );
    assert_eq!(n1.signal(libc::SIGTERM), 0);
    assert_eq!(n2.signal(libc::SIGTERM), 0);
}
