//! Where the judging workflows keep what must outlive the process: the submissions a rejudge
//! judges again and the results that replace their old ones ([`SubmissionStore`],
//! [`ResultStore`]); with the engine's own [`WorkflowStore`] (what each workflow is and the state
//! of its steps), re-exported here. Memory implementations here and in the engine; Postgres ones
//! in [`postgres`] (the `workflows` table, and the `submissions`/`judge_results` tables of the
//! Postgres interface).

pub mod postgres;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::protocol::{Message, Submission};
use crate::sync::lock;

pub use super::engine::store::{
    MemoryWorkflowStore, Snapshot, StepSnapshot, StoreError, StoredWorkflow, WorkflowStore,
};

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

/// The latest messages of each submission, in memory; and the submissions a rejudge may select.
#[derive(Default)]
pub struct MemoryResultStore {
    results: Mutex<BTreeMap<String, Vec<Message>>>,
    submissions: Vec<Submission>,
}

impl MemoryResultStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `submissions` (in this order) for rejudges to select.
    pub fn with_submissions(submissions: Vec<Submission>) -> Self {
        MemoryResultStore {
            results: Mutex::default(),
            submissions,
        }
    }

    pub fn messages_of(&self, submission: &str) -> Option<Vec<Message>> {
        let results = lock(&self.results);
        results.get(submission).cloned()
    }

    /// Every submission's messages, by submission id.
    pub fn all(&self) -> BTreeMap<String, Vec<Message>> {
        lock(&self.results).clone()
    }
}

#[async_trait]
impl ResultStore for MemoryResultStore {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError> {
        let mut results = lock(&self.results);
        results.insert(submission.to_owned(), messages.to_vec());
        Ok(())
    }
}

#[async_trait]
impl SubmissionStore for MemoryResultStore {
    async fn select(&self, selection: &Selection) -> Result<Vec<Submission>, StoreError> {
        Ok(self
            .submissions
            .iter()
            .filter(|s| match selection {
                Selection::Problem(problem) => &s.problem == problem,
                Selection::Ids(ids) => ids.contains(&s.id),
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;

    #[tokio::test]
    async fn new_results_replace_old_ones() {
        let store = MemoryResultStore::new();
        let error = Message::new("s", Body::Error { reason: None });
        let done = Message::new(
            "s",
            Body::Done {
                score: Some(1.0),
                failed_subtasks: None,
            },
        );
        store.replace("s", &[error]).await.unwrap();
        store
            .replace("s", std::slice::from_ref(&done))
            .await
            .unwrap();
        assert_eq!(store.messages_of("s"), Some(vec![done]));
        assert_eq!(store.messages_of("t"), None);
    }
}
