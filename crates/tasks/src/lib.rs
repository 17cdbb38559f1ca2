//! Verifiable problem families for training and evaluating reasoning models.
//!
//! A [`Task`] turns `(seed, level)` into a [`Problem`] purely and reproducibly;
//! [`Problem::verify`] scores a model's raw completion and returns a
//! [`Verdict`]. This crate has no ML dependency.

mod arith_expr;
mod error;
mod families;
mod problem;
mod rng;
mod sandbox;
mod task;

pub use error::{Error, Result};
pub use problem::{Check, CodeTest, Problem, Verdict};
pub use rng::Rng;
pub use task::{all, check_level, find, Generated, Task};
