//! The judge yields messages and the worker forwards them (issue #18, step 3), against real
//! Docker: the sequence comes in order from the judge alone; a store that fails mid-judging
//! stops the judging at its next message, with nothing left behind; a submission another worker
//! took is never judged.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use executioner::interface::{Interface, InterfaceError, Sent};
use executioner::judge::Unheard;
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::worker::{judge_for, Outcome};

mod judging;

use judging::{containers_of, judge, submission, untimed};

/// A store that records what it is sent, refuses `executing` when told to, and fails on the
/// `fail_at`-th message (1-based) and every one after it.
struct Store {
    taken_elsewhere: bool,
    fail_at: Option<usize>,
    seen: Mutex<Vec<Body>>,
    calls: Mutex<usize>,
}

impl Store {
    fn new(taken_elsewhere: bool, fail_at: Option<usize>) -> Self {
        Store {
            taken_elsewhere,
            fail_at,
            seen: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
        }
    }

    fn seen(&self) -> Vec<Body> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Interface for Store {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        Ok(None)
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if self.fail_at.is_some_and(|at| call >= at) {
            return Err(InterfaceError::transient("test", "the store went away"));
        }
        if message.body == Body::Executing && self.taken_elsewhere {
            return Ok(Sent::NotTaken);
        }
        self.seen.lock().unwrap().push(message.body.clone());
        Ok(Sent::Recorded)
    }
}

// One test function: the container counts must not see another test's containers.
#[tokio::test]
async fn the_judge_yields_and_the_worker_forwards() {
    let judge = judge().await;
    let cancel = CancellationToken::new();

    // The judge alone: everything after `executing`, in order, the last one returned.
    let accepted = submission("yields", "gcc-12", "accepted");
    let (tx, mut rx) = mpsc::channel::<Message>(4);
    let collect = async {
        let mut bodies = Vec::new();
        while let Some(message) = rx.recv().await {
            assert_eq!(message.id, "yields");
            bodies.push(message.body);
        }
        bodies
    };
    let (end, bodies) = tokio::join!(judge.judge(&accepted, tx, &cancel), collect);
    let end = end.expect("the receiver stayed");
    assert!(
        matches!(end, Body::Done { score: Some(s), .. } if s == 1.0),
        "{end:?}"
    );
    assert_eq!(bodies.first(), Some(&Body::Compiling));
    assert!(matches!(
        bodies.get(1),
        Some(Body::Compiled {
            result: CompileResult::Success,
            ..
        })
    ));
    assert_eq!(bodies.last(), Some(&end));
    assert!(!bodies.contains(&Body::Executing), "{bodies:?}");

    // A receiver that goes away after the first message: judging stops, nothing is left.
    let (tx, mut rx) = mpsc::channel(1);
    let first_only = async move {
        let first = rx.recv().await;
        drop(rx);
        first
    };
    let (ended, first) = tokio::join!(judge.judge(&accepted, tx, &cancel), first_only);
    assert_eq!(ended, Err(Unheard));
    assert_eq!(first.map(|m| m.body), Some(Body::Compiling));
    assert_eq!(
        containers_of(std::process::id()).await,
        0,
        "a stopped judging left its container"
    );

    // Through the worker: a store failing at `compiled` gets nothing more, and the error is
    // the store's.
    let store = Store::new(false, Some(3));
    let failed = judge_for(&judge, &accepted, &store, &cancel).await;
    let error = failed.expect_err("the store's failure is reported");
    assert!(error.reason.contains("went away"), "{error}");
    assert_eq!(store.seen(), vec![Body::Executing, Body::Compiling]);
    assert_eq!(
        containers_of(std::process::id()).await,
        0,
        "a failed store left a container"
    );

    // Taken by another worker: nothing is judged, nothing more is sent.
    let store = Store::new(true, None);
    let outcome = judge_for(&judge, &accepted, &store, &cancel).await.unwrap();
    assert_eq!(outcome, Outcome::NotTaken);
    assert_eq!(*store.calls.lock().unwrap(), 1);
    assert!(store.seen().is_empty());

    // A store that works gets the whole sequence, the claim first.
    let store = Store::new(false, None);
    let outcome = judge_for(&judge, &accepted, &store, &cancel).await.unwrap();
    let seen = store.seen();
    assert_eq!(seen.first(), Some(&Body::Executing));
    assert_eq!(untimed(&seen[1..]), untimed(&bodies));
    assert_eq!(outcome, Outcome::Finished(end));
    assert_eq!(containers_of(std::process::id()).await, 0);
}
