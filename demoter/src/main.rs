//! `demoter agent|run`: see the `cli` module for the arguments and `protocol` for the wire format.

use std::io::{self, Write};
use std::process::ExitCode;

use demoter::agent::{self, Agent};
use demoter::cli::{self, Command};
use demoter::error::Error;
use demoter::protocol::{Response, RunSpec};
use demoter::sys;

/// Exit status when a run was carried out or the agent reached EOF.
const OK: u8 = 0;
/// Exit status when the sandbox failed.
const FAILED: u8 = 1;
/// Exit status for a wrong command line.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("demoter: {e}\n{}", cli::USAGE);
            return ExitCode::from(USAGE);
        }
    };
    if let Err(e) = sys::prepare_process() {
        eprintln!("demoter: {e}");
        return ExitCode::from(FAILED);
    }
    ExitCode::from(match command {
        Command::Agent(options) => {
            let served = Agent::new(&options.cgroup, options.wipe).and_then(|mut agent| {
                match &options.socket {
                    Some(path) => agent.serve_socket(path, io::stdout().lock()),
                    None => agent.serve(io::stdin().lock(), io::stdout().lock()),
                }
            });
            match served {
                Ok(()) => OK,
                Err(e) => {
                    eprintln!("demoter: {e}");
                    FAILED
                }
            }
        }
        Command::Run(options, spec) => {
            let response = serde_json::from_str::<RunSpec>(&spec)
                .map_err(|source| Error::BadRequest { source })
                .and_then(|spec| Agent::new(&options.cgroup, options.wipe)?.run(&spec))
                .map_or_else(
                    |e| {
                        eprintln!("demoter: {e}");
                        Response::Failed {
                            error: e.to_string(),
                        }
                    },
                    Response::Ran,
                );
            let mut stdout = io::stdout().lock();
            if let Err(e) = agent::respond(&response, &mut stdout)
                .and_then(|()| stdout.flush().map_err(|source| Error::Output { source }))
            {
                eprintln!("demoter: {e}");
                return ExitCode::from(FAILED);
            }
            match response {
                Response::Ran(_) => OK,
                _ => FAILED,
            }
        }
    })
}
