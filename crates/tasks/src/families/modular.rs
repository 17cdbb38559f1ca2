//! `modular`: modular arithmetic: remainders of sums and products, linear
//! congruences, and simultaneous remainders (the Chinese remainder theorem,
//! by listing candidates).
//!
//! ```text
//! What is (83*95+4) mod 7?          Find x with 0 <= x < 7 and 3*x mod 7 = 5.
//! <think>83 mod 7=6                 <think>x=1: 3*1=3, 3 mod 7=3
//! 95 mod 7=4                        x=2: 3*2=6, 6 mod 7=6
//! 6*4+4=28                          x=3: 3*3=9, 9 mod 7=2
//! 28 mod 7=0</think>                x=4: 3*4=12, 12 mod 7=5</think>
//!
//! Find the smallest x >= 0 with x mod 4 = 3 and x mod 5 = 2.
//! <think>x mod 5=2: x = 2, 7, 12, ...
//! 2 mod 4=2
//! 7 mod 4=3</think><answer>7</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `modular` family.
pub(crate) struct Modular;

const MAX_LEVEL: u32 = 5;

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Question {
    /// `(a + b) mod m`, or `(a * b) mod m` when `times`.
    Pair { a: i64, b: i64, times: bool, m: i64 },
    /// `(a * b + c) mod m`.
    MulAdd { a: i64, b: i64, c: i64, m: i64 },
    /// The x in `0..m` with `a * x mod m = b`.
    Congruence { a: i64, b: i64, m: i64 },
    /// The smallest x >= 0 with `x mod m = r` for every `(r, m)`.
    Remainders(Vec<(i64, i64)>),
}

impl Task for Modular {
    fn name(&self) -> &'static str {
        "modular"
    }

    fn summary(&self) -> &'static str {
        "modular arithmetic: remainders of sums and products, congruences, simultaneous remainders"
    }

    fn max_level(&self) -> u32 {
        MAX_LEVEL
    }

    fn level_doc(&self, level: u32) -> String {
        match level {
            1 => "(a + b) mod m or (a * b) mod m; a, b in 2..=30, m in 3..=12",
            2 => "(a * b + c) mod m, reducing a and b first; a, b in 20..=99, c in 0..=9, m in 3..=20",
            3 => "the x in 0..m with a * x mod m = b; m in 5..=16, gcd(a, m) = 1",
            4 => "smallest x >= 0 with two given remainders; coprime moduli 2..=11, product <= 90",
            _ => "smallest x >= 0 with three given remainders; coprime moduli from 2, 3, 4, 5, 7, 9",
        }
        .to_string()
    }

    /// Level 3 has about 720 distinct congruences: hold out 50.
    fn heldout_size(&self, level: u32) -> usize {
        if level == 3 {
            50
        } else {
            crate::split::HELDOUT_SIZE
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let q = question(rng, level);
        let (steps, value) = solve(&q);
        let answer = value.to_string();
        Generated {
            prompt: format!("{} Answer with a single integer.", ask(&q)),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Number,
            key: key(&q),
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

fn question(rng: &mut Rng, level: u32) -> Question {
    match level {
        1 => Question::Pair {
            a: rng.range(2, 30),
            b: rng.range(2, 30),
            times: rng.chance(0.5),
            m: rng.range(3, 12),
        },
        2 => Question::MulAdd {
            a: rng.range(20, 99),
            b: rng.range(20, 99),
            c: rng.range(0, 9),
            m: rng.range(3, 20),
        },
        3 => {
            let m = rng.range(5, 16);
            let units: Vec<i64> = (2..m).filter(|&a| gcd(a, m) == 1).collect();
            Question::Congruence {
                a: *rng.pick(&units),
                b: rng.range(0, m - 1),
                m,
            }
        }
        4 => {
            let (m1, m2) = loop {
                let (m1, m2) = (rng.range(2, 11), rng.range(2, 11));
                if m1 != m2 && gcd(m1, m2) == 1 && m1 * m2 <= 90 {
                    break (m1, m2);
                }
            };
            Question::Remainders(vec![(rng.range(0, m1 - 1), m1), (rng.range(0, m2 - 1), m2)])
        }
        _ => {
            let moduli = loop {
                let mut pool = [2, 3, 4, 5, 7, 9];
                rng.shuffle(&mut pool);
                let picked = [pool[0], pool[1], pool[2]];
                let coprime = gcd(picked[0], picked[1]) == 1
                    && gcd(picked[0], picked[2]) == 1
                    && gcd(picked[1], picked[2]) == 1;
                if coprime {
                    break picked;
                }
            };
            Question::Remainders(moduli.iter().map(|&m| (rng.range(0, m - 1), m)).collect())
        }
    }
}

fn ask(q: &Question) -> String {
    match q {
        Question::Pair { a, b, times, m } => {
            let op = if *times { '*' } else { '+' };
            format!("What is ({a}{op}{b}) mod {m}?")
        }
        Question::MulAdd { a, b, c, m } => format!("What is ({a}*{b}+{c}) mod {m}?"),
        Question::Congruence { a, b, m } => {
            format!("Find x with 0 <= x < {m} and {a}*x mod {m} = {b}.")
        }
        Question::Remainders(conditions) => {
            let parts: Vec<String> = conditions
                .iter()
                .map(|(r, m)| format!("x mod {m} = {r}"))
                .collect();
            let joined = match parts.as_slice() {
                [a, b] => format!("{a} and {b}"),
                [a, b, c] => format!("{a}, {b} and {c}"),
                _ => parts.join(", "),
            };
            format!("Find the smallest x >= 0 with {joined}.")
        }
    }
}

/// Sums and products in order, and the conditions sorted by modulus: the
/// same question however it is written.
fn key(q: &Question) -> String {
    match q {
        Question::Pair { a, b, times, m } => {
            let op = if *times { '*' } else { '+' };
            format!("mod ({}{op}{}) {m}", a.min(b), a.max(b))
        }
        Question::MulAdd { a, b, c, m } => format!("mod ({}*{}+{c}) {m}", a.min(b), a.max(b)),
        Question::Congruence { a, b, m } => format!("congruence {a}x={b} mod {m}"),
        Question::Remainders(conditions) => {
            let mut sorted = conditions.clone();
            sorted.sort_by_key(|&(_, m)| m);
            let parts: Vec<String> = sorted.iter().map(|(r, m)| format!("{r} mod {m}")).collect();
            format!("remainders {}", parts.join(", "))
        }
    }
}

fn solve(q: &Question) -> (Vec<String>, i64) {
    let mut steps = Vec::new();
    let value = match *q {
        Question::Pair { a, b, times, m } => {
            let (op, v) = if times { ('*', a * b) } else { ('+', a + b) };
            steps.push(format!("{a}{op}{b}={v}"));
            steps.push(format!("{v} mod {m}={}", v % m));
            v % m
        }
        Question::MulAdd { a, b, c, m } => {
            let (ra, rb) = (a % m, b % m);
            steps.push(format!("{a} mod {m}={ra}"));
            steps.push(format!("{b} mod {m}={rb}"));
            let v = ra * rb + c;
            steps.push(format!("{ra}*{rb}+{c}={v}"));
            steps.push(format!("{v} mod {m}={}", v % m));
            v % m
        }
        Question::Congruence { a, b, m } => {
            let mut found = 0;
            for x in 0..m {
                let p = a * x;
                steps.push(format!("x={x}: {a}*{x}={p}, {p} mod {m}={}", p % m));
                if p % m == b {
                    found = x;
                    break;
                }
            }
            found
        }
        Question::Remainders(ref conditions) => remainders(conditions, &mut steps),
    };
    (steps, value)
}

/// Satisfy the condition with the largest modulus first, then step through
/// its solutions, one line per check, combining one condition at a time.
fn remainders(conditions: &[(i64, i64)], steps: &mut Vec<String>) -> i64 {
    let mut sorted = conditions.to_vec();
    sorted.sort_by_key(|&(_, m)| std::cmp::Reverse(m));
    let (mut x, mut step) = sorted[0];
    let listed = |x: i64, step: i64| format!("{x}, {}, {}, ...", x + step, x + 2 * step);
    steps.push(format!("x mod {step}={x}: x = {}", listed(x, step)));
    for &(r, m) in &sorted[1..] {
        loop {
            steps.push(format!("{x} mod {m}={}", x % m));
            if x % m == r {
                break;
            }
            x += step;
        }
        step *= m;
        if sorted.last() != Some(&(r, m)) {
            steps.push(format!("so x = {}", listed(x, step)));
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    fn each(mut f: impl FnMut(u32, Question, Generated)) {
        for level in 1..=MAX_LEVEL {
            for seed in 0..SEEDS {
                let q = question(&mut Rng::new(seed), level);
                f(level, q, Modular.generate(&mut Rng::new(seed), level));
            }
        }
    }

    /// Remainder by repeated subtraction.
    fn rem(mut v: i64, m: i64) -> i64 {
        while v >= m {
            v -= m;
        }
        v
    }

    /// The answer by brute force, not by the generator's reductions.
    fn brute_force(q: &Question) -> i64 {
        match *q {
            Question::Pair { a, b, times, m } => rem(if times { a * b } else { a + b }, m),
            Question::MulAdd { a, b, c, m } => rem(a * b + c, m),
            Question::Congruence { a, b, m } => (0..m).find(|&x| rem(a * x, m) == b).unwrap(),
            Question::Remainders(ref cs) => (0..10_000)
                .find(|&x| cs.iter().all(|&(r, m)| rem(x, m) == r))
                .unwrap(),
        }
    }

    #[test]
    fn answers_match_brute_force_and_steps_are_true() {
        each(|level, q, g| {
            assert_eq!(g.answer, brute_force(&q).to_string(), "{}", g.prompt);
            let p = g.into_problem("modular", level, "modular/test".to_string());
            assert_eq!(p.verify(&p.solution).reward, 1.0);
            let think = p.solution.split("</think>").next().unwrap();
            for line in think.trim_start_matches("<think>").lines() {
                if !line.contains("...") {
                    assert_true_arithmetic(line);
                }
            }
            assert!(think.lines().count() <= 16, "{}", p.solution);
        });
    }

    #[test]
    fn congruences_have_one_answer_and_remainder_moduli_are_coprime() {
        each(|_, q, _| match q {
            Question::Congruence { a, b, m } => {
                assert_eq!((0..m).filter(|&x| rem(a * x, m) == b).count(), 1);
            }
            Question::Remainders(cs) => {
                for (i, &(_, m)) in cs.iter().enumerate() {
                    for &(_, n) in &cs[i + 1..] {
                        assert_eq!(gcd(m, n), 1, "{cs:?}");
                    }
                }
            }
            _ => {}
        });
    }

    #[test]
    fn keys_ignore_operand_and_condition_order() {
        let a = Question::Pair {
            a: 3,
            b: 9,
            times: true,
            m: 5,
        };
        let b = Question::Pair {
            a: 9,
            b: 3,
            times: true,
            m: 5,
        };
        assert_eq!(key(&a), key(&b));
        let c = Question::Remainders(vec![(1, 3), (2, 5)]);
        let d = Question::Remainders(vec![(2, 5), (1, 3)]);
        assert_eq!(key(&c), key(&d));
        assert_ne!(
            key(&a),
            key(&Question::Pair {
                a: 3,
                b: 9,
                times: false,
                m: 5
            })
        );
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for level in 1..=MAX_LEVEL {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Modular.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= 500, "level {level}: {}", keys.len());
        }
    }
}
