//! Remote workers over HTTP: registered, listed, deregistered; a registered worker's own calls
//! (heartbeats, takes, reports) under `/v1.0/workers/{id}`. The registry is
//! [`crate::api::workers`].

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::api::doc::{self, Doc};
use crate::api::error::ApiError;
use crate::api::respond::{created, list, optional_body};
use crate::api::route::{Access, Route, Verb};
use crate::api::time::{format_rfc3339, now_ms};
use crate::api::types::{Page, WorkerBody, WorkerSummary};
use crate::api::workers::{DispatchError, Holdings, RegisteredWorker, Report, Taken};
use crate::api::AppState;
use crate::protocol::Message;
use utoipa::openapi::schema::Type;

/// Listing and reading workers (the client token), registering and deregistering one (the
/// worker token).
pub(in crate::api) fn routes() -> Vec<Route> {
    use Verb::{Delete, Get, Post};
    vec![
        Route::new(Get, "/v1.0/workers", &[200, 401, 429], list_workers)
            .doc(
                Doc::new("Registered workers; unresponsive after missed heartbeats")
                    .list::<crate::api::types::WorkerBody>(200, "Workers"),
            ),
        Route::new(
            Post,
            "/v1.0/workers",
            &[201, 400, 401, 413, 415, 429],
            register_worker,
        )
        .doc(
            Doc::new("Register a worker")
                .json::<crate::api::types::WorkerBody>(201, "Registered")
                .body::<RegisterRequest>(true),
        )
        .access(Access::Worker),
        Route::new(Get, "/v1.0/workers/{id}", &[200, 401, 404, 429], one_worker)
            .doc(
                Doc::new("One registered worker: its status, last heartbeat, last error and the operations it runs")
                    .json::<crate::api::types::WorkerBody>(200, "The worker"),
            ),
        Route::new(
            Delete,
            "/v1.0/workers/{id}",
            &[204, 401, 404, 429],
            deregister_worker,
        )
        .doc(
            Doc::new("Deregister a worker that stops; the submissions it holds are queued again")
                .empty(204, "Deregistered"),
        )
        .access(Access::Worker),
    ]
}

/// A registered worker's own calls, under `/v1.0/workers/{id}` (the router nests them there):
/// the worker token, no rate limit.
pub(in crate::api) fn own_worker_routes() -> Vec<Route> {
    use Verb::Post;
    vec![
        Route::new(Post, "/heartbeat", &[200, 400, 401, 404, 413], heartbeat)
            .doc(
                Doc::new("Record a heartbeat, with the worker's status, last error and what it holds (body optional)")
                    .describe("running and lastTake go together (400 otherwise). Every submission given to the worker under take lastTake or an earlier one that is not in running is queued again: the answer of its take never reached the worker. One given under a later take may still be on its way and is left until a heartbeat that heard of it. A worker taking one submission at a time (as executioner worker does) knows every answer before the next; one taking several at once may have a submission taken back whose answer comes late, and its messages are then refused (409). A heartbeat without running and lastTake only says the worker is alive.")
                    .json::<crate::api::types::WorkerBody>(200, "The worker")
                    .body::<HeartbeatRequest>(false),
            ),
        Route::new(Post, "/take", &[200, 204, 400, 401, 404, 503], take)
            .doc(
                Doc::new("Take the next submission, already claimed (executing) for this worker under a new take number")
                    .describe("The submission is held by this worker under this take until its terminal message, until the worker deregisters or misses its heartbeats, or until a heartbeat shows the worker never received it. When the request goes away while the claim is under way, the claim ends all the same and the submission is queued again.")
                    .param(doc::query("wait", doc::of_type(Type::Number).minimum(Some(0)), Some("Seconds to wait for a submission (at most the service's limit)")))
                    .json::<crate::protocol::Submission>(200, "The submission to judge")
                    .empty(204, "None came")
                    .header(200, "Take", take_header())
                    .header(204, "Take", take_header()),
            ),
        Route::new(
            Post,
            "/messages",
            &[204, 400, 401, 404, 409, 413, 415, 503],
            report,
        )
        .doc(
            Doc::new("Report one message (SPEC section 2) about a submission this worker holds under the take named")
                .describe("The same message sent twice in a row under a take (a retry after a lost answer) is recorded once; so is a terminal message (done, error, invalid) sent again after it was recorded, answered 204. Any other message about a submission no longer held under that take is refused with 409.")
                .param(doc::required(doc::query("take", doc::of_type(Type::Integer).minimum(Some(1)), Some("The number of the take that gave the submission (its Take header). Required: a message without it is refused with 400."))))
                .body::<crate::api::types::RecordedBody<'static>>(true)
                .empty(204, "Recorded")
                .json::<crate::api::error::ErrorBody<'static>>(409, "The submission is not this worker's under that take: it was queued again (the worker missed its heartbeats, or its heartbeat showed it did not run it), given under another take, or already ended with another message"),
        ),
    ]
    .into_iter()
    .map(|route| route.access(Access::OwnWorker))
    .collect()
}

#[derive(Deserialize, utoipa::ToSchema)]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct HeartbeatRequest {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// Ids of the submissions the worker runs, or has taken and will run.
    #[serde(default)]
    running: Option<BTreeSet<String>>,
    /// The number of the last take whose answer the worker received (the Take header of a 200
    /// or 204; 0: none).
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

/// [`TAKE_HEADER`] in the OpenAPI document.
fn take_header() -> utoipa::openapi::header::Header {
    doc::integer_header(Some("On 200 the number of this take, which every message about the submission names (?take=); on 204 the number of the last take that gave this worker a submission (0: none). Numbers are per worker and only grow."))
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
