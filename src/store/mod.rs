//! The stores: where submissions, their messages, the results of rejudges and the state of
//! workflows are kept, behind small capability traits (in the manner of apalis), with one module
//! per backend owning its schema, its statements and every trait it implements: [`memory`] (the
//! default of `executioner serve`), [`postgres`] (`--database-url`; its schema in `migrations/`,
//! the worker's queue in [`postgres::queue`]), [`firestore`] (the worker's queue in Firestore).
//! The API and the workflows see only the traits.
//!
//! - Listing ([`Listing`]): a submission, a page of them, their messages, cancelling, changes.
//! - Intake ([`Intake`]): queueing a submission, the count waiting, the workers' interface,
//!   requeueing, deadlines. Callbacks ([`Callbacks`]): the finished submissions still to be sent.
//!   The API keeps its submissions in a [`Backend`], all of these at once.
//! - Rejudging ([`SubmissionStore`], [`ResultStore`]): the submissions a rejudge selects, and the
//!   results that replace their old ones.
//! - Judgings ([`Judgings`]): what a workflow (a rejudge, a validation) hands to the workers,
//!   queued with the submissions and taken by the same workers, but listed nowhere.
//! - Workflow state ([`WorkflowStore`], in [`workflow`]): what each workflow is and the state of
//!   its steps.
//!
//! The queue a worker takes submissions from (take, claim, record, renew, release) is
//! [`crate::interface::Interface`]; each backend implements it (`MemoryInterface`,
//! `PostgresInterface`, `FirestoreInterface`), beside the traits above.

pub mod filter;
pub mod firestore;
pub mod memory;
pub mod operation;
pub mod postgres;
mod view;
pub mod workflow;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use self::filter::Expr;
use self::operation::{Operation, SortKey};
pub use self::view::{Status, SubmissionView};
pub use self::workflow::{StoreError, WorkflowStore};
use crate::interface::Interface;
use crate::protocol::{Message, Submission};

/// One message as the store recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub message: Message,
    /// When it was recorded, ms since the epoch (when the store keeps it).
    pub judge_time_ms: Option<i64>,
}

/// Whether `filter` selects the operation of `view`.
pub fn selects(filter: &Expr, view: &SubmissionView) -> bool {
    let operation = Operation::of_submission(view);
    filter.matches(&|field| operation.field(field))
}

/// The first `limit` of `views` that `filter` selects and that are listed after `after` (all
/// without it), in the order operations are listed.
pub fn first_page(
    views: impl IntoIterator<Item = SubmissionView>,
    filter: Option<&Expr>,
    after: Option<&SortKey>,
    limit: usize,
) -> Vec<SubmissionView> {
    let mut page: Vec<(SortKey, SubmissionView)> = views
        .into_iter()
        .filter(|view| filter.is_none_or(|f| selects(f, view)))
        .map(|view| (Operation::of_submission(&view).sort_key(), view))
        .filter(|(key, _)| after.is_none_or(|after| key > after))
        .collect();
    page.sort_by(|a, b| a.0.cmp(&b.0));
    page.truncate(limit);
    page.into_iter().map(|(_, view)| view).collect()
}

/// The last `limit` of `views` whose operations are finished, in the order operations are
/// listed, last first.
pub fn last_finished(
    views: impl IntoIterator<Item = SubmissionView>,
    limit: usize,
) -> Vec<SubmissionView> {
    let mut finished: Vec<(SortKey, SubmissionView)> = views
        .into_iter()
        .filter(|view| view.status.is_terminal())
        .map(|view| (Operation::of_submission(&view).sort_key(), view))
        .collect();
    finished.sort_by(|a, b| b.0.cmp(&a.0));
    finished.truncate(limit);
    finished.into_iter().map(|(_, view)| view).collect()
}

/// What cancelling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Now (or already) cancelled.
    Cancelled,
    /// Running or finished: too late to cancel.
    TooLate(Status),
    NotFound,
}

/// The store failed (connection lost, ...). Logged; the client gets a 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<crate::interface::InterfaceError> for BackendError {
    fn from(e: crate::interface::InterfaceError) -> Self {
        BackendError(e.to_string())
    }
}

/// The stores a workflow (rejudge, validation) of the API uses.
#[derive(Clone)]
pub struct WorkflowStores {
    pub submissions: Arc<dyn SubmissionStore>,
    pub results: Arc<dyn ResultStore>,
    pub workflows: Arc<dyn WorkflowStore>,
    /// Where its judgings go to the workers.
    pub judgings: Arc<dyn Judgings>,
}

/// Where the API keeps submissions, and where its workers take them from: every capability
/// the API needs of one store.
#[async_trait]
pub trait Backend: Listing + Intake + Callbacks {
    /// The kind of store (`memory`, `postgres`): a metrics label.
    fn name(&self) -> &'static str;

    /// Where rejudges and validations read submissions, write results, and keep their state.
    fn workflow_stores(self: Arc<Self>) -> WorkflowStores;
}

/// Submissions as the API reads them: one, a page, their messages; cancelling one; changes.
#[async_trait]
pub trait Listing: Send + Sync + 'static {
    async fn get(&self, id: &str) -> Result<Option<SubmissionView>, BackendError>;

    /// Every submission, in no particular order (for tools and tests: the API reads
    /// [`Listing::list_page`]).
    async fn list(&self) -> Result<Vec<SubmissionView>, BackendError>;

    /// The first `limit` submissions whose operations `filter` selects (all without one) and
    /// whose sort keys are strictly greater than `after` (all without one), in the order
    /// operations are listed ([`Operation::sort_key`]). What the backend reads for this grows
    /// with the page, not with the store (nor with how far into the listing `after` is).
    async fn list_page(
        &self,
        filter: Option<&Expr>,
        after: Option<&SortKey>,
        limit: usize,
    ) -> Result<Vec<SubmissionView>, BackendError>;

    /// The last `limit` finished submissions (succeeded, failed or cancelled operations) in the
    /// order operations are listed, last first: the last submitted of them. What the backend
    /// reads for this grows with `limit`, not with the store.
    async fn last_finished(&self, limit: usize) -> Result<Vec<SubmissionView>, BackendError>;

    /// The messages of the submission's current attempt, in order; `None` for an unknown id.
    async fn messages(&self, id: &str) -> Result<Option<Vec<Recorded>>, BackendError>;

    /// Cancels a submission no worker has taken; idempotent.
    async fn cancel(&self, id: &str) -> Result<Cancel, BackendError>;

    /// Ids of submissions that changed, from now on (an empty id: anything may have changed).
    /// A receiver that lags should read again what it follows.
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// Submissions coming in and handed to workers: queueing one, the count waiting, the interface
/// workers take them from, queueing again one whose worker went silent, deadlines.
#[async_trait]
pub trait Intake: Send + Sync + 'static {
    /// Queues a submission: its operation is not started. `callback_url` (checked by the
    /// caller) is kept with it, for [`Callbacks::callbacks_due`].
    async fn submit(
        &self,
        submission: Submission,
        total_tests: Option<usize>,
        queueing: Queueing,
    ) -> Result<SubmissionView, BackendError>;

    /// Submissions waiting for a worker.
    async fn queued(&self) -> Result<usize, BackendError>;

    /// What workers (local ones, and the dispatch serving remote ones) take submissions from
    /// and report to. A cancelled submission is never handed out.
    fn worker_interface(self: Arc<Self>) -> Arc<dyn Interface>;

    /// Queues again a submission taken through [`Intake::worker_interface`] whose worker
    /// stopped answering; its next attempt starts clean. `false` if it is not held (any more).
    async fn requeue(&self, id: &str) -> Result<bool, BackendError>;

    /// Ends, as `timeout`, every unfinished submission whose deadline is at or before `now_ms`:
    /// one not started is never handed out; a worker judging one is fenced out (its later
    /// messages are not recorded). The ids ended.
    async fn expire(&self, now_ms: i64) -> Result<Vec<String>, BackendError>;

    /// The submissions held by remote workers that have missed a heartbeat, all of them (a
    /// submission not among them is no longer): their operations are `unresponsive` until a
    /// heartbeat comes or they are queued again. A store that cannot keep this (Postgres, whose
    /// own leases say it) ignores it.
    async fn holders_silent(&self, _ids: &HashSet<String>) {}
}

/// The callbacks of finished submissions that are still to be sent.
#[async_trait]
pub trait Callbacks: Send + Sync + 'static {
    /// Submissions whose callback is due ([`SubmissionView::callback_due`]), kept until
    /// [`Callbacks::callback_settled`]: what a restarted service still has to send.
    async fn callbacks_due(&self) -> Result<Vec<SubmissionView>, BackendError>;

    /// The callback of `id` went out, or was given up, for the outcome reached at
    /// `outcome_ms` (its [`SubmissionView::last_action_ms`]); nothing if the submission has
    /// changed since.
    async fn callback_settled(&self, id: &str, outcome_ms: i64) -> Result<(), BackendError>;
}

/// Which submissions to rejudge (JSON: `{"problem": id}` or `{"ids": [id, ...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    Problem(String),
    Ids(Vec<String>),
}

/// Where a rejudged submission's new messages go, replacing its old ones.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError>;
}

/// Where a rejudge finds the submissions it judges again.
#[async_trait]
pub trait SubmissionStore: ResultStore {
    /// The submissions `selection` names, oldest first. Ids that are not stored are left out.
    async fn select(&self, selection: &Selection) -> Result<Vec<Submission>, StoreError>;
}

/// Judgings a workflow hands to the workers: each is queued like a submission, in the same
/// queue (so local and remote workers take it, in turn with the submissions, under one
/// concurrency budget), under a key of its own that the workers see as its id; its messages are
/// kept like a submission's. It is listed nowhere (not in the operations, not among the
/// submissions a rejudge selects, never called back; [`Listing::get`] still finds it by its
/// key) and lives until it is forgotten.
#[async_trait]
pub trait Judgings: Send + Sync + 'static {
    /// Queues `judging` (its `id` the key) for the slot `of` (what it judges for whom: the
    /// workflow and the submission), after forgetting any earlier judging of `of` (one that a
    /// stopped workflow left behind and that its continuation queues again).
    async fn enqueue(&self, of: &str, judging: Submission) -> Result<(), StoreError>;

    /// The messages of the judging's current attempt, in order (empty while it is queued);
    /// `None` once it is forgotten (or was never queued). Within an attempt each read extends
    /// the one before (a store that rebuilds messages from its rows, Postgres, needs the
    /// language registry for that: see `PostgresBackend::new`).
    async fn progress(&self, key: &str) -> Result<Option<Vec<Message>>, StoreError>;

    /// Forgets the judging: queued, it is never handed out; taken, its worker's later
    /// messages are refused. Idempotent.
    async fn forget(&self, key: &str) -> Result<(), StoreError>;

    /// Keys of judgings that changed, from now on (an empty key: anything may have changed).
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// What is kept with a queued submission beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queueing {
    /// Where the finished operation is sent (checked by the caller), for
    /// [`Callbacks::callbacks_due`].
    pub callback_url: Option<String>,
    /// When the operation times out, ms since the epoch ([`Intake::expire`]).
    pub deadline_ms: Option<i64>,
}

/// The reason a submission that timed out shows.
pub const TIMED_OUT: &str = "the operation passed its deadline";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::SubmissionState;

    fn queued(id: &str, created_ms: i64, seq: u64) -> SubmissionView {
        SubmissionView {
            id: id.into(),
            problem: "p".into(),
            language: "l".into(),
            created_ms,
            last_action_ms: created_ms,
            state: SubmissionState::Queued,
            status: Status::NotStarted,
            tests_done: 0,
            total_tests: None,
            score: None,
            failed_subtasks: None,
            reason: None,
            seq,
            callback_url: None,
            callback_sent_ms: None,
        }
    }

    #[test]
    fn a_page_after_a_key_starts_right_after_it_through_ties_of_time() {
        // Equal times ordered by seq, then id; listed: d, b, a, c, e.
        let views = [
            queued("a", 5, 2),
            queued("b", 5, 1),
            queued("c", 5, 2),
            queued("d", 4, 9),
            queued("e", 6, 0),
        ];
        let listed = ["d", "b", "a", "c", "e"];
        let ids = |page: Vec<SubmissionView>| page.into_iter().map(|v| v.id).collect::<Vec<_>>();
        assert_eq!(ids(first_page(views.clone(), None, None, 9)), listed);
        for (at, id) in listed.iter().enumerate() {
            let view = views.iter().find(|v| v.id == *id).unwrap();
            let key = Operation::of_submission(view).sort_key();
            let page = ids(first_page(views.clone(), None, Some(&key), 2));
            let rest = &listed[at + 1..];
            assert_eq!(page, rest[..rest.len().min(2)], "after {id}");
        }
    }

    #[test]
    fn an_operation_follows_the_submission_state() {
        use SubmissionState as S;
        assert_eq!(Status::of(S::Queued, true, false), Status::NotStarted);
        assert_eq!(Status::of(S::Judging, false, false), Status::Running);
        assert_eq!(Status::of(S::CompileError, false, false), Status::Running);
        assert_eq!(Status::of(S::CompileError, true, false), Status::Succeeded);
        assert_eq!(Status::of(S::Judged, true, false), Status::Succeeded);
        assert_eq!(Status::of(S::Error, true, true), Status::Running);
        assert_eq!(Status::of(S::Error, true, false), Status::Failed);
        assert_eq!(Status::of(S::InvalidData, true, false), Status::Failed);
        assert_eq!(Status::of(S::Cancelled, true, false), Status::Cancelled);
    }
}
