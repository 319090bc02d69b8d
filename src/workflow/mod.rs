//! The workflow engine: long jobs made of steps, and the workflows built on it (rejudge,
//! problem validation, retry with owner notification).
//!
//! [`engine`] is generic: steps, their states, the builder, the controls, the end states and
//! the snapshots it saves to a [`WorkflowStore`]; it knows no judge and no job. The jobs are
//! built on it and never the reverse: [`judging`] (the judge step), [`webhook`] (the notify
//! step), [`rejudge`], [`validate`], [`retry`]; what they read and write (submissions, results)
//! goes through the traits of [`crate::store`] ([`SubmissionStore`], [`ResultStore`]);
//! [`definition`] names the job kinds as data, and [`runner`] runs definitions and restores them
//! after a restart.
//!
//! [`WorkflowStore`]: crate::store::WorkflowStore
//! [`SubmissionStore`]: crate::store::SubmissionStore
//! [`ResultStore`]: crate::store::ResultStore
//!
//! Each step is a state machine ([`StepState`], moved by [`Action`]s). A move of the engine is
//! guarded by pre-conditions on the states of other steps, which is how workflows are drawn:
//! `success_pairs` (a -> b if a succeeded), `failure_pairs` (a -> clean-up if a failed),
//! forks and joins. A step's failure (or panic) becomes its state and error, never the
//! engine's. When no step can move on its own, the engine stops and says why
//! ([`EndState`]). Operators act on steps selected by tags (start, pause, resume, rerun, skip,
//! unskip, interrupt, messages), each call with a dry run.

pub mod definition;
pub mod engine;
pub mod judging;
pub mod rejudge;
pub mod retry;
pub mod runner;
pub mod validate;
pub mod webhook;

pub use crate::store::workflow::state::{Action, StepState};
pub use definition::{Definition, Env, Settings};
pub use engine::builder::{BuildError, WorkflowBuilder, FAILED, FINISHED, SUCCEEDED};
/// The operator's controls keep their path (`workflow::control`), as the API names them.
pub use engine::control;
pub use engine::control::{ControlError, ControlReport, Selector, StepInfo, StepStatus};
pub use engine::end::{BlockReason, EndState};
pub use engine::step::{step_fn, OnFailure, RetryPolicy, Step, StepError, StepSpec};
pub use engine::{Event, StepContext, Workflow};
pub use judging::{Judgement, QueuedJudge, SubmissionJudge};
pub use runner::Runner;
