//! `code_trace` templates for levels 4 and 5: arrays, functions and
//! strings.

use super::programs::{apply, list, shown, Traced};
use crate::rng::Rng;

/// Words for string programs: short, lowercase, ASCII.
const WORDS: [&str; 16] = [
    "apple", "banana", "cherry", "fig", "grape", "kiwi", "lemon", "mango", "melon", "olive",
    "peach", "pear", "plum", "lime", "papaya", "date",
];

// ---- level 4: arrays ----

fn numbers(rng: &mut Rng, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(4, 6);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

/// `let xs = [5, 12, 3, 9]; let t = 0; for x in xs { if x > 6 { t += x; } } t`
pub(super) fn filter_sum(rng: &mut Rng) -> Traced {
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
pub(super) fn map_push(rng: &mut Rng) -> Traced {
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
pub(super) fn arg_max(rng: &mut Rng) -> Traced {
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
pub(super) fn index_updates(rng: &mut Rng) -> Traced {
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
pub(super) fn function_calls(rng: &mut Rng) -> Traced {
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
pub(super) fn recursion(rng: &mut Rng) -> Traced {
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
pub(super) fn reverse_word(rng: &mut Rng) -> Traced {
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
pub(super) fn count_letter(rng: &mut Rng) -> Traced {
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
pub(super) fn build_string(rng: &mut Rng) -> Traced {
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
pub(super) fn longest_word(rng: &mut Rng) -> Traced {
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
