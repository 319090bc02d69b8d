//! The command line.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::Error;

pub const USAGE: &str = "usage: demoter agent --cgroup DIR [--wipe DIR]... [--socket PATH]
       demoter run --cgroup DIR [--wipe DIR]... RUNSPEC_JSON";

/// Where the demoter works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The box cgroup (`--cgroup`).
    pub cgroup: PathBuf,
    /// Directories emptied after every run (`--wipe`, repeatable).
    pub wipe: Vec<PathBuf>,
    /// Serve requests on a Unix socket made at this path instead of stdin/stdout (`--socket`,
    /// agent only; see [`crate::agent::Agent::serve_socket`]).
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve requests on stdin/stdout (or `--socket`) until EOF.
    Agent(Options),
    /// One run of the given `RunSpec` JSON.
    Run(Options, String),
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, Error> {
    let usage = |what: &str| Error::Usage(what.to_string());
    let mut args = args.into_iter();
    let mode = args.next().ok_or_else(|| usage("missing command"))?;
    let mut cgroup = None;
    let mut wipe = Vec::new();
    let mut socket = None;
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| usage(&format!("{flag} needs a path")))
        };
        match arg.to_str() {
            Some("--cgroup") => cgroup = Some(value("--cgroup")?),
            Some("--wipe") => wipe.push(value("--wipe")?),
            Some("--socket") => socket = Some(value("--socket")?),
            Some(flag) if flag.starts_with("--") => {
                return Err(usage(&format!("unknown option {flag}")))
            }
            _ => positional.push(arg),
        }
    }
    let options = Options {
        cgroup: cgroup.ok_or_else(|| usage("--cgroup is required"))?,
        wipe,
        socket,
    };
    match (mode.to_str(), positional.as_slice()) {
        (Some("agent"), []) => Ok(Command::Agent(options)),
        (Some("run"), _) if options.socket.is_some() => Err(usage("--socket is for agent only")),
        (Some("run"), [spec]) => match spec.to_str() {
            Some(spec) => Ok(Command::Run(options, spec.to_string())),
            None => Err(usage("RUNSPEC_JSON is not UTF-8")),
        },
        (Some("agent"), _) => Err(usage("agent takes no positional argument")),
        (Some("run"), _) => Err(usage("run takes exactly one RUNSPEC_JSON")),
        _ => Err(usage("the command is agent or run")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_both_commands() {
        assert_eq!(
            parse_str(&["agent", "--cgroup", "/c", "--wipe", "/tmp", "--wipe", "/dev/shm"])
                .unwrap(),
            Command::Agent(Options {
                cgroup: "/c".into(),
                wipe: vec!["/tmp".into(), "/dev/shm".into()],
                socket: None,
            })
        );
        assert_eq!(
            parse_str(&["agent", "--cgroup", "/c", "--socket", "/io/agent.sock"]).unwrap(),
            Command::Agent(Options {
                cgroup: "/c".into(),
                wipe: vec![],
                socket: Some("/io/agent.sock".into()),
            })
        );
        assert_eq!(
            parse_str(&["run", "--cgroup", "/c", "{}"]).unwrap(),
            Command::Run(
                Options {
                    cgroup: "/c".into(),
                    wipe: vec![],
                    socket: None,
                },
                "{}".into()
            )
        );
    }

    #[test]
    fn refuses_bad_usage() {
        for args in [
            &[][..],
            &["agent"],
            &["agent", "--cgroup"],
            &["agent", "--cgroup", "/c", "x"],
            &["run", "--cgroup", "/c"],
            &["run", "--cgroup", "/c", "{}", "{}"],
            &["run", "--cgroup", "/c", "--verbose", "{}"],
            &["run", "--cgroup", "/c", "--socket", "/s", "{}"],
            &["agent", "--cgroup", "/c", "--socket"],
            &["serve", "--cgroup", "/c"],
        ] {
            assert!(matches!(parse_str(args), Err(Error::Usage(_))), "{args:?}");
        }
    }
}
