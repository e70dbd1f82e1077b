//! The cluster bus with a real `redis-server`: three nodes in this process (and the chat
//! example as a node that can be killed), users on different nodes reaching each other by
//! uid, group and broadcast, presence expiring, Redis lost and back.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use eddy::{
    codec::EofCodec, BuildError, Bytes, ClusterConfig, ClusterError, ClusterState, ConnId, Context,
    EventHandler, RunningServer, ServerHandle, StartMode, Uid,
};

use crate::{redis::Redis, util::*};

/// `login NAME` binds the connection to NAME, `join GROUP` joins a group; each answered.
struct Node;

impl EventHandler for Node {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let line = String::from_utf8_lossy(&packet);
        let line = line.trim_end();
        let reply = if let Some(uid) = line.strip_prefix("login ") {
            ctx.bind(conn, uid).map(|()| format!("ok {uid}"))
        } else if let Some(group) = line.strip_prefix("join ") {
            let joined = ctx.server().join_group(conn, group);
            joined.map(|()| format!("joined {group}"))
        } else {
            return;
        };
        let _ = ctx.send(
            conn,
            format!("{}\n", reply.unwrap_or_else(|e| e.to_string())),
        );
    }
}

fn config(redis: &Redis, node: &str) -> ClusterConfig {
    ClusterConfig {
        presence_ttl: Duration::from_secs(1),
        reconnect_max_backoff: Duration::from_millis(100),
        command_timeout: Duration::from_millis(500),
        ..ClusterConfig::new(redis.url(), node)
    }
}

fn node(redis: &Redis, name: &str) -> (RunningServer, SocketAddr) {
    node_with(config(redis, name))
}

fn node_with(config: ClusterConfig) -> (RunningServer, SocketAddr) {
    let builder = builder().codec(EofCodec::line()).cluster(config);
    let (server, addr) = start(builder, || Node);
    wait_until("the node is up and subscribed", || {
        let cluster = server.handle().stats().cluster.unwrap();
        cluster.state == ClusterState::Up && cluster.subscribed
    });
    (server, addr)
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = connect(addr);
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn say(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        self.line()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line in time");
        line.trim_end().to_string()
    }
}

/// Log in as `uid` on the node at `addr`, and wait until `seen_from` finds it online.
fn login(addr: SocketAddr, uid: &str, seen_from: &ServerHandle) -> Client {
    let mut client = Client::connect(addr);
    assert_eq!(client.say(&format!("login {uid}")), format!("ok {uid}"));
    wait_until("the uid is in presence", || {
        seen_from.is_uid_online(&Uid::from(uid)) == Ok(true)
    });
    client
}

fn direct(server: &RunningServer) -> u64 {
    server.handle().stats().cluster.unwrap().received_direct
}

#[test]
fn a_uid_on_another_node_is_reached_through_that_node_only_and_once() {
    let redis = Redis::start();
    let (n1, _a1) = node(&redis, "n1");
    let (n2, a2) = node(&redis, "n2");
    let (n3, a3) = node(&redis, "n3");
    let h1 = n1.handle();
    let mut bob = login(a3, "bob", h1);
    let mut carol = login(a2, "carol", h1);
    let d = h1.send_to_uid(&"bob".into(), "hi bob\n");
    assert_eq!((d.delivered(), d.nodes, d.cluster), (0, 1, None), "{d:?}");
    assert_eq!(bob.line(), "hi bob");
    assert_eq!(direct(&n3), 1, "node 3's bus got it");
    assert_eq!(
        (direct(&n2), direct(&n1)),
        (0, 0),
        "no other node's bus did"
    );
    for i in 0..200 {
        let d = h1.send_to_uid(&"bob".into(), format!("m{i}\n"));
        assert_eq!(d.nodes, 1);
    }
    h1.send_to_uid(&"bob".into(), "end\n");
    for i in 0..200 {
        assert_eq!(bob.line(), format!("m{i}"), "in order, each once");
    }
    assert_eq!(bob.line(), "end", "nothing twice");
    assert_eq!(direct(&n3), 202);
    assert_eq!(direct(&n2), 0);
    let nobody = h1.send_to_uid(&"nobody".into(), "x\n");
    assert!(
        !nobody.reached_anyone() && nobody.cluster.is_none(),
        "{nobody:?}"
    );
    // The other nodes can reach carol too, and a node's own uid stays local.
    assert_eq!(n3.handle().send_to_uid(&"carol".into(), "c\n").nodes, 1);
    assert_eq!(carol.line(), "c");
    let local = n3.handle().send_to_uid(&"bob".into(), "local\n");
    assert_eq!((local.delivered(), local.nodes), (1, 0));
    assert_eq!(bob.line(), "local");
    assert_eq!(direct(&n3), 202, "a local send does not cross the bus");
    // The delivery thread counts after it sent: the count may trail the read a moment.
    let cluster = || n3.handle().stats().cluster.unwrap();
    wait_until("every delivery counted", || cluster().delivered == 202);
    assert_eq!((cluster().dropped, cluster().presence_dropped), (0, 0));
}

#[test]
fn broadcasts_and_groups_span_the_nodes() {
    let redis = Redis::start();
    let (n1, a1) = node(&redis, "n1");
    let (n2, a2) = node(&redis, "n2");
    let (n3, a3) = node(&redis, "n3");
    let h2 = n2.handle();
    let mut alice = login(a1, "alice", h2);
    let mut carol = login(a2, "carol", h2);
    let mut bob = login(a3, "bob", h2);
    let d = h2.broadcast("to all\n");
    assert_eq!((d.delivered(), d.nodes, d.cluster), (1, 2, None), "{d:?}");
    // One message on the broadcast channel, whatever the number of nodes it reached.
    assert_eq!(h2.stats().cluster.unwrap().published, 1);
    for user in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(user.line(), "to all");
    }
    assert_eq!(alice.say("join room"), "joined room");
    assert_eq!(bob.say("join room"), "joined room");
    wait_until("both members in presence", || {
        h2.group_count("room") == Ok(2)
    });
    let d = h2.send_to_group("room", "in the room\n", &[]);
    assert_eq!((d.delivered(), d.nodes), (0, 2), "{d:?}");
    assert_eq!(alice.line(), "in the room");
    assert_eq!(bob.line(), "in the room");
    let h1 = n1.handle();
    let alice_conn = h1.uid_connections(&"alice".into())[0];
    let d = h1.send_to_group("room", "not alice\n", &[alice_conn]);
    assert_eq!((d.delivered(), d.nodes), (0, 1));
    assert_eq!(bob.line(), "not alice");
    // Carol is in no group, and alice was excluded: the next line each gets is this one.
    h2.broadcast("end\n");
    for user in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(user.line(), "end", "nothing more, nothing twice");
    }
    wait_until("three uids", || h1.uid_count() == Ok(3));
    let who = h1.online_uids(10).unwrap();
    assert_eq!(
        who,
        vec![Uid::from("alice"), Uid::from("bob"), Uid::from("carol")]
    );
    assert_eq!(h1.online_uids(2).unwrap().len(), 2);
    // Leaving: the group shrinks everywhere, and a closed connection leaves by itself.
    drop(bob);
    wait_until("bob's close leaves the group and presence", || {
        h1.group_count("room") == Ok(1) && h1.is_uid_online(&"bob".into()) == Ok(false)
    });
    assert_eq!(n3.handle().stats().group_num, 0);
}

#[test]
fn a_node_that_dies_goes_offline_within_the_ttl_and_one_that_stops_at_once() {
    let redis = Redis::start();
    let (n1, _) = node(&redis, "n1");
    let h1 = n1.handle();
    // Node 3 is the chat example, so it can be killed outright.
    let url = redis.url();
    let n3 = Example::start(
        "chat",
        &["--redis", &url, "--node", "n3", "--presence-ttl", "1"],
    );
    let mut bob = Client::connect(n3.addr);
    assert_eq!(bob.say("bob"), "welcome bob");
    wait_until("bob in presence", || {
        h1.is_uid_online(&"bob".into()) == Ok(true)
    });
    let killed = Instant::now();
    drop(n3); // SIGKILL: no goodbye to Redis.
    wait_until("bob offline", || {
        h1.is_uid_online(&"bob".into()) == Ok(false)
    });
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "offline after {took:?}, TTL 1 s"
    );
    let gone = h1.send_to_uid(&"bob".into(), "x\n");
    assert!(!gone.reached_anyone(), "{gone:?}");
    // A node shut down gracefully leaves presence at once.
    let (n2, a2) = node(&redis, "n2");
    let _carol = login(a2, "carol", h1);
    let stopped = Instant::now();
    n2.shutdown().unwrap();
    assert_eq!(h1.is_uid_online(&"carol".into()), Ok(false));
    assert!(stopped.elapsed() < Duration::from_secs(1));
    assert_eq!(redis.command(&["EXISTS", "eddy:uids:n2"]), "0");
}

#[test]
fn redis_lost_and_back_recovers_without_restarting_the_nodes() {
    let mut redis = Redis::start();
    let (n1, a1) = node(&redis, "n1");
    let (n2, a2) = node(&redis, "n2");
    let (h1, h2) = (n1.handle().clone(), n2.handle().clone());
    let mut alice = login(a1, "alice", &h2);
    let mut bob = login(a2, "bob", &h1);
    redis.stop();
    wait_until("both nodes know", || {
        [&h1, &h2]
            .iter()
            .all(|h| h.stats().cluster.unwrap().state == ClusterState::Down)
    });
    // Remote sends fail at once, without waiting for Redis (the command timeout is 500 ms;
    // the bound leaves a loaded machine room for a few preemptions); local delivery goes on.
    let began = Instant::now();
    let d = h1.send_to_uid(&"bob".into(), "lost\n");
    assert!(
        began.elapsed() < Duration::from_millis(250),
        "{:?}",
        began.elapsed()
    );
    assert_eq!((d.nodes, d.cluster), (0, Some(ClusterError::Unavailable)));
    assert_eq!(
        h1.is_uid_online(&"bob".into()),
        Err(ClusterError::Unavailable)
    );
    let b = h1.broadcast("local only\n");
    assert_eq!(
        (b.delivered(), b.cluster),
        (1, Some(ClusterError::Unavailable))
    );
    assert_eq!(alice.line(), "local only");
    assert_eq!(h1.send_to_uid(&"alice".into(), "still\n").delivered(), 1);
    assert_eq!(alice.line(), "still");
    // Back, empty (no persistence): the nodes reconnect and register their uids again.
    redis.restart();
    wait_until("presence written again", || {
        h1.is_uid_online(&"bob".into()) == Ok(true) && h2.is_uid_online(&"alice".into()) == Ok(true)
    });
    wait_until("both subscribed", || {
        [&h1, &h2]
            .iter()
            .all(|h| h.stats().cluster.unwrap().subscribed)
    });
    let d = h1.send_to_uid(&"bob".into(), "back\n");
    assert_eq!((d.nodes, d.cluster), (1, None), "{d:?}");
    assert_eq!(
        bob.line(),
        "back",
        "the lost message is not replayed, nor sent twice"
    );
    let stats = h1.stats().cluster.unwrap();
    assert!(
        stats.reconnects >= 1 && stats.publish_failed >= 2,
        "{stats:?}"
    );
}

#[test]
fn a_redis_slow_for_a_moment_fails_the_late_call_and_is_not_taken_for_lost() {
    let redis = Redis::start();
    let (n1, _) = node_with(ClusterConfig {
        command_timeout: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(5),
        presence_ttl: Duration::from_secs(30),
        ..config(&redis, "n1")
    });
    let h1 = n1.handle().clone();
    // Redis holds every command for 800 ms: a call waits its 100 ms and gives up.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "800", "ALL"]), "OK");
    assert_eq!(
        h1.is_uid_online(&"ghost".into()),
        Err(ClusterError::Unavailable)
    );
    // Only that call's connection is dropped; the presence thread asks Redis itself, with
    // the longer wait, and Redis answers once the pause is over.
    let stats = h1.stats().cluster.unwrap();
    assert_eq!(stats.state, ClusterState::Up, "{stats:?}");
    wait_until("calls answered again", || {
        h1.is_uid_online(&"ghost".into()) == Ok(false)
    });
    let stats = h1.stats().cluster.unwrap();
    assert_eq!(
        (stats.state, stats.reconnects),
        (ClusterState::Up, 0),
        "no reconnection, no resync: {stats:?}"
    );
}

#[test]
fn a_redis_that_answers_pings_but_not_the_calls_is_counted_down() {
    let redis = Redis::start();
    let (n1, _) = node_with(ClusterConfig {
        command_timeout: Duration::from_millis(100),
        connections: 1,
        // (No heartbeat during the test: its late answers would count the node down too.)
        presence_ttl: Duration::from_secs(3600),
        ..config(&redis, "n1")
    });
    let h1 = n1.handle().clone();
    // Scripts and publishes wait, PINGs do not: each call times out, its connection is
    // replaced, and the next one times out too. Past the replacements' budget the node
    // stops trying: Down, calls fail at once, reconnection with back-off.
    assert_eq!(redis.command(&["CLIENT", "PAUSE", "20000", "WRITE"]), "OK");
    wait_until("counted down", || {
        let _ = h1.is_uid_online(&"ghost".into());
        h1.stats().cluster.unwrap().state == ClusterState::Down
    });
    assert_eq!(redis.command(&["CLIENT", "UNPAUSE"]), "OK");
    wait_until("back", || h1.is_uid_online(&"ghost".into()) == Ok(false));
}

#[test]
fn a_node_restarted_while_redis_still_holds_its_former_subscription_starts() {
    let redis = Redis::start();
    // What a crashed host leaves: a connection still subscribed to the node's channel,
    // which Redis drops only once TCP keepalive gives up on it.
    let mut stale = std::process::Command::new("redis-cli")
        .args([
            "-p",
            redis.url().rsplit(':').next().unwrap(),
            "SUBSCRIBE",
            "eddy:bus:n1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli (installed with redis-server)");
    wait_until("the stale subscription", || {
        redis
            .command(&["PUBSUB", "NUMSUB", "eddy:bus:n1"])
            .ends_with('1')
    });
    // The node with that id starts (told, not refused), and is reached.
    let (n1, a1) = node(&redis, "n1");
    let (n2, _) = node(&redis, "n2");
    let mut alice = login(a1, "alice", n2.handle());
    let d = n2.handle().send_to_uid(&"alice".into(), "hi\n");
    assert_eq!((d.nodes, d.cluster), (1, None), "{d:?}");
    assert_eq!(alice.line(), "hi");
    drop(n1);
    let _ = stale.kill();
    let _ = stale.wait();
}

#[test]
fn redis_down_at_start_is_refused_or_degraded_as_configured() {
    let redis = Redis::start();
    let url = redis.url();
    drop(redis);
    let refused = builder()
        .cluster(ClusterConfig::new(url.clone(), "n1"))
        .build(|| Node);
    match refused {
        Err(BuildError::Cluster { url: named, .. }) => assert_eq!(named, url),
        other => panic!("expected BuildError::Cluster, got {other:?}"),
    }
    let degraded = ClusterConfig {
        on_unavailable_at_start: StartMode::Degraded,
        connect_timeout: Duration::from_millis(100),
        ..ClusterConfig::new(url, "n1")
    };
    let (server, addr) = start(builder().codec(EofCodec::line()).cluster(degraded), || Node);
    let h = server.handle();
    assert_eq!(h.stats().cluster.unwrap().state, ClusterState::Down);
    let mut alice = Client::connect(addr);
    assert_eq!(alice.say("login alice"), "ok alice");
    assert_eq!(h.send_to_uid(&"alice".into(), "here\n").delivered(), 1);
    assert_eq!(alice.line(), "here");
    let d = h.send_to_uid(&"bob".into(), "x");
    assert_eq!(d.cluster, Some(ClusterError::Unavailable));
    let bad = builder().cluster(ClusterConfig::new("redis://127.0.0.1:1", "no spaces"));
    match bad.build(|| Node) {
        Err(BuildError::Config(err)) => assert_eq!(err.setting, "cluster.node_id"),
        other => panic!("expected a ConfigError, got {other:?}"),
    }
}

#[test]
fn without_a_cluster_the_same_calls_answer_for_this_node() {
    let (server, addr) = start(builder().codec(EofCodec::line()), || Node);
    let h = server.handle();
    let mut alice = Client::connect(addr);
    assert_eq!(alice.say("login alice"), "ok alice");
    assert_eq!(alice.say("join room"), "joined room");
    assert_eq!(h.is_uid_online(&"alice".into()), Ok(true));
    assert_eq!(h.is_uid_online(&"bob".into()), Ok(false));
    assert_eq!((h.uid_count(), h.group_count("room")), (Ok(1), Ok(1)));
    assert_eq!(h.online_uids(5), Ok(vec![Uid::from("alice")]));
    let d = h.send_to_group("room", "g\n", &[]);
    assert_eq!((d.delivered(), d.nodes, d.cluster), (1, 0, None));
    assert_eq!(alice.line(), "g");
    assert!(h.stats().cluster.is_none() && h.node_id().is_none());
}

type WsClient = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A WebSocket user of the ws_chat example, logged in as `uid`.
fn ws_login(chat: &Example, uid: &str) -> WsClient {
    let stream = connect(chat.addr);
    let url = format!("ws://{}/", chat.addr);
    let plain = tungstenite::stream::MaybeTlsStream::Plain(stream);
    let (mut socket, _) = tungstenite::client::client(url, plain).expect("handshake");
    socket.send(tungstenite::Message::text(uid)).unwrap();
    assert_eq!(ws_text(&mut socket), format!("welcome {uid}"));
    socket
}

fn ws_text(socket: &mut WsClient) -> String {
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => return text.to_string(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => panic!("no message: {err}"),
        }
    }
}

#[test]
fn ws_chat_users_on_two_nodes_talk() {
    let redis = Redis::start();
    let url = redis.url();
    let n1 = Example::start("ws_chat", &["--redis", &url, "--node", "w1"]);
    let n2 = Example::start("ws_chat", &["--redis", &url, "--node", "w2"]);
    let mut alice = ws_login(&n1, "alice");
    let mut bob = ws_login(&n2, "bob");
    wait_until("/who to list both", || {
        bob.send(tungstenite::Message::text("/who")).unwrap();
        ws_text(&mut bob) == "online alice bob"
    });
    bob.send(tungstenite::Message::text("alice:hi from w2"))
        .unwrap();
    assert_eq!(ws_text(&mut alice), "bob: hi from w2");
    alice
        .send(tungstenite::Message::text("all:hello all"))
        .unwrap();
    assert_eq!(ws_text(&mut alice), "alice: hello all");
    assert_eq!(ws_text(&mut bob), "alice: hello all");
    assert_eq!(n1.signal(libc::SIGTERM), 0);
    assert_eq!(n2.signal(libc::SIGTERM), 0);
}

#[test]
fn a_uid_bound_on_two_nodes_gets_every_send_on_both_once() {
    let redis = Redis::start();
    let (n1, a1) = node(&redis, "n1");
    let (n2, _) = node(&redis, "n2");
    let (n3, a3) = node(&redis, "n3");
    let (h1, h3) = (n1.handle(), n3.handle());
    let mut phone = login(a3, "bob", h1);
    let mut laptop = Client::connect(a1);
    assert_eq!(laptop.say("login bob"), "ok bob");
    // Node 1 learns it shares bob when it registers him, node 3 at its next heartbeat.
    let shared = |h: &ServerHandle| h.stats().cluster.unwrap().shared_uids;
    wait_until("both nodes know bob is on both", || {
        shared(h1) == 1 && shared(h3) == 1
    });
    for (from, local) in [(h1, 1), (h3, 1), (n2.handle(), 0)] {
        let d = from.send_to_uid(&"bob".into(), "to both\n");
        assert_eq!((d.delivered(), d.nodes), (local, 2 - local), "{d:?}");
    }
    for device in [&mut phone, &mut laptop] {
        for _ in 0..3 {
            assert_eq!(device.line(), "to both");
        }
    }
    // Once the laptop logs off, bob is node 3's alone again.
    drop(laptop);
    wait_until("node 3 alone holds bob", || {
        shared(h3) == 0 && shared(h1) == 0
    });
    h3.send_to_uid(&"bob".into(), "end\n");
    assert_eq!(phone.line(), "end", "nothing twice");
}

#[test]
fn a_node_slower_than_the_bus_drops_and_counts_never_repeats() {
    let redis = Redis::start();
    let (n1, _) = node(&redis, "n1");
    // One message of room: a burst overflows it whenever delivery falls behind.
    let tiny = ClusterConfig {
        inbound_queue: 1,
        ..config(&redis, "n2")
    };
    let (n2, a2) = start(builder().codec(EofCodec::line()).cluster(tiny), || Node);
    let h2 = n2.handle();
    wait_until("n2 subscribed", || h2.stats().cluster.unwrap().subscribed);
    let mut carol = login(a2, "carol", n1.handle());
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let h1 = n1.handle().clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    assert_eq!(h1.broadcast(format!("b{t}-{i}\n")).nodes, 1);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let cluster = || h2.stats().cluster.unwrap();
    wait_until("every broadcast read, then delivered or dropped", || {
        let c = cluster();
        c.received_broadcast == 2000 && c.delivered + c.dropped == 2000
    });
    let delivered = cluster().delivered;
    h2.send_to_uid(&"carol".into(), "end\n");
    let mut lines = 0;
    while carol.line() != "end" {
        lines += 1;
    }
    assert_eq!(
        lines, delivered,
        "what was counted delivered arrived, once each"
    );
    println!("dropped {} of 2000", cluster().dropped);
}
