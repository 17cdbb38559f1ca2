//! The `code_trace` program templates: each writes a one-line rhai program
//! and traces it, step by step, to the value it returns.

use crate::rng::Rng;

/// Words for string programs: short, lowercase, ASCII.
const WORDS: [&str; 16] = [
    "apple", "banana", "cherry", "fig", "grape", "kiwi", "lemon", "mango", "melon", "olive",
    "peach", "pear", "plum", "lime", "papaya", "date",
];

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
    fn new(statements: &[String], steps: Vec<String>, value: String) -> Self {
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

// ---- level 1: straight-line arithmetic ----

/// `let a = 7; let b = 4; let c = a + b * 2; c - a`
fn chain(rng: &mut Rng) -> Traced {
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
fn updates(rng: &mut Rng) -> Traced {
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
fn branch(rng: &mut Rng) -> Traced {
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
fn if_expression(rng: &mut Rng) -> Traced {
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
fn ladder(rng: &mut Rng) -> Traced {
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
fn range_sum(rng: &mut Rng) -> Traced {
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
fn divisible_sum(rng: &mut Rng) -> Traced {
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
fn digits(rng: &mut Rng) -> Traced {
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
fn euclid(rng: &mut Rng) -> Traced {
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

// ---- level 4: arrays ----

fn numbers(rng: &mut Rng, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(4, 6);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

/// `let xs = [5, 12, 3, 9]; let t = 0; for x in xs { if x > 6 { t += x; } } t`
fn filter_sum(rng: &mut Rng) -> Traced {
    let xs = numbers(rng, 1, 20);
    let k = rng.range(4, 15);
    let mut t = 0;
    let mut steps = vec![format!("xs = {}, t = 0", list(xs.iter().copied()))];
    for &x in &xs {
        if x > k {
            steps.push(format!("x = {x}: {x} > {k}, t = {t} + {x} = {}", t + x));
            t += x;
        } else {
            steps.push(format!("x = {x}: {x} > {k} is false, skip"));
        }
    }
    Traced::new(
        &[
            format!("let xs = {};", list(xs.iter().copied())),
            "let t = 0;".to_string(),
            format!("for x in xs {{ if x > {k} {{ t += x; }} }}"),
            "t".to_string(),
        ],
        steps,
        t.to_string(),
    )
}

/// `let xs = [3, 1, 4]; let ys = []; for x in xs { ys.push(x * 2 - 1); } ys`
fn map_push(rng: &mut Rng) -> Traced {
    let xs = numbers(rng, -5, 12);
    let k = rng.range(2, 4);
    let m = rng.range(1, 5);
    let mut ys = Vec::new();
    let mut steps = vec![format!("xs = {}, ys = []", list(xs.iter().copied()))];
    for &x in &xs {
        let y = x * k - m;
        ys.push(y);
        steps.push(format!(
            "x = {x}: push {} * {k} - {m} = {y}, ys = {}",
            shown(x),
            list(ys.iter().copied())
        ));
    }
    Traced::new(
        &[
            format!("let xs = {};", list(xs.iter().copied())),
            "let ys = [];".to_string(),
            format!("for x in xs {{ ys.push(x * {k} - {m}); }}"),
            "ys".to_string(),
        ],
        steps,
        list(ys.iter().copied()),
    )
}

/// `let xs = [4, 9, 2]; let best = 0; for i in 1..xs.len() { if xs[i] > xs[best] { best = i; } } best`
fn arg_max(rng: &mut Rng) -> Traced {
    let xs = numbers(rng, 1, 30);
    let mut best = 0;
    let mut steps = vec![
        format!("xs = {}, best = 0", list(xs.iter().copied())),
        format!(
            "xs.len() = {}, so i runs from 1 to {}",
            xs.len(),
            xs.len() - 1
        ),
    ];
    for i in 1..xs.len() {
        let (xi, xb) = (xs[i], xs[best]);
        if xi > xb {
            steps.push(format!(
                "i = {i}: xs[{i}] = {xi} > xs[{best}] = {xb}, best = {i}"
            ));
            best = i;
        } else {
            steps.push(format!(
                "i = {i}: xs[{i}] = {xi} > xs[{best}] = {xb} is false"
            ));
        }
    }
    Traced::new(
        &[
            format!("let xs = {};", list(xs.iter().copied())),
            "let best = 0;".to_string(),
            "for i in 1..xs.len() { if xs[i] > xs[best] { best = i; } }".to_string(),
            "best".to_string(),
        ],
        steps,
        best.to_string(),
    )
}

/// `let xs = [2, 7, 1, 5]; xs[0] = xs[2] + xs[3]; xs[3] = xs[0] * 2; xs.push(xs[1] - xs[0]); xs`
fn index_updates(rng: &mut Rng) -> Traced {
    let mut xs: Vec<i64> = (0..4).map(|_| rng.range(1, 12)).collect();
    let mut source = vec![format!("let xs = {};", list(xs.iter().copied()))];
    let mut steps = vec![format!("xs = {}", list(xs.iter().copied()))];
    for _ in 0..3 {
        let (i, j) = (rng.below(xs.len()), rng.below(xs.len()));
        // Two different cells, so no step is a trivial `x - x`.
        let k = (j + 1 + rng.below(xs.len() - 1)) % xs.len();
        let op = *rng.pick(&['+', '-', '*']);
        let (a, b) = (xs[j], xs[k]);
        let value = apply(op, a, b);
        let working = format!(
            "xs[{j}] {op} xs[{k}] = {} {op} {} = {value}",
            shown(a),
            shown(b)
        );
        if rng.chance(0.3) {
            source.push(format!("xs.push(xs[{j}] {op} xs[{k}]);"));
            xs.push(value);
            steps.push(format!("push {working}: xs = {}", list(xs.iter().copied())));
        } else {
            source.push(format!("xs[{i}] = xs[{j}] {op} xs[{k}];"));
            xs[i] = value;
            steps.push(format!(
                "xs[{i}] = {working}: xs = {}",
                list(xs.iter().copied())
            ));
        }
    }
    source.push("xs".to_string());
    let value = list(xs.iter().copied());
    Traced::new(&source, steps, value)
}

// ---- level 5: functions and strings ----

/// One call `f(x)` with the constant `k`: the worked step and the value.
type Rule = fn(i64, i64) -> (String, i64);

/// `fn f(x) { if x % 2 == 0 { x / 2 } else { 3 * x + 1 } } let a = f(7); let b = f(a); let c = f(b); [a, b, c]`
fn function_calls(rng: &mut Rng) -> Traced {
    let k = rng.range(1, 9);
    let (definition, rule): (String, Rule) = match rng.below(3) {
        0 => (
            "fn f(x) { if x % 2 == 0 { x / 2 } else { 3 * x + 1 } }".to_string(),
            |x, _| {
                if x % 2 == 0 {
                    (format!("{x} is even, {x} / 2 = {}", x / 2), x / 2)
                } else {
                    (
                        format!("{x} is odd, 3 * {x} + 1 = {}", 3 * x + 1),
                        3 * x + 1,
                    )
                }
            },
        ),
        1 => (
            format!("fn f(x) {{ if x > 10 {{ x - {k} }} else {{ x * 2 }} }}"),
            |x, k| {
                if x > 10 {
                    (format!("{x} > 10, {x} - {k} = {}", x - k), x - k)
                } else {
                    (format!("{x} > 10 is false, {x} * 2 = {}", x * 2), x * 2)
                }
            },
        ),
        _ => (format!("fn f(x) {{ x * x % 10 + {k} }}"), |x, k| {
            let v = x * x % 10 + k;
            (
                format!("{x} * {x} % 10 + {k} = {} % 10 + {k} = {v}", x * x),
                v,
            )
        }),
    };
    let start = rng.range(2, 20);
    let names = ["a", "b", "c"];
    let mut source = vec![definition];
    let mut steps = Vec::new();
    let mut values = Vec::new();
    let mut x = start;
    for (i, name) in names.iter().enumerate() {
        let arg = if i == 0 {
            start.to_string()
        } else {
            names[i - 1].to_string()
        };
        let (working, v) = rule(x, k);
        source.push(format!("let {name} = f({arg});"));
        steps.push(format!("{name} = f({x}): {working}"));
        values.push(v);
        x = v;
    }
    source.push("[a, b, c]".to_string());
    Traced::new(&source, steps, list(values.into_iter()))
}

/// `fn s(n) { if n <= 0 { 0 } else { n + s(n - 1) } } s(4)` and friends.
fn recursion(rng: &mut Rng) -> Traced {
    let n = rng.range(3, 6);
    let kind = rng.below(3);
    let (definition, op, base) = match kind {
        0 => ("fn s(n) { if n <= 0 { 0 } else { n + s(n - 1) } }", '+', 0),
        1 => ("fn s(n) { if n <= 0 { 1 } else { n * s(n - 1) } }", '*', 1),
        _ => ("fn s(n) { if n <= 0 { 1 } else { 2 * s(n - 1) } }", '*', 1),
    };
    let factors: Vec<i64> = (1..=n)
        .rev()
        .map(|m| if kind == 2 { 2 } else { m })
        .collect();
    let mut steps: Vec<String> = (1..=n)
        .rev()
        .zip(&factors)
        .map(|(m, f)| format!("s({m}) = {f} {op} s({})", m - 1))
        .collect();
    steps.push(format!("s(0) = {base}"));
    let value = factors.iter().fold(base, |acc, &f| apply(op, acc, f));
    let expansion: Vec<String> = factors.iter().chain([&base]).map(i64::to_string).collect();
    steps.push(format!(
        "s({n}) = {} = {value}",
        expansion.join(&format!(" {op} "))
    ));
    Traced::new(
        &[definition.to_string(), format!("s({n})")],
        steps,
        value.to_string(),
    )
}

/// `let s = "lemon"; let out = ""; for c in s { out = c + out; } out`
fn reverse_word(rng: &mut Rng) -> Traced {
    let word = *rng.pick(&WORDS);
    let mut out = String::new();
    let mut steps = vec![format!("s = \"{word}\", out = \"\"")];
    for c in word.chars() {
        out.insert(0, c);
        steps.push(format!("c = '{c}': out = \"{out}\""));
    }
    Traced::new(
        &[
            format!("let s = \"{word}\";"),
            "let out = \"\";".to_string(),
            "for c in s { out = c + out; }".to_string(),
            "out".to_string(),
        ],
        steps,
        format!("\"{out}\""),
    )
}

/// `let s = "banana"; let n = 0; for c in s { if c == 'a' { n += 1; } } n`
fn count_letter(rng: &mut Rng) -> Traced {
    let word = *rng.pick(&WORDS);
    let letters: Vec<char> = word.chars().collect();
    let target = *rng.pick(&letters);
    let mut n = 0;
    let mut steps = vec![format!("s = \"{word}\", n = 0")];
    for c in word.chars() {
        if c == target {
            n += 1;
            steps.push(format!("'{c}' == '{target}', n = {n}"));
        } else {
            steps.push(format!("'{c}' != '{target}'"));
        }
    }
    Traced::new(
        &[
            format!("let s = \"{word}\";"),
            "let n = 0;".to_string(),
            format!("for c in s {{ if c == '{target}' {{ n += 1; }} }}"),
            "n".to_string(),
        ],
        steps,
        n.to_string(),
    )
}

/// `let out = ""; for i in 1..=5 { if i % 2 == 0 { out += "-"; } else { out += i; } } out`
fn build_string(rng: &mut Rng) -> Traced {
    let n = rng.range(3, 7);
    let k = rng.range(2, 3);
    let mark = *rng.pick(&["-", "x", "ab", "."]);
    let mut out = String::new();
    let mut steps = vec!["out = \"\"".to_string()];
    for i in 1..=n {
        if i % k == 0 {
            out.push_str(mark);
            steps.push(format!(
                "i = {i}: {i} % {k} == 0, add \"{mark}\": \"{out}\""
            ));
        } else {
            out.push_str(&i.to_string());
            steps.push(format!("i = {i}: add {i}: \"{out}\""));
        }
    }
    Traced::new(
        &[
            "let out = \"\";".to_string(),
            format!(
                "for i in 1..={n} {{ if i % {k} == 0 {{ out += \"{mark}\"; }} else {{ out += i; }} }}"
            ),
            "out".to_string(),
        ],
        steps,
        format!("\"{out}\""),
    )
}

/// `let words = ["fig", "apple"]; let best = ""; for w in words { if w.len() > best.len() { best = w; } } best`
/// (or the total length of the words).
fn longest_word(rng: &mut Rng) -> Traced {
    let count = rng.range(3, 4) as usize;
    let mut words: Vec<&str> = Vec::new();
    while words.len() < count {
        let w = *rng.pick(&WORDS);
        if !words.contains(&w) {
            words.push(w);
        }
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    let array = format!("[{}]", quoted.join(", "));
    let mut steps = vec![format!("words = {array}")];
    if rng.chance(0.5) {
        let mut best = "";
        steps.push("best = \"\" (length 0)".to_string());
        for w in &words {
            if w.len() > best.len() {
                steps.push(format!(
                    "\"{w}\" has {} > {} letters, best = \"{w}\"",
                    w.len(),
                    best.len()
                ));
                best = w;
            } else {
                steps.push(format!(
                    "\"{w}\" has {} <= {} letters, keep",
                    w.len(),
                    best.len()
                ));
            }
        }
        Traced::new(
            &[
                format!("let words = {array};"),
                "let best = \"\";".to_string(),
                "for w in words { if w.len() > best.len() { best = w; } }".to_string(),
                "best".to_string(),
            ],
            steps,
            format!("\"{best}\""),
        )
    } else {
        let mut total = 0;
        steps.push("total = 0".to_string());
        for w in &words {
            steps.push(format!(
                "\"{w}\" has {} letters, total = {total} + {} = {}",
                w.len(),
                w.len(),
                total + w.len()
            ));
            total += w.len();
        }
        Traced::new(
            &[
                format!("let words = {array};"),
                "let total = 0;".to_string(),
                "for w in words { total += w.len(); }".to_string(),
                "total".to_string(),
            ],
            steps,
            total.to_string(),
        )
    }
}

// ---- helpers ----

/// One operand of an expression: how it is written and its value.
#[derive(Clone)]
struct Term {
    source: String,
    value: i64,
}

fn term(name: &str, value: i64) -> Term {
    Term {
        source: name.to_string(),
        value,
    }
}

fn literal(value: i64) -> Term {
    Term {
        source: value.to_string(),
        value,
    }
}

/// `count` operands, each a variable from `vars` or a small literal, at
/// least one of them a variable.
fn operands(rng: &mut Rng, vars: &[(&str, i64)], count: usize) -> Vec<Term> {
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

fn ops(rng: &mut Rng, count: usize) -> Vec<char> {
    (0..count).map(|_| *rng.pick(&['+', '-', '*'])).collect()
}

/// Write `terms` joined by `ops` and evaluate with rhai's precedence (`* / %`
/// before `+ -`, left to right), one reduction per step. Returns the source,
/// the trace `source = substituted = ... = value`, and the value.
fn expression(terms: &[Term], ops: &[char]) -> (String, String, i64) {
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

fn render(values: &[i64], ops: &[char]) -> String {
    let mut out = values[0].to_string();
    for (op, v) in ops.iter().zip(&values[1..]) {
        out.push_str(&format!(" {op} {}", shown(*v)));
    }
    out
}

fn apply(op: char, a: i64, b: i64) -> i64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        '/' => a / b,
        _ => a % b,
    }
}

/// A comparison operator and whether it holds for `a` and `b`.
fn comparison(rng: &mut Rng, a: i64, b: i64) -> (&'static str, bool) {
    match rng.below(5) {
        0 => (">", a > b),
        1 => ("<", a < b),
        2 => (">=", a >= b),
        3 => ("<=", a <= b),
        _ => ("!=", a != b),
    }
}

/// A number as it appears inside a worked expression: negatives in brackets.
fn shown(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

/// Integers as a rhai array literal, `[1, -2, 3]`.
fn list(items: impl Iterator<Item = i64>) -> String {
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
