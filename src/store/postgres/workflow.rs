//! The workflow stores on the Postgres interface's database: workflows in the `workflows` table
//! (migration `20260301000000_workflows.sql`), and rejudges reading and replacing the
//! submissions of the `submissions`/`judge_results` tables.
//!
//! Which process runs a workflow is decided with session-level advisory locks held on one
//! connection of its own: they are released by the server when the process (or its
//! connection) dies, so a restarted service, or another instance, can adopt the workflow then
//! and never while its runner lives.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Connection, PgConnection, Row};
use tracing::{info, warn};

use crate::interface::PostgresInterface;
use crate::protocol::{Message, Submission};
use crate::store::workflow::{Snapshot, StoreError, StoredWorkflow, WorkflowStore};
use crate::store::{ResultStore, Selection, SubmissionStore};

const SAVE: &str = "
    INSERT INTO workflows (name, definition, snapshot, finished)
    VALUES ($1, 'null'::jsonb, $2::jsonb, $3)
    ON CONFLICT (name) DO UPDATE SET
        snapshot = EXCLUDED.snapshot,
        finished = EXCLUDED.finished,
        updated_at = now()";

/// A new workflow, or one that is over defined anew. Returns a row if it was written.
const DEFINE: &str = "
    INSERT INTO workflows (name, definition) VALUES ($1, $2::jsonb)
    ON CONFLICT (name) DO UPDATE SET
        definition = EXCLUDED.definition,
        snapshot = NULL,
        finished = false,
        created_at = now(),
        updated_at = now()
    WHERE workflows.finished
    RETURNING name";

macro_rules! workflow_columns {
    () => {
        "name, definition::text AS definition, snapshot::text AS snapshot, finished,
         (EXTRACT(EPOCH FROM created_at) * 1000)::int8 AS created_ms,
         (EXTRACT(EPOCH FROM updated_at) * 1000)::int8 AS updated_ms"
    };
}

const GET: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows WHERE name = $1"
);
const LIST: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows ORDER BY created_at, name"
);

/// The advisory lock key of a workflow: a 64-bit hash of its name.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 0))";

fn failure(reason: impl Into<String>) -> StoreError {
    StoreError {
        store: "postgres",
        reason: reason.into(),
    }
}

/// Workflows in the `workflows` table.
pub struct PostgresWorkflowStore {
    pool: PgPool,
    /// The connection holding this process's advisory locks; opened at the first adoption.
    locks: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PostgresWorkflowStore {
    /// On the database of `interface` (whose migrations created the table).
    pub fn new(interface: &PostgresInterface) -> Self {
        PostgresWorkflowStore {
            pool: interface.pool().clone(),
            locks: tokio::sync::Mutex::new(None),
        }
    }

    async fn lock_statement(&self, sql: &str, workflow: &str) -> Result<bool, StoreError> {
        let mut locks = self.locks.lock().await;
        if locks.is_none() {
            let connection = self
                .pool
                .acquire()
                .await
                .map_err(|e| failure(format!("opening the lock connection: {e}")))?;
            // Out of the pool: its session (and so its locks) must live as long as we want.
            *locks = Some(connection.detach());
        }
        let Some(connection) = locks.as_mut() else {
            return Err(failure("no lock connection"));
        };
        match sqlx::query_scalar::<_, bool>(sql)
            .bind(workflow)
            .fetch_one(&mut *connection)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(e) => {
                // The session may be gone, and its locks with it: every workflow this process
                // runs may now be adopted elsewhere.
                warn!(error = %e, "the workflow lock connection failed; its locks are lost");
                if let Some(connection) = locks.take() {
                    let _ = connection.close().await;
                }
                Err(failure(format!("locking workflow {workflow}: {e}")))
            }
        }
    }
}

fn stored_of(row: &PgRow) -> Result<StoredWorkflow, String> {
    let text = |column: &str| -> Result<Option<String>, String> {
        row.try_get(column).map_err(|e| e.to_string())
    };
    let name: String = row.try_get("name").map_err(|e| e.to_string())?;
    let definition: Value = match text("definition")? {
        Some(text) => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        None => Value::Null,
    };
    let snapshot: Option<Snapshot> = text("snapshot")?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| format!("the snapshot of workflow {name} is not readable: {e}"))?;
    Ok(StoredWorkflow {
        definition,
        snapshot,
        over: row.try_get("finished").map_err(|e| e.to_string())?,
        created_ms: row.try_get("created_ms").map_err(|e| e.to_string())?,
        updated_ms: row.try_get("updated_ms").map_err(|e| e.to_string())?,
        name,
    })
}

#[async_trait]
impl WorkflowStore for PostgresWorkflowStore {
    async fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let text = serde_json::to_string(snapshot).map_err(|e| failure(e.to_string()))?;
        sqlx::query(SAVE)
            .bind(&snapshot.workflow)
            .bind(text)
            .bind(snapshot.is_over())
            .execute(&self.pool)
            .await
            .map_err(|e| failure(format!("saving workflow {}: {e}", snapshot.workflow)))?;
        Ok(())
    }

    async fn define(&self, workflow: &str, definition: &Value) -> Result<bool, StoreError> {
        let written: Option<String> = sqlx::query_scalar(DEFINE)
            .bind(workflow)
            .bind(definition.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| failure(format!("defining workflow {workflow}: {e}")))?;
        Ok(written.is_some())
    }

    async fn get(&self, workflow: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        let row = sqlx::query(GET)
            .bind(workflow)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| failure(format!("reading workflow {workflow}: {e}")))?;
        row.as_ref()
            .map(stored_of)
            .transpose()
            .map_err(|e| failure(format!("reading workflow {workflow}: {e}")))
    }

    async fn list(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        let rows = sqlx::query(LIST)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| failure(format!("reading the workflows: {e}")))?;
        rows.iter()
            .map(stored_of)
            .collect::<Result<_, _>>()
            .map_err(|e| failure(format!("reading the workflows: {e}")))
    }

    async fn adopt(&self, workflow: &str) -> Result<bool, StoreError> {
        let adopted = self.lock_statement(TRY_LOCK, workflow).await?;
        if adopted {
            info!(workflow, "workflow adopted: this process runs it");
        }
        Ok(adopted)
    }

    async fn disown(&self, workflow: &str) -> Result<(), StoreError> {
        self.lock_statement(UNLOCK, workflow).await.map(|_| ())
    }
}

/// Rejudges over the Postgres interface: they read the submissions from its table and write
/// each new result over the old one, as one transaction.
pub struct PostgresSubmissions {
    interface: Arc<PostgresInterface>,
}

impl PostgresSubmissions {
    pub fn new(interface: Arc<PostgresInterface>) -> Self {
        PostgresSubmissions { interface }
    }
}

#[async_trait]
impl ResultStore for PostgresSubmissions {
    async fn replace(&self, submission: &str, messages: &[Message]) -> Result<(), StoreError> {
        let replaced = self
            .interface
            .replace(submission, messages)
            .await
            .map_err(|e| failure(e.to_string()))?;
        if replaced {
            Ok(())
        } else {
            Err(failure(format!(
                "submission {submission} is no longer stored: its new result has nowhere to go"
            )))
        }
    }
}

#[async_trait]
impl SubmissionStore for PostgresSubmissions {
    async fn select(&self, selection: &Selection) -> Result<Vec<Submission>, StoreError> {
        let selected = match selection {
            Selection::Problem(problem) => self.interface.submissions_of_problem(problem).await,
            Selection::Ids(ids) => self.interface.submissions_by_ids(ids).await,
        };
        selected.map_err(|e| failure(e.to_string()))
    }
}
