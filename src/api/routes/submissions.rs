//! Submissions: `POST /v1.0/submissions` queues one (an operation, polled at
//! `/v1.0/operations/{id}`); its state, its recorded messages, and its messages as a stream of
//! events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;

use crate::api::admission::{check_queue, check_source, deadline_ms};
use crate::api::doc::{self, Doc};
use crate::api::error::ApiError;
use crate::api::operations::Operation;
use crate::api::respond::{accepted, list};
use crate::api::route::{Route, Verb};
use crate::api::types::{RecordedBody, SubmissionBody};
use crate::api::AppState;
use crate::problem::{is_valid_id, ProblemError};
use crate::protocol::{SourceFile, Submission};
use crate::store::{Queueing, Recorded, SubmissionView};
use utoipa::openapi::schema::Type;

/// Submitting, and reading a submission and its messages.
pub(in crate::api) fn routes() -> Vec<Route> {
    use Verb::{Get, Post};
    vec![
        Route::new(
            Post,
            "/v1.0/submissions",
            &[202, 400, 401, 413, 415, 429, 503],
            submit,
        )
        .doc(
            Doc::new("Submit a program for judging")
                .body::<SubmitRequest>(true)
                .accepted::<crate::api::operations::OperationBody>("Accepted; poll Operation-Location")
                .callbacks(submission_callbacks())
                .answer(503, busy()),
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}",
            &[200, 401, 404, 429, 503],
            submission,
        )
        .doc(
            Doc::new("The submission's state and score")
                .json::<crate::api::types::SubmissionBody>(200, "The submission"),
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}/judge-results",
            &[200, 401, 404, 429, 503],
            judge_results,
        )
        .doc(
            Doc::new("The submission's messages, in order")
                .list::<crate::api::types::RecordedBody<'static>>(200, "Messages"),
        ),
        Route::new(
            Get,
            "/v1.0/submissions/{id}/events",
            &[200, 401, 404, 429, 503],
            events,
        )
        .doc(
            Doc::new("Server-Sent Events: the messages so far, then live ones, ending after the terminal message")
                .param(doc::header("Last-Event-ID", doc::of_type(Type::Integer), None))
                .text(200, "event = message state, id = message index, data = message JSON", "text/event-stream"),
        ),
    ]
}

/// How often an event stream reads the store again without being told of a change (a
/// notification may be lost while the store reconnects).
const EVENTS_RECHECK: Duration = Duration::from_secs(2);

/// What the service POSTs to a submission's `callbackUrl` ([`crate::api::callbacks`]).
fn submission_callbacks() -> serde_json::Value {
    serde_json::json!({
        "submissionFinished": {
            "{$request.body#/callbackUrl}": {
                "post": {
                    "summary": "The submission's operation has ended",
                    "parameters": [
                        {
                            "name": "Executioner-Timestamp",
                            "in": "header",
                            "required": true,
                            "schema": {
                                "type": "integer"
                            },
                            "description": "When this attempt was made, unix seconds (each retry is signed afresh)"
                        },
                        {
                            "name": "Executioner-Signature",
                            "in": "header",
                            "required": true,
                            "schema": {
                                "type": "string",
                                "pattern": "^sha256=[0-9a-f]{64}$"
                            },
                            "description": "sha256= followed by the lower-case hex HMAC-SHA256, keyed with the operator's callback secret, of the Executioner-Timestamp value, a '.', and the raw request body. Receivers recompute it over the body as received, compare in constant time, and refuse a timestamp too far from now (a replay)."
                        }
                    ],
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": "#/components/schemas/Submission"
                                }
                            }
                        }
                    },
                    "responses": {
                        "2XX": {
                            "description": "Received; not sent again"
                        },
                        "default": {
                            "description": "429 and 5xx (and no answer) are retried with backoff; any other status is a refusal and is not retried"
                        }
                    }
                }
            }
        }
    })
}

/// 503 when too many submissions are queued.
fn busy() -> utoipa::openapi::Response {
    utoipa::openapi::Response::builder()
        .description("Too many queued submissions; retry after Retry-After seconds")
        .header("Retry-After", doc::integer_header(None))
        .content(
            "application/json",
            utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name("Error"))),
        )
        .build()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = SubmissionRequest)]
struct SubmitRequest {
    #[schema(pattern = "^[a-z0-9-]+$")]
    problem: String,
    language: String,
    #[serde(rename = "sourceCode")]
    source_code: String,
    /// Further source files of a multi-file submission (SPEC section 1): plain names (no '/',
    /// no '..', not starting with '-' or '@', unique, not the language's own source name), at
    /// most 64; sourceCode and files together at most the source size limit
    #[serde(default)]
    #[schema(max_items = 64)]
    files: Vec<SourceFile>,
    /// Where to POST the finished submission (the Submission JSON of GET
    /// /v1.0/submissions/{id}) once its operation is succeeded, failed or cancelled: an http://
    /// URL whose host (or host:port) the operator allowed (serve --webhook-allow). Refused with
    /// 400 (callbackNotAllowed) for another host or when the service has no --callback-secret
    /// to sign callbacks with, and 400 (badRequest) when malformed; nothing is queued then.
    /// Sent once per outcome (a rejudge's new outcome is sent again), retried with backoff on
    /// network errors, 5xx and 429. See the callbacks of this operation for the headers.
    #[serde(default, rename = "callbackUrl")]
    callback_url: Option<String>,
    /// Seconds after which the operation, unfinished, is ended with status timeout (default:
    /// serve --deadline-seconds, else none)
    #[serde(rename = "deadlineSeconds", default)]
    #[schema(exclusive_minimum = 0, maximum = 604800)]
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
        crate::api::callback_url::check_url(url, config)?;
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
