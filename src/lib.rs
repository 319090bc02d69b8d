//! executioner: a sandboxed code judge. Takes submissions from a store, compiles and runs them
//! in Docker containers through the demoter, and reports verdicts test by test.

pub mod api;
pub mod backoff;
pub mod check;
pub mod cli;
pub mod compile_cache;
pub mod interface;
pub mod judge;
pub mod language;
pub mod metrics;
pub mod problem;
pub mod protocol;
pub mod run;
pub mod sandbox;
pub mod score;
pub mod sync;
pub mod time;
pub mod verdict;
pub mod worker;
pub mod workflow;
