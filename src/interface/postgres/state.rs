//! The state of a submission in a shared store (SPEC §6): what its `state` field holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `submissions.state`, with the exact strings of SPEC §6 (the STAOJ front end's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubmissionState {
    /// Waiting for a worker (how a front end inserts it).
    Queued,
    /// Claimed by a worker (`executing`).
    Judging,
    Compiling,
    /// Compiled successfully; the tests run.
    Compiled,
    /// The compiler refused it; its score is 0. Final once `done` is recorded.
    CompileError,
    /// `done`: score (and failed subtasks) recorded. Final.
    Judged,
    /// The executioner failed. Final once its retries are used up.
    Error,
    /// `invalid`: the submission's own data cannot be judged. Final.
    InvalidData,
}

impl SubmissionState {
    pub const ALL: [SubmissionState; 8] = [
        SubmissionState::Queued,
        SubmissionState::Judging,
        SubmissionState::Compiling,
        SubmissionState::Compiled,
        SubmissionState::CompileError,
        SubmissionState::Judged,
        SubmissionState::Error,
        SubmissionState::InvalidData,
    ];

    /// The stored string.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionState::Queued => "queued",
            SubmissionState::Judging => "judging",
            SubmissionState::Compiling => "compiling",
            SubmissionState::Compiled => "compiled",
            SubmissionState::CompileError => "compileError",
            SubmissionState::Judged => "judged",
            SubmissionState::Error => "error",
            SubmissionState::InvalidData => "invalidData",
        }
    }
}

impl fmt::Display for SubmissionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown submission state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for SubmissionState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubmissionState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_strings_and_serde() {
        for state in SubmissionState::ALL {
            assert_eq!(state.as_str().parse::<SubmissionState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().into())
            );
        }
        assert_eq!(SubmissionState::CompileError.as_str(), "compileError");
        assert!("Queued".parse::<SubmissionState>().is_err());
    }
}
