//! The workflows a service runs: each is defined in the store, adopted by this process (no other
//! runner continues it meanwhile), built from its definition, restored from its last snapshot
//! if it has one, and served (control calls keep working after its steps are done) until
//! shutdown. At start a service resumes every stored workflow that is not over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::definition::{Definition, DefinitionError, Env};
use super::engine::control::Selector;
use super::engine::Workflow;
use crate::store::workflow::state::StepState;
use crate::store::workflow::{Snapshot, StoreError, StoredWorkflow};
use crate::sync::lock;
use crate::time::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("a workflow named {0:?} exists and is not over")]
    Exists(String),
    #[error("workflow {0:?} is run by another process")]
    Elsewhere(String),
    #[error("no workflow is named {0:?}")]
    NotFound(String),
    #[error(
        "workflow {name:?} cannot be rebuilt: its stored definition is not readable: {reason}"
    )]
    Unreadable { name: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("workflow {name:?}: {reason}")]
    Restore { name: String, reason: String },
}

/// How a workflow stands, as its operation shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Steps are running, waiting, or held for an operator.
    Running,
    /// Every step finished and none failed.
    Succeeded,
    /// Every step finished, and some failed.
    Failed,
    /// Shut down before it finished.
    Cancelled,
}

/// A workflow as listed: live in this process, or only stored.
#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    pub definition: Option<Definition>,
    pub created_ms: i64,
    pub last_action_ms: i64,
    pub outcome: Outcome,
    /// Whole percent of the steps that finished.
    pub percent_complete: u32,
    /// Run by this process: control calls reach it.
    pub live: bool,
}

impl View {
    fn of(
        name: &str,
        definition: Option<Definition>,
        snapshot: Option<&Snapshot>,
        finished: bool,
        times: (i64, i64),
        live: bool,
    ) -> View {
        let steps = snapshot.map_or(&[][..], |s| &s.steps[..]);
        let total = steps.len();
        let done = steps.iter().filter(|s| s.state.is_final()).count();
        let outcome = match snapshot {
            Some(s) if s.shut_down => Outcome::Cancelled,
            Some(s) if finished && s.steps.iter().any(|s| s.state == StepState::Failed) => {
                Outcome::Failed
            }
            Some(_) if finished => Outcome::Succeeded,
            _ => Outcome::Running,
        };
        View {
            name: name.to_owned(),
            definition,
            created_ms: times.0,
            last_action_ms: times.1,
            outcome,
            percent_complete: (done * 100)
                .checked_div(total)
                .map_or(0, |p| u32::try_from(p).unwrap_or(100)),
            live,
        }
    }
}

struct Live {
    workflow: Workflow,
    definition: Definition,
    created_ms: i64,
    last_action_ms: Arc<AtomicI64>,
}

/// The workflows of one process.
pub struct Runner {
    env: Env,
    live: Mutex<BTreeMap<String, Live>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Names of workflows that moved.
    changed: broadcast::Sender<String>,
    /// Held while a stored workflow is brought back, so two requests do not both load it.
    reviving: tokio::sync::Mutex<()>,
}

impl Runner {
    /// Workflows are served until `shutdown` fires.
    pub fn new(env: Env, shutdown: CancellationToken) -> Arc<Runner> {
        Arc::new(Runner {
            env,
            live: Mutex::new(BTreeMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
            changed: broadcast::channel(1024).0,
            reviving: tokio::sync::Mutex::new(()),
        })
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        lock(&self.live)
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Names of workflows that moved, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    /// Defines a new workflow in the store, builds and starts it. Refused while a workflow of
    /// that name is not over.
    pub async fn create(
        self: &Arc<Self>,
        name: &str,
        definition: Definition,
    ) -> Result<Workflow, RunnerError> {
        let (workflow, _) = self.prepare(name, definition, false).await?;
        self.spawn(name, &workflow);
        Ok(workflow)
    }

    /// Builds workflow `name` for this process to run (not running it yet): a new one from
    /// `definition`, started; or, when `resume` and a stored workflow of that name is not over,
    /// that one (from its own stored definition) with its steps where its snapshot left them.
    /// The second value says whether it was resumed.
    pub async fn prepare(
        &self,
        name: &str,
        definition: Definition,
        resume: bool,
    ) -> Result<(Workflow, bool), RunnerError> {
        let store = &self.env.store;
        let text = serde_json::to_value(&definition).map_err(|e| RunnerError::Unreadable {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        if !store.define(name, &text).await? {
            if !resume {
                return Err(RunnerError::Exists(name.to_owned()));
            }
            let workflow = self.load(name).await?;
            return Ok((workflow, true));
        }
        if !store.adopt(name).await? {
            return Err(RunnerError::Elsewhere(name.to_owned()));
        }
        let workflow = match definition.build(name, &self.env).await {
            Ok(workflow) => workflow,
            Err(e) => {
                let _ = store.disown(name).await;
                return Err(e.into());
            }
        };
        let _ = workflow.start(&Selector::all(), false);
        self.insert(name, &workflow, definition, now_ms());
        info!(workflow = name, "workflow created");
        Ok((workflow, false))
    }

    /// Adopts the stored workflow `name`, rebuilds it and restores its steps.
    async fn load(&self, name: &str) -> Result<Workflow, RunnerError> {
        let store = &self.env.store;
        let stored = store
            .get(name)
            .await?
            .ok_or_else(|| RunnerError::NotFound(name.to_owned()))?;
        let definition: Definition =
            serde_json::from_value(stored.definition.clone()).map_err(|e| {
                RunnerError::Unreadable {
                    name: name.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        if !store.adopt(name).await? {
            return Err(RunnerError::Elsewhere(name.to_owned()));
        }
        let built = async {
            let workflow = definition.build(name, &self.env).await?;
            match &stored.snapshot {
                Some(snapshot) => workflow
                    .restore(snapshot)
                    .map_err(|e| RunnerError::Restore {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?,
                // Defined, then the process died before the first save: start it now.
                None => {
                    let _ = workflow.start(&Selector::all(), false);
                }
            }
            Ok::<_, RunnerError>(workflow)
        };
        let workflow = match built.await {
            Ok(workflow) => workflow,
            Err(e) => {
                let _ = store.disown(name).await;
                return Err(e);
            }
        };
        self.insert(name, &workflow, definition, stored.created_ms);
        info!(workflow = name, "workflow resumed from the store");
        Ok(workflow)
    }

    fn insert(&self, name: &str, workflow: &Workflow, definition: Definition, created_ms: i64) {
        self.live().insert(
            name.to_owned(),
            Live {
                workflow: workflow.clone(),
                definition,
                created_ms,
                last_action_ms: Arc::new(AtomicI64::new(now_ms())),
            },
        );
        let _ = self.changed.send(name.to_owned());
    }

    /// Continues every stored workflow that is not over and that no other process runs.
    /// Returns the names resumed; a workflow that cannot be is logged and left as it is.
    pub async fn resume_all(self: &Arc<Self>) -> Result<Vec<String>, RunnerError> {
        let mut resumed = Vec::new();
        for stored in self.env.store.list().await? {
            if stored.over || self.live().contains_key(&stored.name) {
                continue;
            }
            match self.load(&stored.name).await {
                Ok(workflow) => {
                    self.spawn(&stored.name, &workflow);
                    resumed.push(stored.name);
                }
                Err(RunnerError::Elsewhere(name)) => {
                    info!(workflow = %name, "workflow left to the process that runs it")
                }
                Err(e) => warn!(workflow = %stored.name, error = %e, "cannot resume workflow"),
            }
        }
        Ok(resumed)
    }

    /// Serves `workflow` until shutdown (or until it is shut down), keeping its last action
    /// time and telling subscribers when it moves; then gives it up in the store.
    fn spawn(self: &Arc<Self>, name: &str, workflow: &Workflow) {
        let last_action = match self.live().get(name) {
            Some(live) => live.last_action_ms.clone(),
            None => return,
        };
        let (runner, name, workflow) = (self.clone(), name.to_owned(), workflow.clone());
        let mut events = workflow.subscribe();
        self.tasks.spawn(async move {
            let watch = async {
                loop {
                    match events.recv().await {
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            last_action.store(now_ms(), Ordering::Relaxed);
                            let _ = runner.changed.send(name.clone());
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            };
            let end = tokio::select! {
                end = workflow.serve(&runner.shutdown) => end,
                () = watch => workflow.end_state(),
            };
            info!(workflow = %name, end = %end, "workflow no longer served");
            let _ = runner.changed.send(name.clone());
            if let Err(e) = runner.env.store.disown(&name).await {
                warn!(workflow = %name, error = %e, "could not give up the workflow");
            }
        });
    }

    /// Workflow `name` to control: the one this process runs, or else the stored one (a
    /// workflow that finished before this process started), adopted and served from now on,
    /// so that its steps can be rerun. `Elsewhere` when another process runs it.
    pub async fn revive(self: &Arc<Self>, name: &str) -> Result<Workflow, RunnerError> {
        if let Some((workflow, _)) = self.get(name) {
            return Ok(workflow);
        }
        let _one_at_a_time = self.reviving.lock().await;
        if let Some((workflow, _)) = self.get(name) {
            return Ok(workflow);
        }
        let workflow = self.load(name).await?;
        self.spawn(name, &workflow);
        info!(
            workflow = name,
            "stored workflow taken up again for control"
        );
        Ok(workflow)
    }

    /// A workflow this process runs.
    pub fn get(&self, name: &str) -> Option<(Workflow, Definition)> {
        self.live()
            .get(name)
            .map(|l| (l.workflow.clone(), l.definition.clone()))
    }

    fn view_of_live(name: &str, live: &Live) -> View {
        let snapshot = live.workflow.snapshot();
        View::of(
            name,
            Some(live.definition.clone()),
            Some(&snapshot),
            live.workflow.is_finished(),
            (live.created_ms, live.last_action_ms.load(Ordering::Relaxed)),
            true,
        )
    }

    fn view_of_stored(stored: &StoredWorkflow) -> View {
        View::of(
            &stored.name,
            serde_json::from_value(stored.definition.clone()).ok(),
            stored.snapshot.as_ref(),
            stored.over,
            (stored.created_ms, stored.updated_ms),
            false,
        )
    }

    /// One workflow: live, or as stored.
    pub async fn view(&self, name: &str) -> Result<Option<View>, StoreError> {
        if let Some(view) = self.live().get(name).map(|l| Self::view_of_live(name, l)) {
            return Ok(Some(view));
        }
        Ok(self
            .env
            .store
            .get(name)
            .await?
            .map(|s| Self::view_of_stored(&s)))
    }

    /// Every workflow, live or stored, oldest first.
    pub async fn views(&self) -> Result<Vec<View>, StoreError> {
        let stored = self.env.store.list().await?;
        let live = self.live();
        let mut views: BTreeMap<String, View> = stored
            .iter()
            .map(|s| (s.name.clone(), Self::view_of_stored(s)))
            .collect();
        for (name, l) in live.iter() {
            views.insert(name.clone(), Self::view_of_live(name, l));
        }
        let mut views: Vec<View> = views.into_values().collect();
        views.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        Ok(views)
    }

    /// The stored result of the step that sums a workflow up (a rejudge's summary, a
    /// validation's report), once it has one.
    pub async fn result(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let step = match self.get(name) {
            Some((workflow, definition)) => {
                let id = summary_step(&definition);
                let status = workflow.status(&Selector::id(id), &[StepState::Succeeded]);
                return Ok(status.into_iter().next().and_then(|s| s.result));
            }
            None => self.env.store.get(name).await?,
        };
        Ok(step.and_then(|stored| {
            let definition: Definition = serde_json::from_value(stored.definition).ok()?;
            let id = summary_step(&definition);
            stored
                .snapshot?
                .steps
                .into_iter()
                .find(|s| s.id == id && s.state == StepState::Succeeded)?
                .result
        }))
    }

    /// Waits for every served workflow to stop (after the shutdown token fired).
    pub async fn wait(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The id of the step that sums up a workflow of this kind.
fn summary_step(definition: &Definition) -> &'static str {
    match definition {
        Definition::Rejudge { .. } => super::rejudge::SUMMARY,
        Definition::Validation { .. } => super::validate::REPORT,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::judge::{Messages, Unheard};
    use crate::protocol::{Body, Submission};
    use crate::store::memory::{MemoryResultStore, MemoryWorkflowStore};
    use crate::store::WorkflowStore;
    use crate::workflow::definition::Settings;
    use crate::workflow::judging::fake::{submission, FakeJudge};
    use crate::workflow::judging::SubmissionJudge;
    use crate::workflow::rejudge::{Progress, Selection};

    const DEADLINE: Duration = Duration::from_secs(10);

    /// The fake judge, except that judging `hold` waits until the step is cancelled.
    struct Holds {
        fake: FakeJudge,
        hold: Option<String>,
    }

    #[async_trait]
    impl SubmissionJudge for Holds {
        async fn judge(
            &self,
            submission: &Submission,
            out: Messages,
            cancel: &CancellationToken,
        ) -> Result<Body, Unheard> {
            if self.hold.as_deref() == Some(submission.id.as_str()) {
                cancel.cancelled().await;
                return Ok(Body::Error { reason: None });
            }
            self.fake.judge(submission, out, cancel).await
        }
    }

    fn runner(
        store: Arc<MemoryWorkflowStore>,
        results: Arc<MemoryResultStore>,
        hold: Option<&str>,
    ) -> (Arc<Runner>, Arc<Holds>, CancellationToken) {
        let judge = Arc::new(Holds {
            fake: FakeJudge::new(),
            hold: hold.map(str::to_owned),
        });
        let env = Env {
            judge: judge.clone(),
            submissions: results.clone(),
            results,
            store,
        };
        let shutdown = CancellationToken::new();
        (Runner::new(env, shutdown.clone()), judge, shutdown)
    }

    async fn until(runner: &Runner, name: &str, what: &str, done: impl Fn(&Workflow) -> bool) {
        let (workflow, _) = runner.get(name).expect("live");
        if tokio::time::timeout(DEADLINE, workflow.wait_until(done))
            .await
            .is_err()
        {
            panic!("timed out waiting for {what}: {}", workflow.end_state());
        }
    }

    #[tokio::test]
    async fn a_workflow_stopped_with_its_process_is_resumed_where_it_stood() {
        let subs: Vec<_> = ["s1", "s2", "s3"].map(submission).to_vec();
        let store = Arc::new(MemoryWorkflowStore::new());
        let results = Arc::new(MemoryResultStore::with_submissions(subs));
        let (first, judge, stop) = runner(store.clone(), results.clone(), Some("s3"));
        let definition = Definition::rejudge(
            &*results,
            Selection::Problem("p".into()),
            Settings::new(2, 3),
            None,
        )
        .await
        .unwrap();
        first.create("rj", definition.clone()).await.unwrap();
        assert!(matches!(
            first.create("rj", definition.clone()).await,
            Err(RunnerError::Exists(_))
        ));
        until(&first, "rj", "s1 and s2 judged, s3 running", |wf| {
            let p = Progress::of(wf);
            p.judged == 2 && p.running == 1
        })
        .await;
        let before = first.view("rj").await.unwrap().unwrap();
        assert_eq!(before.outcome, Outcome::Running);

        // The process stops: the step of s3 is interrupted, but saved as running.
        stop.cancel();
        first.wait().await;
        let saved = store.load("rj").await.unwrap().unwrap();
        assert!(!saved.shut_down);
        let s3 = saved.steps.iter().find(|s| s.id == "judge-s3").unwrap();
        assert_eq!(s3.state, StepState::Running);

        let (second, judge2, _stop) = runner(store.clone(), results.clone(), None);
        assert_eq!(second.resume_all().await.unwrap(), ["rj"]);
        until(
            &second,
            "rj",
            "the rejudge to finish",
            Workflow::is_finished,
        )
        .await;
        // Only s3 was judged again; s1 and s2 kept the results of the first process.
        assert_eq!(judge.fake.calls_for("s1") + judge2.fake.calls_for("s1"), 1);
        assert_eq!(judge2.fake.calls_for("s3"), 1);
        assert!(results.messages_of("s3").is_some());
        let view = second.view("rj").await.unwrap().unwrap();
        assert_eq!(
            (view.outcome, view.percent_complete),
            (Outcome::Succeeded, 100)
        );
        let summary = second.result("rj").await.unwrap().unwrap();
        assert_eq!(summary["judged"].as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_operator_shutdown_is_kept_and_not_resumed() {
        let store = Arc::new(MemoryWorkflowStore::new());
        let results = Arc::new(MemoryResultStore::with_submissions(vec![submission("s1")]));
        let (first, _, stop) = runner(store.clone(), results.clone(), Some("s1"));
        let definition = Definition::rejudge(
            &*results,
            Selection::Ids(vec!["s1".into()]),
            Settings::new(1, 1),
            None,
        )
        .await
        .unwrap();
        let workflow = first.create("rj", definition).await.unwrap();
        until(&first, "rj", "s1 running", |wf| {
            Progress::of(wf).running == 1
        })
        .await;
        workflow.shutdown(false).unwrap();
        assert_eq!(
            first.view("rj").await.unwrap().unwrap().outcome,
            Outcome::Cancelled
        );
        stop.cancel();
        first.wait().await;
        let (second, _, _stop) = runner(store, results, None);
        assert!(second.resume_all().await.unwrap().is_empty());
        let view = second.view("rj").await.unwrap().unwrap();
        assert_eq!((view.outcome, view.live), (Outcome::Cancelled, false));
        assert!(matches!(
            Definition::rejudge(&*second.env().submissions, Selection::Ids(vec!["zz".into()]), Settings::new(1, 1), None).await,
            Err(DefinitionError::Rejudge(crate::workflow::rejudge::RejudgeError::UnknownIds(ids))) if ids == ["zz"]
        ));
    }
}
