//! The handlers of the API.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::filter::{self, Value as FilterValue};
use super::operations::{Cancel, Operation, Recorded, Status};
use super::time::{format_rfc3339, now_ms};
use super::workers::RegisteredWorker;
use super::AppState;
use crate::problem::{is_valid_id, ProblemError};
use crate::protocol::{Body, Submission};

const OPENAPI: &str = include_str!("openapi.json");

/// Fields `$filter` may name.
const FILTER_FIELDS: &[&str] = &[
    "id",
    "status",
    "problem",
    "language",
    "createdDateTime",
    "lastActionDateTime",
    "percentComplete",
];

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1.0/submissions", axum::routing::post(submit))
        .route("/v1.0/submissions/{id}", get(submission))
        .route("/v1.0/submissions/{id}/judge-results", get(judge_results))
        .route("/v1.0/submissions/{id}/events", get(events))
        .route("/v1.0/operations", get(list_operations))
        .route(
            "/v1.0/operations/{id}",
            get(operation).delete(cancel_operation),
        )
        .route("/v1.0/workers", get(list_workers).post(register_worker))
        .route(
            "/v1.0/workers/{id}/heartbeat",
            axum::routing::post(heartbeat),
        )
        .route("/v1.0/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn operation_location(id: &str) -> String {
    format!("/v1.0/operations/{id}")
}

fn operation_json(op: &Operation) -> Value {
    let mut body = json!({
        "id": op.id,
        "status": op.status,
        "createdDateTime": format_rfc3339(op.created_ms),
        "lastActionDateTime": format_rfc3339(op.last_action_ms),
        "percentComplete": op.percent_complete(),
    });
    if op.status.is_terminal() && op.status != Status::Cancelled {
        body["resourceLocation"] = json!(format!("/v1.0/submissions/{}", op.id));
    }
    body
}

fn header_value(text: &str) -> HeaderValue {
    // Ids are UUIDs or ids given by clients in URLs, so they are valid header text; fall back
    // to nothing rather than fail.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

#[derive(Deserialize)]
struct SubmitRequest {
    problem: String,
    language: String,
    #[serde(rename = "sourceCode")]
    source_code: String,
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let config = &state.config;
    if request.source_code.len() > config.max_source_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "sourceTooLarge",
            format!(
                "sourceCode is {} bytes; at most {} are accepted",
                request.source_code.len(),
                config.max_source_bytes
            ),
        ));
    }
    if request.source_code.trim().is_empty() {
        return Err(ApiError::bad_request("sourceCode is empty"));
    }
    if !is_valid_id(&request.problem) {
        return Err(ApiError::bad_request(
            "problem must be a problem id ([a-z0-9-]+)",
        ));
    }
    if let Some(languages) = &config.languages {
        if languages.resolve(&request.language).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown language {:?}",
                request.language
            )));
        }
    }
    let total_tests = match &config.problems {
        None => None,
        Some(problems) => match problems.get(&request.problem) {
            Ok(problem) => Some(problem.tests.len()),
            Err(ProblemError::Missing { .. }) => {
                return Err(ApiError::bad_request(format!(
                    "unknown problem {:?}",
                    request.problem
                )))
            }
            // A broken problem is a deployment fault: the judge reports it as `error`.
            Err(e) => {
                tracing::warn!(problem = %request.problem, error = %e, "accepting a submission for a broken problem");
                None
            }
        },
    };
    if state.operations.not_started() >= config.max_queued {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queueFull",
            "too many submissions are waiting; try again later",
        );
        e.retry_after = Some(config.retry_after_secs.max(1));
        return Err(e);
    }
    let submission = Submission {
        id: uuid::Uuid::new_v4().to_string(),
        problem: request.problem,
        language: request.language,
        source_code: request.source_code,
    };
    let op = state.operations.create(&submission, total_tests);
    state.interface.push(submission);
    tracing::info!(submission_id = %op.id, "submission accepted");
    let location = header_value(&operation_location(&op.id));
    let mut response = (StatusCode::ACCEPTED, Json(operation_json(&op))).into_response();
    let headers = response.headers_mut();
    headers.insert("operation-location", location.clone());
    headers.insert(header::LOCATION, location);
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(config.retry_after_secs),
    );
    Ok(response)
}

fn find(state: &AppState, id: &str) -> Result<Operation, ApiError> {
    state
        .operations
        .get(id)
        .ok_or_else(|| ApiError::not_found("operation", id))
}

async fn operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let op = find(&state, &id)?;
    let mut response = Json(operation_json(&op)).into_response();
    if !op.status.is_terminal() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.config.retry_after_secs),
        );
    }
    Ok(response)
}

async fn cancel_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.operations.cancel(&id) {
        Cancel::Cancelled => Ok(Json(operation_json(&find(&state, &id)?)).into_response()),
        Cancel::NotFound => Err(ApiError::not_found("operation", &id)),
        Cancel::TooLate(status) => {
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "notCancellable",
                format!(
                    "the operation is {}; only a not started operation can be cancelled",
                    status.as_str()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            Ok(response)
        }
    }
}

fn recorded_json(r: &Recorded) -> Value {
    let mut value = serde_json::to_value(&r.message).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("judgeTime".into(), json!(format_rfc3339(r.judge_time_ms)));
    }
    value
}

async fn submission(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let op = state
        .operations
        .get(&id)
        .ok_or_else(|| ApiError::not_found("submission", &id))?;
    let mut body = Map::new();
    body.insert("id".into(), json!(op.id));
    body.insert("problem".into(), json!(op.problem));
    body.insert("language".into(), json!(op.language));
    body.insert("state".into(), json!(op.submission_state()));
    body.insert(
        "submissionTime".into(),
        json!(format_rfc3339(op.created_ms)),
    );
    match op.end().map(|m| &m.body) {
        Some(Body::Done {
            score,
            failed_subtasks,
        }) => {
            body.insert("score".into(), json!(score.unwrap_or(0.0)));
            if let Some(failed) = failed_subtasks {
                body.insert("failedSubtasks".into(), json!(failed));
            }
        }
        Some(Body::Invalid {
            reason: Some(reason),
        }) => {
            body.insert("reason".into(), json!(reason));
        }
        _ => {}
    }
    body.insert(
        "operationLocation".into(),
        json!(operation_location(&op.id)),
    );
    Ok(Json(Value::Object(body)))
}

async fn judge_results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let op = state
        .operations
        .get(&id)
        .ok_or_else(|| ApiError::not_found("submission", &id))?;
    let value: Vec<Value> = op.log.iter().map(recorded_json).collect();
    Ok(Json(json!({ "value": value })))
}

/// The submission's messages as events (`event:` the message state, `id:` its index, `data:`
/// the message JSON): those recorded so far, then new ones, ending after the terminal one (or
/// at once for a cancelled operation). `Last-Event-ID` resumes after that index.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    find(&state, &id).map_err(|_| ApiError::not_found("submission", &id))?;
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    // Subscribed before the first read: a message recorded after it is announced.
    let changes = state.operations.subscribe();
    let stream = futures_util::stream::unfold(
        (state, id, start, changes, false),
        |(state, id, index, mut changes, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let (recorded, status) = state.operations.message_at(&id, index)?;
                if let Some(r) = recorded {
                    let event = Event::default()
                        .id(index.to_string())
                        .event(r.message.body.state())
                        .data(recorded_json(&r).to_string());
                    let last = r.message.body.is_terminal();
                    return Some((Ok(event), (state, id, index + 1, changes, last)));
                }
                if status.is_terminal() {
                    return None;
                }
                tokio::select! {
                    changed = changes.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changed {
                            return None;
                        }
                    }
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

fn filter_value(op: &Operation, field: &str) -> FilterValue {
    match field {
        "id" => FilterValue::Str(op.id.clone()),
        "status" => FilterValue::Str(op.status.as_str().into()),
        "problem" => FilterValue::Str(op.problem.clone()),
        "language" => FilterValue::Str(op.language.clone()),
        "createdDateTime" => FilterValue::Time(op.created_ms),
        "lastActionDateTime" => FilterValue::Time(op.last_action_ms),
        "percentComplete" => FilterValue::Num(f64::from(op.percent_complete())),
        _ => FilterValue::Null,
    }
}

/// Operations: not started, running, then completed, each oldest first; `$filter`, `$top`,
/// `$skip` (also without the `$`); `nextLink` when there are more.
async fn list_operations(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let (default_top, max_top) = state.config.page_size;
    let top = query_number(&query, "top")?.unwrap_or(default_top);
    if top == 0 || top > max_top {
        return Err(ApiError::bad_request(format!(
            "$top must be between 1 and {max_top}"
        )));
    }
    let skip = query_number(&query, "skip")?.unwrap_or(0);
    let filter_text = query.get("$filter").or_else(|| query.get("filter"));
    let filter = filter_text
        .map(|text| filter::parse(text, FILTER_FIELDS))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("invalid $filter {e}")))?;
    let mut ops: Vec<Operation> = state
        .operations
        .all()
        .into_iter()
        .filter(|op| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(&|field| filter_value(op, field)))
        })
        .collect();
    ops.sort_by_key(|op| (op.status.sort_group(), op.created_ms, op.seq));
    let more = ops.len() > skip.saturating_add(top);
    let page: Vec<Value> = ops
        .iter()
        .skip(skip)
        .take(top)
        .map(operation_json)
        .collect();
    let mut body = json!({ "value": page });
    if more {
        let mut link = format!("/v1.0/operations?$top={top}&$skip={}", skip + top);
        if let Some(text) = filter_text {
            link.push_str(&format!("&$filter={}", encode(text)));
        }
        body["nextLink"] = json!(link);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct RegisterRequest {
    name: String,
    #[serde(default)]
    concurrency: Option<u32>,
}

fn worker_json(state: &AppState, worker: &RegisteredWorker, now: i64) -> Value {
    json!({
        "id": worker.id,
        "name": worker.name,
        "concurrency": worker.concurrency,
        "registeredDateTime": format_rfc3339(worker.registered_ms),
        "lastHeartbeatDateTime": format_rfc3339(worker.last_heartbeat_ms),
        "status": state.workers.status_at(worker, now),
        "heartbeatIntervalSeconds": state.config.heartbeat_interval_secs,
    })
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
    let mut response = (
        StatusCode::CREATED,
        Json(worker_json(&state, &worker, now_ms())),
    )
        .into_response();
    response.headers_mut().insert(
        header::LOCATION,
        header_value(&format!("/v1.0/workers/{}", worker.id)),
    );
    Ok(response)
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let worker = state
        .workers
        .heartbeat(&id)
        .ok_or_else(|| ApiError::not_found("worker", &id))?;
    Ok(Json(worker_json(&state, &worker, now_ms())))
}

async fn list_workers(State(state): State<AppState>) -> Json<Value> {
    let now = now_ms();
    let value: Vec<Value> = state
        .workers
        .all()
        .iter()
        .map(|w| worker_json(&state, w, now))
        .collect();
    Json(json!({ "value": value }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notFound", "no such resource")
}
