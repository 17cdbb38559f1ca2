//! `code_trace` templates for levels 1 to 3: straight-line arithmetic,
//! conditionals and loops over numbers.

use super::programs::{comparison, expression, list, literal, operands, ops, shown, term, Traced};
use crate::rng::Rng;

// ---- level 1: straight-line arithmetic ----

/// `let a = 7; let b = 4; let c = a + b * 2; c - a`
pub(super) fn chain(rng: &mut Rng) -> Traced {
    let a = rng.range(2, 15);
    let b = rng.range(2, 15);
    let vars = [("a", a), ("b", b)];
    let terms = rng.range(2, 3) as usize;
    let (c_src, c_trace, c) = expression(&operands(rng, &vars, terms), &ops(rng, terms - 1));
    let second = if rng.chance(0.5) {
        let (name, value) = *rng.pick(&vars);
        term(name, value)
    } else {
        literal(rng.range(2, 9))
    };
    let final_terms = [term("c", c), second];
    let (f_src, f_trace, value) = expression(&final_terms, &ops(rng, 1));
    Traced::new(
        &[
            format!("let a = {a};"),
            format!("let b = {b};"),
            format!("let c = {c_src};"),
            f_src,
        ],
        vec![
            format!("a = {a}"),
            format!("b = {b}"),
            format!("c = {c_trace}"),
            format!("last expression: {f_trace}"),
        ],
        value.to_string(),
    )
}

/// `let x = 5; x += 3; x *= 2; x -= 4; x`
pub(super) fn updates(rng: &mut Rng) -> Traced {
    let mut x = rng.range(1, 12);
    let mut source = vec![format!("let x = {x};")];
    let mut steps = vec![format!("x = {x}")];
    for i in 0..rng.range(3, 4) {
        let k = rng.range(2, if i == 0 { 9 } else { 4 });
        let (op, new) = match rng.below(4) {
            0 => ("+=", x + k),
            1 => ("-=", x - k),
            2 => ("*=", x * k),
            _ => ("=", x * k + 1),
        };
        let (statement, working) = if op == "=" {
            (
                format!("x = x * {k} + 1;"),
                format!("{} * {k} + 1", shown(x)),
            )
        } else {
            let symbol = &op[..1];
            (format!("x {op} {k};"), format!("{} {symbol} {k}", shown(x)))
        };
        steps.push(format!("{statement} x = {working} = {new}"));
        source.push(statement);
        x = new;
    }
    source.push("x".to_string());
    Traced::new(&source, steps, x.to_string())
}

// ---- level 2: conditionals ----

/// `let n = 17; let r = 0; if n % 3 == 2 { r = n / 3; } else { r = n * 2 + 1; } r + 4`
pub(super) fn branch(rng: &mut Rng) -> Traced {
    let n = rng.range(10, 99);
    let k = rng.range(2, 5);
    let m = if rng.chance(0.5) {
        n % k
    } else {
        rng.range(0, k - 1)
    };
    let d = rng.range(2, 5);
    let e = rng.range(2, 3);
    let f = rng.range(1, 9);
    let g = rng.range(1, 9);
    let holds = n % k == m;
    let (_, r_trace, r) = if holds {
        expression(&[term("n", n), literal(d)], &['/'])
    } else {
        expression(&[term("n", n), literal(e), literal(f)], &['*', '+'])
    };
    let (last_src, last_trace, value) = expression(&[term("r", r), literal(g)], &['+']);
    Traced::new(
        &[
            format!("let n = {n};"),
            "let r = 0;".to_string(),
            format!("if n % {k} == {m} {{ r = n / {d}; }} else {{ r = n * {e} + {f}; }}"),
            last_src,
        ],
        vec![
            format!("n = {n}, r = 0"),
            format!(
                "n % {k} = {n} % {k} = {}, so n % {k} == {m} is {holds}",
                n % k
            ),
            format!(
                "{} branch: r = {r_trace}",
                if holds { "then" } else { "else" }
            ),
            format!("last expression: {last_trace}"),
        ],
        value.to_string(),
    )
}

/// `let a = 7; let b = 12; let m = if a > b { a - b } else { b - a }; m * 3`
pub(super) fn if_expression(rng: &mut Rng) -> Traced {
    let a = rng.range(1, 30);
    let b = rng.range(1, 30);
    let (cmp, holds) = comparison(rng, a, b);
    let k = rng.range(2, 5);
    let (_, m_trace, m) = if holds {
        expression(&[term("a", a), term("b", b)], &['-'])
    } else {
        expression(&[term("b", b), term("a", a)], &['+'])
    };
    let (last_src, last_trace, value) = expression(&[term("m", m), literal(k)], &['*']);
    Traced::new(
        &[
            format!("let a = {a};"),
            format!("let b = {b};"),
            format!("let m = if a {cmp} b {{ a - b }} else {{ b + a }};"),
            last_src,
        ],
        vec![
            format!("a = {a}, b = {b}"),
            format!("a {cmp} b is {a} {cmp} {b}, {holds}"),
            format!("m = {m_trace}"),
            format!("last expression: {last_trace}"),
        ],
        value.to_string(),
    )
}

/// `let t = 47; let g = if t >= 80 { 3 } else if t >= 50 { 2 } else { 1 }; g * 10 + t % 10`
pub(super) fn ladder(rng: &mut Rng) -> Traced {
    let t = rng.range(0, 99);
    let high = rng.range(60, 90);
    let low = rng.range(20, high - 10);
    let (g, mut steps) = (
        if t >= high {
            3
        } else if t >= low {
            2
        } else {
            1
        },
        vec![format!("t = {t}")],
    );
    steps.push(format!("t >= {high} is {t} >= {high}, {}", t >= high));
    if t < high {
        steps.push(format!("t >= {low} is {t} >= {low}, {}", t >= low));
    }
    steps.push(format!("so g = {g}"));
    let (last_src, last_trace, value) = expression(
        &[term("g", g), literal(10), term("t", t), literal(10)],
        &['*', '+', '%'],
    );
    steps.push(format!("last expression: {last_trace}"));
    Traced::new(
        &[
            format!("let t = {t};"),
            format!("let g = if t >= {high} {{ 3 }} else if t >= {low} {{ 2 }} else {{ 1 }};"),
            last_src,
        ],
        steps,
        value.to_string(),
    )
}

// ---- level 3: loops ----

/// `let s = 0; for i in 1..5 { s += i * 2; } s`
pub(super) fn range_sum(rng: &mut Rng) -> Traced {
    let start = rng.range(0, 4);
    let count = rng.range(3, 5);
    let inclusive = rng.chance(0.5);
    let end = if inclusive {
        start + count - 1
    } else {
        start + count
    };
    let range = if inclusive {
        format!("{start}..={end}")
    } else {
        format!("{start}..{end}")
    };
    let init = rng.range(0, 5);
    let k = rng.range(2, 4);
    let kind = rng.below(3);
    let body = match kind {
        0 => format!("s += i * {k};"),
        1 => format!("s += i + {k};"),
        _ => "s = s * 2 + i;".to_string(),
    };
    let mut s = init;
    let mut steps = vec![
        format!("s = {init}"),
        format!("i runs over {range}: {}", list(start..start + count)),
    ];
    for i in start..start + count {
        let (working, new) = match kind {
            0 => (format!("{s} + {i} * {k} = {s} + {}", i * k), s + i * k),
            1 => (format!("{s} + {i} + {k} = {s} + {}", i + k), s + i + k),
            _ => (format!("{s} * 2 + {i} = {} + {i}", s * 2), s * 2 + i),
        };
        steps.push(format!("i = {i}: s = {working} = {new}"));
        s = new;
    }
    Traced::new(
        &[
            format!("let s = {init};"),
            format!("for i in {range} {{ {body} }}"),
            "s".to_string(),
        ],
        steps,
        s.to_string(),
    )
}

/// `let c = 0; for i in 1..=10 { if i % 3 == 0 { c += i; } } c`
pub(super) fn divisible_sum(rng: &mut Rng) -> Traced {
    let n = rng.range(6, 12);
    let k = rng.range(2, 4);
    let mut c = 0;
    let mut steps = vec!["c = 0".to_string()];
    for i in 1..=n {
        if i % k == 0 {
            steps.push(format!("i = {i}: {i} % {k} = 0, c = {c} + {i} = {}", c + i));
            c += i;
        } else {
            steps.push(format!("i = {i}: {i} % {k} = {}, skip", i % k));
        }
    }
    Traced::new(
        &[
            "let c = 0;".to_string(),
            format!("for i in 1..={n} {{ if i % {k} == 0 {{ c += i; }} }}"),
            "c".to_string(),
        ],
        steps,
        c.to_string(),
    )
}

/// `let n = 473; let d = 0; while n > 0 { d += n % 10; n /= 10; } d`
/// (or the digits reversed: `d = d * 10 + n % 10`).
pub(super) fn digits(rng: &mut Rng) -> Traced {
    let start = rng.range(100, 9999);
    let reverse = rng.chance(0.5);
    let body = if reverse {
        "d = d * 10 + n % 10; n /= 10;"
    } else {
        "d += n % 10; n /= 10;"
    };
    let (mut n, mut d) = (start, 0);
    let mut steps = vec![format!("n = {n}, d = 0")];
    while n > 0 {
        let digit = n % 10;
        let new = if reverse { d * 10 + digit } else { d + digit };
        let working = if reverse {
            format!("{d} * 10 + {digit}")
        } else {
            format!("{d} + {digit}")
        };
        steps.push(format!(
            "n = {n}: n % 10 = {digit}, d = {working} = {new}, n = {n} / 10 = {}",
            n / 10
        ));
        d = new;
        n /= 10;
    }
    steps.push("n = 0, so the loop stops".to_string());
    Traced::new(
        &[
            format!("let n = {start};"),
            "let d = 0;".to_string(),
            format!("while n > 0 {{ {body} }}"),
            "d".to_string(),
        ],
        steps,
        d.to_string(),
    )
}

/// `let a = 48; let b = 18; while b != 0 { let t = a % b; a = b; b = t; } a`
pub(super) fn euclid(rng: &mut Rng) -> Traced {
    let common = rng.range(1, 12);
    let (a0, b0) = (common * rng.range(2, 16), common * rng.range(1, 16));
    let (mut a, mut b) = (a0, b0);
    let mut steps = vec![format!("a = {a}, b = {b}")];
    while b != 0 {
        let t = a % b;
        steps.push(format!("t = {a} % {b} = {t}, a = {b}, b = {t}"));
        (a, b) = (b, t);
    }
    steps.push("b = 0, so the loop stops".to_string());
    Traced::new(
        &[
            format!("let a = {a0};"),
            format!("let b = {b0};"),
            "while b != 0 { let t = a % b; a = b; b = t; }".to_string(),
            "a".to_string(),
        ],
        steps,
        a.to_string(),
    )
}
