//! The Postgres store: the API's backend ([`PostgresBackend`]), the rejudges' submissions and
//! results and the workflows' state ([`workflow`]), over the Postgres interface's database.
//!
//! The API's backend (`executioner serve --database-url`): submissions are rows of the
//! Postgres interface's tables, shared with any `executioner worker --interface postgres`;
//! operations are read from them, and changes followed through LISTEN/NOTIFY.
//!
//! The store keeps a submission's state and its test results, not every message: the messages
//! of its current attempt are rebuilt from them (`executing`, the compile steps of a compiled
//! language, the results, the end), in the order the worker sent them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod pushdown;
pub mod queue;
pub mod workflow;

pub use queue::{PostgresConfig, PostgresInterface};
pub use workflow::{PostgresSubmissions, PostgresWorkflowStore};

use self::queue::{
    listen, Cancelled, Condition, Heard, ListingKey, SubmissionRecord, STATE_CHANNEL,
};
use super::filter::Expr;
use super::operation::SortKey;
use super::{
    selects, Backend, BackendError, Callbacks, Cancel, Intake, Judgings, Listing, Queueing,
    Recorded, Status, StoreError, SubmissionView, WorkflowStores,
};
use crate::backoff::Backoff;
use crate::interface::{Interface, SubmissionState};
use crate::language::Registry;
use crate::problem::ProblemStore;
use crate::protocol::{Body, CompileResult, Message, Submission};
use pushdown::Pushdown;

/// The channel notified with a submission's id when a judge result is recorded (migration
/// `20260301000000_workflows.sql`).
const RESULT_CHANNEL: &str = "executioner_result";
/// Rows read per statement while listing with a filter the database cannot evaluate whole
/// (`percentComplete`), at least.
const INEXACT_BATCH: usize = 500;
/// Pauses before the listener connects again: 100 ms, doubling, at most 5 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

pub struct PostgresBackend {
    interface: Arc<PostgresInterface>,
    problems: Option<Arc<ProblemStore>>,
    languages: Option<Arc<Registry>>,
    changed: broadcast::Sender<String>,
    workflows: Arc<PostgresWorkflowStore>,
}

impl PostgresBackend {
    /// `problems` gives test counts (for percentages); `languages` says which languages compile
    /// (for the messages rebuilt from the store).
    pub fn new(
        interface: Arc<PostgresInterface>,
        problems: Option<Arc<ProblemStore>>,
        languages: Option<Arc<Registry>>,
    ) -> Arc<Self> {
        Arc::new(PostgresBackend {
            workflows: Arc::new(PostgresWorkflowStore::new(&interface)),
            interface,
            problems,
            languages,
            changed: broadcast::channel(4096).0,
        })
    }

    pub fn interface(&self) -> &Arc<PostgresInterface> {
        &self.interface
    }

    /// Follows the store's notifications (state changes, recorded results) until `shutdown`,
    /// reconnecting when the connection is lost; after every (re)connect subscribers are told
    /// that anything may have changed.
    pub fn follow(self: &Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let backend = self.clone();
        tokio::spawn(async move {
            let channels = [STATE_CHANNEL, RESULT_CHANNEL];
            listen(
                backend.interface.pool(),
                &channels,
                RECONNECT,
                &shutdown,
                |heard| {
                    let payload = match heard {
                        Heard::Notification(notification) => notification.payload().to_owned(),
                        Heard::Anything => String::new(),
                    };
                    let _ = backend.changed.send(payload);
                },
            )
            .await;
        })
    }

    /// The tests of `problem`, when known.
    fn total_tests(&self, problem: &str) -> Option<usize> {
        self.problems
            .as_ref()
            .and_then(|p| p.get(problem).ok())
            .map(|p| p.tests.len())
    }

    fn view(&self, record: SubmissionRecord) -> SubmissionView {
        let total_tests = self.total_tests(&record.problem);
        Self::view_of(record, total_tests)
    }

    /// Views of many records, each problem looked up once (a look-up reads the file system).
    fn viewer(&self) -> impl FnMut(SubmissionRecord) -> SubmissionView + Send + '_ {
        let mut totals: HashMap<String, Option<usize>> = HashMap::new();
        move |record| {
            let total_tests = match totals.get(&record.problem) {
                Some(&total) => total,
                None => {
                    let total = self.total_tests(&record.problem);
                    totals.insert(record.problem.clone(), total);
                    total
                }
            };
            Self::view_of(record, total_tests)
        }
    }

    fn view_of(record: SubmissionRecord, total_tests: Option<usize>) -> SubmissionView {
        SubmissionView {
            status: match Status::of(record.state, record.attempt_over, record.retry_pending) {
                _ if record.timed_out => Status::Timeout,
                Status::Running if record.lease_expired => Status::Unresponsive,
                status => status,
            },
            id: record.id,
            problem: record.problem,
            language: record.language,
            created_ms: record.submitted_ms,
            last_action_ms: record.updated_ms,
            state: record.state,
            tests_done: record.tests_done,
            total_tests,
            score: record.score,
            failed_subtasks: record.failed_subtasks,
            reason: match record.timed_out {
                true => Some(super::TIMED_OUT.to_owned()),
                false => record.reason,
            },
            seq: 0,
            callback_url: record.callback_url,
            callback_sent_ms: record.callback_sent_ms,
        }
    }

    /// Whether `language` compiles; without a registry, whether the record says it did.
    fn compiles(&self, record: &SubmissionRecord) -> bool {
        match self
            .languages
            .as_ref()
            .and_then(|r| r.resolve(&record.language))
        {
            Some(language) => language.compile.is_some(),
            None => {
                record.compile_output.is_some()
                    || matches!(
                        record.state,
                        SubmissionState::Compiling
                            | SubmissionState::Compiled
                            | SubmissionState::CompileError
                    )
            }
        }
    }
}

/// The messages of the current attempt of `record`, rebuilt from its state and its results.
fn rebuild(
    record: &SubmissionRecord,
    compiles: bool,
    results: Vec<(Message, i64)>,
) -> Vec<Recorded> {
    use SubmissionState as S;
    let id = record.id.as_str();
    if matches!(record.state, S::Queued | S::Cancelled) {
        return Vec::new();
    }
    let untimed = |body| Recorded {
        message: Message::new(id, body),
        judge_time_ms: None,
    };
    let mut messages = vec![untimed(Body::Executing)];
    let compiled = |result| Body::Compiled {
        result,
        compile_output: record.compile_output.clone(),
    };
    match record.state {
        S::Compiling => messages.push(untimed(Body::Compiling)),
        S::CompileError => {
            messages.push(untimed(Body::Compiling));
            messages.push(untimed(compiled(CompileResult::Error)));
        }
        // Compiled, or gone past it: the tests ran after a successful compile.
        S::Compiled => {
            messages.push(untimed(Body::Compiling));
            messages.push(untimed(compiled(CompileResult::Success)));
        }
        _ if compiles && (!results.is_empty() || record.compile_output.is_some()) => {
            messages.push(untimed(Body::Compiling));
            messages.push(untimed(compiled(CompileResult::Success)));
        }
        _ => {}
    }
    messages.extend(results.into_iter().map(|(message, at)| Recorded {
        message,
        judge_time_ms: Some(at),
    }));
    let end = match record.state {
        S::Judged => Some(Body::Done {
            score: record.score,
            failed_subtasks: record.failed_subtasks.clone(),
        }),
        S::CompileError if record.attempt_over => Some(Body::Done {
            score: None,
            failed_subtasks: None,
        }),
        S::Error => Some(Body::Error {
            reason: record.reason.clone(),
        }),
        S::InvalidData => Some(Body::Invalid {
            reason: record.reason.clone(),
        }),
        _ => None,
    };
    if let Some(end) = end {
        messages.push(Recorded {
            message: Message::new(id, end),
            judge_time_ms: Some(record.updated_ms),
        });
    }
    messages
}

/// Where a scan starts to read the submissions listed after `after`. Every row's seq is 0
/// (see `PostgresBackend::view_of`), so after a key with a greater seq (not one of these rows)
/// come the rows of a later rank or time, whatever their ids.
fn listing_key(after: &SortKey) -> ListingKey {
    ListingKey {
        rank: i32::from(after.group),
        submitted_ms: after.created_ms,
        id: (after.seq == 0).then(|| after.id.clone()),
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn workflow_stores(self: Arc<Self>) -> WorkflowStores {
        let submissions = Arc::new(PostgresSubmissions::new(self.interface.clone()));
        WorkflowStores {
            submissions: submissions.clone(),
            results: submissions,
            workflows: self.workflows.clone(),
            judgings: self,
        }
    }
}

fn judging_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: "postgres",
        reason: e.to_string(),
    }
}

/// Judgings are rows of `submissions` with `judging_of` set (migration
/// `20261207000000_judgings.sql`), which every listing leaves out.
#[async_trait]
impl Judgings for PostgresBackend {
    async fn enqueue(&self, of: &str, judging: Submission) -> Result<(), StoreError> {
        self.interface
            .enqueue_judging(of, &judging)
            .await
            .map_err(judging_failed)
    }

    async fn progress(&self, key: &str) -> Result<Option<Vec<Message>>, StoreError> {
        if self
            .interface
            .is_judging(key)
            .await
            .map_err(judging_failed)?
            != Some(true)
        {
            return Ok(None);
        }
        let messages = Listing::messages(self, key).await.map_err(judging_failed)?;
        Ok(messages.map(|recorded| recorded.into_iter().map(|r| r.message).collect()))
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.interface
            .forget_judging(key)
            .await
            .map_err(judging_failed)
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

#[async_trait]
impl Listing for PostgresBackend {
    async fn get(&self, id: &str) -> Result<Option<SubmissionView>, BackendError> {
        Ok(self.interface.record(id).await?.map(|r| self.view(r)))
    }

    async fn list(&self) -> Result<Vec<SubmissionView>, BackendError> {
        let records = self.interface.records().await?;
        Ok(records.into_iter().map(self.viewer()).collect())
    }

    async fn list_page(
        &self,
        filter: Option<&Expr>,
        after: Option<&SortKey>,
        limit: usize,
    ) -> Result<Vec<SubmissionView>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pushdown = filter.map_or(
            Pushdown {
                condition: Condition::True,
                exact: true,
            },
            Pushdown::of,
        );
        // When the database selects more than the filter, the page may take more rows.
        let batch = if pushdown.exact {
            limit
        } else {
            limit.max(INEXACT_BATCH)
        };
        let mut page = Vec::new();
        let mut view = self.viewer();
        self.interface
            .scan_listing(
                &pushdown.condition,
                after.map(listing_key),
                batch,
                |record| {
                    let view = view(record);
                    if filter.is_none_or(|f| selects(f, &view)) {
                        page.push(view);
                    }
                    page.len() < limit
                },
            )
            .await?;
        Ok(page)
    }

    async fn last_finished(&self, limit: usize) -> Result<Vec<SubmissionView>, BackendError> {
        let records = self.interface.last_finished(limit).await?;
        Ok(records.into_iter().map(self.viewer()).collect())
    }

    async fn messages(&self, id: &str) -> Result<Option<Vec<Recorded>>, BackendError> {
        let Some(record) = self.interface.record(id).await? else {
            return Ok(None);
        };
        let results = self.interface.timed_results(id).await?;
        // A result recorded between the two reads belongs to a later state: read the record
        // again so the end is not shown before the results.
        let record = self.interface.record(id).await?.unwrap_or(record);
        Ok(Some(rebuild(&record, self.compiles(&record), results)))
    }

    async fn cancel(&self, id: &str) -> Result<Cancel, BackendError> {
        Ok(match self.interface.cancel(id).await? {
            Cancelled::Yes => Cancel::Cancelled,
            Cancelled::NotFound => Cancel::NotFound,
            Cancelled::TooLate(_) => match self.get(id).await? {
                Some(view) => Cancel::TooLate(view.status),
                None => Cancel::NotFound,
            },
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

#[async_trait]
impl Intake for PostgresBackend {
    async fn submit(
        &self,
        submission: Submission,
        _total_tests: Option<usize>,
        queueing: Queueing,
    ) -> Result<SubmissionView, BackendError> {
        let id = submission.id.clone();
        self.interface
            .enqueue_with(
                &[submission],
                &[queueing.callback_url],
                &[queueing.deadline_ms],
            )
            .await?;
        self.get(&id)
            .await?
            .ok_or_else(|| BackendError(format!("submission {id} vanished once queued")))
    }

    async fn queued(&self) -> Result<usize, BackendError> {
        Ok(self.interface.queued().await?)
    }

    fn worker_interface(self: Arc<Self>) -> Arc<dyn Interface> {
        self.interface.clone()
    }

    async fn requeue(&self, id: &str) -> Result<bool, BackendError> {
        Ok(self.interface.release(id).await?)
    }

    async fn expire(&self, _now_ms: i64) -> Result<Vec<String>, BackendError> {
        // The database's clock decides, as it does for leases.
        Ok(self.interface.expire().await?)
    }
}

#[async_trait]
impl Callbacks for PostgresBackend {
    async fn callbacks_due(&self) -> Result<Vec<SubmissionView>, BackendError> {
        let records = self.interface.callback_candidates().await?;
        Ok(records
            .into_iter()
            .map(self.viewer())
            .filter(SubmissionView::callback_due)
            .collect())
    }

    async fn callback_settled(&self, id: &str, outcome_ms: i64) -> Result<(), BackendError> {
        Ok(self.interface.settle_callback(id, outcome_ms).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    fn record(state: SubmissionState) -> SubmissionRecord {
        SubmissionRecord {
            id: "s".into(),
            problem: "p".into(),
            language: "gcc-12".into(),
            state,
            score: Some(1.0),
            failed_subtasks: None,
            reason: Some("why".into()),
            compile_output: None,
            submitted_ms: 1,
            updated_ms: 2,
            attempt_over: true,
            retry_pending: false,
            tests_done: 1,
            callback_url: None,
            callback_sent_ms: None,
            timed_out: false,
            lease_expired: false,
        }
    }

    fn states(messages: &[Recorded]) -> Vec<&'static str> {
        messages.iter().map(|r| r.message.body.state()).collect()
    }

    #[test]
    fn the_messages_are_rebuilt_in_the_order_they_were_sent() {
        let tested = (
            Message::new(
                "s",
                Body::Tested {
                    test_case: 1,
                    subtask: None,
                    result: Verdict::Accepted,
                    time: Some(1),
                    memory: Some(1),
                    score: None,
                    output: None,
                },
            ),
            5,
        );
        let judged = rebuild(&record(SubmissionState::Judged), true, vec![tested.clone()]);
        assert_eq!(
            states(&judged),
            ["executing", "compiling", "compiled", "tested", "done"]
        );
        assert_eq!(judged[3].judge_time_ms, Some(5));
        assert_eq!(judged[4].judge_time_ms, Some(2));
        let interpreted = rebuild(&record(SubmissionState::Judged), false, vec![tested]);
        assert_eq!(states(&interpreted), ["executing", "tested", "done"]);
        let compile_error = rebuild(&record(SubmissionState::CompileError), true, vec![]);
        assert_eq!(
            states(&compile_error),
            ["executing", "compiling", "compiled", "done"]
        );
        assert!(matches!(
            compile_error[2].message.body,
            Body::Compiled {
                result: CompileResult::Error,
                ..
            }
        ));
        let errored = rebuild(&record(SubmissionState::Error), true, vec![]);
        assert_eq!(states(&errored), ["executing", "error"]);
        assert!(rebuild(&record(SubmissionState::Queued), true, vec![]).is_empty());
        let running = SubmissionRecord {
            attempt_over: false,
            ..record(SubmissionState::Compiling)
        };
        assert_eq!(
            states(&rebuild(&running, true, vec![])),
            ["executing", "compiling"]
        );
    }
}
