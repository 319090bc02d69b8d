//! The "judge one submission" step: the capability behind a trait ([`SubmissionJudge`]) so the
//! engine's tests use a fake judge and the real runs use [`Judge`], and what a judging left
//! behind ([`Judgement`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::step::{Step, StepError};
use super::engine::StepContext;
use crate::judge::{Judge, Messages, Unheard};
use crate::protocol::{Body, CompileResult, Message, Submission};
use crate::store::ResultStore;
use crate::verdict::Verdict;

/// Judges one submission the caller has claimed, yielding the messages after `executing`
/// (SPEC §2) into `out` in order and returning the terminal one; the shape of [`Judge::judge`].
#[async_trait]
pub trait SubmissionJudge: Send + Sync + 'static {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard>;
}

#[async_trait]
impl SubmissionJudge for Judge {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        Judge::judge(self, submission, out, cancel).await
    }
}

/// How a judging ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// `done` after the tests ran.
    Done,
    /// `done` after `compiled error`.
    CompileError,
    Invalid,
    /// `error`, or no terminal message at all.
    Error,
}

/// One test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestOutcome {
    pub test_case: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtask: Option<u32>,
    pub result: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// What judging one submission came to, read from its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub submission: String,
    pub end: End,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default)]
    pub tests: Vec<TestOutcome>,
    /// The reason of `invalid` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Judgement {
    pub fn from_messages(submission: &str, messages: &[Message]) -> Self {
        let mut judgement = Judgement {
            submission: submission.to_owned(),
            end: End::Error,
            score: None,
            tests: Vec::new(),
            reason: Some("judging ended without a terminal message".into()),
        };
        let mut compile_error = false;
        for message in messages.iter().filter(|m| m.id == submission) {
            match &message.body {
                Body::Compiled {
                    result: CompileResult::Error,
                    ..
                } => compile_error = true,
                Body::Tested {
                    test_case,
                    subtask,
                    result,
                    time,
                    memory,
                    ..
                } => judgement.tests.push(TestOutcome {
                    test_case: *test_case,
                    subtask: *subtask,
                    result: *result,
                    time: *time,
                    memory: *memory,
                }),
                Body::Done { score, .. } => {
                    judgement.end = if compile_error {
                        End::CompileError
                    } else {
                        End::Done
                    };
                    judgement.score = *score;
                    judgement.reason = None;
                }
                Body::Invalid { reason } => {
                    judgement.end = End::Invalid;
                    judgement.reason = reason.clone();
                }
                Body::Error { reason } => {
                    judgement.end = End::Error;
                    judgement.reason = reason.clone();
                }
                _ => {}
            }
        }
        judgement
    }

    /// The verdict of the first test that was not accepted.
    pub fn first_failure(&self) -> Option<Verdict> {
        self.tests
            .iter()
            .map(|t| t.result)
            .find(|&v| v != Verdict::Accepted)
    }

    /// The longest CPU time of any test, ms.
    pub fn max_time(&self) -> Option<u64> {
        self.tests.iter().filter_map(|t| t.time).max()
    }
}

/// Judges one submission. An `error` ending (the infrastructure failed) is a retryable failure
/// and leaves the store alone, so a good old result is not replaced by a failed attempt;
/// `done` and `invalid` replace the submission's old messages in `results` and make the step's
/// result a [`Judgement`].
pub struct JudgeStep {
    pub submission: Submission,
    pub judge: Arc<dyn SubmissionJudge>,
    pub results: Option<Arc<dyn ResultStore>>,
}

#[async_trait]
impl Step for JudgeStep {
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError> {
        let submission = &self.submission;
        // This attempt's messages, each shown as the step's progress as it comes. The step
        // claims nothing: `executing` is its own, the rest is what the judge yields.
        let mut messages = Vec::new();
        let mut keep = |message: Message| {
            if let Ok(value) = serde_json::to_value(&message) {
                ctx.progress(value);
            }
            messages.push(message);
        };
        keep(Message::new(&submission.id, Body::Executing));
        let (tx, mut rx) = mpsc::channel(32);
        let judging = self.judge.judge(submission, tx, ctx.cancel());
        let collecting = async {
            while let Some(message) = rx.recv().await {
                keep(message);
            }
        };
        let (ended, ()) = tokio::join!(judging, collecting);
        ended.map_err(|e| StepError::retryable(e.to_string()))?;
        let judgement = Judgement::from_messages(&submission.id, &messages);
        if judgement.end == End::Error {
            return Err(StepError::retryable(
                judgement
                    .reason
                    .unwrap_or_else(|| "the judge failed without a reason".to_owned()),
            ));
        }
        if let Some(results) = &self.results {
            results
                .replace(&submission.id, &messages)
                .await
                .map_err(|e| StepError::retryable(e.to_string()))?;
        }
        serde_json::to_value(&judgement).map_err(|e| StepError::fatal(e.to_string()))
    }
}

/// A judge that answers with chosen messages, for tests of the engine and the workflows.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    use super::*;

    /// Per submission id, the endings of successive attempts (the last one repeats).
    #[derive(Default)]
    pub struct FakeJudge {
        plans: Mutex<HashMap<String, VecDeque<Vec<Body>>>>,
        pub calls: Mutex<Vec<String>>,
    }

    impl FakeJudge {
        pub fn new() -> Self {
            Self::default()
        }

        /// The next attempt at `id` sends `bodies` after `executing`.
        pub fn then(&self, id: &str, bodies: Vec<Body>) -> &Self {
            self.plans
                .lock()
                .unwrap()
                .entry(id.to_owned())
                .or_default()
                .push_back(bodies);
            self
        }

        pub fn calls_for(&self, id: &str) -> usize {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| *c == id)
                .count()
        }
    }

    /// Tests with these verdicts and times, then `done` with the score of all-or-nothing.
    pub fn tests(results: &[(Verdict, u64)]) -> Vec<Body> {
        let mut bodies: Vec<Body> = results
            .iter()
            .enumerate()
            .flat_map(|(i, &(result, time))| {
                let test_case = i as u32 + 1;
                [
                    Body::Testing {
                        test_case,
                        subtask: None,
                    },
                    Body::Tested {
                        test_case,
                        subtask: None,
                        result,
                        time: Some(time),
                        memory: Some(1000),
                        score: None,
                        output: None,
                    },
                ]
            })
            .collect();
        let all = results.iter().all(|(v, _)| *v == Verdict::Accepted);
        bodies.push(Body::Done {
            score: Some(if all { 1.0 } else { 0.0 }),
            failed_subtasks: None,
        });
        bodies
    }

    pub fn infra_error(reason: &str) -> Vec<Body> {
        vec![Body::Error {
            reason: Some(reason.into()),
        }]
    }

    #[async_trait]
    impl SubmissionJudge for FakeJudge {
        async fn judge(
            &self,
            submission: &Submission,
            out: Messages,
            _cancel: &CancellationToken,
        ) -> Result<Body, Unheard> {
            self.calls.lock().unwrap().push(submission.id.clone());
            let bodies = {
                let mut plans = self.plans.lock().unwrap();
                let plan = plans.entry(submission.id.clone()).or_default();
                match plan.len() {
                    0 => tests(&[(Verdict::Accepted, 10)]),
                    1 => plan[0].clone(),
                    _ => plan.pop_front().unwrap_or_default(),
                }
            };
            let mut last = Body::Error { reason: None };
            for body in bodies {
                out.send(Message::new(&submission.id, body.clone()))
                    .await
                    .map_err(|_| Unheard)?;
                last = body;
            }
            Ok(last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_judgement_reads_the_tests_and_the_end() {
        let id = "s";
        let messages: Vec<Message> = std::iter::once(Body::Executing)
            .chain(fake::tests(&[
                (Verdict::Accepted, 5),
                (Verdict::TimeLimitExceeded, 3001),
                (Verdict::Wrong, 7),
            ]))
            .map(|b| Message::new(id, b))
            .collect();
        let j = Judgement::from_messages(id, &messages);
        assert_eq!(j.end, End::Done);
        assert_eq!(j.score, Some(0.0));
        assert_eq!(j.tests.len(), 3);
        assert_eq!(j.first_failure(), Some(Verdict::TimeLimitExceeded));
        assert_eq!(j.max_time(), Some(3001));
    }

    #[test]
    fn compile_errors_invalid_and_missing_ends_are_told_apart() {
        let id = "s";
        let of = |bodies: Vec<Body>| {
            let messages: Vec<_> = bodies.into_iter().map(|b| Message::new(id, b)).collect();
            Judgement::from_messages(id, &messages)
        };
        let compile_error = of(vec![
            Body::Executing,
            Body::Compiling,
            Body::Compiled {
                result: CompileResult::Error,
                compile_output: Some("x".into()),
            },
            Body::Done {
                score: None,
                failed_subtasks: None,
            },
        ]);
        assert_eq!(compile_error.end, End::CompileError);
        let invalid = of(vec![
            Body::Executing,
            Body::Invalid {
                reason: Some("unknown language".into()),
            },
        ]);
        assert_eq!(invalid.end, End::Invalid);
        assert_eq!(invalid.reason.as_deref(), Some("unknown language"));
        let cut_short = of(vec![Body::Executing, Body::Compiling]);
        assert_eq!(cut_short.end, End::Error);
    }
}
