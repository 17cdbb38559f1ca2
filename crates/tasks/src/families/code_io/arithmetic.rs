//! `code_io` templates for levels 1 and 2: arithmetic with hidden
//! constants, and conditionals.

use super::specs::{arg, cases, int, nonzero, out, paren, plus, split, test, Spec, SHOWN};
use crate::rng::Rng;

// ---- level 1: arithmetic on one integer, constants found from examples ----

pub(super) fn linear(rng: &mut Rng) -> Spec {
    let a = nonzero(rng, -9, 9);
    let b = rng.range(-20, 20);
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(-20, 20);
        test(&[int(x)], int(a * x + b))
    });
    let (x1, y1, x2, y2) = (
        arg(&cases[0]),
        out(&cases[0]),
        arg(&cases[1]),
        out(&cases[1]),
    );
    let reasoning = vec![
        format!("From f({x1}) = {y1} and f({x2}) = {y2}:"),
        format!(
            "a = ({y2} - {}) / ({x2} - {}) = {} / {} = {a}",
            paren(y1),
            paren(x1),
            y2 - y1,
            x2 - x1
        ),
        format!("b = {y1} - {a} * {} = {b}", paren(x1)),
    ];
    Spec {
        name: "f",
        params: "x",
        task: "returns a * x + b for fixed integers a and b".to_string(),
        source: format!("fn f(x) {{ {a} * x{} }}", plus(b)),
        reasoning,
        ..split(cases)
    }
}

pub(super) fn square_plus(rng: &mut Rng) -> Spec {
    let c = rng.range(-30, 30);
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(-15, 15);
        test(&[int(x)], int(x * x + c))
    });
    let (x1, y1) = (arg(&cases[0]), out(&cases[0]));
    Spec {
        name: "f",
        params: "x",
        task: "returns x * x + c for a fixed integer c".to_string(),
        source: format!("fn f(x) {{ x * x{} }}", plus(c)),
        reasoning: vec![format!(
            "From f({x1}) = {y1}: c = {y1} - {} * {} = {c}",
            paren(x1),
            paren(x1)
        )],
        ..split(cases)
    }
}

pub(super) fn times_shifted(rng: &mut Rng) -> Spec {
    let a = nonzero(rng, -9, 9);
    let first = nonzero(rng, -12, 12);
    let cases = cases(
        rng,
        vec![test(&[int(first)], int(first * (first + a)))],
        |rng| {
            let x = rng.range(-12, 12);
            test(&[int(x)], int(x * (x + a)))
        },
    );
    let y1 = first * (first + a);
    Spec {
        name: "f",
        params: "x",
        task: "returns x * (x + a) for a fixed integer a".to_string(),
        source: format!("fn f(x) {{ x * (x{}) }}", plus(a)),
        reasoning: vec![
            format!(
                "From f({first}) = {y1}: x + a = {y1} / {} = {}",
                paren(first),
                first + a
            ),
            format!("so a = {} - {} = {a}", first + a, paren(first)),
        ],
        ..split(cases)
    }
}

// ---- level 2: conditionals ----

pub(super) fn larger(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let (a, b) = (rng.range(-50, 50), rng.range(-50, 50));
        test(&[int(a), int(b)], int(a.max(b)))
    });
    Spec {
        name: "larger",
        params: "a, b",
        task: "returns the larger of a and b".to_string(),
        source: "fn larger(a, b) { if a > b { a } else { b } }".to_string(),
        reasoning: vec!["Compare a and b and return a when it is bigger, else b.".to_string()],
        ..split(cases)
    }
}

pub(super) fn clamp(rng: &mut Rng) -> Spec {
    let lo = rng.range(-10, 10);
    let hi = lo + rng.range(3, 20);
    let clamped = |x: i64| x.clamp(lo, hi);
    // The examples reveal both bounds: one input below, one above, two inside.
    let below = lo - rng.range(1, 30);
    let above = hi + rng.range(1, 30);
    let inside = [rng.range(lo, hi), rng.range(lo, hi)];
    let mut fixed = vec![test(&[int(below)], int(lo)), test(&[int(above)], int(hi))];
    fixed.extend(inside.iter().map(|&x| test(&[int(x)], int(x))));
    let cases = cases(rng, fixed, |rng| {
        let x = rng.range(lo - 40, hi + 40);
        test(&[int(x)], int(clamped(x)))
    });
    Spec {
        name: "clamp",
        params: "x",
        task: "returns x limited to the range lo..=hi for fixed integers lo < hi: lo when x < lo, \
               hi when x > hi, otherwise x"
            .to_string(),
        source: format!(
            "fn clamp(x) {{ if x < {lo} {{ {lo} }} else if x > {hi} {{ {hi} }} else {{ x }} }}"
        ),
        reasoning: vec![
            format!("clamp({below}) = {lo}, so lo = {lo}; clamp({above}) = {hi}, so hi = {hi}."),
            "Inside the range x is returned unchanged.".to_string(),
        ],
        ..split(cases)
    }
}

pub(super) fn collatz_step(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(1, 200);
        let y = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
        test(&[int(x)], int(y))
    });
    Spec {
        name: "step",
        params: "x",
        task: "returns x / 2 when x is even and 3 * x + 1 when x is odd".to_string(),
        source: "fn step(x) { if x % 2 == 0 { x / 2 } else { 3 * x + 1 } }".to_string(),
        reasoning: vec!["x is even when x % 2 == 0; branch on that.".to_string()],
        ..split(cases)
    }
}

pub(super) fn distance(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let (a, b) = (rng.range(-50, 50), rng.range(-50, 50));
        test(&[int(a), int(b)], int((a - b).abs()))
    });
    Spec {
        name: "distance",
        params: "a, b",
        task: "returns the distance between a and b, |a - b|".to_string(),
        source: "fn distance(a, b) { if a > b { a - b } else { b - a } }".to_string(),
        reasoning: vec![
            "Subtract the smaller from the larger so the result is never negative.".to_string(),
        ],
        ..split(cases)
    }
}

pub(super) fn sign(rng: &mut Rng) -> Spec {
    let zero = test(&[int(0)], int(0));
    let mut cases = cases(rng, vec![], |rng| {
        let x = nonzero(rng, -100, 100);
        test(&[int(x)], int(x.signum()))
    });
    // Zero must be among the hidden tests.
    cases[SHOWN] = zero;
    Spec {
        name: "sign",
        params: "x",
        task: "returns -1 when x is negative, 0 when x is 0 and 1 when x is positive".to_string(),
        source: "fn sign(x) { if x < 0 { -1 } else if x > 0 { 1 } else { 0 } }".to_string(),
        reasoning: vec!["Test x < 0, then x > 0; what is left is 0.".to_string()],
        ..split(cases)
    }
}
