//! Workflows in memory ([`MemoryWorkflowStore`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::store::workflow::{Snapshot, StoreError, StoredWorkflow, WorkflowStore};
use crate::sync::lock;
use crate::time::now_ms;

#[derive(Default)]
struct Kept {
    workflows: HashMap<String, StoredWorkflow>,
    adopted: HashSet<String>,
}

/// Workflows in memory.
#[derive(Default)]
pub struct MemoryWorkflowStore {
    kept: Mutex<Kept>,
}

impl MemoryWorkflowStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        lock(&self.kept)
    }
}

#[async_trait]
impl WorkflowStore for MemoryWorkflowStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let now = now_ms();
        let mut kept = self.kept();
        let stored = kept
            .workflows
            .entry(snapshot.workflow.clone())
            .or_insert_with(|| StoredWorkflow {
                name: snapshot.workflow.clone(),
                definition: Value::Null,
                snapshot: None,
                over: false,
                created_ms: now,
                updated_ms: now,
            });
        stored.over = snapshot.is_over();
        stored.snapshot = Some(snapshot.clone());
        stored.updated_ms = now;
        Ok(())
    }

    async fn define(&self, workflow: &str, definition: &Value) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut kept = self.kept();
        if kept.workflows.get(workflow).is_some_and(|w| !w.over) {
            return Ok(false);
        }
        kept.workflows.insert(
            workflow.to_owned(),
            StoredWorkflow {
                name: workflow.to_owned(),
                definition: definition.clone(),
                snapshot: None,
                over: false,
                created_ms: now,
                updated_ms: now,
            },
        );
        Ok(true)
    }

    async fn get(&self, workflow: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        Ok(self.kept().workflows.get(workflow).cloned())
    }

    async fn list(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let mut all: Vec<_> = self.kept().workflows.values().cloned().collect();
        all.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        Ok(all)
    }

    async fn adopt(&self, workflow: &str) -> Result<bool, StoreError> {
        Ok(self.kept().adopted.insert(workflow.to_owned()))
    }

    async fn disown(&self, workflow: &str) -> Result<(), StoreError> {
        self.kept().adopted.remove(workflow);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::workflow::state::StepState;
    use crate::store::workflow::StepSnapshot;

    #[tokio::test]
    async fn the_latest_snapshot_replaces_the_one_before() {
        let store = MemoryWorkflowStore::new();
        assert_eq!(store.load("w").await.unwrap(), None);
        let mut snapshot = Snapshot {
            workflow: "w".into(),
            shut_down: false,
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
        assert_eq!(store.load("w").await.unwrap(), Some(snapshot.clone()));
        assert!(store.get("w").await.unwrap().unwrap().over);
    }

    #[tokio::test]
    async fn a_workflow_is_defined_again_only_once_it_is_over_and_adopted_once() {
        let store = MemoryWorkflowStore::new();
        let definition = serde_json::json!({"kind": "x"});
        assert!(store.define("w", &definition).await.unwrap());
        let running = Snapshot {
            workflow: "w".into(),
            shut_down: false,
            steps: vec![StepSnapshot {
                id: "a".into(),
                state: StepState::Waiting,
                attempts: 0,
                result: None,
                error: None,
            }],
        };
        store.save(&running).await.unwrap();
        assert!(!store.define("w", &serde_json::json!(1)).await.unwrap());
        assert_eq!(
            store.get("w").await.unwrap().unwrap().definition,
            definition
        );
        let shut_down = Snapshot {
            shut_down: true,
            ..running
        };
        store.save(&shut_down).await.unwrap();
        assert!(store.define("w", &serde_json::json!(1)).await.unwrap());
        assert_eq!(store.list().await.unwrap().len(), 1);
        assert!(store.adopt("w").await.unwrap());
        assert!(!store.adopt("w").await.unwrap());
        store.disown("w").await.unwrap();
        assert!(store.adopt("w").await.unwrap());
    }
}
