//! Rejudges and problem validations over HTTP (`202 Accepted`, polled as operations), and the
//! workflow engine's control API on their steps: selected by tags, each call with a dry run.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::operations::Operation;
use super::operations::OperationBody;
use super::respond::{accepted, list, not_cancellable, optional_body, polled};
use super::route::{Route, Verb};
use super::time::format_rfc3339;
use super::types::{Page, StepBody, WorkflowBody};
use super::AppState;
use crate::api::doc::{self, Doc};
use crate::problem::{is_valid_id, ProblemError};
use crate::workflow::control::{ControlError, Selector};
use crate::workflow::definition::DefinitionError;
use crate::workflow::rejudge::{RejudgeError, Selection};
use crate::workflow::runner::{Runner, RunnerError, View};
use crate::workflow::validate::Solution;
use crate::workflow::webhook::Webhook;
use crate::workflow::{Definition, Settings, StepState, Workflow};
use utoipa::openapi::schema::Type;

/// Rejudges, validations and the workflows' control API; 503 wherever the service runs no
/// workflows.
pub(super) fn routes() -> Vec<Route> {
    use Verb::{Get, Post};
    const CONTROL: &[u16] = &[200, 400, 401, 404, 409, 413, 429, 503];
    vec![
        Route::new(
            Post,
            "/v1.0/rejudges",
            &[202, 400, 401, 403, 413, 415, 429, 503],
            rejudge,
        )
        .doc(
            Doc::new("Rejudge every submission of a problem, or the ones listed; results replace the old ones")
                .body::<RejudgeRequest>(true)
                .accepted::<crate::api::operations::OperationBody>("Accepted; poll Operation-Location")
                // Also when the service runs no workflows, which no retry mends.
                .shared(503, "Error"),
        ),
        Route::new(
            Post,
            "/v1.0/problems/{problem}/validations",
            &[202, 400, 401, 404, 409, 413, 415, 429, 503],
            validation,
        )
        .doc(
            Doc::new("Judge a problem's solutions, each tagged with its expected outcome, and report mismatches and the slowest accepted time")
                .body::<ValidationRequest>(true)
                .accepted::<crate::api::operations::OperationBody>("Accepted; poll Operation-Location")
                // Also when the service runs no workflows, which no retry mends.
                .shared(503, "Error"),
        ),
        Route::new(
            Get,
            "/v1.0/workflows",
            &[200, 401, 429, 503],
            list_workflows,
        )
        .doc(
            Doc::new("Rejudges and validations, live or stored")
                .list::<crate::api::types::WorkflowBody>(200, "Workflows"),
        ),
        Route::new(
            Get,
            "/v1.0/workflows/{name}",
            &[200, 401, 404, 429, 503],
            workflow,
        )
        .doc(
            Doc::new("A workflow: status, steps per state, why unfinished steps cannot move, its result (summary or report)")
                .json::<crate::api::types::WorkflowBody>(200, "The workflow"),
        ),
        Route::new(
            Get,
            "/v1.0/workflows/{name}/steps",
            &[200, 400, 401, 404, 409, 429, 503],
            steps,
        )
        .doc(
            Doc::new("Status of the selected steps, in topological order")
                .param(doc::query("tag", doc::of_type(Type::String), Some("key=value (repeatable); the key id matches the step id")))
                .param(doc::query("state", doc::of_type(Type::String), Some("Only steps in this state (repeatable)")))
                .param(doc::query("fields", doc::of_type(Type::String), Some("Comma-separated fields of the step status")))
                .param(doc::query("waitingForInput", doc::of_type(Type::Boolean), None))
                .json_schema(200, "Steps", doc::of_type(Type::Object)),
        ),
        Route::new(
            Post,
            "/v1.0/workflows/{name}/steps/{action}",
            CONTROL,
            control,
        )
        .doc(
            Doc::new("Apply a control action to the steps selected by tags; refused transitions are listed with their reason")
                .param(doc::path("action", doc::of_type(Type::String).enum_values(Some(["start", "pause", "resume", "rerun", "skip", "unskip", "interrupt"]))))
                .body::<ControlRequest>(false)
                .json_schema(200, "What moved (or would have, on a dry run) and what was refused", doc::of_type(Type::Object)),
        ),
        Route::new(Post, "/v1.0/workflows/{name}/messages", CONTROL, message)
            .doc(
                Doc::new("Send a message to the selected unfinished steps")
                    .body::<ControlRequest>(true)
                    .json_schema(200, "To which steps it went", doc::of_type(Type::Object)),
            ),
        Route::new(Post, "/v1.0/workflows/{name}/shutdown", CONTROL, shutdown)
            .doc(
                Doc::new("Interrupt the running steps and stop the workflow for good")
                    .body::<ControlRequest>(false)
                    .json_schema(200, "The interrupted steps", doc::of_type(Type::Object)),
            ),
    ]
}

fn runner(state: &AppState) -> Result<&std::sync::Arc<Runner>, ApiError> {
    state.workflows.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "noWorkflows",
            "this service runs no rejudges or validations (it has no judge of its own)",
        )
    })
}

/// A workflow this service runs: control calls reach it.
/// Workflow `name` for its steps to be listed or controlled; one that finished before this
/// service started is taken up again from the store.
async fn live(state: &AppState, name: &str) -> Result<Workflow, ApiError> {
    match runner(state)?.revive(name).await {
        Ok(workflow) => Ok(workflow),
        Err(RunnerError::NotFound(_)) => Err(ApiError::not_found("workflow", name)),
        Err(e @ RunnerError::Elsewhere(_)) => {
            Err(ApiError::conflict("workflowElsewhere", e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Definition(DefinitionError::Rejudge(
                e @ (RejudgeError::UnknownIds(_) | RejudgeError::Nothing),
            )) => ApiError::bad_request(e.to_string()),
            RunnerError::Definition(DefinitionError::Webhook(e)) => {
                ApiError::bad_request(e.to_string())
            }
            RunnerError::Exists(_) | RunnerError::Elsewhere(_) => {
                ApiError::conflict("workflowExists", e.to_string())
            }
            e => ApiError::unavailable("a workflow", &e),
        }
    }
}

impl From<DefinitionError> for ApiError {
    fn from(e: DefinitionError) -> Self {
        RunnerError::Definition(e).into()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        ApiError::conflict("shutDown", e.to_string())
    }
}

/// How a workflow request may tune its judgings.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct Tuning {
    /// Attempts per judging when the infrastructure fails
    #[serde(default)]
    attempts: Option<u32>,
    /// Judgings at once
    #[serde(default)]
    max_running: Option<usize>,
}

impl Tuning {
    fn settings(&self, state: &AppState) -> Settings {
        Settings::new(
            self.attempts.unwrap_or(state.config.workflow_attempts),
            self.max_running
                .unwrap_or(state.config.workflow_concurrency),
        )
    }
}

/// Creates and starts workflow `name`, answering 202 with its operation.
async fn start(
    state: &AppState,
    name: String,
    definition: Definition,
) -> Result<Response, ApiError> {
    let runner = runner(state)?;
    runner.create(&name, definition).await?;
    let view = runner
        .view(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow", &name))?;
    tracing::info!(workflow = %name, "workflow accepted");
    Ok(accepted(
        &Operation::of_workflow(&view),
        state.config.retry_after_secs,
    ))
}

/// Either problem or submissions.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RejudgeRequest {
    /// Every submission of this problem...
    #[serde(default)]
    problem: Option<String>,
    /// ... or these.
    #[serde(default)]
    submissions: Option<Vec<String>>,
    /// http:// URL told the summary once done; its host must be allowed by the operator (serve
    /// --webhook-allow), else 403 webhookNotAllowed
    #[serde(default)]
    webhook: Option<String>,
    #[serde(flatten)]
    tuning: Tuning,
}

async fn rejudge(
    State(state): State<AppState>,
    body: Result<Json<RejudgeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let selection = match (request.problem, request.submissions) {
        (Some(problem), None) if is_valid_id(&problem) => Selection::Problem(problem),
        (None, Some(ids)) if !ids.is_empty() => Selection::Ids(ids),
        _ => {
            return Err(ApiError::bad_request(
                "give either problem (a problem id) or submissions (a non-empty list of ids)",
            ))
        }
    };
    if let Some(url) = &request.webhook {
        check_webhook(&state, url)?;
    }
    let stores = state.backend.clone().workflow_stores();
    let definition = Definition::rejudge(
        &*stores.submissions,
        selection,
        request.tuning.settings(&state),
        request.webhook,
    )
    .await?;
    let name = format!("rejudge-{}", uuid::Uuid::new_v4());
    start(&state, name, definition).await
}

/// Refuses a webhook the service was not told it may call: without the allow-list any client
/// could make the service send requests into its own network.
fn check_webhook(state: &AppState, url: &str) -> Result<(), ApiError> {
    let webhook = Webhook::parse(url).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if webhook.is_allowed(&state.config.webhook_hosts) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "webhookNotAllowed",
        if state.config.webhook_hosts.is_empty() {
            "this service sends no webhooks (its operator can allow hosts with serve --webhook-allow)".to_owned()
        } else {
            format!(
                "webhooks may only go to {}",
                state.config.webhook_hosts.join(", ")
            )
        },
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ValidationRequest {
    solutions: Vec<Solution>,
    #[serde(flatten)]
    tuning: Tuning,
}

async fn validation(
    State(state): State<AppState>,
    Path(problem): Path<String>,
    body: Result<Json<ValidationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    if !is_valid_id(&problem) {
        return Err(ApiError::bad_request(
            "the problem must be a problem id ([a-z0-9-]+)",
        ));
    }
    if request.solutions.is_empty() {
        return Err(ApiError::bad_request("solutions is empty"));
    }
    let config = &state.config;
    for solution in &request.solutions {
        let bytes = solution.source_code.len()
            + solution
                .files
                .iter()
                .map(|f| f.content.len())
                .sum::<usize>();
        if bytes > config.max_source_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "sourceTooLarge",
                format!(
                    "the sourceCode of {} is larger than {} bytes",
                    solution.name, config.max_source_bytes
                ),
            ));
        }
        let known = config
            .languages
            .as_ref()
            .is_none_or(|l| l.resolve(&solution.language).is_some());
        if !known {
            return Err(ApiError::bad_request(format!(
                "{}: unknown language {:?}",
                solution.name, solution.language
            )));
        }
    }
    let problems = config.problems.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "noProblems",
            "this service has no problems to validate",
        )
    })?;
    let limits = match problems.get(&problem) {
        Ok(limits) => limits,
        Err(ProblemError::Missing { .. }) => return Err(ApiError::not_found("problem", &problem)),
        // A deployment fault: its details (paths) stay in the log.
        Err(e) => {
            tracing::warn!(problem = %problem, error = %e, "cannot validate a broken problem");
            return Err(ApiError::conflict(
                "brokenProblem",
                format!("problem {problem} cannot be loaded; the service's log says why"),
            ));
        }
    };
    let definition = Definition::Validation {
        time_limit_ms: limits.time_ms,
        problem: problem.clone(),
        solutions: request.solutions,
        settings: request.tuning.settings(&state),
    };
    let name = format!("validation-{problem}-{}", uuid::Uuid::new_v4());
    start(&state, name, definition).await
}

fn view_json(view: &View) -> WorkflowBody {
    let op = Operation::of_workflow(view);
    WorkflowBody {
        name: view.name.clone(),
        kind: op.kind.as_str(),
        problem: op.problem,
        status: op.status,
        percent_complete: op.percent_complete,
        created_date_time: format_rfc3339(view.created_ms),
        last_action_date_time: format_rfc3339(view.last_action_ms),
        operation_location: super::operations::location(&view.name),
        running: view.live,
        counts: None,
        blocked: None,
        result: None,
    }
}

async fn list_workflows(
    State(state): State<AppState>,
) -> Result<Json<Page<WorkflowBody>>, ApiError> {
    let views = runner(&state)?.views().await?;
    Ok(list(views.iter().map(view_json).collect()))
}

/// The workflow, its steps per state, why the unfinished ones cannot move, and its result
/// (the rejudge's summary, the validation's report) once it has one.
async fn workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowBody>, ApiError> {
    let runner = runner(&state)?;
    let view = runner
        .view(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow", &name))?;
    let mut body = view_json(&view);
    if let Some((workflow, _)) = runner.get(&name) {
        let end = workflow.end_state();
        body.counts = Some(end.counts);
        body.blocked = Some(end.blocked);
    }
    body.result = runner.result(&name).await?;
    Ok(Json(body))
}

/// `tag=key=value` (repeatable), `state=...` (repeatable), `fields=a,b`,
/// `waitingForInput=true`.
async fn steps(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page<StepBody>>, ApiError> {
    let Query(query) = query?;
    let workflow = live(&state, &name).await?;
    let mut tags = Vec::new();
    let mut states = Vec::new();
    let mut fields: Option<Vec<String>> = None;
    let mut waiting = false;
    for (key, value) in query {
        match key.as_str() {
            "tag" => tags.push(value),
            "state" => states.push(
                value
                    .parse::<StepState>()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            "fields" => fields = Some(value.split(',').map(str::to_owned).collect()),
            "waitingForInput" => waiting = value == "true",
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: use tag, state, fields, waitingForInput"
                )))
            }
        }
    }
    let selector = Selector::parse(&tags).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let statuses = if waiting {
        workflow.waiting_for_input(&selector)
    } else {
        workflow.status(&selector, &states)
    };
    let mut items = Vec::new();
    for status in statuses {
        items.push(match &fields {
            None => StepBody::Full(status),
            Some(fields) => {
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                StepBody::Fields(
                    status
                        .project(&fields)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?,
                )
            }
        });
    }
    Ok(list(items))
}

/// Steps selected by tags (`{"tags": {"key": "value"}}`; none: every step), and whether to
/// change nothing.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ControlRequest {
    /// Steps carrying every one of these tags (none: every step)
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    dry_run: bool,
    /// For messages: what to send
    #[serde(default)]
    message: Option<Value>,
}

impl ControlRequest {
    fn selector(&self) -> Selector {
        self.tags
            .iter()
            .fold(Selector::all(), |s, (k, v)| s.and(k, v))
    }
}

/// `start`, `pause`, `resume`, `rerun`, `skip`, `unskip` or `interrupt` on the selected steps:
/// what moved, and what was refused and why.
async fn control(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ControlRequest = optional_body(&body)?;
    let workflow = live(&state, &name).await?;
    let (selector, dry_run) = (request.selector(), request.dry_run);
    let report = match action.as_str() {
        "start" => workflow.start(&selector, dry_run),
        "pause" => workflow.pause(&selector, dry_run),
        "resume" => workflow.resume(&selector, dry_run),
        "rerun" => workflow.rerun(&selector, dry_run),
        "skip" => workflow.skip(&selector, dry_run),
        "unskip" => workflow.unskip(&selector, dry_run),
        "interrupt" => workflow.interrupt(&selector, dry_run),
        other => {
            return Err(ApiError::not_found("step action", other));
        }
    }?;
    Ok(Json(report).into_response())
}

/// Sends `message` to the selected steps that have not finished.
async fn message(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ControlRequest = optional_body(&body)?;
    let workflow = live(&state, &name).await?;
    let message = request
        .message
        .clone()
        .ok_or_else(|| ApiError::bad_request("message is missing"))?;
    let report = workflow.send_message(&request.selector(), message, request.dry_run)?;
    Ok(Json(report).into_response())
}

/// Interrupts the running steps and stops the workflow for good.
async fn shutdown(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ControlRequest = optional_body(&body)?;
    let report = live(&state, &name).await?.shutdown(request.dry_run)?;
    Ok(Json(report).into_response())
}

/// `DELETE` on a workflow's operation: shuts it down while it runs (idempotent once
/// cancelled); 405 once it has finished.
pub async fn cancel(state: &AppState, op: Operation) -> Result<Response, ApiError> {
    use super::Status;
    match op.status {
        Status::Cancelled => Ok(Json(OperationBody::from(&op)).into_response()),
        Status::Running | Status::NotStarted | Status::Unresponsive => {
            live(state, &op.id).await?.shutdown(false)?;
            let runner = runner(state)?;
            let view = runner
                .view(&op.id)
                .await?
                .ok_or_else(|| ApiError::not_found("operation", &op.id))?;
            Ok(polled(
                &Operation::of_workflow(&view),
                state.config.retry_after_secs,
            ))
        }
        Status::Succeeded | Status::Failed | Status::Timeout => Ok(not_cancellable(op.status)),
    }
}
