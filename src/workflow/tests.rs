//! Tests of the engine and its control API, with steps made of closures. No test sleeps: they
//! wait for the state they need (with a deadline), or for the end state.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine::control::{Applied, ControlError};
use super::engine::end::{BlockReason, EndState, Unmet};
use super::engine::Event;
use super::*;
use crate::store::memory::MemoryWorkflowStore;
use crate::store::WorkflowStore;
use StepState::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn ok(value: Value) -> Arc<dyn Step> {
    step_fn(move |_| {
        let value = value.clone();
        async move { Ok(value) }
    })
}

fn fails(reason: &'static str) -> Arc<dyn Step> {
    step_fn(move |_| async move { Err(StepError::fatal(reason)) })
}

/// Runs until it receives a message, and returns it.
fn waits_for_message() -> Arc<dyn Step> {
    step_fn(|ctx| async move {
        ctx.recv()
            .await
            .ok_or_else(|| StepError::fatal("cancelled"))
    })
}

/// Runs until cancelled, then returns a result that must be discarded.
fn runs_until_cancelled() -> Arc<dyn Step> {
    step_fn(|ctx| async move {
        ctx.cancel().cancelled().await;
        Ok(json!("too late"))
    })
}

fn spec(id: &str, work: Arc<dyn Step>) -> StepSpec {
    StepSpec::new(id, work)
}

fn spawn_run(wf: &Workflow) -> JoinHandle<EndState> {
    let wf = wf.clone();
    tokio::spawn(async move { wf.run(&CancellationToken::new()).await })
}

async fn run(wf: &Workflow) -> EndState {
    tokio::time::timeout(DEADLINE, wf.run(&CancellationToken::new()))
        .await
        .expect("the workflow reaches its end state in time")
}

async fn finish(runner: JoinHandle<EndState>) -> EndState {
    tokio::time::timeout(DEADLINE, runner)
        .await
        .expect("the workflow reaches its end state in time")
        .expect("the engine does not panic")
}

async fn until(wf: &Workflow, what: &str, done: impl Fn(&Workflow) -> bool) {
    if tokio::time::timeout(DEADLINE, wf.wait_until(done))
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}; {}", wf.end_state());
    }
}

fn state(wf: &Workflow, step: &str) -> StepState {
    wf.status(&Selector::id(step), &[])[0].state
}

fn states(wf: &Workflow) -> Vec<(String, StepState)> {
    wf.status(&Selector::all(), &[])
        .into_iter()
        .map(|s| (s.id, s.state))
        .collect()
}

fn pairs(list: &[(&str, StepState)]) -> Vec<(String, StepState)> {
    list.iter().map(|(id, s)| (id.to_string(), *s)).collect()
}

/// The transitions seen so far, as (step, action).
fn transitions(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Vec<(String, Action)> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Transition { step, action, .. } = event {
            seen.push((step, action));
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Graphs

#[tokio::test]
async fn success_pairs_run_a_chain_in_order_and_list_is_topological() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("c", ok(json!(3))).tag("n", "3"))
        .step(spec("b", ok(json!(2))))
        .step(spec("a", ok(json!(1))))
        .success_pairs(&[("a", "b"), ("b", "c")])
        .build()
        .unwrap();
    let ids: Vec<_> = wf
        .list(&Selector::all())
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(wf.list(&Selector::tag("n", "3"))[0].tags["n"], "3");
    let mut events = wf.subscribe();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    assert!(end.is_complete() && end.blocked.is_empty(), "{end}");
    assert_eq!(end.count(Succeeded), 3);
    let runs: Vec<_> = transitions(&mut events)
        .into_iter()
        .filter(|(_, a)| *a == Action::Run)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(runs, ["a", "b", "c"]);
    assert_eq!(wf.status(&Selector::id("c"), &[])[0].result, Some(json!(3)));
}

#[tokio::test]
async fn failure_pairs_run_the_clean_up_and_the_success_branch_is_unreachable() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("a", fails("disk full")))
        .step(spec("next", ok(json!(null))))
        .step(spec("cleanup", ok(json!("cleaned"))))
        .success_pairs(&[("a", "next")])
        .failure_pairs(&[("a", "cleanup")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    assert_eq!(
        states(&wf),
        pairs(&[("a", Failed), ("next", Waiting), ("cleanup", Succeeded)])
    );
    assert_eq!(
        wf.status(&Selector::id("a"), &[])[0].error.as_deref(),
        Some("disk full")
    );
    assert!(end.is_complete(), "{end}");
    let blocked = end.blocked_step("next").unwrap();
    assert_eq!(
        blocked.reason,
        BlockReason::Unreachable {
            unmet: vec![Unmet {
                on: "a".into(),
                needs: vec![Succeeded, Skipped],
                is: Failed
            }]
        }
    );
    assert!(
        end.to_string().contains(
            "next (waiting): will never run: needs a succeeded or skipped, but it is failed"
        ),
        "{end}"
    );
}

#[tokio::test]
async fn fork_and_join() {
    let joined = Arc::new(AtomicU32::new(0));
    let join = step_fn({
        let joined = joined.clone();
        move |ctx| {
            let joined = joined.clone();
            async move {
                let branches = ctx.status(&Selector::tag("branch", "yes"));
                assert!(branches.iter().all(|s| s.state == Succeeded));
                joined.fetch_add(1, Ordering::SeqCst);
                Ok(json!(branches.len()))
            }
        }
    });
    let wf = WorkflowBuilder::new("w")
        .step(spec("start", ok(json!(0))))
        .step(spec("left", ok(json!(1))).tag("branch", "yes"))
        .step(spec("right", ok(json!(2))).tag("branch", "yes"))
        .step(spec("join", join))
        .success_pairs(&[
            ("start", "left"),
            ("start", "right"),
            ("left", "join"),
            ("right", "join"),
        ])
        .max_running(1)
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    assert_eq!(end.count(Succeeded), 4, "{end}");
    assert_eq!(joined.load(Ordering::SeqCst), 1);
    assert_eq!(
        wf.status(&Selector::id("join"), &[])[0].result,
        Some(json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_more_than_max_running_steps_run_at_once() {
    let (now, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let work = step_fn({
        let (now, most) = (now.clone(), most.clone());
        move |_| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(json!(null))
            }
        }
    });
    let builder = (0..50).fold(WorkflowBuilder::new("w").max_running(4), |b, i| {
        b.step(spec(&format!("s{i}"), work.clone()))
    });
    let wf = builder.build().unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    assert_eq!(end.count(Succeeded), 50, "{end}");
    assert!(most.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn a_panicking_step_fails_without_bringing_the_engine_down() {
    let wf = WorkflowBuilder::new("w")
        .step(spec(
            "boom",
            step_fn(|_| async { panic!("index out of bounds") }),
        ))
        .step(spec("after", ok(json!(null))))
        .step(spec("cleanup", ok(json!(null))))
        .success_pairs(&[("boom", "after")])
        .failure_pairs(&[("boom", "cleanup")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    let boom = &wf.status(&Selector::id("boom"), &[])[0];
    assert_eq!(boom.state, Failed);
    assert_eq!(
        boom.error.as_deref(),
        Some("the step panicked: index out of bounds")
    );
    assert_eq!(state(&wf, "cleanup"), Succeeded);
    assert!(end.is_complete(), "{end}");
}

// ---------------------------------------------------------------------------------------------
// Retries and failure policies

/// Fails with a retryable error `failures` times, then succeeds.
fn flaky(failures: u32, calls: Arc<AtomicU32>) -> Arc<dyn Step> {
    step_fn(move |ctx| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt() <= failures {
                Err(StepError::retryable(format!(
                    "attempt {} failed",
                    ctx.attempt()
                )))
            } else {
                Ok(json!(ctx.attempt()))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_retryable_error_returns_to_ready_and_runs_again_after_the_backoff() {
    let calls = Arc::new(AtomicU32::new(0));
    // Shorter than the deadline of `until`: with a paused clock, the earliest timer fires first.
    let backoff = Duration::from_secs(1);
    let wf = WorkflowBuilder::new("w")
        .step(
            spec("a", flaky(2, calls.clone()))
                .retry(RetryPolicy::attempts(3).with_backoff(backoff, backoff * 10)),
        )
        .build()
        .unwrap();
    let mut events = wf.subscribe();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    // Back in Ready between attempts, with the error of the last one, and not blocked.
    until(&wf, "the first retry", |wf| state(wf, "a") == Ready).await;
    let waiting = wf.status(&Selector::id("a"), &[])[0].clone();
    assert_eq!((waiting.attempts, waiting.blocked), (1, None));
    assert_eq!(waiting.error.as_deref(), Some("attempt 1 failed"));
    let retried_at = tokio::time::Instant::now();
    until(&wf, "the second run", |wf| {
        state(wf, "a") == Running || wf.status(&Selector::id("a"), &[])[0].attempts >= 2
    })
    .await;
    // Virtual time: the clock is paused, so this is exact, not a timing measurement.
    assert!(tokio::time::Instant::now() - retried_at >= backoff);
    let end = finish(runner).await;
    assert!(end.is_complete(), "{end}");
    let a = &wf.status(&Selector::id("a"), &[])[0];
    assert_eq!((a.state, a.attempts, a.error.clone()), (Succeeded, 3, None));
    assert_eq!(a.result, Some(json!(3)));
    let actions: Vec<_> = transitions(&mut events)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    use Action::*;
    assert_eq!(
        actions,
        [Start, Run, Retry, Start, Run, Retry, Start, Run, Succeed]
    );
}

#[tokio::test]
async fn after_the_last_attempt_a_step_fails_and_fatal_errors_are_not_retried() {
    let (calls, fatal_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let fatal = step_fn({
        let fatal_calls = fatal_calls.clone();
        move |_| {
            let fatal_calls = fatal_calls.clone();
            async move {
                fatal_calls.fetch_add(1, Ordering::SeqCst);
                Err(StepError::fatal("wrong input"))
            }
        }
    });
    let no_wait = RetryPolicy::attempts(3).with_backoff(Duration::ZERO, Duration::ZERO);
    let wf = WorkflowBuilder::new("w")
        .step(spec("flaky", flaky(5, calls.clone())).retry(no_wait))
        .step(spec("fatal", fatal).retry(no_wait))
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    run(&wf).await;
    assert_eq!(
        (state(&wf, "flaky"), calls.load(Ordering::SeqCst)),
        (Failed, 3)
    );
    assert_eq!(
        wf.status(&Selector::id("flaky"), &[])[0].error.as_deref(),
        Some("attempt 3 failed")
    );
    assert_eq!(
        (state(&wf, "fatal"), fatal_calls.load(Ordering::SeqCst)),
        (Failed, 1)
    );
}

#[tokio::test]
async fn pause_on_failure_holds_the_step_until_resume_accepts_the_failure() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("a", fails("bad")).on_failure(OnFailure::Pause))
        .step(spec("cleanup", ok(json!(null))))
        .failure_pairs(&[("a", "cleanup")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run(&wf).await;
    assert!(!end.is_complete());
    assert_eq!(
        end.blocked_step("a").unwrap().reason,
        BlockReason::PausedDueToFailure {
            error: Some("bad".into())
        }
    );
    assert_eq!(
        end.blocked_step("cleanup").unwrap().reason,
        BlockReason::Waiting {
            unmet: vec![Unmet {
                on: "a".into(),
                needs: vec![Failed],
                is: PausedDueToFailure
            }]
        }
    );
    let resumed = wf.resume(&Selector::id("a"), false).unwrap();
    assert_eq!(
        resumed.applied,
        [Applied {
            step: "a".into(),
            from: PausedDueToFailure,
            to: Failed
        }]
    );
    let end = run(&wf).await;
    assert!(end.is_complete(), "{end}");
    assert_eq!(state(&wf, "cleanup"), Succeeded);
}

#[tokio::test]
async fn rerun_runs_a_finished_step_again_with_its_attempts_reset() {
    let calls = Arc::new(AtomicU32::new(0));
    let wf = WorkflowBuilder::new("w")
        .step(spec("a", flaky(0, calls.clone())))
        .step(spec("b", ok(json!(null))))
        .build()
        .unwrap();
    wf.start(&Selector::id("a"), false).unwrap();
    run(&wf).await;
    assert_eq!(state(&wf, "a"), Succeeded);
    let refused = wf.rerun(&Selector::all(), false).unwrap();
    assert_eq!(refused.steps(), ["a"]);
    assert_eq!(refused.refused.len(), 1);
    assert_eq!(refused.refused[0].step, "b");
    assert_eq!(
        refused.refused[0].reason,
        "cannot rerun a step that is ready: only a succeeded, failed, paused due to failure or interrupted step can be rerun"
    );
    let status = &wf.status(&Selector::id("a"), &[])[0];
    assert_eq!(
        (status.state, status.attempts, status.result.clone()),
        (Waiting, 0, None)
    );
    run(&wf).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let status = &wf.status(&Selector::id("a"), &[])[0];
    assert_eq!((status.state, status.attempts), (Succeeded, 1));
}

// ---------------------------------------------------------------------------------------------
// Control calls

fn three_independent() -> Workflow {
    WorkflowBuilder::new("w")
        .step(spec("a", ok(json!(1))).tag("group", "x"))
        .step(spec("b", ok(json!(2))).tag("group", "x").tag("lang", "c"))
        .step(spec("c", ok(json!(3))).tag("group", "y"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn start_selects_by_tags_and_a_dry_run_changes_nothing() {
    let wf = three_independent();
    let mut events = wf.subscribe();
    let dry = wf.start(&Selector::tag("group", "x"), true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.steps(), ["a", "b"]);
    assert_eq!(
        states(&wf),
        pairs(&[("a", Ready), ("b", Ready), ("c", Ready)])
    );
    assert!(transitions(&mut events).is_empty());

    let narrow = wf
        .start(&Selector::tag("group", "x").and("lang", "c"), false)
        .unwrap();
    assert_eq!(narrow.steps(), ["b"]);
    assert_eq!(
        wf.start(&Selector::tag("group", "none"), false)
            .unwrap()
            .applied,
        []
    );
    let end = run(&wf).await;
    assert_eq!(
        states(&wf),
        pairs(&[("a", Ready), ("b", Succeeded), ("c", Ready)])
    );
    assert!(!end.is_complete());
    assert_eq!(
        end.blocked_step("a").unwrap().reason,
        BlockReason::NotStarted
    );
    assert!(
        end.to_string()
            .contains("a (ready): not started (start it)"),
        "{end}"
    );
}

#[tokio::test]
async fn pause_marks_steps_that_are_held_when_reached_and_resume_lets_them_go() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("gate", waits_for_message()))
        .step(spec("next", ok(json!(null))).tag("phase", "2"))
        .step(spec("other", ok(json!(null))).tag("phase", "2"))
        .success_pairs(&[("gate", "next"), ("gate", "other")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "gate running", |wf| state(wf, "gate") == Running).await;

    let dry = wf.pause(&Selector::tag("phase", "2"), true).unwrap();
    assert_eq!(dry.steps(), ["next", "other"]);
    assert_eq!(state(&wf, "next"), Waiting);
    let paused = wf.pause(&Selector::id("next"), false).unwrap();
    assert_eq!(
        paused.applied,
        [Applied {
            step: "next".into(),
            from: Waiting,
            to: MarkedToPause
        }]
    );
    // A running step cannot be paused.
    let refused = wf.pause(&Selector::id("gate"), false).unwrap();
    assert_eq!(refused.applied, []);
    assert_eq!(
        refused.refused[0].reason,
        "cannot pause a step that is running: only a ready or waiting step can be paused"
    );
    // Not reached yet: still only marked.
    assert_eq!(state(&wf, "next"), MarkedToPause);

    wf.send_message(&Selector::id("gate"), json!("go"), false)
        .unwrap();
    let end = finish(runner).await;
    assert_eq!(
        states(&wf),
        pairs(&[("gate", Succeeded), ("next", Paused), ("other", Succeeded)])
    );
    assert_eq!(
        end.blocked_step("next").unwrap().reason,
        BlockReason::Paused
    );
    assert!(!end.is_complete());

    let resumed = wf.resume(&Selector::tag("phase", "2"), false).unwrap();
    assert_eq!(resumed.steps(), ["next"]);
    assert_eq!(resumed.refused[0].step, "other");
    let end = run(&wf).await;
    assert!(end.is_complete(), "{end}");
    assert_eq!(state(&wf, "next"), Succeeded);
}

#[tokio::test]
async fn interrupt_stops_a_running_step_and_discards_what_it_returns() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("long", runs_until_cancelled()).tag("kind", "long"))
        .step(spec("after", ok(json!(null))))
        .success_pairs(&[("long", "after")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "long running", |wf| state(wf, "long") == Running).await;

    let dry = wf.interrupt(&Selector::tag("kind", "long"), true).unwrap();
    assert_eq!(dry.steps(), ["long"]);
    assert_eq!(state(&wf, "long"), Running);
    let refused = wf.interrupt(&Selector::id("after"), false).unwrap();
    assert_eq!(
        refused.refused[0].reason,
        "cannot interrupt a step that is waiting: only a running step can be interrupted"
    );

    let done = wf.interrupt(&Selector::tag("kind", "long"), false).unwrap();
    assert_eq!(
        done.applied,
        [Applied {
            step: "long".into(),
            from: Running,
            to: Interrupted
        }]
    );
    let end = finish(runner).await;
    let long = &wf.status(&Selector::id("long"), &[])[0];
    assert_eq!((long.state, long.result.clone()), (Interrupted, None));
    assert_eq!(
        end.blocked_step("long").unwrap().reason,
        BlockReason::Interrupted
    );
    assert!(matches!(
        end.blocked_step("after").unwrap().reason,
        BlockReason::Waiting { .. }
    ));

    // Resumed, it runs again (and is interrupted again: it only ever ends when cancelled).
    wf.resume(&Selector::id("long"), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "long running again", |wf| state(wf, "long") == Running).await;
    assert_eq!(wf.status(&Selector::id("long"), &[])[0].attempts, 2);
    wf.interrupt(&Selector::id("long"), false).unwrap();
    finish(runner).await;
}

#[tokio::test]
async fn skip_marks_steps_that_are_skipped_when_reached_and_count_as_done() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("gate", waits_for_message()))
        .step(spec("optional", fails("should never run")).tag("optional", "yes"))
        .step(spec("last", ok(json!(null))))
        .step(spec("kept", ok(json!(null))).tag("optional", "yes"))
        .success_pairs(&[("gate", "optional"), ("optional", "last"), ("gate", "kept")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "gate running", |wf| state(wf, "gate") == Running).await;

    let dry = wf.skip(&Selector::tag("optional", "yes"), true).unwrap();
    assert_eq!(dry.steps(), ["optional", "kept"]);
    assert_eq!(state(&wf, "optional"), Waiting);
    let skipped = wf.skip(&Selector::tag("optional", "yes"), false).unwrap();
    assert_eq!(skipped.steps(), ["optional", "kept"]);
    assert_eq!(
        wf.skip(&Selector::id("gate"), false).unwrap().refused[0].reason,
        "cannot skip a step that is running: only a ready, waiting, paused, marked to pause or paused due to failure step can be skipped"
    );
    // Unskip takes back the mark of a step not skipped yet (dry run first).
    let dry = wf.unskip(&Selector::id("kept"), true).unwrap();
    assert_eq!(
        dry.applied,
        [Applied {
            step: "kept".into(),
            from: MarkedToSkip,
            to: Waiting
        }]
    );
    assert_eq!(state(&wf, "kept"), MarkedToSkip);
    wf.unskip(&Selector::id("kept"), false).unwrap();
    assert_eq!(state(&wf, "kept"), Waiting);

    wf.send_message(&Selector::id("gate"), json!("go"), false)
        .unwrap();
    let end = finish(runner).await;
    assert!(end.is_complete(), "{end}");
    assert_eq!(
        states(&wf),
        pairs(&[
            ("gate", Succeeded),
            ("optional", Skipped),
            ("last", Succeeded),
            ("kept", Succeeded)
        ])
    );
    // A skipped step stays skipped.
    let refused = wf.unskip(&Selector::id("optional"), false).unwrap();
    assert_eq!(refused.applied, []);
    assert_eq!(
        refused.refused[0].reason,
        "cannot unskip a step that is skipped: only a step marked to skip (and not skipped yet) can be unskipped; a skipped step stays skipped"
    );
}

#[tokio::test]
async fn messages_reach_steps_waiting_for_user_input() {
    let asks = step_fn(|ctx| async move {
        let answer = ctx.ask("which test set?").await;
        answer.ok_or_else(|| StepError::fatal("no answer"))
    });
    let wf = WorkflowBuilder::new("w")
        .step(spec("asks", asks).tag("interactive", "yes"))
        .step(spec("done", ok(json!(null))))
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "the question", |wf| {
        !wf.waiting_for_input(&Selector::all()).is_empty()
    })
    .await;
    let waiting = wf.waiting_for_input(&Selector::tag("interactive", "yes"));
    assert_eq!(waiting[0].id, "asks");
    assert_eq!(
        waiting[0].waiting_for_input.as_deref(),
        Some("which test set?")
    );
    assert!(wf.waiting_for_input(&Selector::id("done")).is_empty());

    let dry = wf
        .send_message(&Selector::all(), json!({"set": 2}), true)
        .unwrap();
    assert_eq!(dry.delivered, ["asks"]);
    assert_eq!(dry.refused[0].step, "done");
    assert_eq!(
        dry.refused[0].reason,
        "the step has finished (succeeded): it reads no more messages"
    );
    assert_eq!(state(&wf, "asks"), Running, "a dry run delivers nothing");

    wf.send_message(
        &Selector::tag("interactive", "yes"),
        json!({"set": 2}),
        false,
    )
    .unwrap();
    finish(runner).await;
    let asks = &wf.status(&Selector::id("asks"), &[])[0];
    assert_eq!(
        (asks.state, asks.result.clone()),
        (Succeeded, Some(json!({"set": 2})))
    );
    assert_eq!(asks.waiting_for_input, None);
}

#[tokio::test]
async fn shutdown_interrupts_running_steps_and_refuses_later_calls() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("long", runs_until_cancelled()))
        .step(spec("after", ok(json!(null))))
        .success_pairs(&[("long", "after")])
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "long running", |wf| state(wf, "long") == Running).await;
    let dry = wf.shutdown(true).unwrap();
    assert_eq!(dry.steps(), ["long"]);
    assert_eq!(state(&wf, "long"), Running);
    let report = wf.shutdown(false).unwrap();
    assert_eq!(
        report.applied,
        [Applied {
            step: "long".into(),
            from: Running,
            to: Interrupted
        }]
    );
    let end = finish(runner).await;
    assert!(end.shut_down);
    let shut = ControlError::ShutDown {
        workflow: "w".into(),
    };
    assert_eq!(wf.resume(&Selector::all(), false), Err(shut.clone()));
    assert_eq!(
        wf.send_message(&Selector::all(), json!(1), false),
        Err(shut.clone())
    );
    assert_eq!(wf.shutdown(false), Err(shut));
    // Queries still answer.
    assert_eq!(state(&wf, "long"), Interrupted);
}

#[tokio::test]
async fn the_shutdown_token_stops_the_engine_too() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("long", runs_until_cancelled()))
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let token = CancellationToken::new();
    let runner = tokio::spawn({
        let (wf, token) = (wf.clone(), token.clone());
        async move { wf.run(&token).await }
    });
    until(&wf, "long running", |wf| state(wf, "long") == Running).await;
    token.cancel();
    let end = finish(runner).await;
    assert!(end.shut_down);
    assert_eq!(state(&wf, "long"), Interrupted);
}

#[tokio::test]
async fn status_filters_by_state_and_tags_and_explains_blocked_steps() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("a", ok(json!("A"))).tag("k", "v"))
        .step(spec("b", ok(json!(null))).tag("k", "v"))
        .step(spec("c", ok(json!(null))))
        .success_pairs(&[("a", "b"), ("b", "c")])
        .build()
        .unwrap();
    wf.start(&Selector::id("a"), false).unwrap();
    wf.start(&Selector::id("c"), false).unwrap();
    wf.pause(&Selector::id("b"), false).unwrap();
    let end = run(&wf).await;
    let succeeded = wf.status(&Selector::all(), &[Succeeded]);
    assert_eq!(succeeded.len(), 1);
    assert_eq!(
        (succeeded[0].id.as_str(), succeeded[0].result.clone()),
        ("a", Some(json!("A")))
    );
    assert_eq!(
        wf.status(&Selector::tag("k", "v"), &[Paused, Waiting])[0].id,
        "b"
    );
    assert!(wf.status(&Selector::tag("k", "v"), &[Failed]).is_empty());
    // c waits on b, which is held: it may still move, so it is "waiting", not unreachable.
    let c = &wf.status(&Selector::id("c"), &[])[0];
    assert_eq!(
        c.blocked,
        Some(BlockReason::Waiting {
            unmet: vec![Unmet {
                on: "b".into(),
                needs: vec![Succeeded, Skipped],
                is: Paused
            }]
        })
    );
    assert_eq!(end.blocked.len(), 2);
    let fields = c.project(&["id", "state", "blocked"]).unwrap();
    assert_eq!(fields["state"], "waiting");
    assert_eq!(fields["blocked"]["reason"], "waiting");
}

#[tokio::test]
async fn serve_keeps_serving_after_the_end_state_until_shut_down() {
    let wf = WorkflowBuilder::new("w")
        .step(spec("a", ok(json!(null))))
        .step(spec("b", ok(json!(null))))
        .build()
        .unwrap();
    wf.pause(&Selector::id("b"), false).unwrap();
    wf.start(&Selector::id("a"), false).unwrap();
    let token = CancellationToken::new();
    let server = tokio::spawn({
        let (wf, token) = (wf.clone(), token.clone());
        async move { wf.serve(&token).await }
    });
    until(&wf, "a done, b held", |wf| {
        state(wf, "a") == Succeeded && state(wf, "b") == Paused
    })
    .await;
    wf.resume(&Selector::id("b"), false).unwrap();
    until(&wf, "b done", |wf| state(wf, "b") == Succeeded).await;
    wf.shutdown(false).unwrap();
    let end = finish(server).await;
    assert!(end.shut_down && end.is_complete(), "{end}");
}

// ---------------------------------------------------------------------------------------------
// Persistence

#[tokio::test]
async fn the_store_keeps_the_latest_state_and_a_new_process_restores_it() {
    let store = Arc::new(MemoryWorkflowStore::new());
    let build = |store: Arc<MemoryWorkflowStore>| {
        WorkflowBuilder::new("persisted")
            .step(spec("a", ok(json!("A"))))
            .step(spec("b", fails("nope")))
            .step(spec("c", ok(json!(null))))
            .success_pairs(&[("a", "c")])
            .store(store)
            .build()
            .unwrap()
    };
    let wf = build(store.clone());
    wf.start(&Selector::id("a"), false).unwrap();
    wf.start(&Selector::id("b"), false).unwrap();
    run(&wf).await;
    let saved = store.load("persisted").await.unwrap().unwrap();
    assert_eq!(saved, wf.snapshot());
    let states: Vec<_> = saved
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.state))
        .collect();
    assert_eq!(states, [("a", Succeeded), ("b", Failed), ("c", Ready)]);

    // A step that was running when the process died runs again.
    let mut crashed = saved.clone();
    crashed.steps[2].state = Running;
    let again = build(store.clone());
    again.restore(&crashed).unwrap();
    assert_eq!(
        again.status(&Selector::id("a"), &[])[0].result,
        Some(json!("A"))
    );
    assert_eq!(state(&again, "c"), Waiting);
    run(&again).await;
    assert_eq!(state(&again, "c"), Succeeded);

    let other = WorkflowBuilder::new("other").build().unwrap();
    assert!(other.restore(&saved).is_err());
    let mut unknown = saved;
    unknown.steps[0].id = "zz".into();
    assert!(build(store).restore(&unknown).is_err());
}

#[tokio::test]
async fn a_step_waiting_for_its_next_attempt_tries_again_at_once_after_a_restore() {
    let build = |work: Arc<dyn Step>| {
        WorkflowBuilder::new("retrying")
            .step(
                spec("a", work).retry(
                    RetryPolicy::attempts(3)
                        .with_backoff(Duration::from_secs(3600), Duration::from_secs(3600)),
                ),
            )
            .build()
            .unwrap()
    };
    let wf = build(step_fn(|_| async {
        Err(StepError::retryable("docker is gone"))
    }));
    wf.start(&Selector::all(), false).unwrap();
    let runner = spawn_run(&wf);
    until(&wf, "the first attempt to fail", |wf| {
        let status = &wf.status(&Selector::id("a"), &[])[0];
        status.state == Ready && status.attempts == 1
    })
    .await;
    // The process dies during the hour-long backoff.
    runner.abort();
    let saved = wf.snapshot();
    assert!(!saved.is_over());

    let again = build(ok(json!("second")));
    again.restore(&saved).unwrap();
    let end = run(&again).await;
    assert!(end.is_complete(), "{end}");
    let status = &again.status(&Selector::id("a"), &[])[0];
    assert_eq!((status.state, status.attempts), (Succeeded, 2));
}

#[tokio::test]
async fn stopping_the_process_saves_running_steps_as_running_but_an_operator_shutdown_as_over() {
    let store = Arc::new(MemoryWorkflowStore::new());
    let wf = WorkflowBuilder::new("stopped")
        .step(spec("a", runs_until_cancelled()))
        .store(store.clone())
        .build()
        .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let stop = CancellationToken::new();
    let runner = tokio::spawn({
        let (wf, stop) = (wf.clone(), stop.clone());
        async move { wf.run(&stop).await }
    });
    until(&wf, "a running", |wf| state(wf, "a") == Running).await;
    stop.cancel();
    let end = finish(runner).await;
    assert!(end.shut_down);
    let saved = store.load("stopped").await.unwrap().unwrap();
    assert_eq!((saved.steps[0].state, saved.shut_down), (Running, false));

    let again = WorkflowBuilder::new("stopped")
        .step(spec("a", runs_until_cancelled()))
        .store(store.clone())
        .build()
        .unwrap();
    again.restore(&saved).unwrap();
    let runner = spawn_run(&again);
    until(&again, "a running again", |wf| state(wf, "a") == Running).await;
    again.shutdown(false).unwrap();
    finish(runner).await;
    let saved = store.load("stopped").await.unwrap().unwrap();
    assert_eq!((saved.steps[0].state, saved.shut_down), (Interrupted, true));
    assert!(saved.is_over());
}

/// A store whose next save of a snapshot where step `a` has succeeded waits (once) until it is
/// released, so a test can act while the engine is saving.
struct GatedStore {
    inner: MemoryWorkflowStore,
    armed: std::sync::atomic::AtomicBool,
    saving: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl WorkflowStore for GatedStore {
    async fn save(
        &self,
        snapshot: &crate::store::workflow::Snapshot,
    ) -> Result<(), crate::store::StoreError> {
        let a_done = snapshot
            .steps
            .iter()
            .any(|s| s.id == "a" && s.state == Succeeded);
        if a_done && self.armed.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.saving.notify_one();
            released.await;
        }
        self.inner.save(snapshot).await
    }
    async fn define(
        &self,
        workflow: &str,
        definition: &Value,
    ) -> Result<bool, crate::store::StoreError> {
        self.inner.define(workflow, definition).await
    }
    async fn get(
        &self,
        workflow: &str,
    ) -> Result<Option<crate::store::workflow::StoredWorkflow>, crate::store::StoreError> {
        self.inner.get(workflow).await
    }
    async fn list(
        &self,
    ) -> Result<Vec<crate::store::workflow::StoredWorkflow>, crate::store::StoreError> {
        self.inner.list().await
    }
    async fn adopt(&self, workflow: &str) -> Result<bool, crate::store::StoreError> {
        self.inner.adopt(workflow).await
    }
    async fn disown(&self, workflow: &str) -> Result<(), crate::store::StoreError> {
        self.inner.disown(workflow).await
    }
}

#[tokio::test]
async fn a_control_call_made_while_the_engine_saves_is_not_lost() {
    let store = Arc::new(GatedStore {
        inner: MemoryWorkflowStore::new(),
        armed: true.into(),
        saving: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let wf = WorkflowBuilder::new("gated")
        .step(spec(
            "a",
            step_fn(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok(json!(null)) }
            }),
        ))
        .store(store.clone())
        .build()
        .unwrap();
    wf.start(&Selector::id("a"), false).unwrap();
    let token = CancellationToken::new();
    let server = tokio::spawn({
        let (wf, token) = (wf.clone(), token.clone());
        async move { wf.serve(&token).await }
    });
    // The engine saves `a` as succeeded, and is about to find that nothing can move.
    tokio::time::timeout(DEADLINE, store.saving.notified())
        .await
        .expect("the engine saves");
    wf.rerun(&Selector::id("a"), false).unwrap();
    store.release.notify_one();
    until(&wf, "a run again", |_| runs.load(Ordering::SeqCst) == 2).await;
    until(&wf, "a done again", |wf| state(wf, "a") == Succeeded).await;
    wf.shutdown(false).unwrap();
    finish(server).await;
}
