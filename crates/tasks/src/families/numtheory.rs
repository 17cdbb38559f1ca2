//! `numtheory`: gcd, lcm, remainders, modular powers and modular inverses.
//!
//! Worked solutions, one short line per step:
//!
//! ```text
//! gcd(84, 36)    84=2*36+12 / 36=3*12+0 / gcd=12
//! lcm(84, 36)    (the gcd lines) / 84/12=7 / 7*36=252
//! 1234 mod 12    102*12=1224 / 1234-1224=10
//! 3^13 mod 50    13=8+4+1 / 3^2: 3*3=9 / 3^4: 9*9=81, 81 mod 50=31 / ...
//!                / 3^5=3^4*3^1: 31*3=93, 93 mod 50=43 / ...
//! 30^-1 mod 43   43=1*30+13, t=0-1*1=-1 / 30=2*13+4, t=1-2*(-1)=3 / ...
//!                / -10 mod 43=33 / 30*33=990=23*43+1
//! ```
//!
//! The inverse is found by the extended Euclidean algorithm, tracking only
//! the coefficient `t` of the number being inverted; it is asked only when
//! it exists.

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `numtheory` family.
pub(crate) struct NumTheory;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gcd,
    Lcm,
    Mod,
    PowMod,
    Inverse,
}

/// The knobs of one level; a problem picks one of `kinds` uniformly.
struct Level {
    kinds: &'static [Kind],
    /// Largest operand of gcd and lcm.
    gcd_max: i64,
    /// Largest dividend of `a mod m`.
    dividend_max: i64,
    /// Largest modulus (for `mod`, powers and inverses).
    modulus_max: i64,
    /// Largest exponent.
    exponent_max: i64,
}

const LEVELS: [Level; 5] = [
    Level {
        kinds: &[Kind::Gcd, Kind::Mod],
        gcd_max: 80,
        dividend_max: 500,
        modulus_max: 12,
        exponent_max: 0,
    },
    Level {
        kinds: &[Kind::Gcd, Kind::Lcm, Kind::Mod],
        gcd_max: 200,
        dividend_max: 2_000,
        modulus_max: 30,
        exponent_max: 0,
    },
    Level {
        kinds: &[Kind::Gcd, Kind::Lcm, Kind::PowMod],
        gcd_max: 1_000,
        dividend_max: 0,
        modulus_max: 50,
        exponent_max: 10,
    },
    Level {
        kinds: &[Kind::Lcm, Kind::PowMod, Kind::Inverse],
        gcd_max: 5_000,
        dividend_max: 0,
        modulus_max: 100,
        exponent_max: 100,
    },
    Level {
        kinds: &[Kind::Gcd, Kind::PowMod, Kind::Inverse],
        gcd_max: 100_000,
        dividend_max: 0,
        modulus_max: 1_000,
        exponent_max: 1_000,
    },
];

/// One question, with its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    Gcd(i64, i64),
    Lcm(i64, i64),
    /// `a mod m`.
    Mod(i64, i64),
    /// `base^exponent mod m`.
    PowMod(i64, i64, i64),
    /// The inverse of `a` modulo `m`.
    Inverse(i64, i64),
}

impl Task for NumTheory {
    fn name(&self) -> &'static str {
        "numtheory"
    }

    fn summary(&self) -> &'static str {
        "gcd, lcm, remainders, modular powers and modular inverses"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let parts: Vec<String> = l
            .kinds
            .iter()
            .map(|kind| match kind {
                Kind::Gcd => format!("gcd of numbers up to {}", l.gcd_max),
                Kind::Lcm => format!("lcm of numbers up to {}", l.gcd_max),
                Kind::Mod => format!(
                    "a mod m with a up to {}, m up to {}",
                    l.dividend_max, l.modulus_max
                ),
                Kind::PowMod => format!(
                    "b^e mod m with e up to {}, m up to {}",
                    l.exponent_max, l.modulus_max
                ),
                Kind::Inverse => format!("inverse modulo m up to {}", l.modulus_max),
            })
            .collect();
        parts.join("; ")
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let q = question(rng, &LEVELS[level as usize - 1]);
        let (steps, value) = solve(q);
        let answer = value.to_string();
        Generated {
            prompt: format!("{} Answer with a single integer.", ask(q)),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Number,
            key: key(q),
        }
    }
}

fn question(rng: &mut Rng, level: &Level) -> Question {
    match rng.pick(level.kinds) {
        Kind::Gcd => {
            let (a, b) = pair_with_common_factor(rng, level.gcd_max);
            Question::Gcd(a, b)
        }
        Kind::Lcm => {
            let (a, b) = pair_with_common_factor(rng, level.gcd_max);
            Question::Lcm(a, b)
        }
        Kind::Mod => {
            let m = rng.range(2, level.modulus_max);
            Question::Mod(rng.range(m + 1, level.dividend_max), m)
        }
        Kind::PowMod => {
            // A base coprime to m and not 1 mod m: no run of zeros or ones.
            let m = rng.range(3, level.modulus_max);
            let bases: Vec<i64> = (2..=(2 * m).min(99))
                .filter(|&b| gcd(b, m) == 1 && b % m != 1)
                .collect();
            Question::PowMod(*rng.pick(&bases), rng.range(2, level.exponent_max), m)
        }
        Kind::Inverse => {
            let m = rng.range(5, level.modulus_max);
            let units: Vec<i64> = (2..m).filter(|&a| gcd(a, m) == 1).collect();
            Question::Inverse(*rng.pick(&units), m)
        }
    }
}

/// Two different numbers in `2..=max` sharing a random factor up to
/// `sqrt(max)`, so gcds other than 1 are common and Euclid still takes a
/// few steps.
fn pair_with_common_factor(rng: &mut Rng, max: i64) -> (i64, i64) {
    let factor = rng.range(1, max.isqrt());
    let top = max / factor;
    let a = rng.range(2, top);
    let mut b = rng.range(2, top - 1);
    if b >= a {
        b += 1;
    }
    (a * factor, b * factor)
}

fn ask(q: Question) -> String {
    match q {
        Question::Gcd(a, b) => format!("What is the greatest common divisor of {a} and {b}?"),
        Question::Lcm(a, b) => format!("What is the least common multiple of {a} and {b}?"),
        Question::Mod(a, m) => format!("What is {a} mod {m}?"),
        Question::PowMod(b, e, m) => format!("What is {b}^{e} mod {m}?"),
        Question::Inverse(a, m) => format!(
            "What is the inverse of {a} modulo {m}, the x with 0 <= x < {m} and {a}*x mod {m} = 1?"
        ),
    }
}

/// What the question asks, with gcd and lcm arguments in order: `gcd(18,
/// 12)` is `gcd(12, 18)`. Kinds shared with other families (`mod`, `pow`)
/// are written as those families write them.
fn key(q: Question) -> String {
    match q {
        Question::Gcd(a, b) => format!("gcd {} {}", a.min(b), a.max(b)),
        Question::Lcm(a, b) => format!("lcm {} {}", a.min(b), a.max(b)),
        Question::Mod(a, m) => format!("mod {a} {m}"),
        Question::PowMod(b, e, m) => format!("powmod {b} {e} {m}"),
        Question::Inverse(a, m) => format!("inverse {a} {m}"),
    }
}

/// The worked steps and the answer.
fn solve(q: Question) -> (Vec<String>, i64) {
    let mut steps = Vec::new();
    let value = match q {
        Question::Gcd(a, b) => {
            let g = euclid(a, b, &mut steps);
            steps.push(format!("gcd={g}"));
            g
        }
        Question::Lcm(a, b) => {
            let g = euclid(a, b, &mut steps);
            let k = a / g;
            steps.push(format!("{a}/{g}={k}"));
            steps.push(format!("{k}*{b}={}", k * b));
            k * b
        }
        Question::Mod(a, m) => {
            let q = a / m;
            steps.push(format!("{q}*{m}={}", q * m));
            steps.push(format!("{a}-{}={}", q * m, a - q * m));
            a - q * m
        }
        Question::PowMod(b, e, m) => pow_mod(b, e, m, &mut steps),
        Question::Inverse(a, m) => inverse(a, m, &mut steps),
    };
    (steps, value)
}

/// Euclid's algorithm on the larger and the smaller of `a`, `b`, one
/// division per line.
fn euclid(a: i64, b: i64, steps: &mut Vec<String>) -> i64 {
    let (mut x, mut y) = (a.max(b), a.min(b));
    while y != 0 {
        let (q, r) = (x / y, x % y);
        steps.push(format!("{x}={q}*{y}+{r}"));
        (x, y) = (y, r);
    }
    x
}

/// `x*y mod m`, written as a step: `9*9=81, 81 mod 50=31`.
fn mul_mod(x: i64, y: i64, m: i64) -> (String, i64) {
    let p = x * y;
    if p < m {
        (format!("{x}*{y}={p}"), p)
    } else {
        (format!("{x}*{y}={p}, {p} mod {m}={}", p % m), p % m)
    }
}

/// Square-and-multiply: the exponent as a sum of powers of two, the
/// repeated squares, then their product, low powers first.
fn pow_mod(b: i64, e: i64, m: i64, steps: &mut Vec<String>) -> i64 {
    let mut square = b % m;
    if b >= m {
        steps.push(format!("{b} mod {m}={square}"));
    }
    let powers: Vec<i64> = (0..63).map(|k| 1i64 << k).filter(|p| e & p != 0).collect();
    let sum: Vec<String> = powers.iter().rev().map(i64::to_string).collect();
    if powers.len() > 1 {
        steps.push(format!("{e}={}", sum.join("+")));
    }
    // Squares up to the highest power needed.
    let mut squares = vec![(1i64, square)];
    let mut p = 1;
    while p * 2 <= e {
        let (work, next) = mul_mod(square, square, m);
        p *= 2;
        steps.push(format!("{b}^{p}: {work}"));
        square = next;
        squares.push((p, square));
    }
    // Multiply the squares the exponent uses.
    let mut chosen = squares.into_iter().filter(|(p, _)| e & p != 0);
    let (mut acc_power, mut acc) = chosen.next().unwrap_or((0, 1 % m));
    for (p, value) in chosen {
        let (work, next) = mul_mod(value, acc, m);
        steps.push(format!(
            "{b}^{}={b}^{p}*{b}^{acc_power}: {work}",
            p + acc_power
        ));
        acc_power += p;
        acc = next;
    }
    acc
}

/// Extended Euclid on `(m, a)`, tracking the coefficient of `a`; stops at
/// remainder 1 (which is reached because `gcd(a, m) = 1`), then reduces the
/// coefficient into `0..m` and checks it.
fn inverse(a: i64, m: i64, steps: &mut Vec<String>) -> i64 {
    let (mut r0, mut r1) = (m, a);
    let (mut t0, mut t1) = (0i64, 1i64);
    while r1 > 1 {
        let q = r0 / r1;
        let (r2, t2) = (r0 - q * r1, t0 - q * t1);
        steps.push(format!(
            "{r0}={q}*{r1}+{r2}, t={t0}-{q}*{}={t2}",
            parenthesised(t1)
        ));
        (r0, r1, t0, t1) = (r1, r2, t1, t2);
    }
    let x = t1.rem_euclid(m);
    if x != t1 {
        steps.push(format!("{t1} mod {m}={x}"));
    }
    let product = a * x;
    steps.push(format!("{a}*{x}={product}={}*{m}+1", product / m));
    x
}

fn parenthesised(n: i64) -> String {
    if n < 0 {
        format!("({n})")
    } else {
        n.to_string()
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    fn each_problem(mut f: impl FnMut(u32, Question, Generated)) {
        for level in 1..=NumTheory.max_level() {
            for seed in 0..SEEDS {
                let q = question(&mut Rng::new(seed), &LEVELS[level as usize - 1]);
                f(level, q, NumTheory.generate(&mut Rng::new(seed), level));
            }
        }
    }

    /// The answer by brute force, independent of the worked solution.
    fn brute_force(q: Question) -> i64 {
        let divides = |d: i64, n: i64| n % d == 0;
        match q {
            Question::Gcd(a, b) => (1..=a.min(b))
                .rev()
                .find(|&d| divides(d, a) && divides(d, b))
                .unwrap(),
            Question::Lcm(a, b) => (1..=b).map(|k| a * k).find(|&n| divides(b, n)).unwrap(),
            Question::Mod(a, m) => (0..m).find(|&r| divides(m, a - r)).unwrap(),
            Question::PowMod(b, e, m) => (0..e).fold(1 % m, |acc, _| acc * b % m),
            Question::Inverse(a, m) => (0..m).find(|&x| a * x % m == 1).unwrap(),
        }
    }

    #[test]
    fn generation_is_deterministic() {
        for level in 1..=NumTheory.max_level() {
            for seed in [0, 9, u64::MAX] {
                assert_eq!(
                    NumTheory.generate(&mut Rng::new(seed), level),
                    NumTheory.generate(&mut Rng::new(seed), level)
                );
            }
        }
    }

    #[test]
    fn answers_match_brute_force() {
        each_problem(|_, q, g| {
            let expected = brute_force(q).to_string();
            assert_eq!(g.answer, expected, "{}", g.prompt);
            assert!(g
                .solution
                .ends_with(&format!("<answer>{expected}</answer>")));
            assert_eq!(g.check, Check::Number);
            assert!(g.prompt.is_ascii());
        });
    }

    #[test]
    fn every_step_is_true_arithmetic() {
        each_problem(|_, _, g| {
            let think = g.solution.split("</think>").next().unwrap();
            for line in think.trim_start_matches("<think>").lines() {
                assert_true_arithmetic(line);
            }
        });
    }

    #[test]
    fn questions_match_their_level() {
        let mut kinds = HashSet::new();
        each_problem(|level, q, _| {
            let l = &LEVELS[level as usize - 1];
            let kind = match q {
                Question::Gcd(a, b) | Question::Lcm(a, b) => {
                    assert!(a != b && a >= 2 && b >= 2 && a <= l.gcd_max && b <= l.gcd_max);
                    if matches!(q, Question::Gcd(..)) {
                        Kind::Gcd
                    } else {
                        Kind::Lcm
                    }
                }
                Question::Mod(a, m) => {
                    assert!(a > m && a <= l.dividend_max && (2..=l.modulus_max).contains(&m));
                    Kind::Mod
                }
                Question::PowMod(b, e, m) => {
                    assert!(b >= 2 && gcd(b, m) == 1 && b % m != 1);
                    assert!((2..=l.exponent_max).contains(&e));
                    assert!((3..=l.modulus_max).contains(&m));
                    Kind::PowMod
                }
                Question::Inverse(a, m) => {
                    assert!((2..m).contains(&a) && gcd(a, m) == 1 && m <= l.modulus_max);
                    Kind::Inverse
                }
            };
            assert!(l.kinds.contains(&kind), "level {level}: {q:?}");
            kinds.insert((level, kind as u8));
        });
        let expected: usize = LEVELS.iter().map(|l| l.kinds.len()).sum();
        assert_eq!(kinds.len(), expected, "every kind of every level appears");
    }

    #[test]
    fn gcds_are_often_not_one() {
        let mut trivial = 0;
        for seed in 0..1_000 {
            let (a, b) = pair_with_common_factor(&mut Rng::new(seed), 200);
            trivial += usize::from(gcd(a, b) == 1);
        }
        assert!(trivial < 300, "{trivial} of 1000 pairs are coprime");
    }

    #[test]
    fn verifies_through_the_problem() {
        each_problem(|level, _, g| {
            let p = g.into_problem("numtheory", level, "numtheory/test".to_string());
            let good = p.verify(&p.solution);
            assert!(good.reward == 1.0 && good.format_ok, "{good:?}");
            let n: i64 = p.answer.parse().unwrap();
            for wrong in [n + 1, n - 1, -n] {
                let v = p.verify(&format!("<think></think><answer>{wrong}</answer>"));
                assert!(wrong == n || v.reward == 0.0, "{wrong}: {v:?}");
            }
        });
    }

    #[test]
    fn level_one_has_many_distinct_problems() {
        let prompts: HashSet<String> = (0..10_000)
            .map(|seed| NumTheory.generate(&mut Rng::new(seed), 1).prompt)
            .collect();
        assert!(prompts.len() >= 5_000, "{} distinct", prompts.len());
    }
}
