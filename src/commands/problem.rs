//! `executioner problem check`: a problem as the judge understands it.

use std::io::Write;
use std::process::ExitCode;

use executioner::setup::{build_judge, Setup};

use super::{stdout_error, CommandError};

/// `executioner problem check`: what the judge understood of a problem, with its checker
/// compiled; exit 1 with the reason when the problem cannot be judged.
pub async fn problem_check(setup: &Setup, id: &str) -> Result<ExitCode, CommandError> {
    if !executioner::problem::is_valid_id(id) {
        return Err(CommandError::Usage(format!(
            "{id:?} is not a problem id: ids are [a-z0-9-]+"
        )));
    }
    let defaults = &setup.judge.problem_defaults;
    let problem = match executioner::problem::load_with(&setup.problems, id, defaults) {
        Ok(problem) => problem,
        Err(e) => {
            eprintln!("executioner: problem {id} is broken: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut out = std::io::stdout().lock();
    for line in executioner::problem::describe(&problem) {
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    drop(out);
    let line = if problem.checker == executioner::problem::Checker::Default {
        "checker: compiled: nothing to compile".to_owned()
    } else {
        let judge = build_judge(setup).await?;
        match judge.build_checker(&problem).await {
            Ok(Some(built)) => format!(
                "checker: compiled: {} ({})",
                built.dir.display(),
                if built.compiled {
                    "compiled now"
                } else {
                    "from the cache"
                }
            ),
            Ok(None) => "checker: compiled: nothing to compile".to_owned(),
            Err(e) => {
                eprintln!("executioner: problem {id} is broken: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    };
    writeln!(std::io::stdout().lock(), "{line}").map_err(stdout_error)?;
    if let executioner::problem::Interaction::Interactor(_) = &problem.interaction {
        let judge = build_judge(setup).await?;
        match judge.build_interactor(&problem).await {
            Ok(Some(built)) => writeln!(
                std::io::stdout().lock(),
                "interactor: compiled: {} ({})",
                built.dir.display(),
                if built.compiled {
                    "compiled now"
                } else {
                    "from the cache"
                }
            )
            .map_err(stdout_error)?,
            Ok(None) => {}
            Err(e) => {
                eprintln!("executioner: problem {id} is broken: the interactor: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
