//! What a composed `code_io` function is made into: a description, a
//! reference solution, examples and hidden tests, and the helpers every
//! level shares.

use rhai::Dynamic;

use crate::problem::CodeTest;
use crate::rng::Rng;
use crate::sandbox;

/// Examples shown in the prompt.
pub(super) const SHOWN: usize = 4;
/// Hidden tests that decide the reward (inputs differ from the examples).
pub(super) const HIDDEN: usize = 8;
/// The name every function is written under.
pub(super) const NAME: &str = "f";

/// One function to write.
pub(super) struct Spec {
    /// Its parameters as written in the signature, e.g. `xs`.
    pub(super) params: &'static str,
    /// What it returns, completing "a function that ...".
    pub(super) task: String,
    /// A reference solution, one line of rhai; also the function's
    /// canonical key (parts are always written the same way).
    pub(super) source: String,
    /// The worked reasoning, one line per step.
    pub(super) reasoning: Vec<String>,
    /// The examples in the prompt.
    pub(super) shown: Vec<CodeTest>,
    /// The tests that decide.
    pub(super) hidden: Vec<CodeTest>,
}

/// One input and its expected output, with the branch (or outcome class)
/// it exercises.
pub(super) struct Case {
    pub(super) args: Vec<String>,
    pub(super) expected: String,
    pub(super) branch: usize,
}

impl Case {
    pub(super) fn new(args: Vec<String>, expected: String) -> Self {
        Case {
            args,
            expected,
            branch: 0,
        }
    }
}

/// Examples and hidden tests drawn from `draw`, all inputs distinct; `None`
/// when they cannot tell the function from a constant (every output equal)
/// or some branch is missing from the examples or from the hidden tests.
pub(super) fn split_cases(
    rng: &mut Rng,
    mut draw: impl FnMut(&mut Rng) -> Case,
) -> Option<(Vec<CodeTest>, Vec<CodeTest>)> {
    let mut cases: Vec<Case> = Vec::new();
    for _ in 0..200 {
        let case = draw(rng);
        if !cases.iter().any(|c| c.args == case.args) {
            cases.push(case);
        }
        if cases.len() == SHOWN + HIDDEN {
            break;
        }
    }
    if cases.len() < SHOWN + HIDDEN || cases.iter().all(|c| c.expected == cases[0].expected) {
        return None;
    }
    let (shown, hidden) = cases.split_at(SHOWN);
    let branches = |part: &[Case]| -> Vec<usize> {
        let mut b: Vec<usize> = part.iter().map(|c| c.branch).collect();
        b.sort_unstable();
        b.dedup();
        b
    };
    let all = branches(&cases);
    if branches(shown) != all || branches(hidden) != all {
        return None;
    }
    let tests = |part: &[Case]| -> Vec<CodeTest> {
        part.iter()
            .map(|c| CodeTest {
                args: c.args.clone(),
                expected: c.expected.clone(),
            })
            .collect()
    };
    Some((tests(shown), tests(hidden)))
}

/// A line checking the reference against one example.
pub(super) fn check(case: &CodeTest) -> String {
    format!("Check: {} == {}.", call(NAME, case), case.expected)
}

/// `name(arg1, arg2)` for a test.
pub(super) fn call(name: &str, case: &CodeTest) -> String {
    format!("{name}({})", case.args.join(", "))
}

/// ` + b` or ` - |b|` (nothing for 0), to append to an expression.
pub(super) fn plus(b: i64) -> String {
    match b {
        0 => String::new(),
        b if b > 0 => format!(" + {b}"),
        b => format!(" - {}", -b),
    }
}

/// A number inside a worked expression: negatives in brackets.
pub(super) fn paren(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

pub(super) fn int(v: i64) -> String {
    v.to_string()
}

pub(super) fn ints(items: &[i64]) -> String {
    sandbox::canonical(&Dynamic::from_array(
        items.iter().map(|&v| Dynamic::from(v)).collect(),
    ))
}

pub(super) fn string(text: &str) -> String {
    sandbox::canonical(&Dynamic::from(text.to_string()))
}

/// `len` values in `lo..=hi`, `len` drawn from `min_len..=max_len`.
pub(super) fn array(rng: &mut Rng, min_len: i64, max_len: i64, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(min_len, max_len);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

pub(super) fn nonzero(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    loop {
        let v = rng.range(lo, hi);
        if v != 0 {
            return v;
        }
    }
}
