//! Checking a program's output: the default output validator in the worker, custom checkers
//! (ICPC output validators, testlib checkers) compiled once and run in their own sandbox.

pub mod custom;
pub mod default;

pub use default::{compare, Comparison, DefaultFlags};
