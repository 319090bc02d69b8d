//! The handlers of submissions, operations and workers; workflows are in `workflows.rs`.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;

use super::admission::{check_queue, check_source, deadline_ms};
use super::backend::{Cancel, Queueing, Recorded, SubmissionView};
use super::error::ApiError;
use super::filter;
use super::operations::{Operation, OperationBody, Position, FILTER_FIELDS};
use super::respond::{accepted, created, list, not_cancellable, optional_body, polled};
use super::route::{Access, Route, Verb};
use super::time::{format_rfc3339, now_ms};
use super::types::{Page, RecordedBody, SubmissionBody, WorkerBody, WorkerSummary};
use super::workers::{DispatchError, Holdings, RegisteredWorker, Report, Taken};
use super::{workflows, AppState};
use crate::problem::{is_valid_id, ProblemError};
use crate::protocol::{Message, SourceFile, Submission};

const OPENAPI: &str = include_str!("openapi.json");

/// How often an event stream reads the store again without being told of a change (a
/// notification may be lost while the store reconnects).
const EVENTS_RECHECK: Duration = Duration::from_secs(2);

/// The routes of submissions, operations and workers, the OpenAPI document and the metrics.
pub(super) fn routes() -> Vec<Route> {
    use Verb::{Delete, Get, Post};
    vec![
        Route::new(
            Post,
            "/v1.0/submissions",
            &[202, 400, 401, 413, 415, 429, 503],
            submit,
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}",
            &[200, 401, 404, 429, 503],
            submission,
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}/judge-results",
            &[200, 401, 404, 429, 503],
            judge_results,
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}/events",
            &[200, 401, 404, 429, 503],
            events,
        ),
        Route::new(
            Get,
            "/v1.0/operations",
            &[200, 400, 401, 429, 503],
            list_operations,
        ),
        Route::new(
            Get,
            "/v1.0/operations/{id}",
            &[200, 401, 404, 429, 503],
            operation,
        ),
        Route::new(
            Delete,
            "/v1.0/operations/{id}",
            &[200, 401, 404, 405, 409, 429, 503],
            cancel_operation,
        ),
        Route::new(Get, "/v1.0/workers", &[200, 401, 429], list_workers),
        Route::new(
            Post,
            "/v1.0/workers",
            &[201, 400, 401, 413, 415, 429],
            register_worker,
        )
        .access(Access::Worker),
        Route::new(Get, "/v1.0/workers/{id}", &[200, 401, 404, 429], one_worker),
        Route::new(
            Delete,
            "/v1.0/workers/{id}",
            &[204, 401, 404, 429],
            deregister_worker,
        )
        .access(Access::Worker),
        // Open without a token.
        Route::new(Get, "/v1.0/openapi.json", &[200, 429], openapi).access(Access::Open),
        Route::new(Get, "/metrics", &[200, 401, 429], super::metrics::scrape),
    ]
}

/// A registered worker's own calls, under `/v1.0/workers/{id}` (the router nests them there):
/// the worker token, no rate limit.
pub(super) fn own_worker_routes() -> Vec<Route> {
    use Verb::Post;
    vec![
        Route::new(Post, "/heartbeat", &[200, 400, 401, 404, 413], heartbeat),
        Route::new(Post, "/take", &[200, 204, 400, 401, 404, 503], take),
        Route::new(
            Post,
            "/messages",
            &[204, 400, 401, 404, 409, 413, 415, 503],
            report,
        ),
    ]
    .into_iter()
    .map(|route| route.access(Access::OwnWorker))
    .collect()
}

#[derive(Deserialize)]
struct SubmitRequest {
    problem: String,
    language: String,
    #[serde(rename = "sourceCode")]
    source_code: String,
    /// Further source files (SPEC §1), judged with the source.
    #[serde(default)]
    files: Vec<SourceFile>,
    /// Where the finished submission is POSTed (see `callbacks`).
    #[serde(default, rename = "callbackUrl")]
    callback_url: Option<String>,
    /// Seconds after which the operation, unfinished, ends as `timeout`.
    #[serde(rename = "deadlineSeconds", default)]
    deadline_seconds: Option<f64>,
}

/// Refuses what can never be judged: oversized or empty source, a problem id that is not one,
/// an unknown language or problem (when the service knows them). Returns the problem's test
/// count when known.
fn check_submission(state: &AppState, request: &SubmitRequest) -> Result<Option<usize>, ApiError> {
    check_source(
        state,
        &request.language,
        &request.source_code,
        &request.files,
    )?;
    let config = &state.config;
    if !is_valid_id(&request.problem) {
        return Err(ApiError::bad_request(
            "problem must be a problem id ([a-z0-9-]+)",
        ));
    }
    let Some(problems) = &config.problems else {
        return Ok(None);
    };
    match problems.get(&request.problem) {
        Ok(problem) => Ok(Some(problem.tests.len())),
        Err(ProblemError::Missing { .. }) => Err(ApiError::bad_request(format!(
            "unknown problem {:?}",
            request.problem
        ))),
        // A broken problem is a deployment fault: the judge reports it as `error`.
        Err(e) => {
            tracing::warn!(problem = %request.problem, error = %e, "accepting a submission for a broken problem");
            Ok(None)
        }
    }
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let total_tests = check_submission(&state, &request)?;
    let config = &state.config;
    if let Some(url) = &request.callback_url {
        super::callback_url::check_url(url, config)?;
    }
    check_queue(&state).await?;
    let submission = Submission {
        id: uuid::Uuid::new_v4().to_string(),
        problem: request.problem,
        language: request.language,
        source_code: request.source_code,
        files: request.files,
        run: None,
    };
    let view = state
        .backend
        .submit(
            submission,
            total_tests,
            Queueing {
                callback_url: request.callback_url,
                deadline_ms: deadline_ms(&state, request.deadline_seconds)?,
            },
        )
        .await?;
    tracing::info!(submission_id = %view.id, "submission accepted");
    Ok(accepted(
        &Operation::of_submission(&view),
        config.retry_after_secs,
    ))
}

async fn find_submission(state: &AppState, id: &str) -> Result<SubmissionView, ApiError> {
    state
        .backend
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("submission", id))
}

/// The operation `id`: a workflow's, or a submission's.
async fn find_operation(state: &AppState, id: &str) -> Result<Operation, ApiError> {
    if let Some(runner) = &state.workflows {
        if let Some(view) = runner.view(id).await? {
            return Ok(Operation::of_workflow(&view));
        }
    }
    match state.backend.get(id).await? {
        Some(view) => Ok(Operation::of_submission(&view)),
        None => Err(ApiError::not_found("operation", id)),
    }
}

async fn operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = find_operation(&state, &id).await?;
    Ok(polled(&op, state.config.retry_after_secs))
}

/// Cancels a submission that no worker has taken, or shuts a running workflow down; idempotent.
async fn cancel_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = find_operation(&state, &id).await?;
    if op.kind.is_workflow() {
        return workflows::cancel(&state, op).await;
    }
    if op.status == super::Status::Timeout {
        // Already ended (its state is `cancelled` in the store, which `cancel` takes as done).
        return Ok(not_cancellable(op.status));
    }
    match state.backend.cancel(&id).await? {
        Cancel::Cancelled => {
            let op = find_operation(&state, &id).await?;
            Ok(Json(OperationBody::from(&op)).into_response())
        }
        Cancel::NotFound => Err(ApiError::not_found("operation", &id)),
        Cancel::TooLate(status) => Ok(not_cancellable(status)),
    }
}

async fn submission(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubmissionBody>, ApiError> {
    let view = find_submission(&state, &id).await?;
    Ok(Json(SubmissionBody::of(&view)))
}

async fn judge_results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let messages = state
        .backend
        .messages(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("submission", &id))?;
    Ok(list(messages.iter().map(RecordedBody::from).collect()).into_response())
}

/// The submission's messages as events (`event:` the message state, `id:` its index, `data:`
/// the message JSON): those recorded so far, then new ones, ending after the terminal one (or
/// at once for a cancelled submission). `Last-Event-ID` resumes after that index.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    find_submission(&state, &id).await?;
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    // Subscribed before the first read: a message recorded after it is announced.
    let changes = state.backend.subscribe();
    let stream = futures_util::stream::unfold(
        (state, id, start, changes, Vec::<Recorded>::new(), false),
        |(state, id, index, mut changes, mut seen, finished)| async move {
            if finished {
                return None;
            }
            loop {
                if let Some(r) = seen.get(index).cloned() {
                    let event = Event::default()
                        .id(index.to_string())
                        .event(r.message.body.state())
                        .data(
                            // A message always serialises (plain fields); `{}` as before if not.
                            serde_json::to_string(&RecordedBody::from(&r))
                                .unwrap_or_else(|_| "{}".into()),
                        );
                    let last = r.message.body.is_terminal();
                    return Some((Ok(event), (state, id, index + 1, changes, seen, last)));
                }
                // A failing store ends the stream; the client reconnects with Last-Event-ID.
                let view = state.backend.get(&id).await.ok()??;
                seen = state.backend.messages(&id).await.ok()??;
                if index < seen.len() {
                    continue;
                }
                if view.status.is_terminal() {
                    return None;
                }
                tokio::select! {
                    changed = changes.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changed {
                            return None;
                        }
                    }
                    _ = tokio::time::sleep(EVENTS_RECHECK) => {}
                    _ = state.shutdown.cancelled() => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn query_number(query: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    let value = query.get(&format!("${name}")).or_else(|| query.get(name));
    value
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("${name} must be a non-negative integer"))
            })
        })
        .transpose()
}

/// Minimal percent-encoding for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Operations: not started, running, then completed, each oldest first; `$filter`, `$top`,
/// `$skip` or `$skiptoken` (also without the `$`); `nextLink` when there are more. `nextLink`
/// carries the position of the page's last operation (`$skiptoken`), so a page deep in the
/// listing reads as much as the first. An operation changes group as it runs (not started,
/// running, completed), so it may move to a page the client has read or has yet to read;
/// following `nextLink` never repeats or skips one whose status did not change meanwhile.
async fn list_operations(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Page<OperationBody>>, ApiError> {
    let Query(query) = query?;
    let (default_top, max_top) = state.config.page_size;
    let top = query_number(&query, "top")?.unwrap_or(default_top);
    if top == 0 || top > max_top {
        return Err(ApiError::bad_request(format!(
            "$top must be between 1 and {max_top}"
        )));
    }
    let skip = query_number(&query, "skip")?;
    let after = query
        .get("$skiptoken")
        .or_else(|| query.get("skiptoken"))
        .map(|token| Position::from_token(token))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if skip.is_some() && after.is_some() {
        return Err(ApiError::bad_request(
            "$skip and $skiptoken cannot be given together",
        ));
    }
    let skip = skip.unwrap_or(0);
    let filter_text = query.get("$filter").or_else(|| query.get("filter"));
    let filter = filter_text
        .map(|text| filter::parse(text, FILTER_FIELDS))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("invalid $filter {e}")))?;
    let listed = |op: &Operation| {
        filter
            .as_ref()
            .is_none_or(|f| f.matches(&|field| op.field(field)))
            && after.as_ref().is_none_or(|after| op.position() > *after)
    };
    // One more than the page: whether there is a next one.
    let limit = skip.saturating_add(top).saturating_add(1);
    let mut ops: Vec<(Position, Operation)> = state
        .backend
        .list_page(filter.as_ref(), after.as_ref().map(|a| &a.key), limit)
        .await?
        .iter()
        .map(Operation::of_submission)
        .map(|op| (op.position(), op))
        .collect();
    if let Some(runner) = &state.workflows {
        let workflows = runner.views().await?;
        ops.extend(
            workflows
                .iter()
                .map(Operation::of_workflow)
                .filter(listed)
                .map(|op| (op.position(), op)),
        );
    }
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    let more = ops.len() > skip.saturating_add(top);
    let page: Vec<&(Position, Operation)> = ops.iter().skip(skip).take(top).collect();
    let next = page
        .last()
        .filter(|_| more)
        .map(|(last, _)| last.to_token());
    let next_link = next.map(|token| {
        let mut link = format!("/v1.0/operations?$top={top}&$skiptoken={token}");
        if let Some(text) = filter_text {
            link.push_str(&format!("&$filter={}", encode(text)));
        }
        link
    });
    Ok(Json(Page {
        value: page.iter().map(|(_, op)| OperationBody::from(op)).collect(),
        next_link,
    }))
}

#[derive(Deserialize)]
struct RegisterRequest {
    name: String,
    #[serde(default)]
    concurrency: Option<u32>,
}

fn worker_json(state: &AppState, worker: &RegisteredWorker, now: i64) -> WorkerBody {
    let status = state.workers.status_at(worker, now);
    WorkerBody {
        summary: WorkerSummary::of(worker, status, str::to_owned),
        registered_date_time: format_rfc3339(worker.registered_ms),
        heartbeat_interval_seconds: state.config.heartbeat_interval.as_secs_f64(),
        running_operations: worker.running.clone(),
        last_take: worker.last_take,
    }
}

async fn register_worker(
    State(state): State<AppState>,
    body: Result<Json<RegisterRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::bad_request(
            "name must be between 1 and 200 characters",
        ));
    }
    let worker = state.workers.register(name.to_owned(), request.concurrency);
    Ok(created(
        &format!("/v1.0/workers/{}", worker.id),
        worker_json(&state, &worker, now_ms()),
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HeartbeatRequest {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    running: Option<BTreeSet<String>>,
    #[serde(default)]
    last_take: Option<u64>,
}

/// A heartbeat; its body (optional) reports the worker's status, its last error, and what it
/// holds: `running` (the submissions it runs) with `lastTake` (the last take number it heard
/// of), given together. What it was given under that take or earlier and does not run is
/// queued again.
async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<WorkerBody>, ApiError> {
    let request: HeartbeatRequest = optional_body(&body)?;
    let holdings = match (request.running, request.last_take) {
        (Some(running), Some(last_take)) => Some(Holdings { running, last_take }),
        (None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "running and lastTake go together: the submissions the worker runs, and the number of the last take it heard of",
            ))
        }
    };
    let report = Report {
        status: request.status,
        error: request.error,
        holdings,
    };
    let worker = state
        .workers
        .heartbeat(&id, report)
        .await
        .ok_or_else(|| ApiError::not_found("worker", &id))?;
    Ok(Json(worker_json(&state, &worker, now_ms())))
}

async fn list_workers(State(state): State<AppState>) -> Json<Page<WorkerBody>> {
    let now = now_ms();
    list(
        state
            .workers
            .all()
            .iter()
            .map(|w| worker_json(&state, w, now))
            .collect(),
    )
}

async fn one_worker(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkerBody>, ApiError> {
    let worker = state
        .workers
        .get(&id)
        .ok_or_else(|| ApiError::not_found("worker", &id))?;
    Ok(Json(worker_json(&state, &worker, now_ms())))
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::UnknownWorker(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknownWorker", e.to_string())
            }
            DispatchError::NotHeld { .. } => ApiError::conflict("notHeld", e.to_string()),
            DispatchError::Store(e) => e.into(),
        }
    }
}

/// The header numbering a take: on 200 the number of this take, on 204 that of the last take
/// that gave the worker a submission.
const TAKE_HEADER: &str = "take";

/// A worker takes the next submission (`?wait=SECONDS` for one to come): 200 with it, already
/// claimed for the worker under the take number in the `Take` header, or 204 when none came.
async fn take(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let wait = match query.get("wait") {
        None => Duration::ZERO,
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| ApiError::bad_request("wait must be a number of seconds"))?,
    };
    let wait = wait.min(state.config.max_take_wait);
    let taken = state.workers.take(&id, wait, &state.shutdown).await?;
    let number = HeaderValue::from(taken.number());
    let mut response = match taken {
        Taken::Submission { submission, .. } => Json(submission).into_response(),
        Taken::Nothing { .. } => StatusCode::NO_CONTENT.into_response(),
    };
    response.headers_mut().insert(TAKE_HEADER, number);
    Ok(response)
}

/// A worker reports one message (SPEC §2) about a submission it took, naming the take
/// (`?take=N`): 204, or 409 when the submission is not its own under that take.
async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Json<Message>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(query) = query?;
    let take = query
        .get("take")
        .ok_or_else(|| {
            ApiError::bad_request(
                "take is required: the number of the take that gave the submission (its Take header)",
            )
        })?
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("take must be a take number"))?;
    let Json(message) = body?;
    state.workers.report(&id, take, &message).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A worker that stops: it is forgotten, and the submissions it holds are queued again. 204, or
/// 404 for an unknown worker.
async fn deregister_worker(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.workers.deregister(&id).await {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(DispatchError::UnknownWorker(id).into()),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
