//! Ad-hoc runs over HTTP: `POST /v1.0/runs` queues a run (an operation, like a submission) for
//! the same workers; `GET /v1.0/runs/{id}` reads its result (see [`crate::run`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;

use super::admission::{check_queue, check_source, deadline_ms};
use super::operations::Operation;
use super::respond::accepted;
use super::route::{Route, Verb};
use super::types::RunBody;
use super::{ApiError, AppState};
use crate::api::doc::Doc;
use crate::protocol::{RunSpec, SourceFile, Submission, RUN_PROBLEM};
use crate::store::Queueing;

pub(super) fn routes() -> Vec<Route> {
    use Verb::{Get, Post};
    vec![
        Route::new(
            Post,
            "/v1.0/runs",
            &[202, 400, 401, 413, 415, 429, 503],
            create,
        )
        .doc(
            Doc::new("Run a program once on a given input (an ad-hoc run): queued and judged by the same workers as submissions, as a one-test problem")
                .body::<RunRequest>(true)
                .accepted::<crate::api::operations::OperationBody>("Accepted; poll Operation-Location (kind run); once finished its resourceLocation is /v1.0/runs/{id}"),
        ),
        Route::new(Get, "/v1.0/runs/{id}", &[200, 401, 404, 429, 503], result)
            .doc(
                Doc::new("A run's result so far")
                    .json::<crate::api::types::RunBody>(200, "The run"),
            ),
    ]
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RunRequest {
    pub language: String,
    pub source_code: String,
    #[serde(default)]
    pub files: Vec<SourceFile>,
    /// The program's input (no NUL)
    #[serde(default)]
    pub stdin: String,
    /// When given, the output is compared with it token by token and the verdict says whether
    /// it matched
    #[serde(default)]
    pub expected_output: Option<String>,
    /// CPU time limit (default 2000, at most serve --run-max-time)
    #[serde(default)]
    pub time_limit_ms: Option<u64>,
    /// Memory limit (default 262144, at most serve --run-max-memory)
    #[serde(default)]
    pub memory_limit_kb: Option<u64>,
    /// Where the finished run (as GET /v1.0/runs/{id} shows it) is POSTed, signed, as for
    /// submissions
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Seconds after which the operation, unfinished, is ended with status timeout (default:
    /// serve --deadline-seconds, else none)
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 604800)]
    pub deadline_seconds: Option<f64>,
    /// Arguments given to the program after its language's run command, as argv (never a
    /// shell); 400 for a language whose run command does not end with the program (gawk,
    /// Erlang, SBCL, Guile, SWI-Prolog). At most 256, 4096 bytes in all.
    #[serde(default)]
    pub args: Vec<String>,
    /// Options added at the end of the compile command, as argv, for GCC and Clang languages
    /// only; each must change how the program is compiled, never files or programs run: -O*,
    /// -std=, -D/-U, -W (no pass-throughs), -g*, -f switches (no plugins, dumps, profiles),
    /// -m*, -l, -pedantic, -ansi, -pthread, -static. 400 otherwise.
    #[serde(default)]
    pub compile_args: Vec<String>,
    /// Wall-clock limit, ms (default 3× the CPU limit; at most 3× serve --run-max-time).
    #[serde(default)]
    pub wall_limit_ms: Option<u64>,
    /// The program's stderr goes to its stdout (`2>&1`).
    #[serde(default)]
    pub stderr_to_stdout: bool,
    /// Times the program is run (1 to 20; default 1): time and memory are averaged.
    #[serde(default)]
    pub number_of_runs: Option<u32>,
}

/// The run `request` asks for, within the operator's caps; 400 beyond them.
pub(super) fn run_spec(state: &AppState, request: &RunRequest) -> Result<RunSpec, ApiError> {
    let (default, max) = (state.config().run_default, state.config().run_max);
    let time_limit_ms = request
        .time_limit_ms
        .unwrap_or(default.time_ms.min(max.time_ms));
    let memory_limit_kb = request
        .memory_limit_kb
        .unwrap_or(default.memory_kb.min(max.memory_kb));
    if time_limit_ms == 0 || time_limit_ms > max.time_ms {
        return Err(ApiError::bad_request(format!(
            "timeLimitMs must be 1 to {} (this service's most)",
            max.time_ms
        )));
    }
    if !(1024..=max.memory_kb).contains(&memory_limit_kb) {
        return Err(ApiError::bad_request(format!(
            "memoryLimitKb must be 1024 to {} (this service's most)",
            max.memory_kb
        )));
    }
    for (name, text) in [
        ("stdin", Some(&request.stdin)),
        ("expectedOutput", request.expected_output.as_ref()),
    ] {
        // No store's text holds NUL.
        if text.is_some_and(|t| t.contains('\0')) {
            return Err(ApiError::bad_request(format!("{name} holds a NUL byte")));
        }
    }
    if let Some(wall) = request.wall_limit_ms {
        if wall == 0 || wall > 3 * max.time_ms {
            return Err(ApiError::bad_request(format!(
                "wallLimitMs must be 1 to {} (3× this service's most CPU time)",
                3 * max.time_ms
            )));
        }
    }
    let language = state
        .config()
        .languages
        .as_deref()
        .and_then(|r| r.resolve(&request.language));
    if !request.compile_args.is_empty() {
        if !language.is_none_or(|l| l.takes_compiler_options()) {
            return Err(ApiError::bad_request(format!(
                "compileArgs: language {:?} takes no compile options (only GCC and Clang languages do)",
                request.language
            )));
        }
        for option in &request.compile_args {
            crate::language::check_compiler_option(option)
                .map_err(|e| ApiError::bad_request(format!("compileArgs: {e}")))?;
        }
    }
    if !request.args.is_empty() {
        let takes = language.is_none_or(|l| l.takes_args());
        if !takes {
            return Err(ApiError::bad_request(format!(
                "args: language {:?} cannot give arguments to the program",
                request.language
            )));
        }
    }
    let run = RunSpec {
        stdin: request.stdin.clone(),
        expected_output: request.expected_output.clone(),
        time_limit_ms,
        memory_limit_kb,
        args: request.args.clone(),
        compile_args: request.compile_args.clone(),
        wall_limit_ms: request.wall_limit_ms,
        stderr_to_stdout: request.stderr_to_stdout,
        number_of_runs: request.number_of_runs,
    };
    crate::judge::check_run_limits(&run).map_err(ApiError::bad_request)?;
    Ok(run)
}

/// Checks and queues a run; its view.
pub(super) async fn queue(
    state: &AppState,
    request: RunRequest,
) -> Result<crate::store::SubmissionView, ApiError> {
    queue_with(state, request, super::callback_url::Style::Native).await
}

/// [`queue`], its callback (if any) sent in `style`.
pub(super) async fn queue_with(
    state: &AppState,
    request: RunRequest,
    style: super::callback_url::Style,
) -> Result<crate::store::SubmissionView, ApiError> {
    check_source(
        state,
        &request.language,
        &request.source_code,
        &request.files,
    )?;
    let run = run_spec(state, &request)?;
    if let Some(url) = &request.callback_url {
        super::callback_url::check_url(url, state.config())?;
    }
    let deadline_ms = deadline_ms(state, request.deadline_seconds)?;
    check_queue(state).await?;
    let submission = Submission {
        id: uuid::Uuid::new_v4().to_string(),
        problem: RUN_PROBLEM.to_owned(),
        language: request.language,
        source_code: request.source_code,
        files: request.files,
        run: Some(Box::new(run)),
    };
    let view = state
        .backend()
        .submit(
            submission,
            Some(1),
            Queueing {
                callback_url: request
                    .callback_url
                    .map(|url| super::callback_url::stored_url(&url, style)),
                deadline_ms,
            },
        )
        .await?;
    tracing::info!(submission_id = %view.id, "run accepted");
    Ok(view)
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let view = queue(&state, request).await?;
    Ok(accepted(
        &Operation::of_submission(&view),
        state.config().retry_after_secs,
    ))
}

/// A run's result so far: its operation's status, the submission state, and the report of its
/// messages (verdict, output, exit, times).
async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunBody>, ApiError> {
    let backend = state.backend();
    let view = match backend.get(&id).await? {
        Some(view) if view.problem == RUN_PROBLEM => view,
        _ => return Err(ApiError::not_found("run", &id)),
    };
    let messages = backend.messages(&id).await?.unwrap_or_default();
    Ok(Json(RunBody::of(&view, &messages)))
}
