//! A chat server: users log in with a uid and talk to each other across workers.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example chat -- [--listen 127.0.0.1:9502] [--workers 4] [--idle SECS] [--tick SECS]
//!     [--redis redis://127.0.0.1:6379 --node NAME [--presence-ttl SECS]]
//! ```
//!
//! It prints `listening on ADDR` when ready. Then, in two terminals, `nc 127.0.0.1 9502`:
//!
//! ```text
//! alice                 → welcome alice           (the first line is your uid)
//! bob:hello             → bob gets "alice: hello" (or you get "offline bob")
//! all:hi everyone       → every logged-in user gets "alice: hi everyone"
//! /who                  → online alice bob
//! /whoami               → your client_info as JSON
//! /stats                → the server's stats as JSON
//! ```
//!
//! With `--redis URL --node NAME`, several chat servers are one chat: run two on different
//! ports with the same Redis and different names, and users on either talk to each other
//! (`bob:hi`, `all:hi`); `/who` lists the users of every node, `/stats` shows the cluster
//! bus under `cluster`. A node killed outright is offline to the others within
//! `--presence-ttl` (default 30 s). If Redis is lost, users on one node still talk to each
//! other, and a message to another node's user answers `error: …`.
//!
//! `--idle N` closes connections that send nothing for N seconds; `--tick N` sends every
//! logged-in user `time <unix seconds>` every N seconds. A line over 64 KiB closes the
//! connection. SIGUSR1 reloads (rebuilds every worker's handler) with every connection kept;
//! `/stats` counts it in `reload_count`. SIGTERM or Ctrl-C: graceful exit, code 0.

use std::{
    collections::BTreeSet,
    io::Write,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use eddy::{
    codec::EofCodec, Bytes, ClusterConfig, ConnId, Context, Cursor, EventHandler, ProcessContext,
    Server, ServerHandle, Uid,
};

/// The longest line, newline excluded.
const MAX_LINE: usize = 64 * 1024;

/// The group every logged-in user joins: `all:` goes to it, on every node.
const LOBBY: &str = "lobby";

struct Chat;

impl Chat {
    fn reply(ctx: &Context<'_>, conn: ConnId, line: &str) {
        if let Err(err) = ctx.send(conn, format!("{line}\n")) {
            tracing::debug!(conn = conn.as_u64(), "reply failed: {err}");
        }
    }

    fn login(ctx: &Context<'_>, conn: ConnId, uid: &str) {
        let valid = !uid.is_empty()
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            Self::reply(ctx, conn, "error: a uid is letters, digits, _ and -");
            let _ = ctx.close(conn);
            return;
        }
        if ctx.bind(conn, uid).is_ok() && ctx.server().join_group(conn, LOBBY).is_ok() {
            Self::reply(ctx, conn, &format!("welcome {uid}"));
        }
    }

    /// Every distinct uid online, sorted: in a cluster from presence, else found by
    /// walking `client_list`.
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

    fn command(ctx: &Context<'_>, conn: ConnId, from: &Uid, line: &str) {
        let server = ctx.server();
        match line {
            "/who" => Self::reply(ctx, conn, &Self::who(server)),
            "/whoami" => {
                let info = ctx
                    .client_info(conn)
                    .and_then(|i| serde_json::to_string(&i).ok());
                Self::reply(ctx, conn, &info.unwrap_or_default());
            }
            "/stats" => {
                let stats = serde_json::to_string(&server.stats()).unwrap_or_default();
                Self::reply(ctx, conn, &stats);
            }
            _ => match line.split_once(':') {
                Some(("all", text)) => {
                    let message = format!("{from}: {text}\n");
                    server.send_to_group(LOBBY, message, &[]);
                }
                Some((to, text)) => {
                    let delivery = server.send_to_uid(&to.into(), format!("{from}: {text}\n"));
                    match delivery.cluster {
                        _ if delivery.reached_anyone() => {}
                        None => Self::reply(ctx, conn, &format!("offline {to}")),
                        Some(err) => Self::reply(ctx, conn, &format!("error: {to}: {err}")),
                    }
                }
                None => Self::reply(
                    ctx,
                    conn,
                    "error: try <uid>:<text>, all:<text>, /who, /whoami or /stats",
                ),
            },
        }
    }
}

impl EventHandler for Chat {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        let Ok(line) = std::str::from_utf8(&packet) else {
            Self::reply(ctx, conn, "error: lines are UTF-8");
            return;
        };
        let line = line.trim_end_matches(['\n', '\r']);
        match ctx.client_info(conn).and_then(|info| info.uid) {
            None => Self::login(ctx, conn, line),
            Some(from) => Self::command(ctx, conn, &from, line),
        }
    }
}

struct Options {
    listen: String,
    workers: usize,
    idle: Option<u64>,
    tick: Option<u64>,
    redis: Option<String>,
    node: Option<String>,
    presence_ttl: u64,
}

const USAGE: &str = "usage: chat [--listen ADDR] [--workers N] [--idle SECS] [--tick SECS] \
                     [--redis URL --node NAME [--presence-ttl SECS]]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9502".into(),
        workers: 4,
        idle: None,
        tick: None,
        redis: None,
        node: None,
        presence_ttl: 30,
    };
    while let Some(flag) = args.next() {
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
            "--idle" => options.idle = Some(number(value()?)?),
            "--tick" => options.tick = Some(number(value()?)?),
            "--redis" => options.redis = Some(value()?),
            "--node" => options.node = Some(value()?),
            "--presence-ttl" => options.presence_ttl = number(value()?)?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}` (try --help)")),
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
            .broadcast_local(format!("time {now}\n"), |target| target.is_bound());
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
            eprintln!("chat: {err}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Server::builder()
        .listen(options.listen)
        .codec(EofCodec::line())
        .package_max_length(MAX_LINE + 1)
        .worker_num(options.workers);
    if let Some(idle) = options.idle {
        builder = builder.heartbeat_idle_time(Duration::from_secs(idle));
    }
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
            eprintln!("chat: {err}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    match server.run() {
        Ok(report) => {
            tracing::info!(?report, "bye");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("chat: {err}");
            ExitCode::FAILURE
        }
    }
}
