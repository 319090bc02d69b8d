//! What a workflow is, as data: its kind and inputs, enough to build its steps again in another
//! process. Stored beside its snapshot, so a restarted service rebuilds the workflow and
//! restores where its steps stood.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::engine::step::RetryPolicy;
use super::engine::Workflow;
use super::judging::SubmissionJudge;
use super::rejudge::{self, RejudgeError};
use super::validate::{self, Solution, ValidateError};
use super::webhook::{Webhook, WebhookError};
use crate::store::{ResultStore, Selection, StoreError, SubmissionStore, WorkflowStore};

/// A workflow's kind and inputs (JSON with a `kind` field: `rejudge` or `validation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Definition {
    /// Judge submissions again, replacing their results.
    Rejudge {
        /// How the submissions were chosen.
        selection: Selection,
        /// The ids it judges, fixed when it was created (a submission that arrives later for
        /// the same problem is not part of it).
        submissions: Vec<String>,
        #[serde(flatten)]
        settings: Settings,
        /// http:// URL told the summary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook: Option<String>,
    },
    /// Judge a problem's solutions and report those that did not get their expected outcome.
    Validation {
        problem: String,
        /// The problem's CPU time limit, for the slowest-accepted report.
        time_limit_ms: u64,
        solutions: Vec<Solution>,
        #[serde(flatten)]
        settings: Settings,
    },
}

/// How the judgings of a workflow are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Attempts per judging when the infrastructure fails.
    pub attempts: u32,
    /// Wait before the second attempt (doubling before each next one), ms.
    pub first_backoff_ms: u64,
    /// Longest wait between attempts, ms.
    pub max_backoff_ms: u64,
    /// Judgings at once.
    pub max_running: usize,
}

impl Settings {
    /// `attempts` in all with the default backoff (1 s doubling, at most 60 s).
    pub fn new(attempts: u32, max_running: usize) -> Self {
        let retry = RetryPolicy::attempts(attempts);
        Settings {
            attempts: retry.attempts,
            first_backoff_ms: duration_ms(retry.first_backoff),
            max_backoff_ms: duration_ms(retry.max_backoff),
            max_running: max_running.max(1),
        }
    }

    pub fn with_backoff(self, first: Duration, max: Duration) -> Self {
        Settings {
            first_backoff_ms: duration_ms(first),
            max_backoff_ms: duration_ms(max),
            ..self
        }
    }

    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy::attempts(self.attempts).with_backoff(
            Duration::from_millis(self.first_backoff_ms),
            Duration::from_millis(self.max_backoff_ms),
        )
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What building a workflow from its definition needs.
#[derive(Clone)]
pub struct Env {
    pub judge: Arc<dyn SubmissionJudge>,
    /// Where a rejudge finds its submissions...
    pub submissions: Arc<dyn SubmissionStore>,
    /// ... and writes their new results (the same store, seen as a result store).
    pub results: Arc<dyn ResultStore>,
    /// Where the workflow's state is saved.
    pub store: Arc<dyn WorkflowStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejudge(#[from] RejudgeError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

impl Definition {
    /// `rejudge` or `validation`.
    pub fn kind(&self) -> &'static str {
        match self {
            Definition::Rejudge { .. } => "rejudge",
            Definition::Validation { .. } => "validation",
        }
    }

    /// The problem it concerns, when it is about one.
    pub fn problem(&self) -> Option<&str> {
        match self {
            Definition::Rejudge {
                selection: Selection::Problem(problem),
                ..
            }
            | Definition::Validation { problem, .. } => Some(problem),
            Definition::Rejudge { .. } => None,
        }
    }

    /// A rejudge of the submissions `selection` names in `store`, as they are now.
    pub async fn rejudge(
        store: &dyn SubmissionStore,
        selection: Selection,
        settings: Settings,
        webhook: Option<String>,
    ) -> Result<Definition, DefinitionError> {
        if let Some(url) = &webhook {
            Webhook::parse(url)?;
        }
        let found = store.select(&selection).await?;
        if let Selection::Ids(ids) = &selection {
            let missing: Vec<String> = ids
                .iter()
                .filter(|id| !found.iter().any(|s| &s.id == *id))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(RejudgeError::UnknownIds(missing).into());
            }
        }
        if found.is_empty() {
            return Err(RejudgeError::Nothing.into());
        }
        Ok(Definition::Rejudge {
            selection,
            submissions: found.into_iter().map(|s| s.id).collect(),
            settings,
            webhook,
        })
    }

    /// Builds the workflow named `name`, its state saved to `env.store`.
    pub async fn build(&self, name: &str, env: &Env) -> Result<Workflow, DefinitionError> {
        match self {
            Definition::Rejudge {
                submissions,
                settings,
                webhook,
                ..
            } => {
                let found = env
                    .submissions
                    .select(&Selection::Ids(submissions.clone()))
                    .await?;
                if found.len() < submissions.len() {
                    let gone: Vec<&String> = submissions
                        .iter()
                        .filter(|id| !found.iter().any(|s| &s.id == *id))
                        .collect();
                    warn!(
                        workflow = name,
                        ?gone,
                        "submissions of the rejudge are no longer stored; judging the others"
                    );
                }
                let options = rejudge::Options {
                    retry: settings.retry(),
                    max_running: settings.max_running,
                    webhook: webhook.as_deref().map(Webhook::parse).transpose()?,
                    store: Some(env.store.clone()),
                };
                Ok(rejudge::workflow(
                    name,
                    &found,
                    env.judge.clone(),
                    env.results.clone(),
                    &options,
                )?)
            }
            Definition::Validation {
                problem,
                time_limit_ms,
                solutions,
                settings,
            } => {
                let options = validate::Options {
                    retry: settings.retry(),
                    max_running: settings.max_running,
                    name: Some(name.to_owned()),
                    store: Some(env.store.clone()),
                };
                Ok(validate::workflow(
                    problem,
                    *time_limit_ms,
                    solutions,
                    env.judge.clone(),
                    &options,
                )?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::validate::Expected;

    #[test]
    fn definitions_are_json_with_their_kind() {
        let rejudge = Definition::Rejudge {
            selection: Selection::Problem("p".into()),
            submissions: vec!["a".into()],
            settings: Settings::new(3, 2),
            webhook: None,
        };
        let json = serde_json::to_value(&rejudge).unwrap();
        assert_eq!(json["kind"], "rejudge");
        assert_eq!(json["selection"], serde_json::json!({"problem": "p"}));
        assert_eq!(json["attempts"], 3);
        assert_eq!(serde_json::from_value::<Definition>(json).unwrap(), rejudge);
        assert_eq!(rejudge.problem(), Some("p"));

        let validation = Definition::Validation {
            problem: "p".into(),
            time_limit_ms: 1000,
            solutions: vec![Solution {
                name: "accepted/a.py".into(),
                expected: Expected::Accepted,
                language: "python-3.11".into(),
                source_code: "print(1)".into(),
                files: Vec::new(),
            }],
            settings: Settings::new(1, 1).with_backoff(Duration::ZERO, Duration::ZERO),
        };
        let json = serde_json::to_value(&validation).unwrap();
        assert_eq!(json["kind"], "validation");
        assert_eq!(json["solutions"][0]["sourceCode"], "print(1)");
        assert_eq!(
            serde_json::from_value::<Definition>(json).unwrap(),
            validation
        );
        assert_eq!(validation.kind(), "validation");
    }
}
