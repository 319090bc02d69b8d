//! Workflow state: where a workflow keeps what must outlive the process, what it is (its
//! definition, as JSON the engine does not read) and the state of its steps ([`WorkflowStore`]),
//! with the states a step moves through ([`state`]). The memory implementation is in
//! [`super::memory`], the Postgres one in [`super::postgres`] (the `workflows` table).

pub mod state;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::state::StepState;

/// The saved state of a workflow's steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub workflow: String,
    pub steps: Vec<StepSnapshot>,
    /// Shut down by an operator: it takes no more control calls and is not continued after a
    /// restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shut_down: bool,
}

impl Snapshot {
    /// Nothing is left to continue: every step has finished, or the workflow was shut down.
    pub fn is_over(&self) -> bool {
        self.shut_down || self.steps.iter().all(|s| s.state.is_final())
    }
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

/// A workflow as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWorkflow {
    pub name: String,
    /// What rebuilds it (see `crate::workflow::Definition`); `null` for a workflow that
    /// was only ever saved, never defined.
    pub definition: Value,
    /// The last saved state of its steps.
    pub snapshot: Option<Snapshot>,
    /// See [`Snapshot::is_over`].
    pub over: bool,
    /// ms since the epoch.
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Keeps workflows: what each is, and a snapshot of its steps, the latest replacing the one
/// before.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Saves the state of a workflow's steps (creating the workflow if it was never defined).
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    async fn load(&self, workflow: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.get(workflow).await?.and_then(|w| w.snapshot))
    }

    /// Records a new workflow, replacing one of the same name that is over. `false` (and
    /// nothing changed) when a workflow of that name is not over yet.
    async fn define(&self, workflow: &str, definition: &Value) -> Result<bool, StoreError>;

    async fn get(&self, workflow: &str) -> Result<Option<StoredWorkflow>, StoreError>;

    /// Every workflow, oldest first.
    async fn list(&self) -> Result<Vec<StoredWorkflow>, StoreError>;

    /// Takes the right to run `workflow` in this process, for as long as the process lives (or
    /// until [`WorkflowStore::disown`]). `false` when another runner has it.
    async fn adopt(&self, workflow: &str) -> Result<bool, StoreError>;

    async fn disown(&self, workflow: &str) -> Result<(), StoreError>;
}
