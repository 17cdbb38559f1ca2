//! `sequence`: the next number of an integer sequence.
//!
//! A sequence follows one rule of a few kinds: constant difference,
//! constant ratio, constant second difference, the sum of the two terms
//! before, `k` times the term before plus `c`, or two constant-difference
//! sequences interleaved. A level draws from some kinds and shows enough
//! terms that every rule of those kinds that fits the shown terms predicts
//! the same next term (checked when the problem is made):
//!
//! ```text
//! What number comes next: 2, 5, 10, 17, 26?
//! <think>differences: 3, 5, 7, 9
//! second differences: 2, 2, 2
//! next difference: 9+2=11
//! 26+11=37</think><answer>37</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `sequence` family.
pub(crate) struct Sequence;

/// The kinds of rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Arithmetic,
    Geometric,
    Quadratic,
    Fibonacci,
    Affine,
    Interleaved,
}

const ALL_KINDS: [Kind; 6] = [
    Kind::Arithmetic,
    Kind::Geometric,
    Kind::Quadratic,
    Kind::Fibonacci,
    Kind::Affine,
    Kind::Interleaved,
];

/// The knobs of one level.
struct Level {
    kinds: &'static [Kind],
    shown: usize,
}

const LEVELS: [Level; 5] = [
    Level {
        kinds: &[Kind::Arithmetic],
        shown: 5,
    },
    Level {
        kinds: &[Kind::Arithmetic, Kind::Geometric],
        shown: 5,
    },
    Level {
        kinds: &[Kind::Quadratic],
        shown: 5,
    },
    Level {
        kinds: &[Kind::Fibonacci, Kind::Affine],
        shown: 6,
    },
    Level {
        kinds: &ALL_KINDS,
        shown: 6,
    },
];

impl Task for Sequence {
    /// Level 4 holds about 900 distinct sequences: hold out 80.
    fn heldout_size(&self, level: u32) -> usize {
        if level == 4 {
            80
        } else {
            crate::split::HELDOUT_SIZE
        }
    }

    fn name(&self) -> &'static str {
        "sequence"
    }

    fn summary(&self) -> &'static str {
        "the next number of a sequence (differences, ratios, recurrences, interleaving)"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let kinds: Vec<&str> = l
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Arithmetic => "constant difference",
                Kind::Geometric => "constant ratio",
                Kind::Quadratic => "constant second difference",
                Kind::Fibonacci => "sum of the two before",
                Kind::Affine => "k times the one before plus c",
                Kind::Interleaved => "two interleaved constant-difference sequences",
            })
            .collect();
        format!("{} terms shown; {}", l.shown, kinds.join(", "))
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let (kind, terms) = make(rng, level);
        let shown = &terms[..l.shown];
        let next = terms[l.shown];
        let listed: Vec<String> = shown.iter().map(i64::to_string).collect();
        let answer = next.to_string();
        Generated {
            prompt: format!(
                "What number comes next: {}? Answer with a single integer.",
                listed.join(", ")
            ),
            solution: answer::render(&explain(kind, shown, next), &answer),
            answer,
            check: Check::Number,
            key: format!("sequence {}", listed.join(",")),
        }
    }
}

/// A rule's kind and the shown terms plus the next one.
fn make(rng: &mut Rng, level: u32) -> (Kind, Vec<i64>) {
    let l = &LEVELS[level as usize - 1];
    loop {
        let kind = *rng.pick(l.kinds);
        let terms = draw(rng, kind, l.shown + 1, level);
        let shown = &terms[..l.shown];
        // Every kind of the level that fits must agree on the next term.
        let agree = l
            .kinds
            .iter()
            .filter_map(|&k| predict(k, shown))
            .all(|next| next == terms[l.shown]);
        if agree && is_interesting(shown) {
            return (kind, terms);
        }
    }
}

/// Not constant, and no term too large to read.
fn is_interesting(terms: &[i64]) -> bool {
    terms.iter().any(|&t| t != terms[0]) && terms.iter().all(|t| t.abs() <= 5_000)
}

/// `count` terms of a rule of `kind` with parameters drawn for `level`.
fn draw(rng: &mut Rng, kind: Kind, count: usize, level: u32) -> Vec<i64> {
    let mut terms = Vec::with_capacity(count);
    match kind {
        Kind::Arithmetic => {
            let a = rng.range(-20, 99);
            let d = if level == 1 {
                rng.range(1, 12)
            } else {
                *rng.pick(&[-9, -7, -5, -4, -3, -2, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15])
            };
            terms.extend((0..count as i64).map(|i| a + i * d));
        }
        Kind::Geometric => {
            let a = rng.range(1, 6) * if rng.chance(0.2) { -1 } else { 1 };
            let r = *rng.pick(&[-3, -2, 2, 2, 3, 3, 4]);
            let mut t = a;
            for _ in 0..count {
                terms.push(t);
                t *= r;
            }
        }
        Kind::Quadratic => {
            let a = rng.range(-5, 20);
            let b = rng.range(-6, 6);
            let c = *rng.pick(&[-2, -1, 1, 1, 2, 3]);
            terms.extend((0..count as i64).map(|i| a + b * i + c * i * i));
        }
        Kind::Fibonacci => {
            let (mut x, mut y) = (rng.range(1, 20), rng.range(1, 30));
            for _ in 0..count {
                terms.push(x);
                (x, y) = (y, x + y);
            }
        }
        Kind::Affine => {
            let k = rng.range(2, 3);
            let c = *rng.pick(&[-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
            let mut t = rng.range(1, 12);
            for _ in 0..count {
                terms.push(t);
                t = k * t + c;
            }
        }
        Kind::Interleaved => {
            let (a, b) = (rng.range(0, 20), rng.range(0, 30));
            let (d, e) = (rng.range(1, 6), -rng.range(1, 6));
            terms.extend((0..count as i64).map(|i| {
                if i % 2 == 0 {
                    a + (i / 2) * d
                } else {
                    b + (i / 2) * e
                }
            }));
        }
    }
    terms
}

fn differences(terms: &[i64]) -> Vec<i64> {
    terms.windows(2).map(|w| w[1] - w[0]).collect()
}

fn constant(values: &[i64]) -> bool {
    values.windows(2).all(|w| w[0] == w[1])
}

/// The next term if a rule of `kind` fits `terms`.
fn predict(kind: Kind, terms: &[i64]) -> Option<i64> {
    let last = *terms.last()?;
    match kind {
        Kind::Arithmetic => {
            let d = differences(terms);
            constant(&d).then(|| last + d[0])
        }
        Kind::Geometric => {
            if terms.contains(&0) {
                return None;
            }
            let r = terms[1] / terms[0];
            terms.windows(2).all(|w| w[0] * r == w[1]).then(|| last * r)
        }
        Kind::Quadratic => {
            let d = differences(terms);
            let dd = differences(&d);
            constant(&dd).then(|| last + d[d.len() - 1] + dd[0])
        }
        Kind::Fibonacci => terms
            .windows(3)
            .all(|w| w[0] + w[1] == w[2])
            .then(|| terms[terms.len() - 2] + last),
        Kind::Affine => {
            let (d0, d1) = (terms[1] - terms[0], terms[2] - terms[1]);
            if d0 == 0 || d1 % d0 != 0 {
                return None;
            }
            let k = d1 / d0;
            let c = terms[1] - k * terms[0];
            terms
                .windows(2)
                .all(|w| k * w[0] + c == w[1])
                .then(|| k * last + c)
        }
        Kind::Interleaved => {
            let odd: Vec<i64> = terms.iter().copied().step_by(2).collect();
            let even: Vec<i64> = terms.iter().copied().skip(1).step_by(2).collect();
            let (do_, de) = (differences(&odd), differences(&even));
            if !constant(&do_) || !constant(&de) || do_.is_empty() || de.is_empty() {
                return None;
            }
            // The next term continues the sequence whose turn it is.
            Some(if terms.len().is_multiple_of(2) {
                odd[odd.len() - 1] + do_[0]
            } else {
                even[even.len() - 1] + de[0]
            })
        }
    }
}

fn joined(values: &[i64]) -> String {
    let parts: Vec<String> = values.iter().map(i64::to_string).collect();
    parts.join(", ")
}

fn signed(n: i64) -> String {
    if n < 0 {
        format!("({n})")
    } else {
        n.to_string()
    }
}

/// The worked steps for a rule of `kind`.
fn explain(kind: Kind, terms: &[i64], next: i64) -> Vec<String> {
    let last = terms[terms.len() - 1];
    match kind {
        Kind::Arithmetic => {
            let d = differences(terms);
            vec![
                format!("differences: {}", joined(&d)),
                format!("{last}+{}={next}", signed(d[0])),
            ]
        }
        Kind::Geometric => {
            let r = terms[1] / terms[0];
            let ratios: Vec<i64> = terms.windows(2).map(|w| w[1] / w[0]).collect();
            vec![
                format!("ratios: {}", joined(&ratios)),
                format!("{last}*{}={next}", signed(r)),
            ]
        }
        Kind::Quadratic => {
            let d = differences(terms);
            let dd = differences(&d);
            let step = d[d.len() - 1] + dd[0];
            vec![
                format!("differences: {}", joined(&d)),
                format!("second differences: {}", joined(&dd)),
                format!(
                    "next difference: {}+{}={step}",
                    d[d.len() - 1],
                    signed(dd[0])
                ),
                format!("{last}+{}={next}", signed(step)),
            ]
        }
        Kind::Fibonacci => {
            let sums: Vec<String> = terms
                .windows(3)
                .map(|w| format!("{}+{}={}", w[0], w[1], w[2]))
                .collect();
            vec![
                format!(
                    "each term is the sum of the two before: {}",
                    sums.join(", ")
                ),
                format!("{}+{last}={next}", terms[terms.len() - 2]),
            ]
        }
        Kind::Affine => {
            let k = (terms[2] - terms[1]) / (terms[1] - terms[0]);
            let c = terms[1] - k * terms[0];
            let (a, b) = (terms[terms.len() - 2], last);
            vec![
                format!(
                    "differences: {} (each {k} times the one before)",
                    joined(&differences(terms))
                ),
                format!(
                    "so each term is {k} times the one before plus {}: {k}*{}+{}={b}",
                    signed(c),
                    signed(a),
                    signed(c)
                ),
                format!("{k}*{}+{}={next}", signed(last), signed(c)),
            ]
        }
        Kind::Interleaved => {
            let odd: Vec<i64> = terms.iter().copied().step_by(2).collect();
            let even: Vec<i64> = terms.iter().copied().skip(1).step_by(2).collect();
            let (d, e) = (odd[1] - odd[0], even[1] - even[0]);
            let (turn, from, step) = if terms.len().is_multiple_of(2) {
                ("1st", odd[odd.len() - 1], d)
            } else {
                ("2nd", even[even.len() - 1], e)
            };
            vec![
                format!("1st, 3rd, 5th...: {} (difference {d})", joined(&odd)),
                format!("2nd, 4th, 6th...: {} (difference {e})", joined(&even)),
                format!(
                    "the next term continues the {turn} list: {from}+{}={next}",
                    signed(step)
                ),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    fn shown(prompt: &str) -> Vec<i64> {
        let list = prompt
            .strip_prefix("What number comes next: ")
            .and_then(|r| r.split_once('?'))
            .map(|(list, _)| list)
            .unwrap();
        list.split(", ").map(|t| t.parse().unwrap()).collect()
    }

    /// Every next term any rule of the level's kinds could give, found by
    /// searching parameter ranges wider than the generator's: a different
    /// method from fitting differences.
    fn brute_force_predictions(kinds: &[Kind], terms: &[i64]) -> HashSet<i64> {
        let n = terms.len() as i64;
        let mut out = HashSet::new();
        let matches = |f: &dyn Fn(i64) -> i64| (0..n).all(|i| f(i) == terms[i as usize]);
        for kind in kinds {
            match kind {
                Kind::Arithmetic => {
                    for d in -40..=40 {
                        if matches(&|i| terms[0] + i * d) {
                            out.insert(terms[0] + n * d);
                        }
                    }
                }
                Kind::Geometric => {
                    for r in -6i64..=6 {
                        if matches(&|i| terms[0] * r.pow(i as u32)) {
                            out.insert(terms[0] * r.pow(n as u32));
                        }
                    }
                }
                Kind::Quadratic => {
                    for b in -40..=40 {
                        for c in -10..=10 {
                            if matches(&|i| terms[0] + b * i + c * i * i) {
                                out.insert(terms[0] + b * n + c * n * n);
                            }
                        }
                    }
                }
                Kind::Fibonacci => {
                    let mut seq = terms[..2].to_vec();
                    while seq.len() <= terms.len() {
                        let k = seq.len();
                        seq.push(seq[k - 1] + seq[k - 2]);
                    }
                    if seq[..terms.len()] == *terms {
                        out.insert(seq[terms.len()]);
                    }
                }
                Kind::Affine => {
                    for k in -5..=5 {
                        for c in -40..=40 {
                            let mut seq = vec![terms[0]];
                            while seq.len() <= terms.len() {
                                seq.push(k * seq[seq.len() - 1] + c);
                            }
                            if seq[..terms.len()] == *terms {
                                out.insert(seq[terms.len()]);
                            }
                        }
                    }
                }
                Kind::Interleaved => {
                    for d in -40..=40 {
                        for e in -40..=40 {
                            let f = |i: i64| {
                                if i % 2 == 0 {
                                    terms[0] + (i / 2) * d
                                } else {
                                    terms[1] + (i / 2) * e
                                }
                            };
                            if matches(&f) {
                                out.insert(f(n));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_fitting_rule_agrees_with_the_answer() {
        for level in 1..=Sequence.max_level() {
            let kinds = LEVELS[level as usize - 1].kinds;
            for seed in 0..SEEDS {
                let g = Sequence.generate(&mut Rng::new(seed), level);
                let predictions = brute_force_predictions(kinds, &shown(&g.prompt));
                let want: i64 = g.answer.parse().unwrap();
                assert_eq!(
                    predictions,
                    HashSet::from([want]),
                    "level {level}: {}",
                    g.prompt
                );
            }
        }
    }

    #[test]
    fn worked_steps_are_true() {
        for level in 1..=Sequence.max_level() {
            for seed in 0..SEEDS {
                let g = Sequence.generate(&mut Rng::new(seed), level);
                let p = g.into_problem("sequence", level, "sequence/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                let think = p.solution.split("</think>").next().unwrap();
                for line in think.trim_start_matches("<think>").lines() {
                    let claims = line.rsplit(": ").next().unwrap();
                    for clause in claims.split(", ") {
                        if clause.contains('=') {
                            assert_true_arithmetic(clause);
                        }
                    }
                }
                assert!(p.solution.len() < 400, "{}", p.solution);
            }
        }
    }

    #[test]
    fn every_kind_is_drawn_and_levels_have_many_sequences() {
        let mut kinds = HashSet::new();
        for level in 1..=Sequence.max_level() {
            let mut prompts = HashSet::new();
            for seed in 0..3_000 {
                kinds.insert(make(&mut Rng::new(seed), level).0 as u8);
                prompts.insert(Sequence.generate(&mut Rng::new(seed), level).prompt);
            }
            assert!(prompts.len() >= 250, "level {level}: {}", prompts.len());
        }
        assert_eq!(kinds.len(), ALL_KINDS.len());
    }
}
