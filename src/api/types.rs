//! The API's response bodies as serde types: the exact field names of the wire (camelCase), a
//! field left out where a value is absent. Built from the stores' views by the handlers (and
//! by the callbacks, which send the same bodies).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::callback_url::parse_stored;
use super::operations::location;
use super::time::format_rfc3339;
use super::workers::{RegisteredWorker, WorkerStatus};
use crate::interface::SubmissionState;
use crate::protocol::Message;
use crate::run::RunReport;
use crate::store::Recorded;
use crate::store::{Status, SubmissionView};
use crate::workflow::engine::end::Blocked;
use crate::workflow::{StepState, StepStatus};

/// `{"value": [...]}`, the shape of every list; `nextLink` when a listing has another page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

impl<T> Page<T> {
    pub fn of(value: Vec<T>) -> Self {
        Page {
            value,
            next_link: None,
        }
    }
}

/// A submission as `GET /v1.0/submissions/{id}` shows it (and its callback sends it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Submission)]
pub struct SubmissionBody {
    pub id: String,
    pub problem: String,
    pub language: String,
    pub state: SubmissionState,
    #[schema(format = DateTime)]
    pub submission_time: String,
    #[serde(flatten)]
    pub end: SubmissionEnd,
    /// The callbackUrl given at submission, if any
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub operation_location: String,
}

impl SubmissionBody {
    pub fn of(view: &SubmissionView) -> Self {
        // As the client gave it: the store marks it with its style.
        let callback_url = view
            .callback_url
            .as_deref()
            .map(|url| parse_stored(url).1.to_owned());
        SubmissionBody {
            id: view.id.clone(),
            problem: view.problem.clone(),
            language: view.language.clone(),
            state: view.state,
            submission_time: format_rfc3339(view.created_ms),
            end: SubmissionEnd::of(view, str::to_owned),
            callback_url,
            operation_location: location(&view.id),
        }
    }
}

/// How a submission ended, as far as it has: its score, the subtasks it failed, why it ended
/// in `invalidData` or `error`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionEnd {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_subtasks: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SubmissionEnd {
    /// `view`'s end, its reason through `text`.
    pub fn of(view: &SubmissionView, text: impl Fn(&str) -> String) -> Self {
        SubmissionEnd {
            score: view.score,
            failed_subtasks: view.failed_subtasks.clone(),
            reason: view.reason.as_deref().map(text),
        }
    }
}

/// One recorded message (SPEC §2) with when it was recorded, when the store keeps that.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Message)]
pub struct RecordedBody<'a> {
    #[serde(flatten)]
    pub message: &'a Message,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub judge_time: Option<String>,
}

impl<'a> From<&'a Recorded> for RecordedBody<'a> {
    fn from(r: &'a Recorded) -> Self {
        RecordedBody {
            message: &r.message,
            judge_time: r.judge_time_ms.map(format_rfc3339),
        }
    }
}

/// An ad-hoc run as `GET /v1.0/runs/{id}` shows it (and its callback sends it): the report of
/// its messages beside its operation's status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Run)]
pub struct RunBody {
    pub id: String,
    pub language: String,
    pub status: Status,
    pub state: SubmissionState,
    #[schema(format = DateTime)]
    pub submission_time: String,
    #[serde(flatten)]
    pub report: RunReport,
    /// Why the store ended it (a deadline), when no message says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub operation_location: String,
}

impl RunBody {
    pub fn of(view: &SubmissionView, messages: &[Recorded]) -> Self {
        let report = RunReport::of(messages.iter().map(|r| &r.message));
        RunBody {
            id: view.id.clone(),
            language: view.language.clone(),
            status: view.status,
            state: view.state,
            submission_time: format_rfc3339(view.created_ms),
            // The report's own reason, when it has one, is the one shown.
            reason: view.reason.clone().filter(|_| report.reason.is_none()),
            report,
            operation_location: location(&view.id),
        }
    }
}

/// What every view of a registered worker shows (`GET /v1.0/workers`, the status page).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSummary {
    pub id: String,
    pub name: String,
    pub concurrency: Option<u32>,
    pub status: WorkerStatus,
    #[schema(format = DateTime)]
    pub last_heartbeat_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
}

impl WorkerSummary {
    /// `worker` with `status`, its free text (name, reported status, error) through `text`.
    pub fn of(
        worker: &RegisteredWorker,
        status: WorkerStatus,
        text: impl Fn(&str) -> String,
    ) -> Self {
        WorkerSummary {
            id: worker.id.clone(),
            name: text(&worker.name),
            concurrency: worker.concurrency,
            status,
            last_heartbeat_date_time: format_rfc3339(worker.last_heartbeat_ms),
            reported_status: worker.reported_status.as_deref().map(&text),
            last_error: worker.last_error.as_ref().map(|(message, at)| LastError {
                message: text(message),
                date_time: format_rfc3339(*at),
            }),
        }
    }
}

/// A registered worker (`GET /v1.0/workers`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Worker)]
pub struct WorkerBody {
    #[serde(flatten)]
    pub summary: WorkerSummary,
    #[schema(format = DateTime)]
    pub registered_date_time: String,
    pub heartbeat_interval_seconds: f64,
    pub running_operations: BTreeSet<String>,
    /// The number of the last take that gave the worker a submission (0: none)
    pub last_take: u64,
}

/// A worker's last reported error and when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub message: String,
    #[schema(format = DateTime)]
    pub date_time: String,
}

/// A rejudge or validation (`GET /v1.0/workflows/{name}`; listed without `counts`, `blocked`
/// and `result`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Workflow)]
pub struct WorkflowBody {
    pub name: String,
    #[schema(schema_with = super::operations::workflow_kinds)]
    pub kind: &'static str,
    /// `null` for a workflow about no one problem.
    pub problem: Option<String>,
    pub status: Status,
    pub percent_complete: u32,
    #[schema(format = DateTime)]
    pub created_date_time: String,
    #[schema(format = DateTime)]
    pub last_action_date_time: String,
    pub operation_location: String,
    /// Run by this service: control calls reach it
    pub running: bool,
    /// Steps per state, while this process runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub counts: Option<BTreeMap<StepState, usize>>,
    /// Why unfinished steps cannot move, while this process runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub blocked: Option<Vec<Blocked>>,
    /// The rejudge's summary or the validation's report
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A step of `GET /v1.0/workflows/{name}/steps`: all of it, or the `fields` asked for.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum StepBody {
    Full(StepStatus),
    /// Only the fields the client named, so a map rather than a type.
    Fields(Map<String, Value>),
}
