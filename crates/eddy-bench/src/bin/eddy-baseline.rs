//! `eddy-baseline`: run an eddy, tokio or epoll echo server (see `--help`).

use std::process::ExitCode;

fn main() -> ExitCode {
    eddy_bench::serve::serve_exit("eddy-baseline", std::env::args_os().skip(1))
}
