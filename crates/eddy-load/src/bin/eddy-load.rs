//! `eddy-load` command: run a load against a loopback echo server.

use std::process::ExitCode;

use eddy_load::cli::{parse_args, Command, USAGE};

fn main() -> ExitCode {
    let (config, json) = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run { config, json }) => (config, json),
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("eddy-load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match eddy_load::run(&config) {
        Ok(report) if json => match serde_json::to_string(&report) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("eddy-load: cannot encode report: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eddy-load: error: {e}");
            ExitCode::FAILURE
        }
    }
}
