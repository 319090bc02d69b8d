//! The "judge one submission" step: the capability behind a trait ([`SubmissionJudge`]) so the
//! engine's tests use a fake judge, what a judging left behind ([`Judgement`]), and the two
//! real judges: [`QueuedJudge`], which hands the judging to the workers through the store's
//! queue (what `serve` and the workflow commands use), and [`Judge`] itself, in process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::engine::step::{Step, StepError};
use super::engine::StepContext;
use crate::judge::{Judge, Messages, Unheard};
use crate::protocol::{Body, CompileResult, Message, Submission};
use crate::store::{Judgings, ResultStore};
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

    /// Judges `submission` as [`SubmissionJudge::judge`] does, for `slot` (the workflow and
    /// the submission, see [`Judgings::enqueue`]): a judge that keeps something per judging
    /// keeps it under `slot`, so a workflow continued after a stop finds what it left.
    async fn judge_in(
        &self,
        _slot: &str,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        self.judge(submission, out, cancel).await
    }
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

/// Judges by handing the submission to the workers: queues it in the store ([`Judgings`]) under
/// a key of its own, forwards the messages of its current attempt as the store records them
/// (with the submission's id again), and forgets it once it has ended. The workers that take it
/// are the store's (a local worker, remote ones), under their one concurrency budget; with
/// none, the judging waits in the queue.
pub struct QueuedJudge {
    judgings: Arc<dyn Judgings>,
}

/// How long a judging's progress goes unread when no change of it is announced (an announcement
/// missed costs at most this).
const RECHECK: Duration = Duration::from_secs(2);

/// How a queued judging came to an end.
enum Followed {
    /// Its terminal message, forwarded.
    Ended(Body),
    /// Not ended: why (an `error` is forwarded for it).
    Failed(String),
    Unheard,
}

impl QueuedJudge {
    pub fn new(judgings: Arc<dyn Judgings>) -> Self {
        QueuedJudge { judgings }
    }

    /// Forwards the messages of judging `key` after its `executing` to `out` (as messages of
    /// `id`) until its terminal one.
    async fn follow(
        &self,
        key: &str,
        id: &str,
        out: &Messages,
        changes: &mut broadcast::Receiver<String>,
        cancel: &CancellationToken,
    ) -> Followed {
        // What has been forwarded, as the store had it.
        let mut forwarded: Vec<Message> = Vec::new();
        loop {
            let messages = match self.judgings.progress(key).await {
                Ok(Some(messages)) => messages,
                Ok(None) => return Followed::Failed("the judging was withdrawn".to_owned()),
                Err(e) => return Followed::Failed(format!("could not read the judging: {e}")),
            };
            let attempt = messages.get(1..).unwrap_or_default();
            if !attempt.starts_with(&forwarded) {
                return Followed::Failed(
                    "the judging's worker went away and another started it again".to_owned(),
                );
            }
            for message in &attempt[forwarded.len()..] {
                if out
                    .send(Message::new(id, message.body.clone()))
                    .await
                    .is_err()
                {
                    return Followed::Unheard;
                }
                forwarded.push(message.clone());
                if message.body.is_terminal() {
                    return Followed::Ended(message.body.clone());
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Followed::Failed("the judging was cancelled".to_owned()),
                _ = changed(changes, key) => {}
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
}

/// Returns once `key` may have changed.
async fn changed(changes: &mut broadcast::Receiver<String>, key: &str) {
    loop {
        match changes.recv().await {
            Ok(changed) if changed == key || changed.is_empty() => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

#[async_trait]
impl SubmissionJudge for QueuedJudge {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        let slot = format!("{}/{}", submission.problem, submission.id);
        self.judge_in(&slot, submission, out, cancel).await
    }

    async fn judge_in(
        &self,
        slot: &str,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        let key = format!("{}~{}", submission.id, uuid::Uuid::new_v4().simple());
        let mut changes = self.judgings.subscribe();
        let judging = Submission {
            id: key.clone(),
            ..submission.clone()
        };
        let followed = match self.judgings.enqueue(slot, judging).await {
            Ok(()) => {
                let followed = self
                    .follow(&key, &submission.id, &out, &mut changes, cancel)
                    .await;
                if let Err(e) = self.judgings.forget(&key).await {
                    warn!(judging = %key, error = %e, "could not forget a judging");
                }
                followed
            }
            Err(e) => Followed::Failed(format!("could not queue the judging: {e}")),
        };
        match followed {
            Followed::Ended(body) => Ok(body),
            Followed::Failed(reason) => {
                let body = Body::Error {
                    reason: Some(reason),
                };
                out.send(Message::new(&submission.id, body.clone()))
                    .await
                    .map_err(|_| Unheard)?;
                Ok(body)
            }
            Followed::Unheard => Err(Unheard),
        }
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
        let slot = format!("{}/{}", ctx.workflow(), submission.id);
        let judging = self.judge.judge_in(&slot, submission, tx, ctx.cancel());
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

    /// A submission of problem `p` in Python.
    pub fn submission(id: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: "p".into(),
            language: "python-3.11".into(),
            source_code: "print(1)".into(),
            files: Vec::new(),
            run: None,
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

#[cfg(test)]
mod queued {
    use std::time::Duration;

    use super::*;
    use crate::interface::Sent;
    use crate::store::memory::{MemoryBackend, MemoryInterface};
    use crate::store::{Backend, Intake, Listing, Queueing};

    use super::fake::submission;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// The ids `backend` lists.
    async fn listed(backend: &MemoryBackend) -> Vec<String> {
        let views = backend.list().await.unwrap();
        views.into_iter().map(|v| v.id).collect()
    }

    async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(DEADLINE, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not in time"))
    }

    #[tokio::test]
    async fn a_queued_judging_is_judged_by_a_worker_of_the_store_and_listed_nowhere() {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let stop = CancellationToken::new();
        let follower = backend.follow(stop.clone());
        let workers = backend.clone().worker_interface();
        // A contestant's submission, queued first: the judging comes after it.
        backend
            .submit(submission("s0"), None, Queueing::default())
            .await
            .unwrap();
        let judge = QueuedJudge::new(backend.clone().workflow_stores().judgings);
        let (tx, mut rx) = mpsc::channel(32);
        let cancel = CancellationToken::new();
        let judging = tokio::spawn(async move {
            judge
                .judge_in("rejudge-1/s1", &submission("s1"), tx, &cancel)
                .await
        });

        let first = within("the submission", workers.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, "s0");
        let taken = within("the judging", workers.next())
            .await
            .unwrap()
            .unwrap();
        let key = taken.id.clone();
        assert!(key.starts_with("s1~"), "{key}");
        assert_eq!(
            (taken.problem.as_str(), taken.source_code.as_str()),
            ("p", "print(1)")
        );
        // Listed nowhere: only the contestant's submission is.
        assert_eq!(listed(&backend).await, ["s0"]);
        // Shown by its key, as an operator following a worker's running operations finds it.
        assert_eq!(
            backend.get(&key).await.unwrap().map(|v| v.id),
            Some(key.clone())
        );

        let bodies = fake::tests(&[(Verdict::Accepted, 7), (Verdict::Wrong, 9)]);
        assert_eq!(
            workers
                .send(&Message::new(&key, Body::Executing))
                .await
                .unwrap(),
            Sent::Recorded
        );
        for body in &bodies {
            workers
                .send(&Message::new(&key, body.clone()))
                .await
                .unwrap();
        }
        let ended = within("the judging's end", judging).await.unwrap();
        assert_eq!(ended, Ok(bodies.last().unwrap().clone()));
        let mut forwarded = Vec::new();
        while let Ok(message) = rx.try_recv() {
            forwarded.push(message);
        }
        // The worker's messages after `executing`, in order, as messages of the submission.
        let expected: Vec<Message> = bodies
            .iter()
            .map(|b| Message::new("s1", b.clone()))
            .collect();
        assert_eq!(forwarded, expected);

        // Forgotten once ended: a late message of its worker is refused, a claim not taken.
        let late = Body::Done {
            score: Some(0.0),
            failed_subtasks: None,
        };
        assert!(workers.send(&Message::new(&key, late)).await.is_err());
        assert_eq!(
            workers
                .send(&Message::new(&key, Body::Executing))
                .await
                .unwrap(),
            Sent::NotTaken
        );
        assert_eq!(listed(&backend).await, ["s0"]);
        stop.cancel();
        follower.await.unwrap();
    }

    #[tokio::test]
    async fn a_judging_queued_again_for_its_slot_replaces_the_one_left_behind() {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let stop = CancellationToken::new();
        let follower = backend.follow(stop.clone());
        let workers = backend.clone().worker_interface();
        let judgings = backend.clone().workflow_stores().judgings;
        judgings
            .enqueue("wf/s1", submission("s1~old"))
            .await
            .unwrap();
        judgings
            .enqueue("wf/s1", submission("s1~new"))
            .await
            .unwrap();
        assert_eq!(judgings.progress("s1~old").await.unwrap(), None);
        assert_eq!(judgings.progress("s1~new").await.unwrap(), Some(Vec::new()));
        // The one left behind is never handed out.
        let taken = within("the judging", workers.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.id, "s1~new");
        judgings.forget("s1~new").await.unwrap();
        assert_eq!(
            workers
                .send(&Message::new("s1~new", Body::Executing))
                .await
                .unwrap(),
            Sent::NotTaken
        );
        assert_eq!(judgings.progress("s1~new").await.unwrap(), None);
        stop.cancel();
        follower.await.unwrap();
    }
}
