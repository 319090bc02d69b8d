//! executioner: a sandboxed code judge. Takes submissions from a store, compiles and runs them
//! in Docker containers through the demoter, and reports verdicts test by test.
//!
//! The `executioner` binary (`src/main.rs` and its `commands` modules) parses the command line
//! and calls into this library; nothing here knows the command line.
//!
//! # Layout
//!
//! - [`protocol`]: messages and submissions, serialised to the exact wire JSON.
//! - [`verdict`], [`score`]: the verdict of one test (token comparison), the score rules.
//! - [`problem`]: one problem model for STAOJ folders, ICPC and Polygon packages.
//! - [`check`]: the default output validator and custom checkers.
//! - [`compile_cache`]: successful builds kept on the worker's disk.
//! - [`language`]: the language registry (`languages.toml`).
//! - [`sandbox`]: Docker containers, host cgroups, box uids and CPUs, the warm pool.
//! - [`judge`]: the pipeline for one submission, yielding its messages.
//! - [`setup`]: a judge built from settings (problems, registry, demoter, warm pool).
//! - [`interface`]: the store trait and its backends (memory, Postgres, Firestore, a remote
//!   `serve`).
//! - [`store`]: the stores' capability traits (listing, rejudging, workflow state) and their
//!   memory and Postgres backends.
//! - [`worker`]: concurrency, shutdown and store retries around the judge.
//! - [`workflow`]: the generic workflow engine ([`workflow::engine`]) and the workflows built on
//!   it (rejudge, validation, retry).
//! - [`run`]: ad-hoc runs, judged as a one-test problem.
//! - [`metrics`]: the process's Prometheus metrics.
//! - [`api`]: the HTTP API (operations, workers, workflows, runs, Judge0, status page).
//! - [`token`], [`time`], [`sync`], [`backoff`]: shared by client and server: secrets, epoch
//!   milliseconds and RFC 3339, poison-tolerant locking, the backoff of every retry.
//!
//! A submission's data path: [`worker`] → [`judge`] → [`sandbox`] → demoter → [`verdict`] →
//! messages ([`protocol`]) → [`worker`] → store ([`interface`]).
//!
//! Modules import only modules below them, never each other in a circle (`tests/layout.rs`);
//! `ARCHITECTURE.md` gives the layers and the main traits.

/// The HTTP API: routes, backends, workflows, worker registry, runs, callbacks, status page.
pub mod api;
/// The one exponential backoff of every retry: stores, worker, callbacks, workflow steps.
pub mod backoff;
/// Output validation: the default validator and custom checkers.
pub mod check;
/// The compile cache: successful builds reused by (language, image, sources, options).
pub mod compile_cache;
/// Where submissions come from and messages go: the store trait and its backends.
pub mod interface;
/// The pipeline for one submission: compile, run each test, check, score.
pub mod judge;
/// The language registry: images, aliases, extensions, commands, allowances.
pub mod language;
/// The process's Prometheus metrics and their exporter.
pub mod metrics;
/// Problems in three formats (STAOJ, ICPC, Polygon), validated and cached.
pub mod problem;
/// Messages and submissions on the wire.
pub mod protocol;
/// Ad-hoc runs: a program run on given input, and its report.
pub mod run;
/// Docker containers, cgroups, box uids, CPUs and the warm pool.
pub mod sandbox;
/// Score rules: subtasks, partial scores.
pub mod score;
/// A judge built from settings, as the binary's commands, tests and benchmarks build it.
pub mod setup;
/// Where submissions, results and workflow state are kept: capability traits, one module per
/// backend.
pub mod store;
/// Poison-tolerant locking.
pub mod sync;
/// Time as the API and workflows keep it: epoch milliseconds, RFC 3339.
pub mod time;
/// Shared secrets, checked by the API and sent by the remote worker.
pub mod token;
/// The verdict of one test.
pub mod verdict;
/// The worker: claims submissions and forwards what the judge yields.
pub mod worker;
/// The generic workflow engine and the workflows built on it: rejudge, validation, retry.
pub mod workflow;
