//! `fraction`: add, subtract and multiply fractions; answer in lowest terms.
//!
//! Each operation is shown the school way, then reduced:
//!
//! ```text
//! What is 1/2+3/4*2/5 in lowest terms?
//! <think>3/4*2/5=6/20
//! gcd 2: 6/20=3/10
//! 1/2+3/10
//! lcm(2,10)=10
//! 5/10+3/10=8/10
//! gcd 2: 8/10=4/5</think><answer>4/5</answer>
//! ```
//!
//! With three fractions, `*` goes first, else left to right, and the
//! remaining expression is written out before the next operation. From
//! level 2 on the given fractions are in lowest terms; level 1 writes its
//! fractions over one shared denominator, so they may not be (`2/6+3/6`).
//! Answers must always be in lowest terms.

use super::op::{Op, Tree};
use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `fraction` family.
pub(crate) struct Fraction;

/// What each level asks, level 1 first.
const LEVELS: [Level; 6] = [
    Level::new(2, 12, &[Op::Add, Op::Sub], Denominators::Same),
    Level::new(2, 10, &[Op::Add, Op::Sub], Denominators::Different),
    Level::new(2, 12, &[Op::Add, Op::Sub, Op::Mul], Denominators::Any),
    Level::new(
        2,
        20,
        &[Op::Add, Op::Sub, Op::Mul],
        Denominators::AnyImproper,
    ),
    Level::new(3, 12, &[Op::Add, Op::Sub], Denominators::Any),
    Level::new(3, 15, &[Op::Add, Op::Sub, Op::Mul], Denominators::Any),
];

struct Level {
    terms: usize,
    max_den: i64,
    ops: &'static [Op],
    dens: Denominators,
}

impl Level {
    const fn new(terms: usize, max_den: i64, ops: &'static [Op], dens: Denominators) -> Self {
        Self {
            terms,
            max_den,
            ops,
            dens,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denominators {
    /// One shared denominator; numerators below it (not necessarily reduced).
    Same,
    /// Two different denominators; proper fractions.
    Different,
    /// Any denominators; proper fractions.
    Any,
    /// Any denominators; numerators up to twice the denominator.
    AnyImproper,
}

/// A fraction with a positive denominator (reduced unless built raw).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frac {
    num: i64,
    den: i64,
}

impl Frac {
    fn new(num: i64, den: i64) -> Self {
        Self { num, den }
    }

    fn text(self) -> String {
        if self.den == 1 {
            self.num.to_string()
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }
}

impl Task for Fraction {
    fn name(&self) -> &'static str {
        "fraction"
    }

    fn summary(&self) -> &'static str {
        "add, subtract or multiply fractions; answer in lowest terms"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let ops: String = l.ops.iter().map(|op| op.symbol()).collect();
        let dens = match l.dens {
            Denominators::Same => "one shared denominator",
            Denominators::Different => "different denominators",
            Denominators::Any => "proper fractions",
            Denominators::AnyImproper => "numerators up to twice the denominator",
        };
        format!(
            "{} fractions, ops {ops}, denominators 2..={}, {dens}",
            l.terms, l.max_den
        )
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let mut terms = operands(rng, l);
        let mut ops: Vec<Op> = (1..l.terms).map(|_| *rng.pick(l.ops)).collect();
        let prompt = format!("What is {} in lowest terms?", expression(&terms, &ops));
        let leaves: Vec<String> = terms.iter().map(|t| t.text()).collect();
        let key = format!("fraction {}", Tree::from_flat(&leaves, &ops).canonical());

        let mut steps = Vec::new();
        while !ops.is_empty() {
            let at = ops.iter().position(|&op| op == Op::Mul).unwrap_or(0);
            let value = apply(terms[at], ops[at], terms[at + 1], &mut steps);
            terms.splice(at..=at + 1, [value]);
            ops.remove(at);
            if !ops.is_empty() {
                steps.push(expression(&terms, &ops));
            }
        }
        let answer = terms[0].text();
        Generated {
            prompt,
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Fraction,
            key,
        }
    }
}

fn operands(rng: &mut Rng, l: &Level) -> Vec<Frac> {
    match l.dens {
        Denominators::Same => {
            let den = rng.range(2, l.max_den);
            (0..l.terms)
                .map(|_| Frac::new(rng.range(1, den - 1), den))
                .collect()
        }
        Denominators::Different => {
            let first = rng.range(2, l.max_den);
            let others: Vec<i64> = (2..=l.max_den).filter(|&d| d != first).collect();
            let second = *rng.pick(&others);
            [first, second]
                .into_iter()
                .map(|den| Frac::new(coprime_numerator(rng, den, den - 1), den))
                .collect()
        }
        Denominators::Any | Denominators::AnyImproper => (0..l.terms)
            .map(|_| {
                let den = rng.range(2, l.max_den);
                let max_num = if l.dens == Denominators::AnyImproper {
                    2 * den
                } else {
                    den - 1
                };
                Frac::new(coprime_numerator(rng, den, max_num), den)
            })
            .collect(),
    }
}

/// A numerator in `1..=max` sharing no factor with `den` (so the fraction is
/// in lowest terms and not whole).
fn coprime_numerator(rng: &mut Rng, den: i64, max: i64) -> i64 {
    let choices: Vec<i64> = (1..=max).filter(|&n| gcd(n, den) == 1).collect();
    *rng.pick(&choices)
}

fn expression(terms: &[Frac], ops: &[Op]) -> String {
    let mut out = terms[0].text();
    for (op, term) in ops.iter().zip(&terms[1..]) {
        out.push(op.symbol());
        out.push_str(&term.text());
    }
    out
}

/// `a op b`, reduced, writing its steps.
fn apply(a: Frac, op: Op, b: Frac, steps: &mut Vec<String>) -> Frac {
    let s = op.symbol();
    let raw = match op {
        Op::Mul => {
            let raw = Frac::new(a.num * b.num, a.den * b.den);
            steps.push(format!(
                "{}{s}{}={}/{}",
                a.text(),
                b.text(),
                raw.num,
                raw.den
            ));
            raw
        }
        Op::Add | Op::Sub => {
            let common = a.den / gcd(a.den, b.den) * b.den;
            if a.den != b.den {
                steps.push(format!("lcm({},{})={common}", a.den, b.den));
            }
            let (x, y) = (a.num * (common / a.den), b.num * (common / b.den));
            let num = if op == Op::Add { x + y } else { x - y };
            steps.push(format!("{x}/{common}{s}{y}/{common}={num}/{common}"));
            Frac::new(num, common)
        }
    };
    reduce(raw, steps)
}

fn reduce(raw: Frac, steps: &mut Vec<String>) -> Frac {
    let g = gcd(raw.num.abs(), raw.den);
    if g == 1 {
        return raw;
    }
    let reduced = Frac::new(raw.num / g, raw.den / g);
    steps.push(format!(
        "gcd {g}: {}/{}={}",
        raw.num,
        raw.den,
        reduced.text()
    ));
    reduced
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps_of(a: Frac, op: Op, b: Frac) -> (Frac, Vec<String>) {
        let mut steps = Vec::new();
        let value = apply(a, op, b, &mut steps);
        (value, steps)
    }

    #[test]
    fn addition_goes_through_the_lcm() {
        let (v, steps) = steps_of(Frac::new(1, 6), Op::Add, Frac::new(3, 4));
        assert_eq!(v, Frac::new(11, 12));
        assert_eq!(steps, ["lcm(6,4)=12", "2/12+9/12=11/12"]);
        let (v, steps) = steps_of(Frac::new(1, 6), Op::Sub, Frac::new(5, 6));
        assert_eq!(v, Frac::new(-2, 3));
        assert_eq!(steps, ["1/6-5/6=-4/6", "gcd 2: -4/6=-2/3"]);
    }

    #[test]
    fn products_reduce_to_whole_numbers_when_they_can() {
        let (v, steps) = steps_of(Frac::new(3, 2), Op::Mul, Frac::new(4, 3));
        assert_eq!(v, Frac::new(2, 1));
        assert_eq!(steps, ["3/2*4/3=12/6", "gcd 6: 12/6=2"]);
    }

    #[test]
    fn answers_are_the_exact_value_in_lowest_terms() {
        let mut rng = Rng::new(9);
        for level in 1..=LEVELS.len() as u32 {
            for _ in 0..300 {
                let g = Fraction.generate(&mut rng, level);
                let (num, den) = match g.answer.split_once('/') {
                    Some((n, d)) => (n.parse::<i64>().unwrap(), d.parse::<i64>().unwrap()),
                    None => (g.answer.parse::<i64>().unwrap(), 1),
                };
                assert!(den >= 1 && gcd(num.abs(), den) == 1, "{}", g.answer);
                assert_eq!(exact_value(&g.prompt), (num, den), "{}", g.prompt);
            }
        }
    }

    /// The module doc's claim: given fractions are in lowest terms from
    /// level 2 on; level 1 shares one denominator (and so may not be).
    #[test]
    fn given_fractions_are_reduced_from_level_two() {
        let mut rng = Rng::new(4);
        let mut unreduced_at_one = 0;
        for level in 1..=LEVELS.len() as u32 {
            for _ in 0..500 {
                let g = Fraction.generate(&mut rng, level);
                let body = g
                    .prompt
                    .trim_start_matches("What is ")
                    .trim_end_matches(" in lowest terms?");
                let fracs: Vec<(i64, i64)> = body
                    .split(['+', '-', '*'])
                    .map(|f| {
                        let (n, d) = f.split_once('/').unwrap();
                        (n.parse().unwrap(), d.parse().unwrap())
                    })
                    .collect();
                let reduced = fracs.iter().all(|&(n, d)| gcd(n, d) == 1);
                if level == 1 {
                    unreduced_at_one += usize::from(!reduced);
                    assert!(fracs.iter().all(|f| f.1 == fracs[0].1), "{}", g.prompt);
                } else {
                    assert!(reduced, "{}", g.prompt);
                }
            }
        }
        assert!(unreduced_at_one > 0);
    }

    /// Evaluate the prompt's expression independently: * first, then left to right.
    fn exact_value(prompt: &str) -> (i64, i64) {
        let body = prompt
            .trim_start_matches("What is ")
            .trim_end_matches(" in lowest terms?");
        let mut sum = (0i64, 1i64);
        let mut sign = 1;
        let mut product: Option<(i64, i64)> = None;
        let mut rest = body;
        loop {
            let end = rest.find(['+', '-', '*']).unwrap_or(rest.len());
            let (n, d) = rest[..end].split_once('/').unwrap();
            let f = (n.parse::<i64>().unwrap(), d.parse::<i64>().unwrap());
            product = Some(match product {
                Some((pn, pd)) => (pn * f.0, pd * f.1),
                None => f,
            });
            let next = rest[end..].chars().next();
            if next != Some('*') {
                let (pn, pd) = product.take().unwrap();
                sum = (sum.0 * pd + sign * pn * sum.1, sum.1 * pd);
            }
            match next {
                None => break,
                Some(c) => {
                    if c != '*' {
                        sign = if c == '-' { -1 } else { 1 };
                    }
                    rest = &rest[end + 1..];
                }
            }
        }
        let g = gcd(sum.0.abs(), sum.1);
        (sum.0 / g, sum.1 / g)
    }
}
