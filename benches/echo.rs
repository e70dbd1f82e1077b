//! `cargo bench --bench echo [-- --quick] [-- --json FILE] [-- --filter TEXT]`:
//! eddy against a tokio and a raw-epoll echo server, over WebSocket against
//! a tokio-tungstenite echo server, and over TLS against a tokio-rustls echo
//! server, one table. See `BENCHMARKS.md`.
//!
//! Each server runs as a child process: this binary re-executed with
//! `--serve eddy|tokio|epoll … [--framing ws [--deflate]] [--tls-cert C --tls-key K]`
//! (the certificate made for the run with rcgen), so nothing else
//! needs building. The load runs in this process (eddy-load), identical for
//! every server.

use std::ffi::OsString;
use std::process::ExitCode;

use eddy_bench::serve::serve_exit;
use eddy_bench::suite::options::{parse_suite_args, USAGE};
use eddy_bench::suite::run_suite;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.iter().any(|a| a == "--serve") {
        return serve_exit("echo bench server", args);
    }
    let opts = match parse_suite_args(&args) {
        Ok(opts) => opts,
        Err(msg) if msg == USAGE => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("echo bench: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let program = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("echo bench: cannot find its own executable to re-run as a server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = run_suite(&program, &opts);
    println!("\n{}", report.render());
    if let Some(path) = &opts.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("echo bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("figures written to {}", path.display());
    }
    if report.failed() {
        eprintln!("echo bench: some measurements failed (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
