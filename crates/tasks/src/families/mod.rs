//! The built-in problem families, one file each.

mod arith;
mod expr;
mod fraction;
mod linear;
mod op;

pub(crate) mod countdown;
mod lists;
mod numtheory;
mod wordproblem;

pub(crate) mod code_io;
pub(crate) mod code_trace;

use crate::task::Task;

/// Registered families, in display order.
pub(crate) static ALL: &[&dyn Task] = &[
    &arith::ARITH,
    &arith::ADD,
    &arith::SUB,
    &arith::MUL,
    &expr::Expr,
    &linear::Linear,
    &fraction::Fraction,
    &countdown::Countdown,
    &numtheory::NumTheory,
    &wordproblem::WordProblem,
    &lists::Lists,
    &code_io::CodeIo,
    &code_trace::CodeTrace,
];
