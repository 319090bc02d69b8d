//! End-state detection: when no step can move on its own, which steps are stuck and on what.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::store::workflow::state::StepState;

/// A pre-condition that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmet {
    /// The step the pre-condition is on.
    pub on: String,
    /// The states it needs that step in.
    pub needs: Vec<StepState>,
    /// The state that step is in.
    pub is: StepState,
}

/// Why a step cannot move on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum BlockReason {
    /// Ready and never started: `start` it.
    NotStarted,
    /// Held by an operator: `resume` it.
    Paused,
    /// Failed and held: `resume` accepts the failure, `rerun` tries again.
    PausedDueToFailure { error: Option<String> },
    /// Stopped by an operator: `resume` or `rerun` it.
    Interrupted,
    /// Waits on steps that may still move (they are themselves held or waiting).
    Waiting { unmet: Vec<Unmet> },
    /// Waits on a finished step in the wrong state: it will never run unless that step is
    /// rerun (e.g. the clean-up of a step that succeeded).
    Unreachable { unmet: Vec<Unmet> },
}

/// A step that cannot move, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub step: String,
    pub state: StepState,
    pub reason: BlockReason,
}

/// Where a workflow stands once no step can move on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndState {
    pub workflow: String,
    /// Steps per state.
    pub counts: BTreeMap<StepState, usize>,
    /// Every step that is not finished, with the reason.
    pub blocked: Vec<Blocked>,
    /// The workflow was shut down.
    pub shut_down: bool,
}

impl EndState {
    /// Every step finished, or can never run because of how others finished; nothing is held
    /// for an operator.
    pub fn is_complete(&self) -> bool {
        self.blocked
            .iter()
            .all(|b| matches!(b.reason, BlockReason::Unreachable { .. }))
    }

    pub fn count(&self, state: StepState) -> usize {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    pub fn blocked_step(&self, step: &str) -> Option<&Blocked> {
        self.blocked.iter().find(|b| b.step == step)
    }
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needs: Vec<_> = self.needs.iter().map(|s| s.as_str()).collect();
        write!(
            f,
            "needs {} {}, but it is {}",
            self.on,
            needs.join(" or "),
            self.is
        )
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |unmet: &[Unmet]| {
            unmet
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        match self {
            BlockReason::NotStarted => f.write_str("not started (start it)"),
            BlockReason::Paused => f.write_str("paused (resume it)"),
            BlockReason::PausedDueToFailure { error } => write!(
                f,
                "paused after failing: {} (resume accepts the failure, rerun tries again)",
                error.as_deref().unwrap_or("no reason given")
            ),
            BlockReason::Interrupted => f.write_str("interrupted (resume or rerun it)"),
            BlockReason::Waiting { unmet } => write!(f, "waiting: {}", list(unmet)),
            BlockReason::Unreachable { unmet } => write!(f, "will never run: {}", list(unmet)),
        }
    }
}

impl fmt::Display for EndState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<_> = self
            .counts
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        write!(f, "workflow {}: {}", self.workflow, counts.join(", "))?;
        if self.shut_down {
            f.write_str(" (shut down)")?;
        }
        for b in &self.blocked {
            write!(f, "\n  {} ({}): {}", b.step, b.state, b.reason)?;
        }
        Ok(())
    }
}
