//! What a problem is and what a verifier says about an answer to it.

use serde::{Deserialize, Serialize};

/// One generated (or imported) problem: everything needed to prompt a model,
/// teach it by example, and score what it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable identifier, e.g. `arith/3/train/17`.
    pub id: String,
    /// Family name (`arith`, `countdown`, ...) or the name of a user set.
    pub task: String,
    /// Difficulty level, 1-based.
    pub level: u32,
    /// The text the model is asked.
    pub prompt: String,
    /// Reference answer in canonical form.
    pub answer: String,
    /// A worked solution in the output format: `<think>…</think><answer>…</answer>`.
    pub solution: String,
    /// What the verifier needs beyond the reference answer.
    #[serde(flatten)]
    pub check: Check,
}

/// How a completion's extracted answer is judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verifier", rename_all = "snake_case")]
pub enum Check {
    /// An integer equal to the reference (`-0012` and `-12` agree).
    Number,
    /// The same text as the reference after whitespace is normalised.
    Exact,
    /// The same list of integers, in order (`[1, 2]`, `1,2` and `1 2` agree).
    List,
    /// The same fraction in lowest terms (`3/4`; integers may be written bare).
    Fraction,
    /// An expression using each given number at most once that evaluates to the target.
    Countdown { numbers: Vec<i64>, target: i64 },
    /// A rhai function `name` that must pass hidden tests.
    CodeTests {
        function: String,
        tests: Vec<CodeTest>,
        /// Reward the fraction of tests passed instead of all-or-nothing.
        #[serde(default)]
        partial_credit: bool,
    },
    /// The printed result of running `program` (the reference answer).
    CodeOutput { program: String },
    /// A number written in `base` (2..=16): the digits only, letters in
    /// either case, leading zeros free.
    Digits { base: u32 },
    /// The reference's words in its order, compared without regard to case;
    /// commas or spaces between them (`Cy, Ann, Bo`, `cy ann bo`).
    Words,
    /// A calendar date, `YYYY-MM-DD` (leading zeros of month and day free).
    Date,
    /// Values for `variables`, written `p=1, q=0` (or true / false), that
    /// make every clause true. A clause is a list of literals: `i + 1` for
    /// variable `i`, `-(i + 1)` for its negation. Any satisfying assignment
    /// scores.
    Satisfy {
        variables: Vec<String>,
        clauses: Vec<Vec<i64>>,
    },
    /// A completed 4x4 sudoku, its 16 digits row by row (separators free),
    /// that keeps the givens (`givens`: 16 characters, `.` for a blank).
    /// Any valid completion scores.
    Sudoku { givens: String },
    /// Moves `U`, `D`, `L`, `R` that walk from `S` to `E` through `grid`
    /// (rows joined by `/`, `#` a wall) in `shortest` moves. Any shortest
    /// path scores.
    Maze { grid: String, shortest: usize },
}

/// One hidden unit test: call the function with `args` (rhai literals) and
/// expect `expected` (a rhai literal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeTest {
    /// Arguments, each a rhai literal.
    pub args: Vec<String>,
    /// The expected return value, a rhai literal.
    pub expected: String,
}

/// A verifier's judgement of one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Correctness reward in [0, 1].
    pub reward: f64,
    /// Whether the whole completion is exactly `<think>…</think>` then
    /// `<answer>…</answer>` (surrounding whitespace aside; see [`crate::extract`]).
    pub format_ok: bool,
    /// The answer taken from the last answer block, if there was one.
    pub extracted: Option<String>,
    /// The extracted answer in the family's canonical form, so that answers
    /// the verifier treats alike compare equal (`-012` and `-12`, `[1,2]`
    /// and `1 2`): what majority voting counts. Where many texts are right
    /// (countdown, code written to tests), every passing answer normalises to
    /// the reference answer. `None` without an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
    /// A short human-readable reason.
    pub reason: String,
}

/// A family verifier's judgement of an extracted answer, before the format
/// part of the verdict is added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Score {
    /// Correctness in [0, 1].
    pub reward: f64,
    /// Why, in a few words.
    pub reason: String,
}

impl Score {
    /// Full reward.
    pub fn pass(reason: impl Into<String>) -> Self {
        Self {
            reward: 1.0,
            reason: reason.into(),
        }
    }

    /// No reward.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self {
            reward: 0.0,
            reason: reason.into(),
        }
    }
}

impl Check {
    /// The `verifier` tag this check serialises as.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Number => "number",
            Check::Exact => "exact",
            Check::List => "list",
            Check::Fraction => "fraction",
            Check::Countdown { .. } => "countdown",
            Check::CodeTests { .. } => "code_tests",
            Check::CodeOutput { .. } => "code_output",
            Check::Digits { .. } => "digits",
            Check::Words => "words",
            Check::Date => "date",
            Check::Satisfy { .. } => "satisfy",
            Check::Sudoku { .. } => "sudoku",
            Check::Maze { .. } => "maze",
        }
    }
}
