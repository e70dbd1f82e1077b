//! An echo server: every packet comes back whole.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example echo -- [--listen 127.0.0.1:9501] [--reactors N] [--workers N]
//!     [--dispatch fd|round-robin|idle|ip|uid|reactor] [--codec length|eof|line|raw] [--max-packet BYTES]
//! ```
//!
//! It prints `listening on ADDR` when ready. Then, with the default length framing (a 4-byte
//! big-endian body length, then the body):
//!
//! ```text
//! printf '\x00\x00\x00\x05hello' | nc 127.0.0.1 9501 | xxd     # the same 9 bytes come back
//! ```
//!
//! or start it with `--codec line` and type lines into `nc 127.0.0.1 9501`. SIGTERM or Ctrl-C
//! shuts it down gracefully (exit code 0).

use std::{io::Write, process::ExitCode};

use eddy::{
    codec::{Codec, EofCodec, LengthCodec, RawCodec},
    Bytes, ConnId, Context, DispatchMode, EventHandler, Server,
};

struct Echo;

impl EventHandler for Echo {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        if let Err(err) = ctx.send(conn, &packet) {
            tracing::warn!(conn = conn.as_u64(), "echo failed: {err}");
        }
    }
}

struct Options {
    listen: String,
    reactors: Option<usize>,
    workers: Option<usize>,
    dispatch: DispatchMode,
    codec: Box<dyn FnOnce(eddy::ServerBuilder) -> eddy::ServerBuilder>,
    max_packet: usize,
}

fn with_codec(codec: impl Codec) -> Box<dyn FnOnce(eddy::ServerBuilder) -> eddy::ServerBuilder> {
    Box::new(move |builder| builder.codec(codec))
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9501".into(),
        reactors: None,
        workers: None,
        dispatch: DispatchMode::Fd,
        codec: with_codec(LengthCodec::new()),
        max_packet: 2 * 1024 * 1024,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--reactors" => options.reactors = Some(number(value()?)?),
            "--workers" => options.workers = Some(number(value()?)?),
            "--dispatch" => options.dispatch = value()?.parse()?,
            "--max-packet" => options.max_packet = number(value()?)?,
            "--codec" => {
                options.codec = match value()?.as_str() {
                    "length" => with_codec(LengthCodec::new()),
                    "eof" => with_codec(EofCodec::new(b"\r\n".to_vec())),
                    "line" => with_codec(EofCodec::line()),
                    "raw" => with_codec(RawCodec),
                    other => {
                        return Err(format!("unknown codec `{other}` (length, eof, line, raw)"))
                    }
                }
            }
            "-h" | "--help" => {
                return Err("usage: echo [--listen ADDR] [--reactors N] [--workers N] \
                     [--dispatch fd|round-robin|idle|ip|uid|reactor] [--codec length|eof|line|raw] \
                     [--max-packet BYTES]"
                    .into())
            }
            other => return Err(format!("unknown flag `{other}` (try --help)")),
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
            eprintln!("echo: {err}");
            return ExitCode::from(2);
        }
    };
    // Room for the echo of everything already read, so a slow reader never loses a byte: the
    // default high watermark leaves `max_queued_bytes + package_max_length + one read` free.
    let buffer = options.max_packet.saturating_mul(4).clamp(8 << 20, 1 << 30);
    let mut builder = Server::builder()
        .listen(options.listen)
        .dispatch_mode(options.dispatch)
        .package_max_length(options.max_packet)
        .socket_buffer_size(buffer);
    if let Some(n) = options.reactors {
        builder = builder.reactor_num(n);
    }
    if let Some(n) = options.workers {
        builder = builder.worker_num(n);
    }
    let server = match (options.codec)(builder).build(|| Echo) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("echo: {err}");
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
            eprintln!("echo: {err}");
            ExitCode::FAILURE
        }
    }
}
