//! The memory store: the API's backend ([`MemoryBackend`], the default of `executioner serve`),
//! results and submissions for rejudges ([`MemoryResultStore`]), workflows
//! ([`MemoryWorkflowStore`]).
//!
//! The API's backend: submissions queued on a [`MemoryInterface`], and a table of them kept
//! up to date from the interface's messages (by [`MemoryBackend::follow`]). Workers take
//! submissions through a gate that skips cancelled ones.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

mod queue;
mod results;
mod workflow;

pub use queue::MemoryInterface;
pub use results::MemoryResultStore;
pub use workflow::MemoryWorkflowStore;

use super::filter::Expr;
use super::operation::SortKey;
use super::{
    first_page, last_finished, Backend, BackendError, Callbacks, Cancel, Intake, Judgings, Listing,
    Queueing, Recorded, ResultStore, Selection, Status, StoreError, SubmissionStore,
    SubmissionView, WorkflowStores,
};
use crate::interface::{Interface, InterfaceError, Sent, SubmissionState};
use crate::protocol::{Body, Message, Submission};
use crate::sync::lock;
use crate::time::now_ms;

struct Entry {
    submission: Submission,
    created_ms: i64,
    last_action_ms: i64,
    state: SubmissionState,
    /// The messages of the current attempt.
    log: Vec<Recorded>,
    total_tests: Option<usize>,
    seq: u64,
    callback_url: Option<String>,
    callback_sent_ms: Option<i64>,
    /// Ended at its deadline (its state is then `Cancelled`).
    timed_out: bool,
    /// Held by a remote worker that missed a heartbeat ([`Intake::holders_silent`]).
    silent: bool,
    /// A workflow's judging ([`Judgings`]): of this submission (or name); listed nowhere.
    judging_of: Option<String>,
}

impl Entry {
    fn view(&self) -> SubmissionView {
        let ended = self
            .log
            .last()
            .is_some_and(|r| r.message.body.is_terminal());
        let end = self.log.last().map(|r| &r.message.body);
        let (score, failed_subtasks, reason) = match end {
            Some(Body::Done {
                score,
                failed_subtasks,
            }) => (Some(score.unwrap_or(0.0)), failed_subtasks.clone(), None),
            Some(Body::Invalid { reason } | Body::Error { reason }) => (None, None, reason.clone()),
            _ => (None, None, None),
        };
        SubmissionView {
            id: self.submission.id.clone(),
            problem: self.submission.problem.clone(),
            language: self.submission.language.clone(),
            created_ms: self.created_ms,
            last_action_ms: self.last_action_ms,
            state: self.state,
            // The memory interface does not retry: an `error` is the end.
            status: match Status::of(self.state, ended, false) {
                _ if self.timed_out => Status::Timeout,
                Status::Running if self.silent => Status::Unresponsive,
                status => status,
            },
            tests_done: self
                .log
                .iter()
                .filter(|r| matches!(r.message.body, Body::Tested { .. }))
                .count(),
            total_tests: self.total_tests,
            score,
            failed_subtasks,
            reason: match self.timed_out {
                true => Some(super::TIMED_OUT.to_owned()),
                false => reason,
            },
            seq: self.seq,
            callback_url: self.callback_url.clone(),
            callback_sent_ms: self.callback_sent_ms,
        }
    }

    /// Records `message` of the current attempt (`executing` starts a new one).
    fn apply(&mut self, message: &Message, now: i64) {
        // A message is a sign of life.
        self.silent = false;
        if message.body == Body::Executing {
            self.log.clear();
        }
        self.log.push(Recorded {
            message: message.clone(),
            judge_time_ms: Some(now),
        });
        self.state = self.state.after(&message.body);
        self.last_action_ms = now;
    }
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    next_seq: u64,
    /// Deadlines not reached yet (ms since the epoch, id), soonest first.
    deadlines: BTreeSet<(i64, String)>,
    /// Ids flagged `silent` by the last [`Intake::holders_silent`].
    silent: HashSet<String>,
    /// Keys of judgings forgotten ([`Judgings::forget`]): never handed out, their messages
    /// refused.
    forgotten: HashSet<String>,
}

impl Table {
    /// The submissions, judgings left out.
    fn listed(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.judging_of.is_none())
    }
}

/// Submissions in memory. Changes are announced (by submission id) under the table's lock, so
/// a read after subscribing misses nothing.
pub struct MemoryBackend {
    interface: Arc<MemoryInterface>,
    table: Mutex<Table>,
    changed: broadcast::Sender<String>,
    workflows: Arc<MemoryWorkflowStore>,
}

impl MemoryBackend {
    pub fn new(interface: Arc<MemoryInterface>) -> Arc<Self> {
        Arc::new(MemoryBackend {
            interface,
            table: Mutex::new(Table::default()),
            changed: broadcast::channel(4096).0,
            workflows: Arc::new(MemoryWorkflowStore::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The interface submissions are queued on and messages recorded to.
    pub fn interface(&self) -> &Arc<MemoryInterface> {
        &self.interface
    }

    fn announce(&self, id: &str) {
        let _ = self.changed.send(id.to_owned());
    }

    /// Applies the interface's messages to the table until `shutdown`. Subscribes before
    /// returning, so no message sent after this call is missed.
    pub fn follow(self: &Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let mut messages = self.interface.subscribe();
        let backend = self.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    m = messages.recv() => m,
                    _ = shutdown.cancelled() => return,
                };
                match received {
                    Ok(message) => backend.apply(&message),
                    Err(RecvError::Lagged(missed)) => {
                        warn!(
                            missed,
                            "the submissions table lagged; reading the log again"
                        );
                        backend.resync();
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// Applies one recorded message. Messages of submissions not submitted here are ignored, as
    /// are those of a submission that is not taken (cancelled, or queued again after its worker
    /// vanished: a late message of the old attempt) unless they start an attempt.
    pub fn apply(&self, message: &Message) {
        let now = now_ms();
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(&message.id) else {
            return;
        };
        let untaken = matches!(
            entry.state,
            SubmissionState::Queued | SubmissionState::Cancelled
        );
        if entry.state == SubmissionState::Cancelled || (untaken && message.body != Body::Executing)
        {
            return;
        }
        entry.apply(message, now);
        self.announce(&message.id);
    }

    /// After missing messages: takes the current attempt of every taken, unfinished submission
    /// again from the interface's log.
    fn resync(&self) {
        let ids: Vec<String> = self
            .table()
            .entries
            .values()
            .filter(|e| {
                let view = e.view();
                !view.status.is_terminal() && view.status != Status::NotStarted
            })
            .map(|e| e.submission.id.clone())
            .collect();
        for id in ids {
            let log = self.interface.messages_of(&id);
            let start = log
                .iter()
                .rposition(|m| m.body == Body::Executing)
                .unwrap_or(0);
            let now = now_ms();
            let mut table = self.table();
            if let Some(entry) = table.entries.get_mut(&id) {
                for message in &log[start..] {
                    entry.apply(message, now);
                }
            }
            drop(table);
            self.announce(&id);
        }
    }

    /// A worker wants to start `id`: allowed unless it was cancelled. Moves a queued
    /// submission to judging under the lock, so cancelling and starting cannot race.
    fn claim(&self, id: &str) -> bool {
        let mut table = self.table();
        if table.forgotten.contains(id) {
            return false;
        }
        match table.entries.get_mut(id) {
            Some(entry) if entry.state == SubmissionState::Cancelled => false,
            Some(entry) => {
                if entry.state == SubmissionState::Queued {
                    entry.state = SubmissionState::Judging;
                    entry.log.clear();
                    entry.last_action_ms = now_ms();
                    self.announce(id);
                }
                true
            }
            None => true,
        }
    }

    fn is_cancelled(&self, id: &str) -> bool {
        let table = self.table();
        table.forgotten.contains(id)
            || table
                .entries
                .get(id)
                .is_some_and(|e| e.state == SubmissionState::Cancelled)
    }

    fn is_forgotten(&self, id: &str) -> bool {
        self.table().forgotten.contains(id)
    }

    /// Queues `submission`: a submission, or (with `judging_of`) a workflow's judging.
    fn queue(
        &self,
        submission: Submission,
        total_tests: Option<usize>,
        queueing: Queueing,
        judging_of: Option<String>,
    ) -> SubmissionView {
        let now = now_ms();
        let view = {
            let mut table = self.table();
            table.next_seq += 1;
            let entry = Entry {
                submission: submission.clone(),
                created_ms: now,
                last_action_ms: now,
                state: SubmissionState::Queued,
                log: Vec::new(),
                total_tests,
                seq: table.next_seq,
                callback_url: queueing.callback_url,
                callback_sent_ms: None,
                timed_out: false,
                silent: false,
                judging_of,
            };
            if let Some(deadline) = queueing.deadline_ms {
                table.deadlines.insert((deadline, submission.id.clone()));
            }
            let view = entry.view();
            table.entries.insert(submission.id.clone(), entry);
            self.announce(&submission.id);
            view
        };
        self.interface.push(submission);
        view
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn workflow_stores(self: Arc<Self>) -> WorkflowStores {
        WorkflowStores {
            submissions: self.clone(),
            workflows: self.workflows.clone(),
            judgings: self.clone(),
            results: self,
        }
    }
}

#[async_trait]
impl Listing for MemoryBackend {
    /// A judging is shown too, by its key (which only its workflow and its worker know).
    async fn get(&self, id: &str) -> Result<Option<SubmissionView>, BackendError> {
        Ok(self.table().entries.get(id).map(Entry::view))
    }

    async fn list(&self) -> Result<Vec<SubmissionView>, BackendError> {
        Ok(self.table().listed().map(Entry::view).collect())
    }

    async fn list_page(
        &self,
        filter: Option<&Expr>,
        after: Option<&SortKey>,
        limit: usize,
    ) -> Result<Vec<SubmissionView>, BackendError> {
        let views: Vec<SubmissionView> = self.table().listed().map(Entry::view).collect();
        Ok(first_page(views, filter, after, limit))
    }

    async fn last_finished(&self, limit: usize) -> Result<Vec<SubmissionView>, BackendError> {
        let views: Vec<SubmissionView> = self.table().listed().map(Entry::view).collect();
        Ok(last_finished(views, limit))
    }

    async fn messages(&self, id: &str) -> Result<Option<Vec<Recorded>>, BackendError> {
        Ok(self.table().entries.get(id).map(|e| e.log.clone()))
    }

    async fn cancel(&self, id: &str) -> Result<Cancel, BackendError> {
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(id) else {
            return Ok(Cancel::NotFound);
        };
        Ok(match entry.state {
            SubmissionState::Queued => {
                entry.state = SubmissionState::Cancelled;
                entry.last_action_ms = now_ms();
                self.announce(id);
                Cancel::Cancelled
            }
            SubmissionState::Cancelled => Cancel::Cancelled,
            _ => Cancel::TooLate(entry.view().status),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

#[async_trait]
impl Intake for MemoryBackend {
    async fn submit(
        &self,
        submission: Submission,
        total_tests: Option<usize>,
        queueing: Queueing,
    ) -> Result<SubmissionView, BackendError> {
        Ok(self.queue(submission, total_tests, queueing, None))
    }

    async fn queued(&self) -> Result<usize, BackendError> {
        Ok(self
            .table()
            .entries
            .values()
            .filter(|e| e.state == SubmissionState::Queued)
            .count())
    }

    fn worker_interface(self: Arc<Self>) -> Arc<dyn Interface> {
        Arc::new(Gate { backend: self })
    }

    async fn requeue(&self, id: &str) -> Result<bool, BackendError> {
        let submission = {
            let mut table = self.table();
            let Some(entry) = table.entries.get_mut(id) else {
                return Ok(false);
            };
            let taken = !matches!(
                entry.state,
                SubmissionState::Queued | SubmissionState::Cancelled
            );
            if !taken || entry.view().status.is_terminal() {
                return Ok(false);
            }
            entry.state = SubmissionState::Queued;
            entry.silent = false;
            entry.log.clear();
            entry.last_action_ms = now_ms();
            self.announce(id);
            entry.submission.clone()
        };
        self.interface.requeue(submission);
        Ok(true)
    }

    async fn holders_silent(&self, ids: &HashSet<String>) {
        let mut changed = Vec::new();
        {
            // Only the ids flagged now or before are looked at, not the whole table.
            let mut table = self.table();
            let before = std::mem::replace(&mut table.silent, ids.clone());
            for id in before.iter().chain(ids) {
                let silent = ids.contains(id);
                if let Some(entry) = table.entries.get_mut(id) {
                    if entry.silent != silent {
                        entry.silent = silent;
                        changed.push(id.clone());
                    }
                }
            }
        }
        for id in changed {
            self.announce(&id);
        }
    }

    async fn expire(&self, now_ms: i64) -> Result<Vec<String>, BackendError> {
        let mut table = self.table();
        // The deadlines reached, soonest first; the rest stay.
        let later = table.deadlines.split_off(&(now_ms + 1, String::new()));
        let due = std::mem::replace(&mut table.deadlines, later);
        let mut ended = Vec::new();
        for (_, id) in due {
            let Some(entry) = table.entries.get_mut(&id) else {
                continue;
            };
            // One finished in time is left as it is.
            if !entry.view().status.is_terminal() {
                // Cancelled: never handed out, and later messages of an attempt are ignored.
                entry.state = SubmissionState::Cancelled;
                entry.timed_out = true;
                entry.last_action_ms = now_ms;
                ended.push(id);
            }
        }
        drop(table);
        for id in &ended {
            self.announce(id);
        }
        Ok(ended)
    }
}

#[async_trait]
impl Callbacks for MemoryBackend {
    async fn callbacks_due(&self) -> Result<Vec<SubmissionView>, BackendError> {
        Ok(self
            .table()
            .entries
            .values()
            .filter(|e| e.callback_url.is_some())
            .map(Entry::view)
            .filter(SubmissionView::callback_due)
            .collect())
    }

    async fn callback_settled(&self, id: &str, outcome_ms: i64) -> Result<(), BackendError> {
        if let Some(entry) = self.table().entries.get_mut(id) {
            if entry.last_action_ms == outcome_ms {
                entry.callback_sent_ms = Some(outcome_ms);
                self.announce(id);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ResultStore for MemoryBackend {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut table = self.table();
        let Some(entry) = table.entries.get_mut(submission) else {
            return Err(StoreError {
                store: "memory",
                reason: format!("no submission {submission}"),
            });
        };
        entry.log.clear();
        entry.state = SubmissionState::Queued;
        for message in messages {
            entry.apply(message, now);
        }
        self.announce(submission);
        Ok(())
    }
}

#[async_trait]
impl SubmissionStore for MemoryBackend {
    async fn select(&self, selection: &Selection) -> Result<Vec<Submission>, StoreError> {
        let table = self.table();
        let mut entries: Vec<&Entry> = table
            .listed()
            .filter(|e| match selection {
                Selection::Problem(problem) => {
                    &e.submission.problem == problem && e.state != SubmissionState::Cancelled
                }
                Selection::Ids(ids) => ids.contains(&e.submission.id),
            })
            .collect();
        entries.sort_by_key(|e| (e.created_ms, e.seq));
        Ok(entries.into_iter().map(|e| e.submission.clone()).collect())
    }
}

/// The interface workers use: the memory interface, except that cancelled submissions are
/// skipped and cannot be claimed.
struct Gate {
    backend: Arc<MemoryBackend>,
}

#[async_trait]
impl Interface for Gate {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        loop {
            match self.backend.interface.next().await? {
                Some(s) if self.backend.is_cancelled(&s.id) => continue,
                other => return Ok(other),
            }
        }
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        if message.body == Body::Executing && !self.backend.claim(&message.id) {
            return Ok(Sent::NotTaken);
        }
        if self.backend.is_forgotten(&message.id) {
            return Err(InterfaceError::permanent(
                "memory",
                format!("judging {} was withdrawn", message.id),
            ));
        }
        self.backend.interface.send(message).await
    }
}

#[async_trait]
impl Judgings for MemoryBackend {
    async fn enqueue(&self, of: &str, judging: Submission) -> Result<(), StoreError> {
        let earlier: Vec<String> = self
            .table()
            .entries
            .values()
            .filter(|e| e.judging_of.as_deref() == Some(of))
            .map(|e| e.submission.id.clone())
            .collect();
        for key in earlier {
            self.forget(&key).await?;
        }
        self.queue(judging, None, Queueing::default(), Some(of.to_owned()));
        Ok(())
    }

    async fn progress(&self, key: &str) -> Result<Option<Vec<Message>>, StoreError> {
        let table = self.table();
        let entry = table.entries.get(key).filter(|e| e.judging_of.is_some());
        Ok(entry.map(|e| e.log.iter().map(|r| r.message.clone()).collect()))
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let mut table = self.table();
        if table
            .entries
            .get(key)
            .is_some_and(|e| e.judging_of.is_some())
        {
            table.entries.remove(key);
            table.forgotten.insert(key.to_owned());
            self.announce(key);
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}
