//! The state machine of one step: its states, the actions that move it, and which moves are
//! allowed. Pure data and one function; the engine decides *when* an action happens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not asked to run yet (or back from a failed attempt, waiting for its backoff).
    Ready,
    /// Asked to run: runs as soon as its pre-conditions hold.
    Waiting,
    Running,
    Succeeded,
    Failed,
    /// Held by an operator; `resume` lets it go.
    Paused,
    /// To be paused when the engine reaches it (its pre-conditions hold).
    MarkedToPause,
    /// Failed, and its policy holds it for an operator: `resume` accepts the failure, `rerun`
    /// tries again.
    PausedDueToFailure,
    /// Stopped while running by an operator.
    Interrupted,
    /// To be skipped when the engine reaches it.
    MarkedToSkip,
    Skipped,
}

impl StepState {
    pub const ALL: [StepState; 11] = [
        StepState::Ready,
        StepState::Waiting,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Paused,
        StepState::MarkedToPause,
        StepState::PausedDueToFailure,
        StepState::Interrupted,
        StepState::MarkedToSkip,
        StepState::Skipped,
    ];

    /// The wire name (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Ready => "ready",
            StepState::Waiting => "waiting",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Paused => "paused",
            StepState::MarkedToPause => "marked_to_pause",
            StepState::PausedDueToFailure => "paused_due_to_failure",
            StepState::Interrupted => "interrupted",
            StepState::MarkedToSkip => "marked_to_skip",
            StepState::Skipped => "skipped",
        }
    }

    /// Finished: only an operator's `rerun` moves the step again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Failed | StepState::Skipped
        )
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown step state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for StepState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What moves a step. Control actions come from an operator through the control API; the
/// others only from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    // Control.
    Start,
    Pause,
    Resume,
    Rerun,
    Skip,
    Unskip,
    Interrupt,
    // Engine.
    /// Pre-conditions hold: the step's work starts.
    Run,
    Succeed,
    Fail,
    /// Failed, and the step's policy is to pause on failure.
    FailAndPause,
    /// A retryable failure with attempts left: back to Ready until the backoff has passed.
    Retry,
    /// A marked-to-pause step is reached.
    Hold,
    /// A marked-to-skip step is reached.
    Bypass,
}

/// A move the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a step that is {}: {}", .action.verb(), .from.as_str().replace('_', " "), .action.rule())]
pub struct Refused {
    pub action: Action,
    pub from: StepState,
}

impl Action {
    pub fn is_control(self) -> bool {
        matches!(
            self,
            Action::Start
                | Action::Pause
                | Action::Resume
                | Action::Rerun
                | Action::Skip
                | Action::Unskip
                | Action::Interrupt
        )
    }

    /// The state a step in `from` moves to, or why it cannot.
    pub fn apply(self, from: StepState) -> Result<StepState, Refused> {
        use Action as A;
        use StepState as S;
        let to = match (self, from) {
            (A::Start, S::Ready) => S::Waiting,
            (A::Run, S::Waiting) => S::Running,
            (A::Succeed, S::Running) => S::Succeeded,
            (A::Fail, S::Running) => S::Failed,
            (A::FailAndPause, S::Running) => S::PausedDueToFailure,
            (A::Retry, S::Running) => S::Ready,
            (A::Interrupt, S::Running) => S::Interrupted,
            (A::Pause, S::Ready | S::Waiting) => S::MarkedToPause,
            (A::Hold, S::MarkedToPause) => S::Paused,
            // Resuming lets the step go: it runs once its pre-conditions hold.
            (A::Resume, S::Paused | S::MarkedToPause | S::Interrupted) => S::Waiting,
            // Resuming a step paused by its failure accepts the failure.
            (A::Resume, S::PausedDueToFailure) => S::Failed,
            (A::Rerun, S::Succeeded | S::Failed | S::Interrupted | S::PausedDueToFailure) => {
                S::Waiting
            }
            (
                A::Skip,
                S::Ready | S::Waiting | S::Paused | S::MarkedToPause | S::PausedDueToFailure,
            ) => S::MarkedToSkip,
            (A::Unskip, S::MarkedToSkip) => S::Waiting,
            (A::Bypass, S::MarkedToSkip) => S::Skipped,
            _ => return Err(Refused { action: self, from }),
        };
        Ok(to)
    }

    pub fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Rerun => "rerun",
            Action::Skip => "skip",
            Action::Unskip => "unskip",
            Action::Interrupt => "interrupt",
            Action::Run => "run",
            Action::Succeed => "succeed",
            Action::Fail => "fail",
            Action::FailAndPause => "fail and pause",
            Action::Retry => "retry",
            Action::Hold => "hold",
            Action::Bypass => "bypass",
        }
    }

    /// Which states the action applies to, in words.
    fn rule(self) -> &'static str {
        match self {
            Action::Start => "only a ready step can be started",
            Action::Pause => "only a ready or waiting step can be paused",
            Action::Resume => {
                "only a paused, marked to pause, paused due to failure or interrupted step can be resumed"
            }
            Action::Rerun => {
                "only a succeeded, failed, paused due to failure or interrupted step can be rerun"
            }
            Action::Skip => {
                "only a ready, waiting, paused, marked to pause or paused due to failure step can be skipped"
            }
            Action::Unskip => {
                "only a step marked to skip (and not skipped yet) can be unskipped; a skipped step stays skipped"
            }
            Action::Interrupt => "only a running step can be interrupted",
            Action::Run => "only a waiting step can run",
            Action::Succeed | Action::Fail | Action::FailAndPause | Action::Retry => {
                "only a running step ends"
            }
            Action::Hold => "only a step marked to pause is held",
            Action::Bypass => "only a step marked to skip is bypassed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use StepState as S;

    /// Every allowed move; everything else must be refused.
    const ALLOWED: &[(Action, StepState, StepState)] = &[
        (A::Start, S::Ready, S::Waiting),
        (A::Run, S::Waiting, S::Running),
        (A::Succeed, S::Running, S::Succeeded),
        (A::Fail, S::Running, S::Failed),
        (A::FailAndPause, S::Running, S::PausedDueToFailure),
        (A::Retry, S::Running, S::Ready),
        (A::Interrupt, S::Running, S::Interrupted),
        (A::Pause, S::Ready, S::MarkedToPause),
        (A::Pause, S::Waiting, S::MarkedToPause),
        (A::Hold, S::MarkedToPause, S::Paused),
        (A::Resume, S::Paused, S::Waiting),
        (A::Resume, S::MarkedToPause, S::Waiting),
        (A::Resume, S::Interrupted, S::Waiting),
        (A::Resume, S::PausedDueToFailure, S::Failed),
        (A::Rerun, S::Succeeded, S::Waiting),
        (A::Rerun, S::Failed, S::Waiting),
        (A::Rerun, S::Interrupted, S::Waiting),
        (A::Rerun, S::PausedDueToFailure, S::Waiting),
        (A::Skip, S::Ready, S::MarkedToSkip),
        (A::Skip, S::Waiting, S::MarkedToSkip),
        (A::Skip, S::Paused, S::MarkedToSkip),
        (A::Skip, S::MarkedToPause, S::MarkedToSkip),
        (A::Skip, S::PausedDueToFailure, S::MarkedToSkip),
        (A::Unskip, S::MarkedToSkip, S::Waiting),
        (A::Bypass, S::MarkedToSkip, S::Skipped),
    ];

    const ACTIONS: [Action; 14] = [
        A::Start,
        A::Pause,
        A::Resume,
        A::Rerun,
        A::Skip,
        A::Unskip,
        A::Interrupt,
        A::Run,
        A::Succeed,
        A::Fail,
        A::FailAndPause,
        A::Retry,
        A::Hold,
        A::Bypass,
    ];

    #[test]
    fn every_action_from_every_state_is_allowed_or_refused_as_listed() {
        for action in ACTIONS {
            for from in StepState::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(a, f, _)| *a == action && *f == from)
                    .map(|(_, _, to)| *to);
                match (action.apply(from), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{action:?} from {from:?}"),
                    (Err(refused), None) => {
                        assert_eq!(refused, Refused { action, from });
                        assert!(refused.to_string().starts_with("cannot "), "{refused}");
                    }
                    (got, want) => panic!("{action:?} from {from:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn a_skipped_step_cannot_be_unskipped_and_says_why() {
        let refused = A::Unskip.apply(S::Skipped).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "cannot unskip a step that is skipped: only a step marked to skip (and not skipped yet) \
             can be unskipped; a skipped step stays skipped"
        );
    }

    #[test]
    fn states_round_trip_through_their_wire_names() {
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().into())
            );
        }
        assert!("sleeping".parse::<StepState>().is_err());
    }

    #[test]
    fn only_succeeded_failed_and_skipped_are_final() {
        let finals: Vec<_> = StepState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [S::Succeeded, S::Failed, S::Skipped]);
    }
}
