//! `linear`: solve a linear equation for an integer `x`, or a 2x2 system for
//! integers `x` and `y` (answered as the list `[x, y]`).
//!
//! Worked solutions move one thing per line, each line carrying its own
//! arithmetic:
//!
//! ```text
//! Solve 5x-3=2x+9 for x.          Solve 2x+3y=7, x-y=1. Answer [x, y].
//! 3x-3=9                          2*(2): 2x-2y=2
//! 3x=9+3=12                       (1)-(2): 5y=5
//! x=12/3=4                        y=5/5=1
//!                                 2x+3=7
//!                                 2x=7-3=4
//!                                 x=4/2=2
//! ```
//!
//! Systems eliminate `x`: equation (1) is scaled by `a2/g` and (2) by
//! `a1/g` (g = gcd of the x coefficients), subtracted, and `y` is put back
//! into (1).

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `linear` family.
pub(crate) struct Linear;

const MAX_LEVEL: u32 = 6;

impl Task for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn summary(&self) -> &'static str {
        "solve a linear equation, or a 2x2 system, with integer solutions"
    }

    fn max_level(&self) -> u32 {
        MAX_LEVEL
    }

    fn level_doc(&self, level: u32) -> String {
        match level {
            1 => "x+b=c, x in 0..=20",
            2 => "ax+b=c, a in 2..=9, x in -10..=10",
            3 => "ax+b=c, a in +-2..=12, x in -20..=20",
            4 => "ax+b=cx+d, a and c in +-1..=9, x in -15..=15",
            5 => "2x2 system, coefficients in +-1..=5, x and y in -9..=9",
            _ => "2x2 system, coefficients in +-1..=12, x and y in -20..=20",
        }
        .to_string()
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        match level {
            1 => single(rng, 1, (0, 20), 20),
            2 => {
                let a = rng.range(2, 9);
                single(rng, a, (-10, 10), 20)
            }
            3 => {
                let a = nonzero(rng, 2, 12);
                single(rng, a, (-20, 20), 50)
            }
            4 => both_sides(rng),
            5 => system(rng, 5, 9),
            _ => system(rng, 12, 20),
        }
    }
}

/// `a*x + b = c` with `x` in `lo..=hi`; at level 1 (`a == 1`) the constant is never zero.
fn single(rng: &mut Rng, a: i64, (lo, hi): (i64, i64), max_b: i64) -> Generated {
    let x = rng.range(lo, hi);
    let b = if a == 1 {
        nonzero(rng, 1, max_b)
    } else {
        rng.range(-max_b, max_b)
    };
    let c = a * x + b;
    let steps = isolate_x(a, b, c);
    let equation = format!("{}{}={c}", term(a, "x", true), constant(b));
    let key = format!("linear {equation}");
    finish_single(equation, steps, x, key)
}

/// `a*x + b = c*x + d` with `a != c`.
fn both_sides(rng: &mut Rng) -> Generated {
    let a = nonzero(rng, 1, 9);
    let c = other_coefficient(rng, a);
    let x = rng.range(-15, 15);
    let b = rng.range(-30, 30);
    let d = (a - c) * x + b;
    let mut sides = [
        format!("{}{}", term(a, "x", true), constant(b)),
        format!("{}{}", term(c, "x", true), constant(d)),
    ];
    let equation = sides.join("=");
    // The two sides swapped are the same equation.
    sides.sort();
    let key = format!("linear {}", sides.join("="));
    let mut steps = vec![format!("{}{}={d}", term(a - c, "x", true), constant(b))];
    steps.extend(isolate_x(a - c, b, d));
    finish_single(equation, steps, x, key)
}

fn finish_single(equation: String, steps: Vec<String>, x: i64, key: String) -> Generated {
    let answer = x.to_string();
    Generated {
        prompt: format!("Solve {equation} for x."),
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::Number,
        key,
    }
}

/// Lines taking `a*x + b = c` to `x = ...`.
fn isolate_x(a: i64, b: i64, c: i64) -> Vec<String> {
    let mut steps = Vec::new();
    let rhs = c - b;
    if b != 0 {
        steps.push(format!("{}={c}{}={rhs}", term(a, "x", true), constant(-b)));
    }
    if a != 1 {
        steps.push(format!("x={rhs}/{}={}", parenthesised(a), rhs / a));
    }
    steps
}

/// `a1*x + b1*y = c1`, `a2*x + b2*y = c2`, all coefficients non-zero and the
/// determinant non-zero.
fn system(rng: &mut Rng, max_coef: i64, max_xy: i64) -> Generated {
    let x = rng.range(-max_xy, max_xy);
    let y = rng.range(-max_xy, max_xy);
    let a1 = nonzero(rng, 1, max_coef);
    let b1 = nonzero(rng, 1, max_coef);
    let a2 = nonzero(rng, 1, max_coef);
    // Any non-zero b2 except the one that makes the system singular.
    let choices: Vec<i64> = (-max_coef..=max_coef)
        .filter(|&b2| b2 != 0 && a1 * b2 != a2 * b1)
        .collect();
    let b2 = *rng.pick(&choices);
    let (c1, c2) = (a1 * x + b1 * y, a2 * x + b2 * y);
    let eq = |a: i64, b: i64, c: i64| format!("{}{}={c}", term(a, "x", true), term(b, "y", false));

    // Scale so both x coefficients become a1*a2/g; keep the first factor positive.
    let g = gcd(a1.abs(), a2.abs());
    let sign = a2.signum();
    let (m1, m2) = (sign * a2 / g, sign * a1 / g);
    let mut steps = Vec::new();
    if m1 != 1 {
        steps.push(format!("{m1}*(1): {}", eq(m1 * a1, m1 * b1, m1 * c1)));
    }
    if m2 != 1 {
        steps.push(format!("{m2}*(2): {}", eq(m2 * a2, m2 * b2, m2 * c2)));
    }
    let (k, r) = (m1 * b1 - m2 * b2, m1 * c1 - m2 * c2);
    steps.push(format!("(1)-(2): {}={r}", term(k, "y", true)));
    if k != 1 {
        steps.push(format!("y={r}/{}={y}", parenthesised(k)));
    }
    steps.push(format!("{}{}={c1}", term(a1, "x", true), constant(b1 * y)));
    steps.extend(isolate_x(a1, b1 * y, c1));

    let answer = answer::format_list(&[x, y]);
    // The two equations in the other order are the same system.
    let mut equations = [eq(a1, b1, c1), eq(a2, b2, c2)];
    let prompt = format!("Solve {}, {}. Answer [x, y].", equations[0], equations[1]);
    equations.sort();
    Generated {
        prompt,
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::List,
        key: format!("system {}", equations.join(", ")),
    }
}

/// A coefficient in `-9..=9`, non-zero and different from `a`.
fn other_coefficient(rng: &mut Rng, a: i64) -> i64 {
    let choices: Vec<i64> = (-9..=9).filter(|&c| c != 0 && c != a).collect();
    *rng.pick(&choices)
}

/// Uniform over `-hi..=-lo` and `lo..=hi`.
fn nonzero(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    let magnitude = rng.range(lo, hi);
    if rng.chance(0.5) {
        -magnitude
    } else {
        magnitude
    }
}

/// `3x`, `x`, `-x`, `-3x`; with a leading `+` when not first (zero: empty).
fn term(coef: i64, var: &str, first: bool) -> String {
    let sign = if coef < 0 {
        "-"
    } else if first {
        ""
    } else {
        "+"
    };
    match coef.abs() {
        0 => String::new(),
        1 => format!("{sign}{var}"),
        m => format!("{sign}{m}{var}"),
    }
}

/// `+5`, `-5`, or nothing for zero: a constant after a term.
fn constant(k: i64) -> String {
    match k {
        0 => String::new(),
        k if k > 0 => format!("+{k}"),
        k => k.to_string(),
    }
}

/// A divisor as written after `/`: negatives in parentheses.
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

    #[test]
    fn single_variable_steps() {
        assert_eq!(isolate_x(3, 5, 20), ["3x=20-5=15", "x=15/3=5"]);
        assert_eq!(isolate_x(1, -5, 7), ["x=7+5=12"]);
        assert_eq!(isolate_x(-3, 0, 12), ["x=12/(-3)=-4"]);
    }

    #[test]
    fn terms_render_like_algebra() {
        assert_eq!(term(1, "x", true), "x");
        assert_eq!(term(-1, "y", false), "-y");
        assert_eq!(term(4, "y", false), "+4y");
        assert_eq!(constant(-7), "-7");
        assert_eq!(constant(0), "");
    }

    /// Every line of a system solution is a true statement about (x, y).
    #[test]
    fn system_solutions_solve_both_equations() {
        let mut rng = Rng::new(3);
        for level in [5, 6] {
            for _ in 0..500 {
                let g = Linear.generate(&mut rng, level);
                let body = g
                    .prompt
                    .trim_start_matches("Solve ")
                    .trim_end_matches(". Answer [x, y].");
                let (e1, e2) = body.split_once(", ").expect("two equations");
                let xy: Vec<i64> = g
                    .answer
                    .trim_matches(['[', ']'])
                    .split(", ")
                    .map(|v| v.parse().expect("int"))
                    .collect();
                for eq in [e1, e2] {
                    assert!(holds(eq, xy[0], xy[1]), "{eq} at {xy:?}");
                }
            }
        }
    }

    /// Evaluate `px+qy=r` written by `term`/`constant` at (x, y).
    fn holds(eq: &str, x: i64, y: i64) -> bool {
        let (lhs, rhs) = eq.split_once('=').expect("an equation");
        let mut total = 0;
        for part in lhs.replace('-', "+-").split('+').filter(|p| !p.is_empty()) {
            let (coef, value) = match part.strip_suffix('x') {
                Some(c) => (c, x),
                None => (part.strip_suffix('y').expect("x or y term"), y),
            };
            let coef = match coef {
                "" => 1,
                "-" => -1,
                c => c.parse().expect("coefficient"),
            };
            total += coef * value;
        }
        total == rhs.parse::<i64>().expect("constant")
    }
}
