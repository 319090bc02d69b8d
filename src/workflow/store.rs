//! Where workflows keep what must outlive the process: the state of their steps
//! ([`WorkflowStore`]) and, for judging workflows, the results that replace a submission's old
//! ones ([`ResultStore`]). Memory implementations here; a Postgres one (same traits, the
//! snapshot as a `jsonb` row per workflow) is left for when the Postgres interface lands.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::StepState;
use crate::protocol::Message;

/// The saved state of a workflow's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub workflow: String,
    pub steps: Vec<StepSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSnapshot {
    pub id: String,
    pub state: StepState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failure of a store itself. Retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store {store}: {reason}")]
pub struct StoreError {
    pub store: &'static str,
    pub reason: String,
}

/// Keeps workflow snapshots, one per workflow name, the latest replacing the one before.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError>;
    async fn load(&self, workflow: &str) -> Result<Option<Snapshot>, StoreError>;
}

/// Snapshots in memory.
#[derive(Default)]
pub struct MemoryWorkflowStore {
    snapshots: Mutex<HashMap<String, Snapshot>>,
}

impl MemoryWorkflowStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WorkflowStore for MemoryWorkflowStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let mut snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        snapshots.insert(snapshot.workflow.clone(), snapshot.clone());
        Ok(())
    }

    async fn load(&self, workflow: &str) -> Result<Option<Snapshot>, StoreError> {
        let snapshots = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        Ok(snapshots.get(workflow).cloned())
    }
}

/// Where a rejudged submission's new messages go, replacing its old ones.
#[async_trait]
pub trait ResultStore: Send + Sync + 'static {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError>;
}

/// The latest messages of each submission, in memory.
#[derive(Default)]
pub struct MemoryResultStore {
    results: Mutex<BTreeMap<String, Vec<Message>>>,
}

impl MemoryResultStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn messages_of(&self, submission: &str) -> Option<Vec<Message>> {
        let results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.get(submission).cloned()
    }

    /// Every submission's messages, by submission id.
    pub fn all(&self) -> BTreeMap<String, Vec<Message>> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl ResultStore for MemoryResultStore {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError> {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        results.insert(submission.to_owned(), messages.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;

    #[tokio::test]
    async fn the_latest_snapshot_replaces_the_one_before() {
        let store = MemoryWorkflowStore::new();
        assert_eq!(store.load("w").await.unwrap(), None);
        let mut snapshot = Snapshot {
            workflow: "w".into(),
            steps: vec![StepSnapshot {
                id: "a".into(),
                state: StepState::Running,
                attempts: 1,
                result: None,
                error: None,
            }],
        };
        store.save(&snapshot).await.unwrap();
        snapshot.steps[0].state = StepState::Succeeded;
        store.save(&snapshot).await.unwrap();
        assert_eq!(store.load("w").await.unwrap(), Some(snapshot));
    }

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
