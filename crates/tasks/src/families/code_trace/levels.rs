//! How each `code_trace` level composes a program from parts.
//!
//! | level | statements |
//! | --- | --- |
//! | 1 | `let`s and updates with `+ - *` |
//! | 2 | `if` / `else` statements and if-expressions over comparisons and `%`, with `/` and `%` |
//! | 3 | one loop (`for` over a range with an optional guard, or `while` over digits, growth or Euclid) with accumulators |
//! | 4 | arrays: filtered pushes, index scans, in-place updates, cell arithmetic |
//! | 5 | a helper function (chained or summed over a range), a recursive function, or strings |
//!
//! Every part draws its constants, so programs of one shape differ in their
//! numbers, and shapes combine: thousands of distinct programs per level.

use super::lang::{ints, run, Atom, Cond, End, Expr, Func, FuncBody, Program, Stmt, Trace, Value};
use crate::rng::Rng;

/// Programs tried before the fallback; a draw is refused when a value
/// leaves the allowed range, a division is by zero, or the trace is long.
const ATTEMPTS: usize = 500;
/// Most lines in a worked solution.
const MAX_STEPS: usize = 12;
/// Longest program, in bytes.
const MAX_SOURCE: usize = 220;

/// A program of `level` (1..=5) and its run.
pub(super) fn program(rng: &mut Rng, level: u32) -> (Program, Trace) {
    for _ in 0..ATTEMPTS {
        let program = match level {
            1 => straight(rng),
            2 => branching(rng),
            3 => looping(rng),
            4 => arrays(rng),
            _ => functions(rng),
        };
        if program.source().len() > MAX_SOURCE {
            continue;
        }
        if let Ok(trace) = run(&program) {
            if trace.steps.len() <= MAX_STEPS {
                return (program, trace);
            }
        }
    }
    fallback()
}

/// Reached only if every attempt were refused (no level comes close).
fn fallback() -> (Program, Trace) {
    let program = Program {
        funcs: Vec::new(),
        body: vec![Stmt::Let("a", Expr::int(2))],
        result: Expr::var("a").then('+', Atom::int(1)),
    };
    let trace = Trace {
        steps: vec![
            "a = 2".to_string(),
            "last expression: a + 1 = 2 + 1 = 3".to_string(),
        ],
        value: Value::Int(3),
    };
    (program, trace)
}

/// `count` operands, each a variable of `vars` or a literal in `lo..=hi`,
/// at least one a variable, joined by operators from `ops`.
fn expr(
    rng: &mut Rng,
    vars: &[&'static str],
    count: usize,
    ops: &[char],
    (lo, hi): (i64, i64),
) -> Expr {
    let mut atoms: Vec<Atom> = (0..count)
        .map(|_| {
            if rng.chance(0.6) {
                Atom::Var(one_of(rng, vars))
            } else {
                Atom::int(rng.range(lo, hi))
            }
        })
        .collect();
    if !atoms.iter().any(|a| matches!(a, Atom::Var(_))) {
        atoms[rng.below(count)] = Atom::Var(one_of(rng, vars));
    }
    let mut out = Expr::atom(atoms.remove(0));
    for atom in atoms {
        let op = *rng.pick(ops);
        // `x - x`, `x / x` and `x % x` are trivial: use a literal instead.
        let same = out.atoms.last() == Some(&atom) && matches!(op, '-' | '/' | '%');
        let atom = if same {
            Atom::int(rng.range(lo, hi))
        } else {
            atom
        };
        out = out.then(op, atom);
    }
    out
}

/// One of `names`.
fn one_of(rng: &mut Rng, names: &[&'static str]) -> &'static str {
    names[rng.below(names.len())]
}

const ARITH: [char; 3] = ['+', '-', '*'];
const ALL_OPS: [char; 5] = ['+', '-', '*', '/', '%'];

/// A comparison of `left` with a constant, or of two variables.
fn comparison(rng: &mut Rng, left: Expr, right: Expr) -> Cond {
    let cmp = *rng.pick(&[">", "<", ">=", "<=", "==", "!="]);
    Cond::new(left, cmp, right)
}

// ---- level 1 ----

fn straight(rng: &mut Rng) -> Program {
    let mut vars = vec!["a", "b"];
    let mut body = vec![
        Stmt::Let("a", Expr::int(rng.range(2, 15))),
        Stmt::Let("b", Expr::int(rng.range(2, 15))),
    ];
    let terms = rng.range(2, 3) as usize;
    body.push(Stmt::Let("c", expr(rng, &vars, terms, &ARITH, (2, 9))));
    vars.push("c");
    for _ in 0..rng.range(1, 3) {
        let target = *rng.pick(&vars);
        let stmt = match rng.below(4) {
            0 if !vars.contains(&"d") => {
                let terms = rng.range(2, 3) as usize;
                let e = expr(rng, &vars, terms, &ARITH, (2, 9));
                vars.push("d");
                Stmt::Let("d", e)
            }
            1 => Stmt::Assign(target, expr(rng, &vars, 2, &ARITH, (2, 9))),
            _ => {
                let operand = if rng.chance(0.5) {
                    Expr::int(rng.range(2, 9))
                } else {
                    Expr::var(one_of(rng, &vars))
                };
                Stmt::Update(target, *rng.pick(&ARITH), operand)
            }
        };
        body.push(stmt);
    }
    let terms = rng.range(1, 3) as usize;
    let result = expr(rng, &vars, terms, &ARITH, (2, 9));
    Program {
        funcs: Vec::new(),
        body,
        result,
    }
}

// ---- level 2 ----

/// A condition on `n` and `m`: a remainder test or a comparison.
fn condition(rng: &mut Rng, n: i64) -> Cond {
    match rng.below(3) {
        0 => {
            let k = rng.range(2, 5);
            // Half the time the remainder asked is the true one.
            let r = if rng.chance(0.5) {
                n % k
            } else {
                rng.range(0, k - 1)
            };
            let cmp = *rng.pick(&["==", "!="]);
            Cond::new(Expr::var("n").then('%', Atom::int(k)), cmp, Expr::int(r))
        }
        1 => comparison(rng, Expr::var("n"), Expr::var("m")),
        _ => {
            let left = expr(rng, &["n", "m"], 2, &['+', '-', '/'], (2, 9));
            let k = rng.range(5, 60);
            comparison(rng, left, Expr::int(k))
        }
    }
}

fn branch_body(rng: &mut Rng) -> Vec<Stmt> {
    (0..rng.range(1, 2))
        .map(|_| match rng.below(3) {
            0 => Stmt::Assign("r", expr(rng, &["n", "m"], 2, &ALL_OPS, (2, 9))),
            1 => Stmt::Update(
                "r",
                *rng.pick(&['+', '-']),
                expr(rng, &["n", "m"], 1, &ARITH, (2, 9)),
            ),
            _ => Stmt::Update("n", *rng.pick(&['+', '-', '/']), Expr::int(rng.range(2, 9))),
        })
        .collect()
}

fn branching(rng: &mut Rng) -> Program {
    let n = rng.range(10, 99);
    let mut body = vec![
        Stmt::Let("n", Expr::int(n)),
        Stmt::Let("m", Expr::int(rng.range(2, 30))),
    ];
    let result_vars: Vec<&'static str> = match rng.below(3) {
        0 => {
            let cond = condition(rng, n);
            let yes = expr(rng, &["n", "m"], 2, &ALL_OPS, (2, 9));
            let no = expr(rng, &["n", "m"], 2, &ALL_OPS, (2, 9));
            body.push(Stmt::LetIf("g", cond, yes, no));
            vec!["g", "n", "m"]
        }
        _ => {
            body.push(Stmt::Let("r", Expr::int(rng.range(0, 5))));
            let cond = condition(rng, n);
            let yes = branch_body(rng);
            let no = if rng.chance(0.7) {
                branch_body(rng)
            } else {
                Vec::new()
            };
            body.push(Stmt::If(cond, yes, no));
            if rng.chance(0.4) {
                let cond = condition(rng, n);
                body.push(Stmt::If(cond, branch_body(rng), Vec::new()));
            }
            vec!["r", "r", "n"]
        }
    };
    let terms = rng.range(1, 2) as usize;
    let mut result = expr(rng, &result_vars[..2], terms, &ALL_OPS, (2, 9));
    if !result.atoms.contains(&Atom::Var(result_vars[0])) {
        result = Expr::var(result_vars[0]).then(*rng.pick(&ALL_OPS), result.atoms[0].clone());
    }
    Program {
        funcs: Vec::new(),
        body,
        result,
    }
}

// ---- level 3 ----

fn looping(rng: &mut Rng) -> Program {
    match rng.below(6) {
        0..=2 => range_loop(rng),
        3 => digit_loop(rng),
        4 => growth_loop(rng),
        _ => euclid(rng),
    }
}

fn range_loop(rng: &mut Rng) -> Program {
    let start = rng.range(0, 4);
    let count = rng.range(3, 6);
    let inclusive = rng.chance(0.5);
    let end = if inclusive {
        start + count - 1
    } else {
        start + count
    };
    let with_count = rng.chance(0.3);
    let mut body = vec![Stmt::Let("s", Expr::int(rng.range(0, 5)))];
    if with_count {
        body.push(Stmt::Let("c", Expr::int(0)));
    }
    let update = |rng: &mut Rng| match rng.below(4) {
        0 => Stmt::Update("s", '+', expr(rng, &["i"], 2, &['+', '*'], (2, 4))),
        1 => Stmt::Update("s", *rng.pick(&['+', '-']), Expr::var("i")),
        2 => Stmt::Assign(
            "s",
            Expr::var("s")
                .then('*', Atom::int(2))
                .then(*rng.pick(&['+', '-']), Atom::Var("i")),
        ),
        _ => Stmt::Update("s", '+', Expr::var("i").then('*', Atom::Var("i"))),
    };
    let mut inner = vec![update(rng)];
    if with_count {
        inner.push(Stmt::Update("c", '+', Expr::int(1)));
    }
    let loop_body = if rng.chance(0.5) {
        let cond = match rng.below(3) {
            0 => Cond::new(
                Expr::var("i").then('%', Atom::int(rng.range(2, 3))),
                "==",
                Expr::int(0),
            ),
            1 => Cond::new(Expr::var("i"), ">", Expr::int(rng.range(start, end - 1))),
            _ => Cond::new(Expr::var("i"), "!=", Expr::int(rng.range(start, end))),
        };
        let other = if rng.chance(0.3) {
            vec![Stmt::Update("s", '-', Expr::int(1))]
        } else {
            Vec::new()
        };
        vec![Stmt::If(cond, inner, other)]
    } else {
        inner
    };
    body.push(Stmt::ForRange(
        "i",
        start,
        End::Lit(end),
        inclusive,
        loop_body,
    ));
    let result = if with_count {
        Expr::var("s").then(*rng.pick(&['+', '-', '*']), Atom::Var("c"))
    } else {
        Expr::var("s")
    };
    Program {
        funcs: Vec::new(),
        body,
        result,
    }
}

fn digit_loop(rng: &mut Rng) -> Program {
    let n = rng.range(100, 9999);
    let step = match rng.below(3) {
        0 => Stmt::Update("d", '+', Expr::var("n").then('%', Atom::int(10))),
        1 => Stmt::Assign(
            "d",
            Expr::var("d")
                .then('*', Atom::int(10))
                .then('+', Atom::Var("n"))
                .then('%', Atom::int(10)),
        ),
        _ => Stmt::If(
            Cond::new(
                Expr::var("n").then('%', Atom::int(rng.range(2, 3))),
                "==",
                Expr::int(0),
            ),
            vec![Stmt::Update("d", '+', Expr::int(1))],
            Vec::new(),
        ),
    };
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("n", Expr::int(n)),
            Stmt::Let("d", Expr::int(0)),
            Stmt::While(
                Cond::new(Expr::var("n"), ">", Expr::int(0)),
                vec![step, Stmt::Update("n", '/', Expr::int(10))],
            ),
        ],
        result: Expr::var("d"),
    }
}

fn growth_loop(rng: &mut Rng) -> Program {
    let x = rng.range(1, 6);
    let limit = rng.range(20, 120);
    let factor = rng.range(2, 3);
    let shift = rng.range(0, 3);
    let mut grow = Expr::var("x").then('*', Atom::int(factor));
    if shift > 0 {
        grow = grow.then('+', Atom::int(shift));
    }
    let result = match rng.below(3) {
        0 => Expr::var("c"),
        1 => Expr::var("x"),
        _ => Expr::var("x").then('-', Atom::Var("c")),
    };
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("x", Expr::int(x)),
            Stmt::Let("c", Expr::int(0)),
            Stmt::While(
                Cond::new(Expr::var("x"), "<", Expr::int(limit)),
                vec![
                    Stmt::Assign("x", grow),
                    Stmt::Update("c", '+', Expr::int(1)),
                ],
            ),
        ],
        result,
    }
}

/// Euclid's algorithm, the larger number first (the other order is the
/// same question, so it is never asked).
fn euclid(rng: &mut Rng) -> Program {
    let common = rng.range(1, 12);
    let (p, q) = (common * rng.range(2, 16), common * rng.range(1, 16));
    let (a, b) = (p.max(q), p.min(q));
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("a", Expr::int(a)),
            Stmt::Let("b", Expr::int(b)),
            Stmt::While(
                Cond::new(Expr::var("b"), "!=", Expr::int(0)),
                vec![
                    Stmt::Let("t", Expr::var("a").then('%', Atom::Var("b"))),
                    Stmt::Assign("a", Expr::var("b")),
                    Stmt::Assign("b", Expr::var("t")),
                ],
            ),
        ],
        result: Expr::var("a"),
    }
}

// ---- level 4 ----

fn numbers(rng: &mut Rng, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(4, 6);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

fn arrays(rng: &mut Rng) -> Program {
    match rng.below(4) {
        0 => filtered_push(rng),
        1 => index_scan(rng),
        2 => in_place(rng),
        _ => cell_arithmetic(rng),
    }
}

fn filtered_push(rng: &mut Rng) -> Program {
    let xs = numbers(rng, -5, 15);
    let terms = rng.range(1, 2) as usize;
    let value = expr(rng, &["x"], terms, &ARITH, (2, 4));
    let push = Stmt::Push("ys", value);
    let body = if rng.chance(0.7) {
        let cond = match rng.below(2) {
            0 => {
                let k = rng.range(0, 10);
                comparison(rng, Expr::var("x"), Expr::int(k))
            }
            _ => Cond::new(
                Expr::var("x").then('%', Atom::int(rng.range(2, 3))),
                one_of(rng, &["==", "!="]),
                Expr::int(0),
            ),
        };
        vec![Stmt::If(cond, vec![push], Vec::new())]
    } else {
        vec![push]
    };
    let result = match rng.below(3) {
        0 => Expr::atom(Atom::Len("ys")),
        _ => Expr::var("ys"),
    };
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("xs", Expr::atom(Atom::Lit(ints(&xs)))),
            Stmt::Let("ys", Expr::atom(Atom::Lit(ints(&[])))),
            Stmt::ForEach("x", "xs", body),
        ],
        result,
    }
}

fn index_scan(rng: &mut Rng) -> Program {
    let xs = numbers(rng, 1, 30);
    let at = |v: &'static str| Atom::Index("xs", Box::new(Atom::Var(v)));
    let cmp = *rng.pick(&[">", "<"]);
    let (init, stmt, result) = match rng.below(3) {
        // Position of the largest (or smallest).
        0 => (
            0,
            Stmt::If(
                Cond::new(Expr::atom(at("i")), cmp, Expr::atom(at("best"))),
                vec![Stmt::Assign("best", Expr::var("i"))],
                Vec::new(),
            ),
            Expr::var("best"),
        ),
        // Weighted sum by position.
        1 => (
            0,
            Stmt::Update("best", '+', Expr::atom(at("i")).then('*', Atom::Var("i"))),
            Expr::var("best"),
        ),
        // Count of rises (or falls) from the previous element.
        _ => (
            0,
            Stmt::If(
                Cond::new(
                    Expr::atom(at("i")),
                    cmp,
                    Expr::atom(Atom::Index("xs", Box::new(Atom::Var("j")))),
                ),
                vec![Stmt::Update("best", '+', Expr::int(1))],
                Vec::new(),
            ),
            Expr::var("best"),
        ),
    };
    let mut body = Vec::new();
    let needs_previous = matches!(&stmt, Stmt::If(c, ..) if c.right.atoms[0] == Atom::Index("xs", Box::new(Atom::Var("j"))));
    if needs_previous {
        body.push(Stmt::Let("j", Expr::var("i").then('-', Atom::int(1))));
    }
    body.push(stmt);
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("xs", Expr::atom(Atom::Lit(ints(&xs)))),
            Stmt::Let("best", Expr::int(init)),
            Stmt::ForRange("i", 1, End::Len("xs"), false, body),
        ],
        result,
    }
}

fn in_place(rng: &mut Rng) -> Program {
    let xs = numbers(rng, -5, 12);
    let cell = Atom::Index("xs", Box::new(Atom::Var("i")));
    let mut value =
        Expr::atom(cell.clone()).then(*rng.pick(&['*', '+']), Atom::int(rng.range(2, 4)));
    if rng.chance(0.5) {
        value = value.then(*rng.pick(&['+', '-']), Atom::Var("i"));
    }
    let set = Stmt::SetIndex("xs", Atom::Var("i"), value);
    let body = if rng.chance(0.5) {
        let k = rng.range(0, 8);
        let cond = comparison(rng, Expr::atom(cell), Expr::int(k));
        vec![Stmt::If(cond, vec![set], Vec::new())]
    } else {
        vec![set]
    };
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("xs", Expr::atom(Atom::Lit(ints(&xs)))),
            Stmt::ForRange("i", 0, End::Len("xs"), false, body),
        ],
        result: Expr::var("xs"),
    }
}

fn cell_arithmetic(rng: &mut Rng) -> Program {
    let xs: Vec<i64> = (0..4).map(|_| rng.range(1, 12)).collect();
    let mut body = vec![Stmt::Let("xs", Expr::atom(Atom::Lit(ints(&xs))))];
    let cell = |k: usize| Atom::Index("xs", Box::new(Atom::int(k as i64)));
    let mut len = xs.len();
    for _ in 0..rng.range(2, 3) {
        let j = rng.below(len);
        // Two different cells, so no step is a trivial `x - x`.
        let k = (j + 1 + rng.below(len - 1)) % len;
        let value = Expr::atom(cell(j)).then(*rng.pick(&ARITH), cell(k));
        if rng.chance(0.3) {
            body.push(Stmt::Push("xs", value));
            len += 1;
        } else {
            body.push(Stmt::SetIndex(
                "xs",
                Atom::int(rng.below(len) as i64),
                value,
            ));
        }
    }
    Program {
        funcs: Vec::new(),
        body,
        result: Expr::var("xs"),
    }
}

// ---- level 5 ----

fn functions(rng: &mut Rng) -> Program {
    match rng.below(4) {
        0 => chained_calls(rng),
        1 => summed_calls(rng),
        2 => recursion(rng),
        _ => strings(rng),
    }
}

/// `fn g(x) { ... }`: an expression of x, or an if-expression.
fn helper(rng: &mut Rng) -> Func {
    let body = if rng.chance(0.5) {
        let terms = rng.range(2, 3) as usize;
        FuncBody::Expr(expr(rng, &["x"], terms, &ALL_OPS, (2, 9)))
    } else {
        let cond = match rng.below(2) {
            0 => Cond::new(Expr::var("x").then('%', Atom::int(2)), "==", Expr::int(0)),
            _ => {
                let k = rng.range(2, 12);
                comparison(rng, Expr::var("x"), Expr::int(k))
            }
        };
        FuncBody::If(
            cond,
            expr(rng, &["x"], 2, &ALL_OPS, (2, 9)),
            expr(rng, &["x"], 2, &ALL_OPS, (2, 9)),
        )
    };
    Func {
        name: "g",
        param: "x",
        body,
    }
}

fn call(arg: Expr) -> Atom {
    Atom::Call("g", Box::new(arg))
}

fn chained_calls(rng: &mut Rng) -> Program {
    let names = ["a", "b", "c"];
    let count = rng.range(2, 3) as usize;
    let mut body = vec![Stmt::Let(
        "a",
        Expr::atom(call(Expr::int(rng.range(1, 15)))),
    )];
    for k in 1..count {
        body.push(Stmt::Let(
            names[k],
            Expr::atom(call(Expr::var(names[k - 1]))),
        ));
    }
    let result = if rng.chance(0.5) {
        let mut sum = Expr::var("a");
        for name in &names[1..count] {
            sum = sum.then('+', Atom::Var(name));
        }
        sum
    } else {
        Expr::var(names[count - 1])
    };
    Program {
        funcs: vec![helper(rng)],
        body,
        result,
    }
}

fn summed_calls(rng: &mut Rng) -> Program {
    let end = rng.range(2, 4);
    Program {
        funcs: vec![helper(rng)],
        body: vec![
            Stmt::Let("t", Expr::int(0)),
            Stmt::ForRange(
                "i",
                1,
                End::Lit(end),
                true,
                vec![Stmt::Update("t", '+', Expr::atom(call(Expr::var("i"))))],
            ),
        ],
        result: Expr::var("t"),
    }
}

/// `fn r(n) { if n <= 0 { base } else { combine(n, r(n - 1)) } } r(k)`.
fn recursion(rng: &mut Rng) -> Program {
    let inner = Atom::Call("r", Box::new(Expr::var("n").then('-', Atom::int(1))));
    let combine = match rng.below(4) {
        0 => Expr::var("n").then('+', inner),
        1 => Expr::var("n").then('*', inner),
        2 => Expr::int(2)
            .then('*', inner)
            .then('+', Atom::int(rng.range(0, 3))),
        _ => Expr::atom(inner)
            .then('+', Atom::Var("n"))
            .then('*', Atom::Var("n")),
    };
    let base = rng.range(0, 3);
    Program {
        funcs: vec![Func {
            name: "r",
            param: "n",
            body: FuncBody::If(
                Cond::new(Expr::var("n"), "<=", Expr::int(0)),
                Expr::int(base),
                combine,
            ),
        }],
        body: Vec::new(),
        result: Expr::atom(Atom::Call("r", Box::new(Expr::int(rng.range(2, 5))))),
    }
}

/// Words for string programs: short, lowercase.
const WORDS: [&str; 12] = [
    "ab", "cat", "fig", "kiwi", "lemon", "plum", "sun", "tea", "x", "zoo", "moon", "egg",
];

fn strings(rng: &mut Rng) -> Program {
    let count = rng.range(3, 4) as usize;
    let words: Vec<Value> = (0..count)
        .map(|_| Value::Str(rng.pick(&WORDS).to_string()))
        .collect();
    let k = rng.range(1, 4);
    let cmp = *rng.pick(&[">", "<", "=="]);
    let take = Stmt::Update("s", '+', Expr::var("w"));
    let body = vec![Stmt::If(
        Cond::new(Expr::atom(Atom::Len("w")), cmp, Expr::int(k)),
        vec![take],
        if rng.chance(0.4) {
            vec![Stmt::Update(
                "s",
                '+',
                Expr::atom(Atom::Lit(Value::Str("-".to_string()))),
            )]
        } else {
            Vec::new()
        },
    )];
    let result = if rng.chance(0.5) {
        Expr::var("s")
    } else {
        Expr::atom(Atom::Len("s"))
    };
    Program {
        funcs: Vec::new(),
        body: vec![
            Stmt::Let("ws", Expr::atom(Atom::Lit(Value::Arr(words)))),
            Stmt::Let("s", Expr::atom(Atom::Lit(Value::Str(String::new())))),
            Stmt::ForEach("w", "ws", body),
        ],
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox;
    use std::collections::HashSet;

    const SEEDS: u64 = 300;

    /// The interpreter's value is what the sandbox computes: two
    /// independent evaluations of every program.
    #[test]
    fn traced_values_are_what_the_sandbox_computes() {
        for level in 1..=5 {
            for seed in 0..SEEDS {
                let (program, trace) = program(&mut Rng::new(seed), level);
                let source = program.source();
                assert_eq!(
                    sandbox::run(&source).as_ref(),
                    Ok(&trace.value.literal()),
                    "level {level} seed {seed}: {source}"
                );
                assert!(trace.steps.len() <= MAX_STEPS && source.is_ascii());
            }
        }
    }

    #[test]
    fn the_fallback_is_never_needed() {
        let fallback = fallback().0.source();
        for level in 1..=5 {
            for seed in 0..SEEDS {
                assert_ne!(program(&mut Rng::new(seed), level).0.source(), fallback);
            }
        }
    }

    /// Distinct programs (by key) among 20,000 draws per level; the full
    /// counts are printed by `distinct_programs_per_level` (ignored, slow).
    #[test]
    fn levels_hold_many_distinct_programs() {
        for level in 1..=5 {
            let keys: HashSet<String> = (0..20_000)
                .map(|seed| program(&mut Rng::new(seed), level).0.key())
                .collect();
            assert!(
                keys.len() >= 5_000,
                "level {level}: {} distinct programs in 20,000 draws",
                keys.len()
            );
        }
    }

    /// `cargo test -p verity-tasks --release distinct_programs_per_level -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn distinct_programs_per_level() {
        for level in 1..=5 {
            let mut keys = HashSet::new();
            let mut shapes = HashSet::new();
            for seed in 0..1_000_000u64 {
                let key = program(&mut Rng::new(seed), level).0.key();
                shapes.insert(key.replace(|c: char| c.is_ascii_digit(), ""));
                keys.insert(key);
            }
            println!(
                "level {level}: {} distinct programs, {} shapes (numbers removed) in 1,000,000 draws",
                keys.len(),
                shapes.len()
            );
        }
    }
}
