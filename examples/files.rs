//! A file server on a line protocol: `get NAME` sends the file with `sendfile` (zero-copy).
//!
//! Run it:
//!
//! ```text
//! cargo run --release --example files -- [--listen 127.0.0.1:9506] [--root DIR]
//! ```
//!
//! It prints `listening on ADDR` when ready. Then `printf 'get Cargo.toml\n' | nc 127.0.0.1
//! 9506` answers `ok LENGTH` and a newline, followed by the file's bytes, or `error REASON`
//! and a newline. Names are relative to `--root` (default: the current directory); a name
//! that leads outside it (`..`, an absolute path, a symlink out) is refused. SIGTERM or
//! Ctrl-C: graceful exit, code 0.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use eddy::{codec::EofCodec, Bytes, ConnId, Context, EventHandler, Server};

struct Files {
    root: Arc<PathBuf>,
}

impl Files {
    /// The file `name` names under the root, or why not.
    fn resolve(&self, name: &str) -> Result<PathBuf, String> {
        if name.is_empty() || Path::new(name).is_absolute() {
            return Err("a name is a relative path".into());
        }
        let path = self
            .root
            .join(name)
            .canonicalize()
            .map_err(|err| format!("{name}: {err}"))?;
        if !path.starts_with(&*self.root) {
            return Err(format!("{name} is outside the root"));
        }
        Ok(path)
    }

    fn get(&self, ctx: &Context<'_>, conn: ConnId, name: &str) -> Result<(), String> {
        let path = self.resolve(name)?;
        let meta = std::fs::metadata(&path).map_err(|err| format!("{name}: {err}"))?;
        if !meta.is_file() {
            return Err(format!("{name} is not a file"));
        }
        let len = meta.len();
        ctx.send(conn, format!("ok {len}\n"))
            .map_err(|err| err.to_string())?;
        if len > 0 {
            ctx.sendfile(conn, &path, 0, Some(len))
                .map_err(|err| err.to_string())?;
        }
        Ok(())
    }
}

impl EventHandler for Files {
    fn on_receive(&mut self, ctx: &mut Context<'_>, conn: ConnId, line: Bytes) {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\n', '\r']);
        let result = match line.split_once(' ') {
            Some(("get", name)) => self.get(ctx, conn, name.trim()),
            _ => Err("try: get NAME".into()),
        };
        if let Err(reason) = result {
            let _ = ctx.send(conn, format!("error {reason}\n"));
        }
    }
}

struct Options {
    listen: String,
    root: PathBuf,
}

const USAGE: &str = "usage: files [--listen ADDR] [--root DIR]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: "127.0.0.1:9506".into(),
        root: PathBuf::from("."),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--root" => options.root = PathBuf::from(value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag `{other}` ({USAGE})")),
        }
    }
    options.root = options
        .root
        .canonicalize()
        .map_err(|err| format!("--root {}: {err}", options.root.display()))?;
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
            eprintln!("files: {err}");
            return ExitCode::from(2);
        }
    };
    let root = Arc::new(options.root);
    let server = Server::builder()
        .listen(options.listen)
        .codec(EofCodec::line())
        .package_max_length(4096)
        .build(move || Files { root: root.clone() });
    let server = match server {
        Ok(server) => server,
        Err(err) => {
            eprintln!("files: {err}");
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
            eprintln!("files: {err}");
            ExitCode::FAILURE
        }
    }
}
