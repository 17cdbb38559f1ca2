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

pub(crate) mod base;
pub(crate) mod calendar;
mod graph;
mod knights;
pub(crate) mod logic;
pub(crate) mod maze;
mod modular;
mod probability;
mod ranking;
mod sequence;
mod strings;
pub(crate) mod sudoku;

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
    // Added in held-out version v2; appended so earlier sets stay as they were.
    &base::Base,
    &modular::Modular,
    &sequence::Sequence,
    &ranking::Ranking,
    &logic::Logic,
    &knights::Knights,
    &graph::Graph,
    &maze::Maze,
    &sudoku::Sudoku,
    &calendar::Calendar,
    &strings::Strings,
    &probability::Probability,
];
