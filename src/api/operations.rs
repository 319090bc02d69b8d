//! The operations table: one long-running operation per submitted submission, kept up to date
//! from the interface's messages, and the gate through which the local worker takes
//! submissions (so a cancelled operation is never judged).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::broadcast;

use super::time::now_ms;
use crate::interface::{Interface, InterfaceError, MemoryInterface, Sent};
use crate::protocol::{Body, CompileResult, Message, Submission};

/// The state of an operation (the seed's operation states; lower case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotStarted => "notstarted",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Default sort: not started, running, then completed (any terminal state).
    pub fn sort_group(self) -> u8 {
        match self {
            Status::NotStarted => 0,
            Status::Running => 1,
            _ => 2,
        }
    }
}

/// The submission's state as the STAOJ stores name it (SPEC §6), plus `queued`/`cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SubmissionState {
    Queued,
    Judging,
    Compiling,
    Compiled,
    CompileError,
    Judged,
    Error,
    InvalidData,
    Cancelled,
}

/// One message as the table recorded it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub message: Message,
    /// When the table saw it, ms since the epoch.
    pub judge_time_ms: i64,
}

/// A snapshot of one operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub problem: String,
    pub language: String,
    pub created_ms: i64,
    pub last_action_ms: i64,
    pub status: Status,
    /// Tests of the problem, when known at submission time.
    pub total_tests: Option<usize>,
    pub log: Vec<Recorded>,
    /// Creation order, to break ties between equal creation times.
    pub seq: u64,
}

impl Operation {
    /// Whole percent of the tests done; 100 once succeeded.
    pub fn percent_complete(&self) -> u32 {
        if self.status == Status::Succeeded {
            return 100;
        }
        let tested = self
            .log
            .iter()
            .filter(|r| matches!(r.message.body, Body::Tested { .. }))
            .count();
        match self.total_tests {
            Some(total) if total > 0 => (tested.min(total) * 100 / total) as u32,
            _ => 0,
        }
    }

    pub fn submission_state(&self) -> SubmissionState {
        if self.status == Status::Cancelled {
            return SubmissionState::Cancelled;
        }
        let mut state = if self.status == Status::NotStarted {
            SubmissionState::Queued
        } else {
            SubmissionState::Judging
        };
        for r in &self.log {
            state = match (&r.message.body, state) {
                (Body::Executing, _) => SubmissionState::Judging,
                (Body::Compiling, _) => SubmissionState::Compiling,
                (
                    Body::Compiled {
                        result: CompileResult::Success,
                        ..
                    },
                    _,
                ) => SubmissionState::Compiled,
                (
                    Body::Compiled {
                        result: CompileResult::Error,
                        ..
                    },
                    _,
                ) => SubmissionState::CompileError,
                (Body::Done { .. }, SubmissionState::CompileError) => SubmissionState::CompileError,
                (Body::Done { .. }, _) => SubmissionState::Judged,
                (Body::Error { .. }, _) => SubmissionState::Error,
                (Body::Invalid { .. }, _) => SubmissionState::InvalidData,
                (Body::Testing { .. } | Body::Tested { .. }, s) => s,
            };
        }
        state
    }

    /// The terminal message, if the submission has ended.
    pub fn end(&self) -> Option<&Message> {
        self.log
            .last()
            .map(|r| &r.message)
            .filter(|m| m.body.is_terminal())
    }
}

/// What `DELETE` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Now (or already) cancelled.
    Cancelled,
    /// Running or finished: too late to cancel.
    TooLate(Status),
    NotFound,
}

#[derive(Default)]
struct Table {
    ops: HashMap<String, Operation>,
    next_seq: u64,
}

/// Every operation of this API instance. Changes are announced (by operation id) to
/// subscribers, under the table's lock, so a snapshot taken after subscribing misses nothing.
pub struct Operations {
    table: Mutex<Table>,
    changed: broadcast::Sender<String>,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            table: Mutex::new(Table::default()),
            changed: broadcast::channel(4096).0,
        }
    }
}

impl Operations {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids of operations that changed from now on. A lagging receiver should re-read.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    /// Records a new, not started operation for `submission`.
    pub fn create(&self, submission: &Submission, total_tests: Option<usize>) -> Operation {
        let now = now_ms();
        let mut table = self.table();
        table.next_seq += 1;
        let op = Operation {
            id: submission.id.clone(),
            problem: submission.problem.clone(),
            language: submission.language.clone(),
            created_ms: now,
            last_action_ms: now,
            status: Status::NotStarted,
            total_tests,
            log: Vec::new(),
            seq: table.next_seq,
        };
        table.ops.insert(op.id.clone(), op.clone());
        let _ = self.changed.send(op.id.clone());
        op
    }

    pub fn get(&self, id: &str) -> Option<Operation> {
        self.table().ops.get(id).cloned()
    }

    /// The `index`-th message of operation `id` if it has been recorded, and the operation's
    /// status; `None` for an unknown operation.
    pub fn message_at(&self, id: &str, index: usize) -> Option<(Option<Recorded>, Status)> {
        let table = self.table();
        let op = table.ops.get(id)?;
        Some((op.log.get(index).cloned(), op.status))
    }

    pub fn all(&self) -> Vec<Operation> {
        self.table().ops.values().cloned().collect()
    }

    pub fn not_started(&self) -> usize {
        self.table()
            .ops
            .values()
            .filter(|o| o.status == Status::NotStarted)
            .count()
    }

    /// Cancels a not started operation; idempotent.
    pub fn cancel(&self, id: &str) -> Cancel {
        let mut table = self.table();
        let Some(op) = table.ops.get_mut(id) else {
            return Cancel::NotFound;
        };
        match op.status {
            Status::NotStarted => {
                op.status = Status::Cancelled;
                op.last_action_ms = now_ms();
                let _ = self.changed.send(id.to_owned());
                Cancel::Cancelled
            }
            Status::Cancelled => Cancel::Cancelled,
            other => Cancel::TooLate(other),
        }
    }

    /// A worker wants to start `id`: allowed unless the operation was cancelled. Moves a not
    /// started operation to running under the lock, so cancelling and starting cannot race.
    fn claim(&self, id: &str) -> bool {
        let mut table = self.table();
        match table.ops.get_mut(id) {
            Some(op) if op.status == Status::Cancelled => false,
            Some(op) => {
                if op.status == Status::NotStarted {
                    op.status = Status::Running;
                    op.last_action_ms = now_ms();
                    let _ = self.changed.send(id.to_owned());
                }
                true
            }
            None => true,
        }
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.table()
            .ops
            .get(id)
            .is_some_and(|o| o.status == Status::Cancelled)
    }

    /// Applies one recorded message. Messages of unknown operations (not submitted here) and of
    /// cancelled ones are ignored.
    pub fn apply(&self, message: &Message) {
        let now = now_ms();
        let mut table = self.table();
        let Some(op) = table.ops.get_mut(&message.id) else {
            return;
        };
        if op.status == Status::Cancelled {
            return;
        }
        op.log.push(Recorded {
            message: message.clone(),
            judge_time_ms: now,
        });
        op.last_action_ms = now;
        op.status = match &message.body {
            Body::Done { .. } => Status::Succeeded,
            Body::Invalid { .. } | Body::Error { .. } => Status::Failed,
            _ => Status::Running,
        };
        let _ = self.changed.send(message.id.clone());
    }

    /// After missing messages (a lagging subscription): takes every unfinished operation's
    /// messages again from the interface's log.
    pub fn resync(&self, interface: &MemoryInterface) {
        let ids: Vec<(String, usize)> = self
            .table()
            .ops
            .values()
            .filter(|o| !o.status.is_terminal())
            .map(|o| (o.id.clone(), o.log.len()))
            .collect();
        for (id, seen) in ids {
            for message in interface.messages_of(&id).iter().skip(seen) {
                self.apply(message);
            }
        }
    }
}

/// The interface the local worker uses: the shared memory interface, except that cancelled
/// operations are skipped and cannot be claimed.
pub struct Gate {
    pub(crate) inner: Arc<MemoryInterface>,
    pub(crate) operations: Arc<Operations>,
}

#[async_trait]
impl Interface for Gate {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        loop {
            match self.inner.next().await? {
                Some(s) if self.operations.is_cancelled(&s.id) => continue,
                other => return Ok(other),
            }
        }
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        if message.body == Body::Executing && !self.operations.claim(&message.id) {
            return Ok(Sent::NotTaken);
        }
        self.inner.send(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(id: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: "p".into(),
            language: "c".into(),
            source_code: "x".into(),
        }
    }

    #[tokio::test]
    async fn a_cancelled_operation_is_skipped_and_cannot_be_claimed() {
        let inner = Arc::new(MemoryInterface::new());
        let operations = Arc::new(Operations::default());
        let gate = Gate {
            inner: inner.clone(),
            operations: operations.clone(),
        };
        for id in ["a", "b"] {
            operations.create(&submission(id), Some(2));
            inner.push(submission(id));
        }
        assert_eq!(operations.cancel("a"), Cancel::Cancelled);
        assert_eq!(operations.cancel("a"), Cancel::Cancelled);
        assert_eq!(gate.next().await.unwrap().unwrap().id, "b");
        let exec = |id: &str| Message::new(id, Body::Executing);
        assert_eq!(gate.send(&exec("a")).await.unwrap(), Sent::NotTaken);
        assert_eq!(gate.send(&exec("b")).await.unwrap(), Sent::Recorded);
        assert_eq!(operations.get("b").unwrap().status, Status::Running);
        assert_eq!(operations.cancel("b"), Cancel::TooLate(Status::Running));
        assert_eq!(operations.cancel("zz"), Cancel::NotFound);
    }

    #[test]
    fn messages_move_the_operation_and_the_percentage() {
        let operations = Operations::default();
        operations.create(&submission("s"), Some(4));
        operations.apply(&Message::new("s", Body::Executing));
        operations.apply(&Message::new(
            "s",
            Body::Tested {
                test_case: 1,
                subtask: None,
                result: crate::verdict::Verdict::Accepted,
                time: Some(1),
                memory: Some(1),
            },
        ));
        let op = operations.get("s").unwrap();
        assert_eq!(
            (op.status, op.percent_complete(), op.submission_state()),
            (Status::Running, 25, SubmissionState::Judging)
        );
        operations.apply(&Message::new(
            "s",
            Body::Error {
                reason: Some("x".into()),
            },
        ));
        let op = operations.get("s").unwrap();
        assert_eq!(
            (op.status, op.submission_state()),
            (Status::Failed, SubmissionState::Error)
        );
    }
}
