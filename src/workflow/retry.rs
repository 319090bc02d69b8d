//! Retry: judge one submission; an infrastructure `error` sends the step back to Ready for the
//! next attempt, up to N attempts with backoff, then Failed. Either way the owner's webhook is
//! told the outcome.

use std::sync::Arc;

use super::engine::builder::{BuildError, WorkflowBuilder};
use super::engine::step::{RetryPolicy, StepSpec};
use super::engine::Workflow;
use super::judging::{JudgeStep, SubmissionJudge};
use super::webhook::{NotifyStep, Webhook};
use crate::protocol::Submission;
use crate::store::ResultStore;

/// Step ids.
pub const JUDGE: &str = "judge";
pub const NOTIFY: &str = "notify";

/// `judge` (retried by `retry`) then `notify` (tells `webhook` how `judge` ended, itself
/// retried by `notify_retry`).
pub fn workflow(
    submission: Submission,
    judge: Arc<dyn SubmissionJudge>,
    results: Option<Arc<dyn ResultStore>>,
    retry: RetryPolicy,
    webhook: Webhook,
    notify_retry: RetryPolicy,
) -> Result<Workflow, BuildError> {
    let name = format!("retry-{}", submission.id);
    let id = submission.id.clone();
    let judge = JudgeStep {
        submission,
        judge,
        results,
    };
    let notify = NotifyStep {
        webhook,
        about: JUDGE.to_owned(),
    };
    WorkflowBuilder::new(name)
        .step(
            StepSpec::new(JUDGE, Arc::new(judge))
                .tag("kind", "judge")
                .tag("submission", id)
                .retry(retry),
        )
        .step(
            StepSpec::new(NOTIFY, Arc::new(notify))
                .tag("kind", "notify")
                .retry(notify_retry),
        )
        .completion_pairs(&[(JUDGE, NOTIFY)])
        .build()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::store::workflow::state::{Action, StepState};
    use crate::verdict::Verdict;
    use crate::workflow::engine::Event;
    use crate::workflow::judging::fake::{infra_error, tests, FakeJudge};
    use crate::workflow::webhook::test_server;
    use crate::workflow::Selector;

    fn submission() -> Submission {
        Submission {
            id: "s".into(),
            problem: "p".into(),
            language: "python-3.11".into(),
            source_code: "print(1)".into(),
            files: Vec::new(),
            run: None,
        }
    }

    /// Transitions of one step, in order.
    fn path_of(events: &mut tokio::sync::broadcast::Receiver<Event>, step: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let Event::Transition {
                step: s, action, ..
            } = event
            {
                if s == step {
                    actions.push(action);
                }
            }
        }
        actions
    }

    #[tokio::test]
    async fn an_error_goes_back_to_ready_then_succeeds_and_the_owner_is_told() {
        let judge = Arc::new(FakeJudge::new());
        judge.then("s", infra_error("the sandbox failed"));
        judge.then("s", tests(&[(Verdict::Accepted, 5)]));
        // The webhook fails once too: its step retries as well.
        let (webhook, mut told) = test_server::serve(vec![503, 200]).await;
        let retry = RetryPolicy::attempts(3).with_backoff(Duration::ZERO, Duration::ZERO);
        let wf = workflow(submission(), judge.clone(), None, retry, webhook, retry).unwrap();
        let mut events = wf.subscribe();
        wf.start(&Selector::all(), false).unwrap();
        let end = wf.run(&CancellationToken::new()).await;
        assert!(end.is_complete(), "{end}");
        assert_eq!(judge.calls_for("s"), 2);
        assert_eq!(
            path_of(&mut events, JUDGE),
            [
                Action::Start,
                Action::Run,
                Action::Retry,
                Action::Start,
                Action::Run,
                Action::Succeed
            ]
        );
        let status = &wf.status(&Selector::id(JUDGE), &[])[0];
        assert_eq!((status.state, status.attempts), (StepState::Succeeded, 2));
        let _first_try = told.recv().await.unwrap();
        let body = told.recv().await.unwrap();
        assert_eq!(body["state"], "succeeded");
        assert_eq!(body["attempts"], 2);
        assert_eq!(body["result"]["end"], "done");
    }

    #[tokio::test]
    async fn after_the_last_attempt_the_step_fails_and_the_owner_is_told_why() {
        let judge = Arc::new(FakeJudge::new());
        judge.then("s", infra_error("the sandbox failed"));
        let (webhook, mut told) = test_server::serve(vec![200]).await;
        let retry = RetryPolicy::attempts(3).with_backoff(Duration::ZERO, Duration::ZERO);
        let wf = workflow(submission(), judge.clone(), None, retry, webhook, retry).unwrap();
        wf.start(&Selector::all(), false).unwrap();
        let end = wf.run(&CancellationToken::new()).await;
        assert!(end.is_complete(), "{end}");
        assert_eq!(judge.calls_for("s"), 3);
        let body = told.recv().await.unwrap();
        assert_eq!(body["state"], "failed");
        assert_eq!(body["attempts"], 3);
        assert_eq!(body["error"], "the sandbox failed");
    }
}
