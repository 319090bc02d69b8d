//! A submission as the API reads it from any backend: its operation's [`Status`] and where its
//! judging stands ([`SubmissionView`]). Below the backends and the operations built from them.

use serde::Serialize;

use crate::interface::SubmissionState;

/// The state of an operation (the seed's operation states; lower case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = OperationStatus)]
pub enum Status {
    NotStarted,
    Running,
    /// Running, but the worker holding it has missed its heartbeats (or the store's lease on
    /// it expired) and it has not been queued again yet.
    Unresponsive,
    Succeeded,
    Failed,
    Cancelled,
    /// It passed its deadline unfinished and was ended there.
    Timeout,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Cancelled | Status::Timeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "notstarted",
            Status::Running => "running",
            Status::Unresponsive => "unresponsive",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Timeout => "timeout",
        }
    }

    /// Default sort: not started, running, then completed (any terminal state).
    pub fn sort_group(self) -> u8 {
        match self {
            Status::NotStarted => 0,
            Status::Running | Status::Unresponsive => 1,
            _ => 2,
        }
    }

    /// The operation of a submission in `state`. `attempt_over`: no worker holds it (its last
    /// message was terminal); `retry_pending`: it ended in `error` and will be tried again.
    pub fn of(state: SubmissionState, attempt_over: bool, retry_pending: bool) -> Status {
        match state {
            SubmissionState::Queued => Status::NotStarted,
            SubmissionState::Cancelled => Status::Cancelled,
            SubmissionState::Judged => Status::Succeeded,
            // `done` follows a compile error at once; the attempt is over once it is recorded.
            SubmissionState::CompileError if attempt_over => Status::Succeeded,
            SubmissionState::InvalidData => Status::Failed,
            SubmissionState::Error if !retry_pending => Status::Failed,
            SubmissionState::Judging
            | SubmissionState::Compiling
            | SubmissionState::Compiled
            | SubmissionState::CompileError
            | SubmissionState::Error => Status::Running,
        }
    }
}

/// A submission and where its judging stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionView {
    pub id: String,
    pub problem: String,
    pub language: String,
    /// Submission time, ms since the epoch.
    pub created_ms: i64,
    pub last_action_ms: i64,
    pub state: SubmissionState,
    pub status: Status,
    /// `tested` messages of the current attempt.
    pub tests_done: usize,
    /// Tests of the problem, when known.
    pub total_tests: Option<usize>,
    pub score: Option<f64>,
    pub failed_subtasks: Option<Vec<u32>>,
    /// Why it ended as `invalidData` or `error`.
    pub reason: Option<String>,
    /// Creation order among equal creation times.
    pub seq: u64,
    /// Where the finished submission is sent (`callbackUrl`), if anywhere.
    pub callback_url: Option<String>,
    /// The outcome the callback last went out (or was given up) for: the `last_action_ms` it
    /// had then. A later outcome (a rejudge's) is due again.
    pub callback_sent_ms: Option<i64>,
}

impl SubmissionView {
    /// Its operation has ended and its callback has not gone out for this outcome yet.
    pub fn callback_due(&self) -> bool {
        self.callback_url.is_some()
            && self.status.is_terminal()
            && self.callback_sent_ms != Some(self.last_action_ms)
    }

    /// Whole percent of the tests done; 100 once succeeded.
    pub fn percent_complete(&self) -> u32 {
        if self.status == Status::Succeeded {
            return 100;
        }
        match self.total_tests {
            Some(total) if total > 0 => {
                u32::try_from(self.tests_done.min(total) * 100 / total).unwrap_or(100)
            }
            _ => 0,
        }
    }
}
