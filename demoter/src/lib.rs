//! The demoter: runs one untrusted program under cgroup limits as an unprivileged user and
//! measures what it used. The `protocol` module is shared with the executioner.
//!
//! It is small, synchronous and single-threaded on purpose (like firecracker's jailer): the
//! process forks the programs it runs, and a fork is only simple in a single-threaded process.

pub mod agent;
pub mod cgroup;
pub mod cli;
pub mod error;
pub mod fsops;
pub mod limit;
pub mod pack;
pub mod protocol;
pub mod run;
pub mod seccomp;
pub mod spawn;
pub mod sys;
pub mod tree;

pub use error::Error;
