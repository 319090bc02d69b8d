//! The workflow engine: long jobs made of steps, and the workflows built on it (rejudge,
//! problem validation, retry with owner notification).
//!
//! Each step is a state machine ([`StepState`], moved by [`Action`]s). A move of the engine is
//! guarded by pre-conditions on the states of other steps, which is how workflows are drawn:
//! `success_pairs` (a -> b if a succeeded), `failure_pairs` (a -> clean-up if a failed),
//! forks and joins. A step's failure (or panic) becomes its state and error, never the
//! engine's. When no step can move on its own, the engine stops and says why
//! ([`EndState`]). Operators act on steps selected by tags (start, pause, resume, rerun, skip,
//! unskip, interrupt, messages), each call with a dry run.

pub mod builder;
pub mod control;
pub mod definition;
pub mod end;
pub mod engine;
pub mod judging;
pub mod rejudge;
pub mod retry;
pub mod runner;
pub mod state;
pub mod step;
pub mod store;
pub mod validate;
pub mod webhook;

pub use builder::{BuildError, WorkflowBuilder, FAILED, FINISHED, SUCCEEDED};
pub use control::{ControlError, ControlReport, Selector, StepInfo, StepStatus};
pub use definition::{Definition, Env, Settings};
pub use end::{BlockReason, EndState};
pub use engine::{Event, StepContext, Workflow};
pub use judging::{Judgement, SubmissionJudge};
pub use runner::Runner;
pub use state::{Action, StepState};
pub use step::{step_fn, OnFailure, RetryPolicy, Step, StepError, StepSpec};
pub use store::{
    MemoryResultStore, MemoryWorkflowStore, ResultStore, SubmissionStore, WorkflowStore,
};

#[cfg(test)]
mod tests;
