//! A WebSocket echo server: every text or binary message comes back unchanged, with the same
//! opcode.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example ws_echo -- [--listen 127.0.0.1:9504] [--workers N]
//!     [--dispatch fd|round-robin|idle|ip|uid|reactor] [--max-message BYTES] [--no-deflate]
//! ```
//!
//! It prints `listening on ADDR` when ready. Then point any WebSocket client at it, e.g. in
//! a browser's console: `s = new WebSocket("ws://127.0.0.1:9504"); s.onmessage = e =>
//! console.log(e.data); s.onopen = () => s.send("hello")` logs `hello`. A plain HTTP GET gets
//! `426 Upgrade Required`. SIGTERM or Ctrl-C: graceful exit (close frames 1001), code 0.

use std::{io::Write, process::ExitCode};

use eddy::{
    Bytes, ConnId, Context, DispatchMode, EventHandler, Server, WebSocketConfig, WsMessage,
};

struct Echo;

impl EventHandler for Echo {
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: WsMessage) {
        if let Err(err) = ctx.send_opcode(conn, message.opcode, &message.data) {
            tracing::debug!(conn = conn.as_u64(), "echo failed: {err}");
        }
    }

    fn on_receive(&mut self, _: &mut Context<'_>, _: ConnId, _: Bytes) {}
}

struct Options {
    listen: String,
    workers: Option<usize>,
    dispatch: DispatchMode,
    max_message: usize,
    deflate: bool,
}

const USAGE: &str = "usage: ws_echo [--listen ADDR] [--workers N] \
    [--dispatch fd|round-robin|idle|ip|uid|reactor] [--max-message BYTES] [--no-deflate]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9504".into(),
        workers: None,
        dispatch: DispatchMode::Fd,
        max_message: 16 << 20,
        deflate: true,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
        };
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--workers" => options.workers = Some(number(value()?)?),
            "--dispatch" => options.dispatch = value()?.parse()?,
            "--max-message" => options.max_message = number(value()?)?,
            "--no-deflate" => options.deflate = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}` ({USAGE})")),
        }
    }
    Ok(options)
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
            eprintln!("ws_echo: {err}");
            return ExitCode::from(2);
        }
    };
    let websocket = WebSocketConfig::default()
        .max_message_size(options.max_message)
        .deflate(options.deflate);
    // Room for the echo of a whole message and what follows it.
    let buffer = options
        .max_message
        .saturating_mul(4)
        .clamp(8 << 20, 1 << 30);
    let mut builder = Server::builder()
        .listen_ws(options.listen)
        .websocket(websocket)
        .dispatch_mode(options.dispatch)
        .socket_buffer_size(buffer);
    if let Some(n) = options.workers {
        builder = builder.worker_num(n);
    }
    let server = match builder.build(|| Echo) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("ws_echo: {err}");
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
            eprintln!("ws_echo: {err}");
            ExitCode::FAILURE
        }
    }
}
