//! `eddy-baseline`: run a baseline echo server (see `--help`).

use std::process::ExitCode;

use eddy_bench::serve::{serve_main, ServeError, USAGE};

fn main() -> ExitCode {
    match serve_main(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Usage(msg)) if msg == USAGE => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(ServeError::Usage(msg)) => {
            eprintln!("eddy-baseline: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("eddy-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
