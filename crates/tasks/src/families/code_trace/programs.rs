//! What a `code_trace` template produces, the choice of template per level,
//! and the helpers the templates share for writing and tracing arithmetic.

use super::collections::{
    arg_max, build_string, count_letter, filter_sum, function_calls, index_updates, longest_word,
    map_push, recursion, reverse_word,
};
use super::scalar::{
    branch, chain, digits, divisible_sum, euclid, if_expression, ladder, range_sum, updates,
};
use crate::rng::Rng;

/// A generated program and the steps a careful reader takes through it.
pub(super) struct Traced {
    /// The program, on one line.
    pub(super) source: String,
    /// One line per step of the worked solution.
    pub(super) steps: Vec<String>,
    /// The final value in canonical form, as the trace worked it out.
    pub(super) value: String,
}

impl Traced {
    pub(super) fn new(statements: &[String], steps: Vec<String>, value: String) -> Self {
        Self {
            source: statements.join(" "),
            steps,
            value,
        }
    }
}

/// A program of `level` (1..=5) from one of its templates.
pub(super) fn program(rng: &mut Rng, level: u32) -> Traced {
    match level {
        1 => match rng.below(2) {
            0 => chain(rng),
            _ => updates(rng),
        },
        2 => match rng.below(3) {
            0 => branch(rng),
            1 => if_expression(rng),
            _ => ladder(rng),
        },
        3 => match rng.below(4) {
            0 => range_sum(rng),
            1 => divisible_sum(rng),
            2 => digits(rng),
            _ => euclid(rng),
        },
        4 => match rng.below(4) {
            0 => filter_sum(rng),
            1 => map_push(rng),
            2 => arg_max(rng),
            _ => index_updates(rng),
        },
        _ => match rng.below(6) {
            0 => function_calls(rng),
            1 => recursion(rng),
            2 => reverse_word(rng),
            3 => count_letter(rng),
            4 => build_string(rng),
            _ => longest_word(rng),
        },
    }
}

// ---- helpers ----

/// One operand of an expression: how it is written and its value.
#[derive(Clone)]
pub(super) struct Term {
    source: String,
    value: i64,
}

pub(super) fn term(name: &str, value: i64) -> Term {
    Term {
        source: name.to_string(),
        value,
    }
}

pub(super) fn literal(value: i64) -> Term {
    Term {
        source: value.to_string(),
        value,
    }
}

/// `count` operands, each a variable from `vars` or a small literal, at
/// least one of them a variable.
pub(super) fn operands(rng: &mut Rng, vars: &[(&str, i64)], count: usize) -> Vec<Term> {
    let mut terms: Vec<Term> = (0..count)
        .map(|_| {
            if rng.chance(0.6) {
                let (name, value) = *rng.pick(vars);
                term(name, value)
            } else {
                literal(rng.range(2, 9))
            }
        })
        .collect();
    if terms.iter().all(|t| t.source.parse::<i64>().is_ok()) {
        let (name, value) = *rng.pick(vars);
        terms[0] = term(name, value);
    }
    terms
}

pub(super) fn ops(rng: &mut Rng, count: usize) -> Vec<char> {
    (0..count).map(|_| *rng.pick(&['+', '-', '*'])).collect()
}

/// Write `terms` joined by `ops` and evaluate with rhai's precedence (`* / %`
/// before `+ -`, left to right), one reduction per step. Returns the source,
/// the trace `source = substituted = ... = value`, and the value.
pub(super) fn expression(terms: &[Term], ops: &[char]) -> (String, String, i64) {
    let mut source = terms[0].source.clone();
    for (op, t) in ops.iter().zip(&terms[1..]) {
        source.push_str(&format!(" {op} {}", t.source));
    }
    let mut values: Vec<i64> = terms.iter().map(|t| t.value).collect();
    let mut ops = ops.to_vec();
    let mut trace = vec![source.clone()];
    let substituted = render(&values, &ops);
    if substituted != source {
        trace.push(substituted);
    }
    while !ops.is_empty() {
        let at = ops
            .iter()
            .position(|op| matches!(op, '*' | '/' | '%'))
            .unwrap_or(0);
        let value = apply(ops[at], values[at], values[at + 1]);
        values.splice(at..at + 2, [value]);
        ops.remove(at);
        trace.push(render(&values, &ops));
    }
    (source, trace.join(" = "), values[0])
}

pub(super) fn render(values: &[i64], ops: &[char]) -> String {
    let mut out = values[0].to_string();
    for (op, v) in ops.iter().zip(&values[1..]) {
        out.push_str(&format!(" {op} {}", shown(*v)));
    }
    out
}

pub(super) fn apply(op: char, a: i64, b: i64) -> i64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        '/' => a / b,
        _ => a % b,
    }
}

/// A comparison operator and whether it holds for `a` and `b`.
pub(super) fn comparison(rng: &mut Rng, a: i64, b: i64) -> (&'static str, bool) {
    match rng.below(5) {
        0 => (">", a > b),
        1 => ("<", a < b),
        2 => (">=", a >= b),
        3 => ("<=", a <= b),
        _ => ("!=", a != b),
    }
}

/// A number as it appears inside a worked expression: negatives in brackets.
pub(super) fn shown(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

/// Integers as a rhai array literal, `[1, -2, 3]`.
pub(super) fn list(items: impl Iterator<Item = i64>) -> String {
    let parts: Vec<String> = items.map(|v| v.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox;

    const SEEDS: u64 = 300;
    const LEVELS: u32 = 5;

    #[test]
    fn traced_values_are_what_the_sandbox_computes() {
        for level in 1..=LEVELS {
            for seed in 0..SEEDS {
                let traced = program(&mut Rng::new(seed), level);
                assert_eq!(
                    sandbox::run(&traced.source).as_ref(),
                    Ok(&traced.value),
                    "level {level} seed {seed}: {}",
                    traced.source
                );
            }
        }
    }

    #[test]
    fn every_template_is_drawn() {
        let mut seen = std::collections::HashSet::new();
        for level in 1..=LEVELS {
            for seed in 0..SEEDS {
                let traced = program(&mut Rng::new(seed), level);
                // The second statement tells the templates apart well enough.
                let shape: String = traced
                    .source
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(24)
                    .collect();
                seen.insert((level, shape));
            }
        }
        let per_level = |l| seen.iter().filter(|(level, _)| *level == l).count();
        assert!(per_level(1) >= 2 && per_level(2) >= 3 && per_level(3) >= 4);
        assert!(per_level(4) >= 4 && per_level(5) >= 6, "{seen:?}");
    }
}
