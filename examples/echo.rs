//! An echo server: every packet comes back whole.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example echo -- [--listen 127.0.0.1:9501] [--reactors N] [--workers N]
//!     [--dispatch fd|round-robin|idle|ip|uid|reactor] [--codec length|eof|eof-check|line|raw]
//!     [--length-type u32be] [--length-offset 0] [--body-offset 4] [--eof '\r\n']
//!     [--max-packet BYTES] [--udp] [--unix-dgram PATH]
//!     [--tls-cert CERT.pem --tls-key KEY.pem | --tls-self-signed] [--tls-alpn P1,P2]
//!     [--tls-sni NAME:CERT.pem:KEY.pem]... [--tls-client-ca CA.pem]
//! ```
//!
//! `--length-type` is one of `i8 u8 i16be u16be i16le u16le i32be u32be i32le u32le i64be u64be
//! i64le u64le`; `--body-offset 0` makes the length count the whole packet. `--eof` sets the
//! delimiter of `eof` and `eof-check` (escapes `\r \n \t \0 \\`).
//!
//! The default dispatch is `reactor` (the handler runs on the reactor threads, one fewer than
//! the cores: see `ServerBuilder::worker_num`); `--dispatch fd` and the others hand packets to
//! worker threads, as a handler that blocks needs.
//!
//! It prints `listening on ADDR` when ready. Then, with the default length framing (a 4-byte
//! big-endian body length, then the body):
//!
//! ```text
//! printf '\x00\x00\x00\x05hello' | nc 127.0.0.1 9501 | xxd     # the same 9 bytes come back
//! ```
//!
//! or start it with `--codec line` and type lines into `nc 127.0.0.1 9501`. With `--udp` it
//! listens for UDP datagrams at `--listen` instead and echoes each to its sender
//! (`nc -u 127.0.0.1 9501`, then type lines); with `--unix-dgram PATH`, on a unix datagram
//! socket at PATH (`socat - UNIX-DATAGRAM:PATH,bind=/tmp/me.sock`). SIGTERM or Ctrl-C shuts
//! it down gracefully (exit code 0).
//!
//! With `--tls-cert` and `--tls-key` (or `--tls-self-signed`, which makes a certificate for
//! `localhost` at start) it serves the same echo over TLS and prints the certificate's path
//! beside the address: `listening on ADDR (TLS, certificate PATH)`. Then
//! `openssl s_client -connect 127.0.0.1:9501 -CAfile PATH` and type lines (with
//! `--codec line`). `--tls-alpn h2,http/1.1` offers ALPN protocols, `--tls-sni` adds a
//! certificate for a server name, `--tls-client-ca` requires client certificates signed by
//! that CA; SIGUSR1 reads the certificate files again.

use std::{io::Write, process::ExitCode};

#[path = "common/tls.rs"]
mod tls;

use eddy::{
    codec::{Codec, Endian, EofCodec, LengthCodec, LengthType, RawCodec},
    Bytes, ConnId, Context, DispatchMode, EventHandler, PacketInfo, Server, ServerBuilder,
};

struct Echo;

impl EventHandler for Echo {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, packet: Bytes) {
        if let Err(err) = ctx.send(conn, &packet) {
            tracing::warn!(conn = conn.as_u64(), "echo failed: {err}");
        }
    }

    fn on_packet(&mut self, ctx: &mut Context<'_>, packet: Bytes, from: PacketInfo) {
        if let Err(err) = ctx.sendto(from.listener, &from.peer, &packet) {
            tracing::debug!(peer = %from.peer, "echo failed: {err}");
        }
    }
}

struct Options {
    listen: String,
    reactors: Option<usize>,
    workers: Option<usize>,
    dispatch: DispatchMode,
    codec: String,
    length_type: LengthType,
    length_offset: usize,
    body_offset: usize,
    eof: Vec<u8>,
    max_packet: usize,
    /// Listen for UDP (`--udp`) or unix datagrams (`--unix-dgram PATH`) instead of TCP.
    datagram: Option<String>,
    tls: tls::TlsFlags,
}

const USAGE: &str = "usage: echo [--listen ADDR] [--reactors N] [--workers N] \
    [--dispatch fd|round-robin|idle|ip|uid|reactor] \
    [--codec length|eof|eof-check|line|raw] [--length-type TYPE] [--length-offset N] \
    [--body-offset N] [--eof DELIM] [--max-packet BYTES] [--udp] [--unix-dgram PATH] \
    [--tls-cert CERT.pem --tls-key KEY.pem | --tls-self-signed] [--tls-alpn P1,P2] \
    [--tls-sni NAME:CERT.pem:KEY.pem]... [--tls-client-ca CA.pem]";

/// `\r`, `\n`, `\t`, `\0` and `\\` in a delimiter given on the command line.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = text.bytes();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match chars.next() {
            Some(b'r') => b'\r',
            Some(b'n') => b'\n',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            other => {
                let what = other.map_or("end".into(), |c| (c as char).to_string());
                return Err(format!("--eof: unknown escape `\\{what}`"));
            }
        });
    }
    Ok(out)
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9501".into(),
        reactors: None,
        workers: None,
        // The echo does no blocking work: it runs on the reactor threads, as Swoole's default
        // SWOOLE_BASE mode does, one hop and one thread per packet fewer than `fd`.
        dispatch: DispatchMode::Reactor,
        codec: "length".into(),
        length_type: LengthType::U32(Endian::Big),
        length_offset: 0,
        body_offset: 4,
        eof: b"\r\n".to_vec(),
        max_packet: 2 * 1024 * 1024,
        datagram: None,
        tls: tls::TlsFlags::default(),
    };
    let mut udp = false;
    while let Some(flag) = args.next() {
        if options.tls.take(&flag, &mut args)? {
            continue;
        }
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
            "--codec" => options.codec = value()?,
            "--length-type" => options.length_type = value()?.parse()?,
            "--length-offset" => options.length_offset = number(value()?)?,
            "--body-offset" => options.body_offset = number(value()?)?,
            "--eof" => options.eof = unescape(&value()?)?,
            "--udp" => udp = true,
            "--unix-dgram" => options.datagram = Some(format!("unix-dgram:{}", value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}` (try --help)")),
        }
    }
    if udp {
        if options.datagram.is_some() {
            return Err("--udp and --unix-dgram exclude each other".into());
        }
        options.datagram = Some(format!("udp:{}", options.listen));
    }
    Ok(options)
}

/// The listener's codec, from `--codec` and its settings (checked when the server is built).
fn codec(options: &Options) -> Result<Box<dyn FnOnce(ServerBuilder) -> ServerBuilder>, String> {
    fn with(codec: impl Codec) -> Box<dyn FnOnce(ServerBuilder) -> ServerBuilder> {
        Box::new(move |builder| builder.codec(codec))
    }
    Ok(match options.codec.as_str() {
        "length" => with(
            LengthCodec::new()
                .length_type(options.length_type)
                .length_offset(options.length_offset)
                .body_offset(options.body_offset),
        ),
        "eof" => with(EofCodec::new(options.eof.clone())),
        "eof-check" => with(EofCodec::new(options.eof.clone()).check_only()),
        "line" => with(EofCodec::line()),
        "raw" => with(RawCodec),
        other => {
            return Err(format!(
                "unknown codec `{other}` (length, eof, eof-check, line, raw)"
            ))
        }
    })
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
    let framing = match codec(&options) {
        Ok(framing) => framing,
        Err(err) => {
            eprintln!("echo: {err}");
            return ExitCode::from(2);
        }
    };
    let listen = options.datagram.clone().unwrap_or(options.listen.clone());
    let tls = match options.tls.config() {
        Ok(tls) => tls,
        Err(err) => {
            eprintln!("echo: {err}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Server::builder().listen(listen);
    if let Some((config, _)) = &tls {
        builder = builder.tls(config.clone());
    }
    let mut builder = builder
        .dispatch_mode(options.dispatch)
        .package_max_length(options.max_packet)
        .socket_buffer_size(buffer);
    if let Some(n) = options.reactors {
        builder = builder.reactor_num(n);
    }
    if let Some(n) = options.workers {
        builder = builder.worker_num(n);
    }
    let server = match framing(builder).build(|| Echo) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("echo: {err}");
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
            eprintln!("echo: {err}");
            ExitCode::FAILURE
        }
    }
}
