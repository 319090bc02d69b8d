//! The live status page: `GET /` is a page with no data in it (so a browser can load it
//! without the client token, and ask for the token then); its data come from `GET
//! /v1.0/status` (a snapshot) and `GET /v1.0/status/events` (a snapshot each time one changes),
//! both behind the client token like the rest of the API.
//!
//! A snapshot is bounded whatever the store holds: the registered workers (at most
//! [`WORKERS_SHOWN`]), the queue depth, the oldest [`RUNNING_SHOWN`] submissions being judged
//! with their last [`TESTS_SHOWN`] tests, the [`RECENT_SHOWN`] last submitted of the finished
//! ones, and free text cut to [`TEXT_SHOWN`] characters.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::error::ApiError;
use super::route::{Access, Route, Verb};
use super::time::{format_rfc3339, now_ms};
use super::types::{SubmissionEnd, WorkerSummary};
use super::AppState;
use crate::api::doc::Doc;
use crate::interface::SubmissionState;
use crate::protocol::Body;
use crate::store::filter::{CmpOp, Expr, Operand, Value as FilterValue};
use crate::store::{BackendError, Recorded, Status, SubmissionView};

/// The page: HTML with its CSS and script inline, nothing loaded from elsewhere.
const PAGE: &str = include_str!("status.html");

/// What the page may do: only its own inline style and script, and calls to this service.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Registered workers in a snapshot (the oldest registrations).
pub const WORKERS_SHOWN: usize = 100;
/// Submissions being judged in a snapshot (the oldest).
pub const RUNNING_SHOWN: usize = 10;
/// Tests of each submission being judged in a snapshot (the last judged).
pub const TESTS_SHOWN: usize = 50;
/// Finished submissions in a snapshot (the last submitted).
pub const RECENT_SHOWN: usize = 20;
/// Characters of free text (reasons, a worker's name, status and error) in a snapshot.
pub const TEXT_SHOWN: usize = 300;

/// Least time between two snapshots of a stream: changes meanwhile are sent as one.
const COALESCE: Duration = Duration::from_millis(250);

/// The page (open: it holds no data) and its data.
pub(super) fn routes() -> Vec<Route> {
    use Verb::Get;
    vec![
        Route::new(Get, "/", &[200, 429], page)
            .doc(
                Doc::new("The live status page (HTML, no data in it: it asks for the client token when the service needs one and reads /v1.0/status/events with it)")
                    .text(200, "The page", "text/html"),
            ).access(Access::Open),
        Route::new(Get, "/v1.0/status", &[200, 401, 429, 503], current)
            .doc(
                Doc::new("The status now: workers, queue depth, submissions being judged with their tests, recent results")
                    .json::<Snapshot>(200, "The status"),
            ),
        Route::new(Get, "/v1.0/status/events", &[200, 401, 429], events)
            .doc(
                Doc::new("Server-Sent Events: the status at once, then again each time it changes (a submission, or a worker registering, sending a heartbeat or deregistering; changes within a quarter of a second come as one; looked at again at least every heartbeat interval, 1-10 s, for workers gone silent); ends on shutdown")
                    .text(200, "event = snapshot, data = the status JSON (as GET /v1.0/status)", "text/event-stream"),
            ),
    ]
}

async fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, PAGE).into_response()
}

/// The status now.
async fn current(State(state): State<AppState>) -> Result<Json<Snapshot>, ApiError> {
    let snapshot = snapshot(&state).await?;
    Ok(Json(stamped(snapshot)))
}

/// A snapshot with the time it was taken.
fn stamped(mut snapshot: Snapshot) -> Snapshot {
    snapshot.generated_date_time = Some(format_rfc3339(now_ms()));
    snapshot
}

/// How often a stream looks again without being told of a change: a worker becomes
/// unresponsive by sending nothing.
fn tick(state: &AppState) -> Duration {
    state
        .workers()
        .interval()
        .clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// `event: snapshot` with the status (as `GET /v1.0/status`) at once, then each time it
/// changes: after a change in the store or the worker registry (several within [`COALESCE`]
/// give one snapshot), or at a tick (a worker silent for too long). A snapshot equal to the
/// last sent is not sent again. Ends on shutdown.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the first snapshot: a change after it is announced.
    let changes = Changes {
        submissions: state.backend().subscribe(),
        workers: state.workers().subscribe(),
    };
    let stream = futures_util::stream::unfold(
        (state, changes, None::<Snapshot>, true),
        |(state, mut changes, mut last, first)| async move {
            let mut wait = !first;
            loop {
                if wait && !changes.next(&state).await {
                    return None;
                }
                wait = true;
                let snapshot = match snapshot(&state).await {
                    Ok(snapshot) => snapshot,
                    Err(e) => {
                        tracing::warn!(error = %e, "a status snapshot failed; trying again at the next change");
                        continue;
                    }
                };
                if last.as_ref() == Some(&snapshot) {
                    continue;
                }
                let event = Event::default().event("snapshot").data(
                    // A snapshot is plain fields: it always serialises.
                    serde_json::to_string(&stamped(snapshot.clone())).unwrap_or_default(),
                );
                last = Some(snapshot);
                return Some((Ok(event), (state, changes, last, false)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What a stream is told of: submissions that changed, workers that registered, sent a
/// heartbeat or deregistered.
struct Changes {
    submissions: tokio::sync::broadcast::Receiver<String>,
    workers: tokio::sync::watch::Receiver<()>,
}

impl Changes {
    /// Waits for a change or a tick, then [`COALESCE`] more for the changes that follow;
    /// `false` on shutdown or when the store announces no more.
    async fn next(&mut self, state: &AppState) -> bool {
        tokio::select! {
            changed = self.submissions.recv() => {
                // A receiver that lagged missed changes: a new snapshot covers them.
                if let Err(RecvError::Closed) = changed {
                    return false;
                }
            }
            // The registry lives as long as the state this stream holds: never closed here.
            _ = self.workers.changed() => {}
            _ = tokio::time::sleep(tick(state)) => {}
            _ = state.shutdown.cancelled() => return false,
        }
        tokio::select! {
            _ = tokio::time::sleep(COALESCE) => {}
            _ = state.shutdown.cancelled() => return false,
        }
        self.workers.mark_unchanged();
        loop {
            match self.submissions.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Closed) => return false,
            }
        }
    }
}

/// `text` cut to [`TEXT_SHOWN`] characters.
fn cut(text: &str) -> String {
    match text.char_indices().nth(TEXT_SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The status page's data, bounded whatever the store holds (see limits). Free text (names,
/// statuses, reasons) is cut to 300 characters.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Status)]
pub struct Snapshot {
    /// Submissions waiting for a worker
    pub queued: usize,
    /// Registered (remote) workers, oldest registration first, at most limits.workers
    pub workers: Vec<WorkerShown>,
    pub workers_total: usize,
    /// Submissions being judged, oldest first, at most limits.running
    pub running: Vec<RunningShown>,
    /// More are being judged than shown
    pub more_running: bool,
    /// Finished submissions, last submitted first, at most limits.recent
    pub recent: Vec<FinishedShown>,
    pub limits: Limits,
    /// The service's own worker, when it has one
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_worker: Option<LocalWorker>,
    /// When it was taken; left out of a snapshot being compared with the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub generated_date_time: Option<String>,
}

/// What a snapshot shows at most.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Limits {
    pub workers: usize,
    pub running: usize,
    pub tests: usize,
    pub recent: usize,
}

/// The service's own worker, when it has one.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LocalWorker {
    pub concurrency: usize,
}

/// A registered worker, its free text cut.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerShown {
    #[serde(flatten)]
    pub summary: WorkerSummary,
    /// How many submissions it holds.
    pub running_operations: usize,
}

/// What every submission in a snapshot shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionShown {
    pub id: String,
    pub problem: String,
    pub language: String,
    pub state: SubmissionState,
    pub status: Status,
    #[schema(format = DateTime)]
    pub created_date_time: String,
    #[schema(format = DateTime)]
    pub last_action_date_time: String,
}

impl SubmissionShown {
    fn of(view: &SubmissionView) -> Self {
        SubmissionShown {
            id: view.id.clone(),
            problem: cut(&view.problem),
            language: cut(&view.language),
            state: view.state,
            status: view.status,
            created_date_time: format_rfc3339(view.created_ms),
            last_action_date_time: format_rfc3339(view.last_action_ms),
        }
    }
}

/// A submission being judged, with its last [`TESTS_SHOWN`] tests and the one running.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningShown {
    #[serde(flatten)]
    pub submission: SubmissionShown,
    pub tests_done: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tests: Option<usize>,
    pub percent_complete: u32,
    pub tests_omitted: usize,
    /// The `tested` messages' bodies.
    #[schema(value_type = Vec<Object>)]
    pub tests: Vec<Body>,
    /// The test being run now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testing: Option<u32>,
}

/// A finished submission: its end and score.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinishedShown {
    #[serde(flatten)]
    pub submission: SubmissionShown,
    #[serde(flatten)]
    pub end: SubmissionEnd,
}

/// The status, without the time it was taken (so that two can be compared).
pub async fn snapshot(state: &AppState) -> Result<Snapshot, BackendError> {
    let now = now_ms();
    let backend = state.backend().as_ref();
    let queued = backend.queued().await?;
    // Being judged, or held by a worker gone silent (still shown, with its status).
    let status_is = |status: Status| {
        Expr::Cmp(
            Operand::Field("status".into()),
            CmpOp::Eq,
            Operand::Literal(FilterValue::Str(status.as_str().into())),
        )
    };
    let running_status = Expr::Or(
        Box::new(status_is(Status::Running)),
        Box::new(status_is(Status::Unresponsive)),
    );
    let mut running = backend
        .list_page(Some(&running_status), None, RUNNING_SHOWN + 1)
        .await?;
    let more_running = running.len() > RUNNING_SHOWN;
    running.truncate(RUNNING_SHOWN);
    let mut judging = Vec::with_capacity(running.len());
    for view in &running {
        // `None` only for a submission gone between the two reads: shown without tests.
        let messages = backend.messages(&view.id).await?.unwrap_or_default();
        judging.push(running_shown(view, &messages));
    }
    let recent = backend.last_finished(RECENT_SHOWN).await?;
    let all_workers = state.workers().all();
    let workers = all_workers
        .iter()
        .take(WORKERS_SHOWN)
        .map(|worker| WorkerShown {
            summary: WorkerSummary::of(worker, state.workers().status_at(worker, now), cut),
            running_operations: worker.running.len(),
        })
        .collect();
    Ok(Snapshot {
        queued,
        workers,
        workers_total: all_workers.len(),
        running: judging,
        more_running,
        recent: recent.iter().map(finished_shown).collect(),
        limits: Limits {
            workers: WORKERS_SHOWN,
            running: RUNNING_SHOWN,
            tests: TESTS_SHOWN,
            recent: RECENT_SHOWN,
        },
        local_worker: state
            .local_worker()
            .map(|concurrency| LocalWorker { concurrency }),
        generated_date_time: None,
    })
}

/// A submission being judged, with its last [`TESTS_SHOWN`] tests and the one running.
fn running_shown(view: &SubmissionView, messages: &[Recorded]) -> RunningShown {
    let tested: Vec<&Body> = messages
        .iter()
        .map(|r| &r.message.body)
        .filter(|body| matches!(body, Body::Tested { .. }))
        .collect();
    let omitted = tested.len().saturating_sub(TESTS_SHOWN);
    let testing = match messages.last().map(|r| &r.message.body) {
        Some(Body::Testing { test_case, .. }) => Some(*test_case),
        _ => None,
    };
    RunningShown {
        submission: SubmissionShown::of(view),
        tests_done: view.tests_done,
        total_tests: view.total_tests,
        percent_complete: view.percent_complete(),
        tests_omitted: omitted,
        tests: tested[omitted..].iter().map(|&body| body.clone()).collect(),
        testing,
    }
}

/// A finished submission: its end and score.
fn finished_shown(view: &SubmissionView) -> FinishedShown {
    FinishedShown {
        submission: SubmissionShown::of(view),
        end: SubmissionEnd::of(view, cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_cut() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(TEXT_SHOWN + 5);
        let shown = cut(&long);
        assert_eq!(shown.chars().count(), TEXT_SHOWN + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for external in ["http://", "https://", "//", "src=", "@import", "url("] {
            let found = PAGE
                .match_indices(external)
                .filter(|(at, _)| {
                    // `//` starts comments of the script; only a URL-like `//host` counts.
                    external != "//" || PAGE[at + 2..].starts_with(|c: char| c.is_alphanumeric())
                })
                .count();
            assert_eq!(found, 0, "the page has {external:?}");
        }
        assert!(PAGE.contains("name=\"viewport\""));
        assert!(!PAGE.contains("innerHTML"), "data is rendered as text only");
    }
}
