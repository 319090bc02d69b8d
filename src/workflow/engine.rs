//! The engine: runs each step once its pre-conditions hold, turns what the step returned (or how
//! it panicked) into its next state, serves the control API, and knows when nothing can move.
//!
//! All step state lives in one table behind a mutex, never held across an `.await`. Control
//! calls change the table and wake the engine loop; the loop applies the engine's own moves,
//! starts steps, and collects what they return.

pub mod builder;
pub mod control;
pub mod end;
pub mod step;

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::builder::Precondition;
use self::control::{
    Applied, ControlError, ControlReport, MessageReport, Refusal, Selector, StepInfo, StepStatus,
};
use self::end::{BlockReason, Blocked, EndState, Unmet};
use self::step::{FailureKind, OnFailure, RetryPolicy, Step, StepError, StepSpec};
use crate::store::workflow::state::{Action, Refused, StepState};
use crate::store::workflow::{Snapshot, StepSnapshot, WorkflowStore};
use crate::sync::lock;

/// How long running steps may take to stop after a shutdown before they are aborted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What observers of a workflow see.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Transition {
        step: String,
        from: StepState,
        to: StepState,
        action: Action,
    },
    Progress {
        step: String,
        progress: Value,
    },
}

/// A running workflow: cheap to clone, every clone controls the same steps.
#[derive(Clone)]
pub struct Workflow {
    shared: Arc<Shared>,
}

struct StepDef {
    id: String,
    tags: BTreeMap<String, String>,
    work: Arc<dyn Step>,
    retry: RetryPolicy,
    on_failure: OnFailure,
    guard: Vec<Precondition>,
}

struct Shared {
    name: String,
    defs: Vec<StepDef>,
    /// Step indices in topological order.
    order: Vec<usize>,
    index: HashMap<String, usize>,
    max_running: usize,
    store: Option<Arc<dyn WorkflowStore>>,
    table: Mutex<Table>,
    /// Woken on every change of the table.
    changed: Notify,
    /// Held by the one loop that drives the steps: a second `run` waits for the first.
    driving: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Event>,
}

struct Table {
    records: Vec<Record>,
    shut_down: bool,
    /// Shut down by the process stopping (the `run`/`serve` token), not by an operator: what
    /// is saved is where the steps stood, for the next process to continue.
    stopped: bool,
    /// Bumped on every change worth saving.
    version: u64,
}

struct Record {
    state: StepState,
    attempts: u32,
    result: Option<Value>,
    error: Option<String>,
    progress: Option<Value>,
    prompt: Option<String>,
    /// While Ready after a retryable failure: when the next attempt starts.
    retry_at: Option<Instant>,
    /// The run whose outcome counts; bumped at every run.
    generation: u64,
    /// The run whose task is still alive (perhaps interrupted): the step is not run again
    /// before it has ended.
    in_flight: Option<u64>,
    /// Interrupted because the process stopped, not by an operator: saved as running, so the
    /// next process runs it again.
    stopped_running: bool,
    cancel: CancellationToken,
    inbox: mpsc::UnboundedSender<Value>,
    outbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>>,
}

impl Record {
    fn new() -> Self {
        let (inbox, outbox) = mpsc::unbounded_channel();
        Record {
            state: StepState::Ready,
            attempts: 0,
            result: None,
            error: None,
            progress: None,
            prompt: None,
            retry_at: None,
            generation: 0,
            in_flight: None,
            stopped_running: false,
            cancel: CancellationToken::new(),
            inbox,
            outbox: Arc::new(tokio::sync::Mutex::new(outbox)),
        }
    }
}

/// What a step's task hands back.
struct Completion {
    step: usize,
    generation: u64,
    outcome: Result<Value, StepError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("snapshot of workflow {found} cannot restore workflow {expected}")]
    WrongWorkflow { expected: String, found: String },
    #[error("snapshot of workflow {workflow} names the unknown step {step:?}")]
    UnknownStep { workflow: String, step: String },
}

impl Workflow {
    pub(crate) fn new(
        name: String,
        specs: Vec<StepSpec>,
        guards: Vec<Vec<Precondition>>,
        order: Vec<usize>,
        index: HashMap<String, usize>,
        max_running: usize,
        store: Option<Arc<dyn WorkflowStore>>,
    ) -> Self {
        let records = specs.iter().map(|_| Record::new()).collect();
        let defs = specs
            .into_iter()
            .zip(guards)
            .map(|(spec, guard)| StepDef {
                id: spec.id,
                tags: spec.tags,
                work: spec.work,
                retry: spec.retry,
                on_failure: spec.on_failure,
                guard,
            })
            .collect();
        Workflow {
            shared: Arc::new(Shared {
                name,
                defs,
                order,
                index,
                max_running,
                store,
                table: Mutex::new(Table {
                    records,
                    shut_down: false,
                    stopped: false,
                    version: 0,
                }),
                changed: Notify::new(),
                driving: tokio::sync::Mutex::new(()),
                events: broadcast::channel(4096).0,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Events from now on. A receiver that falls far behind is told how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Waits until `done` holds, checking it after every change. Wrap it in a timeout.
    pub async fn wait_until(&self, done: impl Fn(&Workflow) -> bool) {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }

    /// Runs steps until none can move on its own (or until shut down), then says where every
    /// step stands. Control calls still work afterwards; `run` again to carry on (they are
    /// saved to the store then). One run at a time: a second call waits for the first.
    pub async fn run(&self, shutdown: &CancellationToken) -> EndState {
        self.run_until_quiet(shutdown).await.0
    }

    /// Like [`Workflow::run`], but keeps serving control calls after the end state is reached,
    /// until shut down (by `shutdown` or the `shutdown` control call).
    pub async fn serve(&self, shutdown: &CancellationToken) -> EndState {
        loop {
            let (end, version) = self.run_until_quiet(shutdown).await;
            if end.shut_down {
                return end;
            }
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.table().version == version {
                tokio::select! {
                    _ = changed => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    async fn run_until_quiet(&self, shutdown: &CancellationToken) -> (EndState, u64) {
        let _driving = self.shared.driving.lock().await;
        let mut tasks = JoinSet::new();
        let mut saved = None;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shutdown.is_cancelled() && !self.table().shut_down {
                self.stop();
            }
            let next_retry = self.evaluate(&mut tasks);
            // What this round saw: a control call made while it saves (below) changes the
            // version, so `serve` goes round again instead of waiting for a change already made.
            let seen = self.table().version;
            self.persist(&mut saved).await;
            if self.table().shut_down {
                self.drain(&mut tasks).await;
                self.persist(&mut saved).await;
                return self.quiet_state(seen);
            }
            if tasks.is_empty() && next_retry.is_none() {
                return self.quiet_state(seen);
            }
            let retry = async {
                match next_retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(joined) = tasks.join_next() => match joined {
                    Ok(completion) => self.complete(completion),
                    Err(e) => warn!(workflow = %self.shared.name, error = %e, "a step task was aborted"),
                },
                _ = changed => {}
                _ = retry => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// The end state, and `seen`: the version of the table the last round evaluated.
    fn quiet_state(&self, seen: u64) -> (EndState, u64) {
        let table = self.table();
        let end = self.end_state_of(&table);
        info!(workflow = %self.shared.name, complete = end.is_complete(), blocked = end.blocked.len(), "no step can move");
        (end, seen)
    }

    /// Every step has finished, or can never run because of how others finished: nothing is
    /// running, waiting, or held for an operator.
    pub fn is_finished(&self) -> bool {
        let table = self.table();
        self.shared.order.iter().all(|&i| {
            table.records[i].state.is_final()
                || matches!(
                    self.block_reason(&table, i),
                    Some(BlockReason::Unreachable { .. })
                )
        })
    }

    /// Whether the workflow was shut down (it takes no more control calls).
    pub fn is_shut_down(&self) -> bool {
        self.table().shut_down
    }

    /// Where every step stands now, and why each unfinished one cannot move.
    pub fn end_state(&self) -> EndState {
        self.end_state_of(&self.table())
    }

    fn end_state_of(&self, table: &Table) -> EndState {
        let mut counts = BTreeMap::new();
        let mut blocked = Vec::new();
        for &i in &self.shared.order {
            let state = table.records[i].state;
            *counts.entry(state).or_insert(0) += 1;
            if let Some(reason) = self.block_reason(table, i) {
                blocked.push(Blocked {
                    step: self.shared.defs[i].id.clone(),
                    state,
                    reason,
                });
            }
        }
        EndState {
            workflow: self.shared.name.clone(),
            counts,
            blocked,
            shut_down: table.shut_down,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.shared.table)
    }

    /// Applies the engine's own moves until none is left, starting the steps that may run.
    /// Returns when the earliest pending retry is due.
    fn evaluate(&self, tasks: &mut JoinSet<Completion>) -> Option<Instant> {
        let shared = &self.shared;
        let mut table = self.table();
        if table.shut_down {
            return None;
        }
        let now = Instant::now();
        let mut running = table
            .records
            .iter()
            .filter(|r| r.state == StepState::Running)
            .count();
        loop {
            let mut moved = false;
            for &i in &shared.order {
                let record = &table.records[i];
                let action = match record.state {
                    StepState::Ready if record.retry_at.is_some_and(|at| at <= now) => {
                        Action::Start
                    }
                    StepState::MarkedToPause if self.guard_holds(&table, i) => Action::Hold,
                    StepState::MarkedToSkip if self.guard_holds(&table, i) => Action::Bypass,
                    StepState::Waiting
                        if running < shared.max_running
                            && record.in_flight.is_none()
                            && self.guard_holds(&table, i) =>
                    {
                        Action::Run
                    }
                    _ => continue,
                };
                self.transition(&mut table, i, action)
                    .expect("the engine only takes allowed actions");
                if action == Action::Run {
                    running += 1;
                    self.launch(&mut table, i, tasks);
                }
                moved = true;
            }
            if !moved {
                break;
            }
        }
        table.records.iter().filter_map(|r| r.retry_at).min()
    }

    fn guard_holds(&self, table: &Table, step: usize) -> bool {
        self.shared.defs[step]
            .guard
            .iter()
            .all(|p| p.states.contains(&table.records[p.on].state))
    }

    fn launch(&self, table: &mut Table, step: usize, tasks: &mut JoinSet<Completion>) {
        let record = &mut table.records[step];
        record.attempts += 1;
        record.generation += 1;
        record.in_flight = Some(record.generation);
        record.stopped_running = false;
        record.cancel = CancellationToken::new();
        record.progress = None;
        let ctx = StepContext {
            shared: self.shared.clone(),
            step,
            generation: record.generation,
            attempt: record.attempts,
            cancel: record.cancel.clone(),
            outbox: record.outbox.clone(),
        };
        let def = &self.shared.defs[step];
        debug!(workflow = %self.shared.name, step = %def.id, attempt = record.attempts, "running");
        let (work, generation) = (def.work.clone(), record.generation);
        tasks.spawn(async move {
            let outcome = AssertUnwindSafe(work.run(ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Err(StepError::fatal(format!(
                        "the step panicked: {}",
                        panic_message(panic.as_ref())
                    )))
                });
            Completion {
                step,
                generation,
                outcome,
            }
        });
    }

    /// Turns what a step returned into its next state.
    fn complete(&self, done: Completion) {
        let def = &self.shared.defs[done.step];
        let mut table = self.table();
        let record = &mut table.records[done.step];
        if record.in_flight == Some(done.generation) {
            record.in_flight = None;
        }
        if record.generation != done.generation || record.state != StepState::Running {
            // Interrupted (or shut down) while it ran: what it returned no longer counts.
            debug!(workflow = %self.shared.name, step = %def.id, "discarding the outcome of an interrupted run");
            table.version += 1;
            self.shared.changed.notify_waiters();
            return;
        }
        let action = match done.outcome {
            Ok(result) => {
                record.result = Some(result);
                record.error = None;
                Action::Succeed
            }
            Err(error) => {
                let retry =
                    error.kind == FailureKind::Retryable && record.attempts < def.retry.attempts;
                warn!(workflow = %self.shared.name, step = %def.id, attempt = record.attempts, retry, error = %error.reason, "step failed");
                record.error = Some(error.reason);
                if retry {
                    Action::Retry
                } else if def.on_failure == OnFailure::Pause {
                    Action::FailAndPause
                } else {
                    Action::Fail
                }
            }
        };
        let attempts = record.attempts;
        self.transition(&mut table, done.step, action)
            .expect("a running step can always end");
        if action == Action::Retry {
            table.records[done.step].retry_at = Some(Instant::now() + def.retry.backoff(attempts));
        }
    }

    /// Moves one step, telling observers.
    fn transition(
        &self,
        table: &mut Table,
        step: usize,
        action: Action,
    ) -> Result<Applied, Refused> {
        let record = &mut table.records[step];
        let from = record.state;
        let to = action.apply(from)?;
        record.state = to;
        if from == StepState::Ready {
            record.retry_at = None;
        }
        if from == StepState::Running {
            record.prompt = None;
        }
        table.version += 1;
        let id = self.shared.defs[step].id.clone();
        let _ = self.shared.events.send(Event::Transition {
            step: id.clone(),
            from,
            to,
            action,
        });
        self.shared.changed.notify_waiters();
        Ok(Applied { step: id, from, to })
    }

    async fn drain(&self, tasks: &mut JoinSet<Completion>) {
        let finish = async {
            while let Some(joined) = tasks.join_next().await {
                if let Ok(completion) = joined {
                    self.complete(completion);
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, finish).await.is_err() {
            warn!(workflow = %self.shared.name, left = tasks.len(), "steps did not stop in time; aborting them");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    async fn persist(&self, saved: &mut Option<u64>) {
        let Some(store) = &self.shared.store else {
            return;
        };
        let (snapshot, version) = {
            let table = self.table();
            if *saved == Some(table.version) {
                return;
            }
            (self.snapshot_of(&table), table.version)
        };
        match store.save(&snapshot).await {
            Ok(()) => *saved = Some(version),
            Err(e) => {
                warn!(workflow = %self.shared.name, error = %e, "could not save the workflow state")
            }
        }
    }

    /// Why step `i` cannot move on its own, if it cannot.
    fn block_reason(&self, table: &Table, i: usize) -> Option<BlockReason> {
        let record = &table.records[i];
        match record.state {
            StepState::Ready if record.retry_at.is_none() => Some(BlockReason::NotStarted),
            StepState::Paused => Some(BlockReason::Paused),
            StepState::PausedDueToFailure => Some(BlockReason::PausedDueToFailure {
                error: record.error.clone(),
            }),
            StepState::Interrupted => Some(BlockReason::Interrupted),
            StepState::Waiting | StepState::MarkedToPause | StepState::MarkedToSkip => {
                let unmet: Vec<Unmet> = self.shared.defs[i]
                    .guard
                    .iter()
                    .filter(|p| !p.states.contains(&table.records[p.on].state))
                    .map(|p| Unmet {
                        on: self.shared.defs[p.on].id.clone(),
                        needs: p.states.clone(),
                        is: table.records[p.on].state,
                    })
                    .collect();
                if unmet.is_empty() {
                    None
                } else if unmet.iter().any(|u| u.is.is_final()) {
                    Some(BlockReason::Unreachable { unmet })
                } else {
                    Some(BlockReason::Waiting { unmet })
                }
            }
            _ => None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // The control API. Every call selects steps by tags; with `dry_run` it only reports.

    /// Ready -> Waiting: the selected steps run once their pre-conditions hold.
    pub fn start(&self, selector: &Selector, dry_run: bool) -> Result<ControlReport, ControlError> {
        self.control(Action::Start, selector, dry_run)
    }

    /// Ready or Waiting -> MarkedToPause: paused when the engine reaches them.
    pub fn pause(&self, selector: &Selector, dry_run: bool) -> Result<ControlReport, ControlError> {
        self.control(Action::Pause, selector, dry_run)
    }

    /// Paused, MarkedToPause or Interrupted -> Waiting; PausedDueToFailure -> Failed.
    pub fn resume(
        &self,
        selector: &Selector,
        dry_run: bool,
    ) -> Result<ControlReport, ControlError> {
        self.control(Action::Resume, selector, dry_run)
    }

    /// Succeeded, Failed, Interrupted or PausedDueToFailure -> Waiting, attempts reset.
    pub fn rerun(&self, selector: &Selector, dry_run: bool) -> Result<ControlReport, ControlError> {
        self.control(Action::Rerun, selector, dry_run)
    }

    /// Marks the selected steps to be skipped when the engine reaches them.
    pub fn skip(&self, selector: &Selector, dry_run: bool) -> Result<ControlReport, ControlError> {
        self.control(Action::Skip, selector, dry_run)
    }

    /// MarkedToSkip -> Waiting. A step already skipped stays skipped.
    pub fn unskip(
        &self,
        selector: &Selector,
        dry_run: bool,
    ) -> Result<ControlReport, ControlError> {
        self.control(Action::Unskip, selector, dry_run)
    }

    /// Running -> Interrupted: the step's cancellation token fires and what it returns is
    /// discarded.
    pub fn interrupt(
        &self,
        selector: &Selector,
        dry_run: bool,
    ) -> Result<ControlReport, ControlError> {
        self.control(Action::Interrupt, selector, dry_run)
    }

    /// Interrupts every running step and stops the engine; no control call is served after.
    pub fn shutdown(&self, dry_run: bool) -> Result<ControlReport, ControlError> {
        let report = self.control(Action::Interrupt, &Selector::all(), dry_run)?;
        let report = ControlReport {
            // Only running steps are concerned: the others are not "refused" anything.
            refused: Vec::new(),
            ..report
        };
        if !dry_run {
            let mut table = self.table();
            table.shut_down = true;
            table.version += 1;
            self.shared.changed.notify_waiters();
            info!(workflow = %self.shared.name, "shut down");
        }
        Ok(report)
    }

    /// The process stops: running steps are interrupted and the engine stops, but what is
    /// saved says they were running, and the workflow is not shut down for the next process.
    fn stop(&self) {
        let mut table = self.table();
        for record in table.records.iter_mut() {
            if record.state == StepState::Running {
                record.stopped_running = true;
            }
        }
        table.stopped = true;
        drop(table);
        let _ = self.shutdown(false);
    }

    fn control(
        &self,
        action: Action,
        selector: &Selector,
        dry_run: bool,
    ) -> Result<ControlReport, ControlError> {
        debug_assert!(action.is_control());
        let mut table = self.table();
        self.check_open(&table)?;
        let mut report = ControlReport {
            action,
            dry_run,
            applied: Vec::new(),
            refused: Vec::new(),
        };
        for &i in &self.shared.order {
            let def = &self.shared.defs[i];
            if !selector.matches(&def.id, &def.tags) {
                continue;
            }
            let from = table.records[i].state;
            match action.apply(from) {
                Ok(to) if dry_run => report.applied.push(Applied {
                    step: def.id.clone(),
                    from,
                    to,
                }),
                Ok(_) => {
                    let applied = self
                        .transition(&mut table, i, action)
                        .expect("checked just above");
                    let record = &mut table.records[i];
                    match action {
                        Action::Interrupt => record.cancel.cancel(),
                        Action::Rerun => {
                            record.attempts = 0;
                            record.result = None;
                            record.error = None;
                            record.progress = None;
                        }
                        _ => {}
                    }
                    report.applied.push(applied);
                }
                Err(refused) => report.refused.push(Refusal {
                    step: def.id.clone(),
                    state: from,
                    reason: refused.to_string(),
                }),
            }
        }
        info!(workflow = %self.shared.name, action = action.verb(), %selector, dry_run, applied = report.applied.len(), refused = report.refused.len(), "control call");
        Ok(report)
    }

    fn check_open(&self, table: &Table) -> Result<(), ControlError> {
        if table.shut_down {
            return Err(ControlError::ShutDown {
                workflow: self.shared.name.clone(),
            });
        }
        Ok(())
    }

    /// Sends `message` to the selected unfinished steps; a step reads it with
    /// [`StepContext::recv`] or [`StepContext::ask`].
    pub fn send_message(
        &self,
        selector: &Selector,
        message: Value,
        dry_run: bool,
    ) -> Result<MessageReport, ControlError> {
        let table = self.table();
        self.check_open(&table)?;
        let mut report = MessageReport {
            dry_run,
            delivered: Vec::new(),
            refused: Vec::new(),
        };
        for &i in &self.shared.order {
            let def = &self.shared.defs[i];
            if !selector.matches(&def.id, &def.tags) {
                continue;
            }
            let record = &table.records[i];
            if record.state.is_final() {
                report.refused.push(Refusal {
                    step: def.id.clone(),
                    state: record.state,
                    reason: format!(
                        "the step has finished ({}): it reads no more messages",
                        record.state
                    ),
                });
                continue;
            }
            if !dry_run {
                // The receiving end lives in the record: sending cannot fail.
                let _ = record.inbox.send(message.clone());
            }
            report.delivered.push(def.id.clone());
        }
        Ok(report)
    }

    /// The selected steps' ids and tags, in topological order.
    pub fn list(&self, selector: &Selector) -> Vec<StepInfo> {
        self.selected(selector)
            .map(|def| StepInfo {
                id: def.id.clone(),
                tags: def.tags.clone(),
            })
            .collect()
    }

    /// The selected steps in one of `states` (any state if empty), in topological order.
    pub fn status(&self, selector: &Selector, states: &[StepState]) -> Vec<StepStatus> {
        let table = self.table();
        self.shared
            .order
            .iter()
            .map(|&i| (i, &self.shared.defs[i]))
            .filter(|(_, def)| selector.matches(&def.id, &def.tags))
            .filter(|&(i, _)| states.is_empty() || states.contains(&table.records[i].state))
            .map(|(i, def)| {
                let record = &table.records[i];
                StepStatus {
                    id: def.id.clone(),
                    tags: def.tags.clone(),
                    state: record.state,
                    attempts: record.attempts,
                    result: record.result.clone(),
                    error: record.error.clone(),
                    progress: record.progress.clone(),
                    waiting_for_input: record.prompt.clone(),
                    blocked: self.block_reason(&table, i),
                }
            })
            .collect()
    }

    /// The selected steps that wait for user input (see [`StepContext::ask`]).
    pub fn waiting_for_input(&self, selector: &Selector) -> Vec<StepStatus> {
        let mut status = self.status(selector, &[StepState::Running]);
        status.retain(|s| s.waiting_for_input.is_some());
        status
    }

    fn selected<'a>(&'a self, selector: &'a Selector) -> impl Iterator<Item = &'a StepDef> + 'a {
        self.shared
            .order
            .iter()
            .map(|&i| &self.shared.defs[i])
            .filter(|def| selector.matches(&def.id, &def.tags))
    }

    // -----------------------------------------------------------------------------------------
    // Persistence.

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_of(&self.table())
    }

    fn snapshot_of(&self, table: &Table) -> Snapshot {
        Snapshot {
            workflow: self.shared.name.clone(),
            shut_down: table.shut_down && !table.stopped,
            steps: self
                .shared
                .order
                .iter()
                .map(|&i| {
                    let record = &table.records[i];
                    StepSnapshot {
                        id: self.shared.defs[i].id.clone(),
                        state: match record.state {
                            StepState::Interrupted if record.stopped_running => StepState::Running,
                            state => state,
                        },
                        attempts: record.attempts,
                        result: record.result.clone(),
                        error: record.error.clone(),
                    }
                })
                .collect(),
        }
    }

    /// Takes the step states of `snapshot` (before running). A step that was running when the
    /// snapshot was taken died with its process: it is Waiting, to run again. A step that was
    /// Ready for its next attempt (its backoff is not saved) tries again at once.
    pub fn restore(&self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        if snapshot.workflow != self.shared.name {
            return Err(RestoreError::WrongWorkflow {
                expected: self.shared.name.clone(),
                found: snapshot.workflow.clone(),
            });
        }
        let mut table = self.table();
        for step in &snapshot.steps {
            let &i = self
                .shared
                .index
                .get(&step.id)
                .ok_or_else(|| RestoreError::UnknownStep {
                    workflow: snapshot.workflow.clone(),
                    step: step.id.clone(),
                })?;
            let record = &mut table.records[i];
            record.state = match step.state {
                StepState::Running => StepState::Waiting,
                state => state,
            };
            record.retry_at =
                (record.state == StepState::Ready && step.attempts > 0).then(Instant::now);
            record.attempts = step.attempts;
            record.result = step.result.clone();
            record.error = step.error.clone();
        }
        table.shut_down = snapshot.shut_down;
        table.version += 1;
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

/// What a running step is given: who it is, its cancellation, its messages, and a view of the
/// other steps.
pub struct StepContext {
    shared: Arc<Shared>,
    step: usize,
    generation: u64,
    attempt: u32,
    cancel: CancellationToken,
    outbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>>,
}

impl StepContext {
    pub fn id(&self) -> &str {
        &self.shared.defs[self.step].id
    }

    pub fn workflow(&self) -> &str {
        &self.shared.name
    }

    /// 1 for the first attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Fires when the step is interrupted or the workflow shut down.
    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The selected steps, as `status` shows them (for steps that join others).
    pub fn status(&self, selector: &Selector) -> Vec<StepStatus> {
        Workflow {
            shared: self.shared.clone(),
        }
        .status(selector, &[])
    }

    pub fn status_of(&self, step: &str) -> Option<StepStatus> {
        self.status(&Selector::id(step)).into_iter().next()
    }

    /// Records how far the step has got, for `status` and observers.
    pub fn progress(&self, progress: Value) {
        if !self.with_own_record(|record| record.progress = Some(progress.clone())) {
            return;
        }
        let _ = self.shared.events.send(Event::Progress {
            step: self.id().to_owned(),
            progress,
        });
    }

    /// The next message sent to this step; `None` once cancelled.
    pub async fn recv(&self) -> Option<Value> {
        let mut outbox = self.outbox.lock().await;
        tokio::select! {
            message = outbox.recv() => message,
            _ = self.cancel.cancelled() => None,
        }
    }

    /// Waits for user input: the step is listed by `waiting_for_input` with `prompt` until a
    /// message arrives (or it is cancelled).
    pub async fn ask(&self, prompt: impl Into<String>) -> Option<Value> {
        let prompt = prompt.into();
        self.with_own_record(|record| record.prompt = Some(prompt));
        let answer = self.recv().await;
        self.with_own_record(|record| record.prompt = None);
        answer
    }

    /// Runs `change` on this step's record if this run is still the step's current one.
    fn with_own_record(&self, change: impl FnOnce(&mut Record)) -> bool {
        let mut table = lock(&self.shared.table);
        let record = &mut table.records[self.step];
        if record.generation != self.generation || record.state != StepState::Running {
            return false;
        }
        change(record);
        self.shared.changed.notify_waiters();
        true
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}
