//! The state of a submission in a store (SPEC §6): what its `state` field holds, and how each
//! message moves it. One definition for every store and for the HTTP API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::protocol::{Body, CompileResult};

/// `submissions.state`, with the exact strings of SPEC §6 (the STAOJ front end's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Withdrawn through the HTTP API while still queued; never judged. Final. (Not a SPEC §6
    /// worker state: only the API sets it, and no worker claims it.)
    Cancelled,
}

impl SubmissionState {
    pub const ALL: [SubmissionState; 9] = [
        SubmissionState::Queued,
        SubmissionState::Judging,
        SubmissionState::Compiling,
        SubmissionState::Compiled,
        SubmissionState::CompileError,
        SubmissionState::Judged,
        SubmissionState::Error,
        SubmissionState::InvalidData,
        SubmissionState::Cancelled,
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
            SubmissionState::Cancelled => "cancelled",
        }
    }

    /// The state once `body` is recorded (the mapping of SPEC §6): `done` after a compile error
    /// keeps `compileError`; `testing` and `tested` leave the state as it is.
    pub fn after(self, body: &Body) -> SubmissionState {
        match body {
            Body::Executing => SubmissionState::Judging,
            Body::Compiling => SubmissionState::Compiling,
            Body::Compiled {
                result: CompileResult::Success,
                ..
            } => SubmissionState::Compiled,
            Body::Compiled {
                result: CompileResult::Error,
                ..
            } => SubmissionState::CompileError,
            Body::Done { .. } if self == SubmissionState::CompileError => self,
            Body::Done { .. } => SubmissionState::Judged,
            Body::Error { .. } => SubmissionState::Error,
            Body::Invalid { .. } => SubmissionState::InvalidData,
            Body::Testing { .. } | Body::Tested { .. } => self,
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

    #[test]
    fn messages_move_the_state_as_spec_6_maps_them() {
        use crate::verdict::Verdict;
        let compile_error = Body::Compiled {
            result: CompileResult::Error,
            compile_output: None,
        };
        let done = Body::Done {
            score: None,
            failed_subtasks: None,
        };
        let fold = |bodies: &[Body]| {
            bodies
                .iter()
                .fold(SubmissionState::Queued, |state, body| state.after(body))
        };
        assert_eq!(
            fold(&[
                Body::Executing,
                Body::Compiling,
                compile_error,
                done.clone()
            ]),
            SubmissionState::CompileError
        );
        let tested = Body::Tested {
            test_case: 1,
            subtask: None,
            result: Verdict::Wrong,
            time: None,
            memory: None,
            score: None,
            output: None,
        };
        assert_eq!(
            fold(&[Body::Executing, tested.clone()]),
            SubmissionState::Judging
        );
        assert_eq!(
            fold(&[Body::Executing, tested, done]),
            SubmissionState::Judged
        );
        assert_eq!(
            fold(&[Body::Executing, Body::Invalid { reason: None }]),
            SubmissionState::InvalidData
        );
        assert_eq!(
            fold(&[Body::Executing, Body::Error { reason: None }]),
            SubmissionState::Error
        );
    }
}
