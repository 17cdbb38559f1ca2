//! Verifiable problem families for training and evaluating reasoning models.
//!
//! A [`Task`] (one family: `arith`, `linear`, `countdown`, ...) turns
//! `(seed, level)` into a [`Problem`] purely and reproducibly: the same
//! problem on every machine. A problem carries its prompt, a reference
//! answer, a worked solution in the output format
//! `<think>…</think><answer>…</answer>` (the supervised cold-start target),
//! and what its verifier needs. [`Problem::verify`] scores a model's raw
//! completion and returns a [`Verdict`]: a reward in [0, 1], whether the
//! format was followed, the extracted answer and a short reason. It never
//! panics, whatever the text.
//!
//! [`problem`] addresses problems by split: training and held-out problems
//! come from disjoint seed spaces, and no held-out problem is ever drawn for
//! training, neither its prompt nor its meaning: each family gives a problem
//! a canonical key ([`Generated::key`]: `4+5` and `5+4` share one) and
//! training skips every held-out key ([`audit`] proves it). The held-out
//! sets are versioned ([`HELDOUT_VERSION`]) and frozen under
//! [`HELDOUT_DIR`]. Every family reports its levels ([`Task::levels`]), the
//! range a curriculum may move it in. A [`Mixture`] weighs families, levels and
//! user problem sets for a trainer; [`read_problems`] and [`write_problems`]
//! read and write problem sets as JSON Lines.
//! This crate has no ML dependency.
//!
//! ```
//! use tasks::{problem, Split};
//!
//! let p = problem("add", 3, Split::Train, 0)?;
//! assert!(p.prompt.starts_with("What is "));
//! // The worked solution is a perfect completion...
//! let verdict = p.verify(&p.solution);
//! assert_eq!((verdict.reward, verdict.format_ok), (1.0, true));
//! // ...and hedging between two answers earns nothing.
//! let hedge = format!("<think></think><answer>{} or 7</answer>", p.answer);
//! assert_eq!(p.verify(&hedge).reward, 0.0);
//! # Ok::<(), tasks::Error>(())
//! ```

mod answer;
mod arith_expr;
mod error;
mod families;
mod jsonl;
mod mixture;
mod problem;
mod rng;
mod sandbox;
mod split;
mod task;
mod verify;

pub use answer::{extract, Extraction, ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN};
pub use error::{Error, Result};
pub use jsonl::{
    parse_completions, parse_problems, read_completions, read_problems, to_jsonl, to_line,
    write_problems, Completion, ProblemSet,
};
pub use mixture::{EntrySpec, Mixture, MixtureEntry, Source};
pub use problem::{Check, CodeTest, Problem, Verdict};
pub use rng::Rng;
pub use split::{
    audit, canonical_key, heldout, heldout_file_name, heldout_keys, load_frozen_heldout, problem,
    Split, SplitAudit, HELDOUT_DIR, HELDOUT_SIZE, HELDOUT_VERSION,
};
pub use task::{all, check_level, find, Generated, Task};
pub use verify::MAX_EXTRACTED_BYTES;
