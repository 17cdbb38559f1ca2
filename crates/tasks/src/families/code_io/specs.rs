//! What a `code_io` template produces, the choice of template per level,
//! and the helpers templates share. A template picks its hidden constants
//! and inputs, computes the expected outputs in Rust, and writes a reference
//! solution in rhai with a short line of reasoning.

use rhai::Dynamic;

use super::algorithms::{count_primes, digit_sum, factorial, fib, gcd, is_prime, second_largest};
use super::arithmetic::{
    clamp, collatz_step, distance, larger, linear, sign, square_plus, times_shifted,
};
use super::loops::{
    count_char, count_even, fizzbuzz, is_palindrome, keep_positive, max_of, product, reverse,
    running_sum, sum_above, sum_squares,
};
use crate::problem::CodeTest;
use crate::rng::Rng;
use crate::sandbox;

/// Examples shown in the prompt.
pub(super) const SHOWN: usize = 4;
/// Hidden tests that decide the reward (inputs differ from the examples).
pub(super) const HIDDEN: usize = 8;

/// One function to write.
pub(super) struct Spec {
    /// The function's name.
    pub(super) name: &'static str,
    /// Its parameters as written in the signature, e.g. `xs, k`.
    pub(super) params: &'static str,
    /// What it returns, completing "a function that ...".
    pub(super) task: String,
    /// A reference solution, one line of rhai.
    pub(super) source: String,
    /// The worked reasoning, one line per step.
    pub(super) reasoning: Vec<String>,
    /// The examples in the prompt.
    pub(super) shown: Vec<CodeTest>,
    /// The tests that decide.
    pub(super) hidden: Vec<CodeTest>,
}

/// A function to write at `level` (1..=5), from one of its templates.
pub(super) fn spec(rng: &mut Rng, level: u32) -> Spec {
    let templates: &[fn(&mut Rng) -> Spec] = match level {
        1 => &[linear, square_plus, times_shifted],
        2 => &[larger, clamp, collatz_step, distance, sign],
        3 => &[sum_above, count_even, max_of, product, sum_squares],
        4 => &[
            reverse,
            count_char,
            running_sum,
            keep_positive,
            is_palindrome,
            fizzbuzz,
        ],
        _ => &[
            fib,
            gcd,
            digit_sum,
            is_prime,
            count_primes,
            second_largest,
            factorial,
        ],
    };
    rng.pick(templates)(rng)
}

// ---- helpers ----

/// `SHOWN + HIDDEN` tests with distinct arguments: `fixed` first, then drawn.
pub(super) fn cases(
    rng: &mut Rng,
    fixed: Vec<CodeTest>,
    mut draw: impl FnMut(&mut Rng) -> CodeTest,
) -> Vec<CodeTest> {
    let mut out: Vec<CodeTest> = Vec::new();
    let candidates = fixed
        .into_iter()
        .chain(std::iter::from_fn(|| Some(draw(rng))));
    // Every template's input space is far larger than the count; the cap
    // only guards against a template bug.
    for case in candidates.take(10_000) {
        if !out.iter().any(|o| o.args == case.args) {
            out.push(case);
        }
        if out.len() == SHOWN + HIDDEN {
            break;
        }
    }
    out
}

/// The shown examples and hidden tests of `cases`, the rest of a [`Spec`].
pub(super) fn split(mut cases: Vec<CodeTest>) -> Spec {
    let hidden = cases.split_off(SHOWN.min(cases.len()));
    Spec {
        name: "",
        params: "",
        task: String::new(),
        source: String::new(),
        reasoning: Vec::new(),
        shown: cases,
        hidden,
    }
}

/// A line checking the reference against one example.
pub(super) fn check(case: &CodeTest, name: &str) -> String {
    format!("Check: {} == {}.", call(name, case), case.expected)
}

/// `name(arg1, arg2)` for a test.
pub(super) fn call(name: &str, case: &CodeTest) -> String {
    format!("{name}({})", case.args.join(", "))
}

pub(super) fn test(args: &[String], expected: String) -> CodeTest {
    CodeTest {
        args: args.to_vec(),
        expected,
    }
}

pub(super) fn arg(case: &CodeTest) -> i64 {
    case.args[0].parse().unwrap_or_default()
}

pub(super) fn out(case: &CodeTest) -> i64 {
    case.expected.parse().unwrap_or_default()
}

pub(super) fn nonzero(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    loop {
        let v = rng.range(lo, hi);
        if v != 0 {
            return v;
        }
    }
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

pub(super) fn character(c: char) -> String {
    sandbox::canonical(&Dynamic::from(c))
}

pub(super) fn boolean(b: bool) -> String {
    b.to_string()
}

pub(super) fn small_array(rng: &mut Rng, max_len: i64, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(0, max_len);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Program;

    const SEEDS: u64 = 200;

    fn every_spec(mut f: impl FnMut(u32, u64, Spec)) {
        for level in 1..=5 {
            for seed in 0..SEEDS {
                f(level, seed, spec(&mut Rng::new(seed), level));
            }
        }
    }

    #[test]
    fn reference_solutions_pass_every_case() {
        every_spec(|level, seed, s| {
            assert_eq!(s.shown.len(), SHOWN, "{} {level}/{seed}", s.name);
            assert_eq!(s.hidden.len(), HIDDEN, "{} {level}/{seed}", s.name);
            let program = Program::compile(&s.source).expect("reference compiles");
            for case in s.shown.iter().chain(&s.hidden) {
                let args = case
                    .args
                    .iter()
                    .map(|a| sandbox::parse_literal(a).expect("literal argument"))
                    .collect();
                let got = program.call(s.name, args).map(|v| sandbox::canonical(&v));
                assert_eq!(
                    got.as_ref(),
                    Ok(&case.expected),
                    "{} on {:?}, level {level} seed {seed}",
                    s.source,
                    case.args
                );
            }
        });
    }

    #[test]
    fn hidden_inputs_differ_from_the_examples() {
        every_spec(|_, _, s| {
            for h in &s.hidden {
                assert!(s.shown.iter().all(|e| e.args != h.args), "{}", s.name);
            }
        });
    }
}
