//! Rejudge: judge again all submissions of a problem, or a given list, replacing their results
//! in the store. One judge step per submission (`kind=judge`, with `submission`, `problem` and
//! `language` tags, so an operator can pause or skip some), joined by a summary step, followed
//! by an owner notification when a webhook is given.

use std::collections::BTreeSet;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::builder::{BuildError, WorkflowBuilder};
use super::engine::control::Selector;
use super::engine::step::{RetryPolicy, Step, StepError, StepSpec};
use super::engine::{StepContext, Workflow};
use super::judging::{End, JudgeStep, Judgement, SubmissionJudge};
use super::webhook::{NotifyStep, Webhook};
use crate::protocol::Submission;
use crate::store::workflow::state::StepState;
pub use crate::store::Selection;
use crate::store::{ResultStore, WorkflowStore};

#[derive(Debug, thiserror::Error)]
pub enum RejudgeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a submission: {source}")]
    NotASubmission {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("no submission has the id(s) {0:?}")]
    UnknownIds(Vec<String>),
    #[error("no submission to rejudge")]
    Nothing,
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// Submissions from a JSON-lines file (one SPEC §1 object per line; blank lines skipped).
pub fn read_submissions(path: &Path) -> Result<Vec<Submission>, RejudgeError> {
    let io = |source| RejudgeError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut submissions = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let submission =
            serde_json::from_str(&line).map_err(|source| RejudgeError::NotASubmission {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?;
        submissions.push(submission);
    }
    Ok(submissions)
}

/// The submissions `selection` names, in their order in `all`.
pub fn select(
    all: Vec<Submission>,
    selection: &Selection,
) -> Result<Vec<Submission>, RejudgeError> {
    let chosen: Vec<Submission> = match selection {
        Selection::Problem(problem) => all.into_iter().filter(|s| &s.problem == problem).collect(),
        Selection::Ids(ids) => {
            let wanted: BTreeSet<&String> = ids.iter().collect();
            let chosen: Vec<Submission> =
                all.into_iter().filter(|s| wanted.contains(&s.id)).collect();
            let found: BTreeSet<&String> = chosen.iter().map(|s| &s.id).collect();
            let missing: Vec<String> = wanted.difference(&found).map(|id| id.to_string()).collect();
            if !missing.is_empty() {
                return Err(RejudgeError::UnknownIds(missing));
            }
            chosen
        }
    };
    if chosen.is_empty() {
        return Err(RejudgeError::Nothing);
    }
    Ok(chosen)
}

/// Settings of a rejudge.
#[derive(Clone, Default)]
pub struct Options {
    pub retry: RetryPolicy,
    /// Submissions judged at once (0 counts as 1).
    pub max_running: usize,
    /// Told the summary once every submission is done.
    pub webhook: Option<Webhook>,
    /// Where every change of the steps' states is saved.
    pub store: Option<Arc<dyn WorkflowStore>>,
}

/// Step id of the join that sums up the rejudge.
pub const SUMMARY: &str = "summary";

/// Step id of the judge step of submission `id`.
pub fn step_id(submission: &str) -> String {
    format!("judge-{submission}")
}

pub fn workflow(
    name: &str,
    submissions: &[Submission],
    judge: Arc<dyn SubmissionJudge>,
    results: Arc<dyn ResultStore>,
    options: &Options,
) -> Result<Workflow, RejudgeError> {
    let mut builder = WorkflowBuilder::new(name).max_running(options.max_running.max(1));
    if let Some(store) = &options.store {
        builder = builder.store(store.clone());
    }
    let ids: Vec<String> = submissions.iter().map(|s| step_id(&s.id)).collect();
    for (submission, id) in submissions.iter().zip(&ids) {
        let step = JudgeStep {
            submission: submission.clone(),
            judge: judge.clone(),
            results: Some(results.clone()),
        };
        builder = builder.step(
            StepSpec::new(id, Arc::new(step))
                .tag("kind", "judge")
                .tag("submission", &submission.id)
                .tag("problem", &submission.problem)
                .tag("language", &submission.language)
                .retry(options.retry),
        );
    }
    builder = builder.step(StepSpec::new(SUMMARY, Arc::new(SummaryStep)).tag("kind", "summary"));
    let mut pairs: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), SUMMARY)).collect();
    if let Some(webhook) = &options.webhook {
        let notify = NotifyStep {
            webhook: webhook.clone(),
            about: SUMMARY.to_owned(),
        };
        builder = builder.step(
            StepSpec::new("notify", Arc::new(notify))
                .tag("kind", "notify")
                .retry(options.retry),
        );
        pairs.push((SUMMARY, "notify"));
    }
    Ok(builder.completion_pairs(&pairs).build()?)
}

/// How far a rejudge has got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub total: usize,
    pub running: usize,
    /// Judged: `done` or `invalid`, result replaced.
    pub judged: usize,
    /// Given up on (after every attempt) or held failed.
    pub failed: usize,
    pub skipped: usize,
    /// Paused, marked to pause, or interrupted.
    pub held: usize,
}

impl Progress {
    pub fn of(workflow: &Workflow) -> Self {
        let mut progress = Progress::default();
        for status in workflow.status(&Selector::tag("kind", "judge"), &[]) {
            progress.total += 1;
            match status.state {
                StepState::Running => progress.running += 1,
                StepState::Succeeded => progress.judged += 1,
                StepState::Failed | StepState::PausedDueToFailure => progress.failed += 1,
                StepState::Skipped => progress.skipped += 1,
                StepState::Paused | StepState::MarkedToPause | StepState::Interrupted => {
                    progress.held += 1
                }
                _ => {}
            }
        }
        progress
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rejudge: {}/{} judged, {} running, {} failed, {} skipped, {} held",
            self.judged, self.total, self.running, self.failed, self.skipped, self.held
        )
    }
}

/// What a rejudge came to, per submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub judged: Vec<Judgement>,
    /// Submissions not judged: (submission id, step state, error).
    pub not_judged: Vec<(String, StepState, Option<String>)>,
}

impl Summary {
    pub fn count(&self, end: End) -> usize {
        self.judged.iter().filter(|j| j.end == end).count()
    }
}

/// The summary of a finished rejudge.
pub fn summary_of(workflow: &Workflow) -> Option<Summary> {
    let status = workflow.status(&Selector::id(SUMMARY), &[StepState::Succeeded]);
    serde_json::from_value(status.into_iter().next()?.result?).ok()
}

struct SummaryStep;

#[async_trait]
impl Step for SummaryStep {
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError> {
        let mut summary = Summary {
            judged: Vec::new(),
            not_judged: Vec::new(),
        };
        for status in ctx.status(&Selector::tag("kind", "judge")) {
            let judgement = status
                .result
                .and_then(|r| serde_json::from_value::<Judgement>(r).ok());
            match judgement {
                Some(j) if status.state == StepState::Succeeded => summary.judged.push(j),
                _ => summary.not_judged.push((
                    status.tags.get("submission").cloned().unwrap_or(status.id),
                    status.state,
                    status.error,
                )),
            }
        }
        serde_json::to_value(summary).map_err(|e| StepError::fatal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Body;
    use crate::store::memory::MemoryResultStore;
    use crate::verdict::Verdict;
    use crate::workflow::judging::fake::{infra_error, tests, FakeJudge};
    use crate::workflow::webhook::test_server;
    use tokio_util::sync::CancellationToken;

    fn submission(id: &str, problem: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: problem.into(),
            language: "python-3.11".into(),
            source_code: "print(1)".into(),
            files: Vec::new(),
            run: None,
        }
    }

    #[test]
    fn selection_by_problem_or_ids() {
        let all = vec![
            submission("a", "p"),
            submission("b", "q"),
            submission("c", "p"),
        ];
        let ids = |s: Vec<Submission>| s.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(select(all.clone(), &Selection::Problem("p".into())).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            ids(select(all.clone(), &Selection::Ids(vec!["c".into(), "b".into()])).unwrap()),
            ["b", "c"]
        );
        assert!(matches!(
            select(all.clone(), &Selection::Ids(vec!["a".into(), "zz".into()])),
            Err(RejudgeError::UnknownIds(missing)) if missing == ["zz"]
        ));
        assert!(matches!(
            select(all, &Selection::Problem("none".into())),
            Err(RejudgeError::Nothing)
        ));
    }

    #[test]
    fn submissions_are_read_from_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"problem\":\"p\",\"language\":\"c\",\"sourceCode\":\"x\",\"user\":\"u\"}\n\n",
        )
        .unwrap();
        assert_eq!(read_submissions(&path).unwrap()[0].id, "a");
        std::fs::write(&path, "{}\n").unwrap();
        assert!(matches!(
            read_submissions(&path),
            Err(RejudgeError::NotASubmission { line: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_rejudge_replaces_results_sums_up_and_tells_the_owner() {
        let subs: Vec<_> = (1..=5).map(|i| submission(&format!("s{i}"), "p")).collect();
        let judge = FakeJudge::new();
        judge.then("s2", tests(&[(Verdict::Wrong, 3)]));
        judge.then("s3", infra_error("lost docker"));
        judge.then("s3", tests(&[(Verdict::Accepted, 3)]));
        judge.then("s4", infra_error("lost docker"));
        judge.then(
            "s5",
            vec![Body::Invalid {
                reason: Some("bad".into()),
            }],
        );
        let results = Arc::new(MemoryResultStore::new());
        let old = crate::protocol::Message::new(
            "s4",
            Body::Done {
                score: Some(1.0),
                failed_subtasks: None,
            },
        );
        results
            .replace("s4", std::slice::from_ref(&old))
            .await
            .unwrap();
        let (webhook, mut told) = test_server::serve(vec![200]).await;
        let options = Options {
            retry: RetryPolicy::attempts(2).with_backoff(Default::default(), Default::default()),
            max_running: 2,
            webhook: Some(webhook),
            store: None,
        };
        let wf = workflow(
            "rejudge-p",
            &subs,
            Arc::new(judge),
            results.clone(),
            &options,
        )
        .unwrap();
        wf.start(&Selector::all(), false).unwrap();
        let end = wf.run(&CancellationToken::new()).await;
        assert!(end.is_complete(), "{end}");
        assert_eq!(
            Progress::of(&wf),
            Progress {
                total: 5,
                judged: 4,
                failed: 1,
                ..Progress::default()
            }
        );
        // Each judge step showed the messages of its judging as its progress.
        let s2 = &wf.status(&Selector::id(step_id("s2")), &[])[0];
        assert_eq!(s2.progress.as_ref().unwrap()["state"], "done");
        let summary = summary_of(&wf).unwrap();
        assert_eq!(summary.count(End::Done), 3);
        assert_eq!(summary.count(End::Invalid), 1);
        assert_eq!(summary.not_judged.len(), 1);
        assert_eq!(summary.not_judged[0].0, "s4");
        // s3's second attempt replaced its result; s4's failures left the old one alone.
        let s3 = results.messages_of("s3").unwrap();
        assert!(matches!(
            s3.last().unwrap().body,
            Body::Done {
                score: Some(1.0),
                ..
            }
        ));
        assert_eq!(results.messages_of("s4"), Some(vec![old]));
        let told = told.recv().await.unwrap();
        assert_eq!(told["step"], "summary");
        assert_eq!(told["state"], "succeeded");
        assert_eq!(told["result"]["not_judged"][0][0], "s4");
    }
}
