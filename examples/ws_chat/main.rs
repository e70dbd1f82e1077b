//! The seeds' chat as one WebSocket server: uid login, messages to a uid, broadcast, a
//! timer, and a web page on the same port.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example ws_chat -- [--listen 127.0.0.1:9505] [--workers 4] [--tick SECS]
//!     [--tls-cert CERT.pem --tls-key KEY.pem | --tls-self-signed]
//!     [--redis redis://127.0.0.1:6379 --node NAME [--presence-ttl SECS]]
//! ```
//!
//! It prints `listening on ADDR` when ready. Open `http://127.0.0.1:9505/` in two browser tabs
//! (a small page, no external assets), log in as `alice` and `bob`, and type `bob:hello` in
//! alice's tab. Or use any WebSocket client on `ws://127.0.0.1:9505/`, one text message each:
//!
//! ```text
//! alice                 → welcome alice           (the first message is your uid)
//! bob:hello             → bob gets "alice: hello" (or you get "offline bob")
//! all:hi everyone       → every logged-in user gets "alice: hi everyone"
//! /who                  → online alice bob
//! ```
//!
//! With `--redis URL --node NAME`, several ws_chat servers (different ports, one Redis) are
//! one chat: users on either talk to each other and `/who` lists everyone's users. If
//! Redis is lost, a message to another node's user answers `error: …`.
//!
//! `--tick N` sends every logged-in user `time <unix seconds>` every N seconds. SIGTERM or
//! Ctrl-C: graceful exit (close frames 1001), code 0.
//!
//! With `--tls-cert` and `--tls-key` (or `--tls-self-signed`: a certificate for `localhost`
//! made at start) the page and the socket are served over `https://` and `wss://`, and the
//! ready line names the certificate: `listening on ADDR (TLS, certificate PATH)`. Open
//! `https://localhost:9505/` (accept the self-signed certificate, or import PATH).

use std::{
    collections::BTreeSet,
    io::Write,
    process::ExitCode,
    time::{Duration, SystemTime},
};

#[path = "../common/tls.rs"]
mod tls;

use eddy::{
    Bytes, ClusterConfig, ConnId, Context, Cursor, EventHandler, HttpRequest, HttpResponse,
    ProcessContext, Server, ServerHandle, Uid, WebSocketConfig,
};

/// The page, served on `GET /`.
const PAGE: &str = include_str!("page.html");

/// The group every logged-in user joins: `all:` goes to it, on every node.
const LOBBY: &str = "lobby";

struct Chat;

impl Chat {
    fn reply(ctx: &Context<'_>, conn: ConnId, text: &str) {
        if let Err(err) = ctx.send_text(conn, text) {
            tracing::debug!(conn = conn.as_u64(), "reply failed: {err}");
        }
    }

    fn login(ctx: &Context<'_>, conn: ConnId, uid: &str) {
        let valid = !uid.is_empty()
            && uid.len() <= 64
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            Self::reply(ctx, conn, "error: a uid is letters, digits, _ and -");
            let _ = ctx.disconnect(conn, 4000, "bad uid");
            return;
        }
        if ctx.bind(conn, uid).is_ok() && ctx.server().join_group(conn, LOBBY).is_ok() {
            Self::reply(ctx, conn, &format!("welcome {uid}"));
        }
    }

    /// Every distinct uid online, sorted (in a cluster, of every node).
    fn who(server: &ServerHandle) -> String {
        if server.node_id().is_some() {
            return match server.online_uids(10_000) {
                Ok(uids) => uids
                    .iter()
                    .fold(String::from("online"), |line, uid| format!("{line} {uid}")),
                Err(err) => format!("error: {err}"),
            };
        }
        let mut uids = BTreeSet::new();
        let mut cursor = Cursor::START;
        loop {
            let (page, next) = server.client_list(cursor, 100);
            if page.is_empty() {
                break;
            }
            for conn in page {
                if let Some(uid) = server.client_info(conn).and_then(|info| info.uid) {
                    uids.insert(uid.to_string());
                }
            }
            cursor = next;
        }
        let mut line = String::from("online");
        for uid in uids {
            line.push(' ');
            line.push_str(&uid);
        }
        line
    }

    fn command(ctx: &Context<'_>, conn: ConnId, from: &Uid, text: &str) {
        let server = ctx.server();
        if text == "/who" {
            return Self::reply(ctx, conn, &Self::who(server));
        }
        match text.split_once(':') {
            Some(("all", text)) => {
                server.send_to_group(LOBBY, format!("{from}: {text}"), &[]);
            }
            Some((to, text)) => {
                let delivery = server.send_to_uid(&to.into(), format!("{from}: {text}"));
                match delivery.cluster {
                    _ if delivery.reached_anyone() => {}
                    None => Self::reply(ctx, conn, &format!("offline {to}")),
                    Some(err) => Self::reply(ctx, conn, &format!("error: {to}: {err}")),
                }
            }
            None => Self::reply(ctx, conn, "error: try <uid>:<text>, all:<text> or /who"),
        }
    }
}

impl EventHandler for Chat {
    fn on_request(
        &mut self,
        _: &mut Context<'_>,
        _: ConnId,
        request: &HttpRequest,
    ) -> HttpResponse {
        match (request.method(), request.path()) {
            ("GET", "/" | "/index.html") => HttpResponse::html(PAGE),
            ("GET", _) => HttpResponse::text(404, "not found\n"),
            _ => HttpResponse::text(405, "GET only\n"),
        }
    }

    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Bytes) {
        let Ok(text) = std::str::from_utf8(&message) else {
            return Self::reply(ctx, conn, "error: messages are text");
        };
        match ctx.client_info(conn).and_then(|info| info.uid) {
            None => Self::login(ctx, conn, text.trim()),
            Some(from) => Self::command(ctx, conn, &from, text),
        }
    }
}

struct Options {
    listen: String,
    workers: usize,
    tick: Option<u64>,
    tls: tls::TlsFlags,
    redis: Option<String>,
    node: Option<String>,
    presence_ttl: u64,
}

const USAGE: &str = "usage: ws_chat [--listen ADDR] [--workers N] [--tick SECS] \
    [--tls-cert CERT.pem --tls-key KEY.pem | --tls-self-signed] \
    [--redis URL --node NAME [--presence-ttl SECS]]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9505".into(),
        workers: 4,
        tick: None,
        tls: tls::TlsFlags::default(),
        redis: None,
        node: None,
        presence_ttl: 30,
    };
    while let Some(flag) = args.next() {
        if options.tls.take(&flag, &mut args)? {
            continue;
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
        };
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--workers" => options.workers = number(value()?)? as usize,
            "--tick" => options.tick = Some(number(value()?)?),
            "--redis" => options.redis = Some(value()?),
            "--node" => options.node = Some(value()?),
            "--presence-ttl" => options.presence_ttl = number(value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}` ({USAGE})")),
        }
    }
    if options.redis.is_some() != options.node.is_some() {
        return Err("--redis and --node go together".into());
    }
    Ok(options)
}

/// A user thread: every `every`, send each logged-in user the time, until the server stops.
fn ticker(ctx: &ProcessContext, every: Duration) {
    while !ctx.wait_stop(every) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ctx.server()
            .broadcast_local(format!("time {now}"), |target| target.is_bound());
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("ws_chat: {err}");
            return ExitCode::from(2);
        }
    };
    let tls = match options.tls.config() {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("ws_chat: {err}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Server::builder().listen_ws(options.listen);
    if let Some((config, _)) = &tls {
        builder = builder.tls(config.clone());
    }
    // Deflate on: browsers offer it, and chat text compresses well.
    let mut builder = builder
        .websocket(WebSocketConfig::default().deflate(true))
        .worker_num(options.workers);
    if let (Some(url), Some(node)) = (options.redis, options.node) {
        builder = builder.cluster(ClusterConfig {
            presence_ttl: Duration::from_secs(options.presence_ttl),
            ..ClusterConfig::new(url, node)
        });
    }
    if let Some(secs) = options.tick {
        let every = Duration::from_secs(secs);
        builder = builder.add_process("chat-ticker", move |ctx| ticker(ctx, every));
    }
    let server = match builder.build(|| Chat) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("ws_chat: {err}");
            return ExitCode::from(2);
        }
    };
    let cert = tls.as_ref().map(|(_, cert)| cert.as_path());
    println!("{}", tls::listening_line(server.local_addr(), cert));
    let _ = std::io::stdout().flush();
    match server.run() {
        Ok(report) => {
            tracing::info!(?report, "bye");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ws_chat: {err}");
            ExitCode::FAILURE
        }
    }
}
