//! How each `code_io` level composes a function from parts.
//!
//! | level | shape | parts |
//! | --- | --- | --- |
//! | 1 | `a * g(x) + b`, a and b hidden | six g |
//! | 2 | `if` / `else if` on one or two integers | conditions, arms |
//! | 3 | sum / count / product / max / min over an array or `1..=n` | filter, map |
//! | 4 | two array stages, or one string stage and an ending | filter, map, reverse, running sums; keep, replace, double |
//! | 5 | digits, divisors, neighbours, runs, first / last index, pairs | compound conditions, maps |

use super::parts::{CharPred, Map, Pred, LETTERS};
use super::specs::{
    array, check, int, ints, nonzero, paren, plus, split_cases, string, Case, Spec, NAME,
};
use std::cell::Cell;

use crate::rng::Rng;

/// Functions tried per problem before the fallback; a draw is refused only
/// when its examples cannot tell it apart from a constant or miss a branch.
const ATTEMPTS: usize = 200;

/// A function to write at `level` (1..=5).
pub(super) fn spec(rng: &mut Rng, level: u32) -> Spec {
    for _ in 0..ATTEMPTS {
        let drawn = match level {
            1 => hidden_constants(rng),
            2 => conditional(rng),
            3 => accumulate(rng),
            4 => pipeline(rng),
            _ => algorithm(rng),
        };
        if let Some(spec) = drawn {
            return spec;
        }
    }
    fallback()
}

/// Reached only if every attempt were refused (no level comes close).
fn fallback() -> Spec {
    let cases: Vec<(i64, i64)> = (0..12).map(|x| (x, x + 1)).collect();
    let tests = |part: &[(i64, i64)]| {
        part.iter()
            .map(|&(x, y)| crate::problem::CodeTest {
                args: vec![int(x)],
                expected: int(y),
            })
            .collect::<Vec<_>>()
    };
    Spec {
        params: "x",
        task: "returns x + 1".to_string(),
        source: "fn f(x) { x + 1 }".to_string(),
        reasoning: vec!["Add 1.".to_string()],
        shown: tests(&cases[..4]),
        hidden: tests(&cases[4..]),
    }
}

/// Assemble a spec from its parts, adding a check of the first example.
fn finish(
    params: &'static str,
    task: String,
    body: String,
    mut reasoning: Vec<String>,
    (shown, hidden): (Vec<crate::problem::CodeTest>, Vec<crate::problem::CodeTest>),
) -> Spec {
    reasoning.push(check(&shown[0]));
    Spec {
        params,
        task,
        source: format!("fn {NAME}({params}) {{ {body} }}"),
        reasoning,
        shown,
        hidden,
    }
}

// ---- level 1: a * g(x) + b with hidden a and b ----

#[derive(Clone, Copy)]
enum Base {
    X,
    Square,
    Cube,
    Triangle,
    Third,
    Mod5,
}

impl Base {
    const ALL: [Base; 6] = [
        Base::X,
        Base::Square,
        Base::Cube,
        Base::Triangle,
        Base::Third,
        Base::Mod5,
    ];

    fn code(self) -> &'static str {
        match self {
            Base::X => "x",
            Base::Square => "x * x",
            Base::Cube => "x * x * x",
            Base::Triangle => "x * (x + 1)",
            Base::Third => "x / 3",
            Base::Mod5 => "x % 5",
        }
    }

    fn apply(self, x: i64) -> i64 {
        match self {
            Base::X => x,
            Base::Square => x * x,
            Base::Cube => x * x * x,
            Base::Triangle => x * (x + 1),
            Base::Third => x / 3,
            Base::Mod5 => x % 5,
        }
    }

    /// `a * g` would bind differently without brackets.
    fn bracketed(self) -> String {
        match self {
            Base::Third | Base::Mod5 => format!("({})", self.code()),
            _ => self.code().to_string(),
        }
    }

    fn inputs(self) -> (i64, i64) {
        match self {
            Base::Cube => (-6, 6),
            Base::Third | Base::Mod5 => (0, 40),
            _ => (-12, 12),
        }
    }
}

fn hidden_constants(rng: &mut Rng) -> Option<Spec> {
    let g = *rng.pick(&Base::ALL);
    let a = nonzero(rng, -9, 9);
    let b = rng.range(-20, 20);
    let (lo, hi) = g.inputs();
    let tests = split_cases(rng, |rng| {
        let x = rng.range(lo, hi);
        Case::new(vec![int(x)], int(a * g.apply(x) + b))
    })?;
    // Two examples with different g(x) fix a and b.
    let points: Vec<(i64, i64, i64)> = tests
        .0
        .iter()
        .map(|t| {
            let x: i64 = t.args[0].parse().unwrap_or_default();
            (x, g.apply(x), t.expected.parse().unwrap_or_default())
        })
        .collect();
    let (p, q) = points
        .iter()
        .enumerate()
        .find_map(|(i, p)| points[i + 1..].iter().find(|q| q.1 != p.1).map(|q| (p, q)))?;
    let term = match a {
        1 => g.code().to_string(),
        -1 => format!(
            "-{}",
            if matches!(g, Base::X) {
                "x".to_string()
            } else {
                format!("({})", g.code())
            }
        ),
        _ => format!("{a} * {}", g.bracketed()),
    };
    let gx = g.bracketed();
    let reasoning = vec![
        format!(
            "g = {}: f({}) = {} with g = {}, f({}) = {} with g = {}.",
            g.code(),
            p.0,
            p.2,
            p.1,
            q.0,
            q.2,
            q.1
        ),
        format!(
            "a = ({} - {}) / ({} - {}) = {a}",
            q.2,
            paren(p.2),
            q.1,
            paren(p.1)
        ),
        format!("b = {} - {} * {} = {b}", p.2, paren(a), paren(p.1)),
    ];
    Some(finish(
        "x",
        format!("returns a * {gx} + b for fixed integers a and b (find them from the examples)"),
        format!("{term}{}", plus(b)),
        reasoning,
        tests,
    ))
}

// ---- level 2: conditionals ----

/// A branch's value, from one integer `x`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arm {
    Plus(i64),
    Times(i64),
    Minus(i64),
    Const(i64),
    Square,
    Div(i64),
    Mod(i64),
}

impl Arm {
    fn draw(rng: &mut Rng) -> Arm {
        match rng.below(7) {
            0 => Arm::Plus(nonzero(rng, -9, 9)),
            1 => Arm::Times(*rng.pick(&[-3, -2, -1, 2, 3, 4, 5])),
            2 => Arm::Minus(rng.range(0, 20)),
            3 => Arm::Const(rng.range(-9, 20)),
            4 => Arm::Square,
            5 => Arm::Div(rng.range(2, 4)),
            _ => Arm::Mod(rng.range(2, 5)),
        }
    }

    fn code(self) -> String {
        match self {
            Arm::Plus(c) => format!("x{}", plus(c)),
            Arm::Times(-1) => "-x".to_string(),
            Arm::Times(c) => format!("x * {c}"),
            Arm::Minus(c) => format!("{c} - x"),
            Arm::Const(c) => c.to_string(),
            Arm::Square => "x * x".to_string(),
            Arm::Div(c) => format!("x / {c}"),
            Arm::Mod(c) => format!("x % {c}"),
        }
    }

    fn apply(self, x: i64) -> i64 {
        match self {
            Arm::Plus(c) => x + c,
            Arm::Times(c) => x * c,
            Arm::Minus(c) => c - x,
            Arm::Const(c) => c,
            Arm::Square => x * x,
            Arm::Div(c) => x / c,
            Arm::Mod(c) => x % c,
        }
    }
}

/// A branch's value from two integers `a` and `b`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PairArm {
    Sum,
    Diff,
    BackDiff,
    Product,
    A,
    B,
    ATimes(i64),
    BPlus(i64),
}

impl PairArm {
    fn draw(rng: &mut Rng) -> PairArm {
        match rng.below(8) {
            0 => PairArm::Sum,
            1 => PairArm::Diff,
            2 => PairArm::BackDiff,
            3 => PairArm::Product,
            4 => PairArm::A,
            5 => PairArm::B,
            6 => PairArm::ATimes(rng.range(2, 5)),
            _ => PairArm::BPlus(nonzero(rng, -9, 9)),
        }
    }

    fn code(self) -> String {
        match self {
            PairArm::Sum => "a + b".to_string(),
            PairArm::Diff => "a - b".to_string(),
            PairArm::BackDiff => "b - a".to_string(),
            PairArm::Product => "a * b".to_string(),
            PairArm::A => "a".to_string(),
            PairArm::B => "b".to_string(),
            PairArm::ATimes(c) => format!("a * {c}"),
            PairArm::BPlus(c) => format!("b{}", plus(c)),
        }
    }

    fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            PairArm::Sum => a + b,
            PairArm::Diff => a - b,
            PairArm::BackDiff => b - a,
            PairArm::Product => a * b,
            PairArm::A => a,
            PairArm::B => b,
            PairArm::ATimes(c) => a * c,
            PairArm::BPlus(c) => b + c,
        }
    }
}

/// A comparison of `a` and `b`.
#[derive(Clone, Copy)]
enum PairCond {
    Greater,
    Less,
    Equal,
    SumAbove(i64),
}

impl PairCond {
    fn code(self) -> String {
        match self {
            PairCond::Greater => "a > b".to_string(),
            PairCond::Less => "a < b".to_string(),
            PairCond::Equal => "a == b".to_string(),
            PairCond::SumAbove(k) => format!("a + b > {k}"),
        }
    }

    fn holds(self, a: i64, b: i64) -> bool {
        match self {
            PairCond::Greater => a > b,
            PairCond::Less => a < b,
            PairCond::Equal => a == b,
            PairCond::SumAbove(k) => a + b > k,
        }
    }
}

fn conditional(rng: &mut Rng) -> Option<Spec> {
    match rng.below(10) {
        0..=4 => two_branches(rng),
        5..=6 => piecewise(rng),
        _ => pair_branches(rng),
    }
}

fn two_branches(rng: &mut Rng) -> Option<Spec> {
    let cond = Pred::simple(rng, -10, 10);
    let (yes, no) = (Arm::draw(rng), Arm::draw(rng));
    if yes == no {
        return None;
    }
    let tests = split_cases(rng, |rng| {
        let x = rng.range(-20, 20);
        let holds = cond.holds(x);
        let y = if holds { yes.apply(x) } else { no.apply(x) };
        Case {
            args: vec![int(x)],
            expected: int(y),
            branch: usize::from(holds),
        }
    })?;
    let (c, y, n) = (cond.code("x"), yes.code(), no.code());
    Some(finish(
        "x",
        format!("returns {y} when {c}, otherwise {n}"),
        format!("if {c} {{ {y} }} else {{ {n} }}"),
        vec![format!("Branch on {c}: {y} when it holds, else {n}.")],
        tests,
    ))
}

fn piecewise(rng: &mut Rng) -> Option<Spec> {
    let low = rng.range(-10, 4);
    let high = rng.range(low + 3, 10);
    let arms = [Arm::draw(rng), Arm::draw(rng), Arm::draw(rng)];
    if arms[0] == arms[1] || arms[1] == arms[2] {
        return None;
    }
    let tests = split_cases(rng, |rng| {
        let x = rng.range(-20, 20);
        let branch = if x < low {
            0
        } else if x < high {
            1
        } else {
            2
        };
        Case {
            args: vec![int(x)],
            expected: int(arms[branch].apply(x)),
            branch,
        }
    })?;
    let [a, b, c] = arms.map(Arm::code);
    Some(finish(
        "x",
        format!("returns {a} when x < {low}, {b} when {low} <= x < {high}, otherwise {c}"),
        format!("if x < {low} {{ {a} }} else if x < {high} {{ {b} }} else {{ {c} }}"),
        vec![format!(
            "Test x < {low} first, then x < {high}; what is left is x >= {high}."
        )],
        tests,
    ))
}

fn pair_branches(rng: &mut Rng) -> Option<Spec> {
    let cond = match rng.below(4) {
        0 => PairCond::Greater,
        1 => PairCond::Less,
        2 => PairCond::Equal,
        _ => PairCond::SumAbove(rng.range(-5, 10)),
    };
    let (yes, no) = (PairArm::draw(rng), PairArm::draw(rng));
    if yes == no {
        return None;
    }
    let equal_often = matches!(cond, PairCond::Equal);
    let tests = split_cases(rng, |rng| {
        let a = rng.range(-12, 12);
        let b = if equal_often && rng.chance(0.4) {
            a
        } else {
            rng.range(-12, 12)
        };
        let holds = cond.holds(a, b);
        let y = if holds {
            yes.apply(a, b)
        } else {
            no.apply(a, b)
        };
        Case {
            args: vec![int(a), int(b)],
            expected: int(y),
            branch: usize::from(holds),
        }
    })?;
    let (c, y, n) = (cond.code(), yes.code(), no.code());
    Some(finish(
        "a, b",
        format!("returns {y} when {c}, otherwise {n}"),
        format!("if {c} {{ {y} }} else {{ {n} }}"),
        vec![format!("Branch on {c}: {y} when it holds, else {n}.")],
        tests,
    ))
}

// ---- level 3: one loop with an accumulator ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Count,
    Product,
    Max,
    Min,
}

/// What a loop runs over: the elements `x` of `xs`, or `i` in `1..=n`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Domain {
    Array,
    Range,
}

impl Domain {
    fn var(self) -> &'static str {
        match self {
            Domain::Array => "x",
            Domain::Range => "i",
        }
    }

    fn param(self) -> &'static str {
        match self {
            Domain::Array => "xs",
            Domain::Range => "n",
        }
    }

    fn header(self) -> &'static str {
        match self {
            Domain::Array => "for x in xs",
            Domain::Range => "for i in 1..=n",
        }
    }

    fn over(self) -> &'static str {
        match self {
            Domain::Array => "the elements x of xs",
            Domain::Range => "i in 1..=n",
        }
    }
}

fn accumulate(rng: &mut Rng) -> Option<Spec> {
    let domain = if rng.chance(0.6) {
        Domain::Array
    } else {
        Domain::Range
    };
    let agg = match (domain, rng.below(5)) {
        (_, 0 | 1) => Agg::Sum,
        (_, 2) => Agg::Count,
        (Domain::Array, 3) => Agg::Max,
        (Domain::Array, _) => Agg::Min,
        (Domain::Range, _) => Agg::Product,
    };
    let (lo, hi) = match domain {
        Domain::Array => (-10, 10),
        Domain::Range => (1, 12),
    };
    let pred = match agg {
        Agg::Max | Agg::Min => None,
        Agg::Count => Some(Pred::simple(rng, lo, hi)),
        _ => rng.chance(0.75).then(|| Pred::simple(rng, lo, hi)),
    };
    let map = match agg {
        Agg::Count => Map::Id,
        Agg::Product => *rng.pick(&[Map::Id, Map::Add(1), Map::Add(2)]),
        _ => Map::draw(rng),
    };
    let v = domain.var();
    let value = |x: i64| map.apply(x);
    // Whether the condition ever held and ever failed on the inputs.
    let outcomes = Cell::new((false, false));
    let fold = |items: &[i64]| -> i64 {
        let picked = items
            .iter()
            .copied()
            .filter(|&x| {
                let holds = pred.as_ref().is_none_or(|p| p.holds(x));
                let (yes, no) = outcomes.get();
                outcomes.set((yes || holds, no || !holds));
                holds
            })
            .map(value);
        match agg {
            Agg::Sum => picked.sum(),
            Agg::Count => picked.count() as i64,
            Agg::Product => picked.product(),
            Agg::Max => picked.max().unwrap_or_default(),
            Agg::Min => picked.min().unwrap_or_default(),
        }
    };
    let tests = split_cases(rng, |rng| match domain {
        Domain::Array => {
            let xs = match agg {
                Agg::Max | Agg::Min => array(rng, 1, 7, -20, 20),
                _ => array(rng, 0, 7, -20, 20),
            };
            Case::new(vec![ints(&xs)], int(fold(&xs)))
        }
        Domain::Range => {
            let n = rng.range(0, if agg == Agg::Product { 8 } else { 15 });
            let items: Vec<i64> = (1..=n).collect();
            Case::new(vec![int(n)], int(fold(&items)))
        }
    })?;
    if pred.is_some() && outcomes.get() != (true, true) {
        return None;
    }
    let m = map.code(v);
    let guard = |statement: String| match &pred {
        Some(p) => format!("if {} {{ {statement} }}", p.code(v)),
        None => statement,
    };
    let with = pred
        .as_ref()
        .map(|p| format!(" with {}", p.code(v)))
        .unwrap_or_default();
    let (header, over) = (domain.header(), domain.over());
    let (task, body, plan) = match agg {
        Agg::Sum => (
            format!("returns the sum of {m} over {over}{with} (0 when there are none)"),
            format!(
                "let t = 0; {header} {{ {} }} t",
                guard(format!("t += {m};"))
            ),
            format!("Start t at 0; for each {v}{with}, add {m} to t."),
        ),
        Agg::Count => (
            format!(
                "returns how many of {over} have {}",
                with.trim_start_matches(" with ")
            ),
            format!(
                "let c = 0; {header} {{ {} }} c",
                guard("c += 1;".to_string())
            ),
            format!("Count each {v}{with}."),
        ),
        Agg::Product => (
            format!("returns the product of {m} over {over}{with} (1 when there are none)"),
            format!(
                "let p = 1; {header} {{ {} }} p",
                guard(format!("p *= {m};"))
            ),
            format!("Start p at 1; for each {v}{with}, multiply p by {m}."),
        ),
        Agg::Max | Agg::Min => {
            let (word, cmp) = if agg == Agg::Max {
                ("largest", ">")
            } else {
                ("smallest", "<")
            };
            let first = map.code("xs[0]");
            (
                format!("returns the {word} value of {m} over the elements x of the non-empty array xs"),
                format!(
                    "let best = {first}; for x in xs {{ let v = {m}; if v {cmp} best {{ best = v; }} }} best"
                ),
                format!("Start from {first} and keep any {m} that is {word}."),
            )
        }
    };
    Some(finish(domain.param(), task, body, vec![plan], tests))
}

// ---- level 4: array and string pipelines ----

#[derive(Clone, PartialEq, Eq)]
enum Stage {
    Filter(Pred),
    Map(Map),
    Reverse,
    RunningSums,
}

impl Stage {
    fn apply(&self, xs: Vec<i64>) -> Vec<i64> {
        match self {
            Stage::Filter(p) => xs.into_iter().filter(|&x| p.holds(x)).collect(),
            Stage::Map(m) => xs.into_iter().map(|x| m.apply(x)).collect(),
            Stage::Reverse => xs.into_iter().rev().collect(),
            Stage::RunningSums => xs
                .into_iter()
                .scan(0, |t, x| {
                    *t += x;
                    Some(*t)
                })
                .collect(),
        }
    }

    /// rhai building `into` from `from`.
    fn code(&self, from: &str, into: &str) -> String {
        match self {
            Stage::Filter(p) => format!(
                "let {into} = []; for x in {from} {{ if {} {{ {into}.push(x); }} }}",
                p.code("x")
            ),
            Stage::Map(m) => format!(
                "let {into} = []; for x in {from} {{ {into}.push({}); }}",
                m.code("x")
            ),
            Stage::Reverse => {
                format!("let {into} = []; for x in {from} {{ {into}.insert(0, x); }}")
            }
            Stage::RunningSums => {
                format!("let {into} = []; let t = 0; for x in {from} {{ t += x; {into}.push(t); }}")
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Stage::Filter(p) => format!("keeps the elements x with {}", p.code("x")),
            Stage::Map(m) => format!("replaces each element x by {}", m.code("x")),
            Stage::Reverse => "reverses the order".to_string(),
            Stage::RunningSums => {
                "replaces the array by its running sums (element i is the sum of elements 0..=i)"
                    .to_string()
            }
        }
    }
}

fn pipeline(rng: &mut Rng) -> Option<Spec> {
    if rng.chance(0.3) {
        return string_pipeline(rng);
    }
    let first = if rng.chance(0.5) {
        Stage::Filter(Pred::simple(rng, -10, 10))
    } else {
        Stage::Map(Map::draw_other(rng))
    };
    let second = match rng.below(4) {
        0 => Stage::Filter(Pred::simple(rng, -10, 10)),
        1 => Stage::Map(Map::draw_other(rng)),
        2 => Stage::Reverse,
        _ => Stage::RunningSums,
    };
    if std::mem::discriminant(&first) == std::mem::discriminant(&second) {
        return None;
    }
    // Every stage must change some input: a filter that keeps everything,
    // say, would make the function another one.
    let changed = Cell::new((false, false));
    let tests = split_cases(rng, |rng| {
        let xs = array(rng, 0, 7, -20, 20);
        let middle = first.apply(xs.clone());
        let out = second.apply(middle.clone());
        let (one, two) = changed.get();
        changed.set((one || middle != xs, two || out != middle));
        Case::new(vec![ints(&xs)], ints(&out))
    })?;
    if changed.get() != (true, true) {
        return None;
    }
    let body = match (&first, &second) {
        // A filter then a map is one loop.
        (Stage::Filter(p), Stage::Map(m)) => format!(
            "let ys = []; for x in xs {{ if {} {{ ys.push({}); }} }} ys",
            p.code("x"),
            m.code("x")
        ),
        _ => format!("{} {} zs", first.code("xs", "ys"), second.code("ys", "zs")),
    };
    let (one, two) = (first.text(), second.text());
    Some(finish(
        "xs",
        format!("takes an array xs, {one}, then {two}, and returns the new array"),
        body,
        vec![format!("First {one}; then {two}.")],
        tests,
    ))
}

/// What happens to each character of a string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CharStage {
    Keep(CharPred),
    Replace(char, char),
    Double,
}

/// What is returned from the transformed string.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    Text,
    Reversed,
    Length,
}

fn string_pipeline(rng: &mut Rng) -> Option<Spec> {
    let stage = match rng.below(3) {
        0 => CharStage::Keep(CharPred::draw(rng)),
        1 => {
            let from = char::from(*rng.pick(LETTERS));
            let to = char::from(*rng.pick(b"xyz"));
            CharStage::Replace(from, to)
        }
        _ => CharStage::Double,
    };
    let ending = *rng.pick(&[Ending::Text, Ending::Reversed, Ending::Length]);
    let transform = |s: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            match stage {
                CharStage::Keep(p) if p.holds(c) => out.push(c),
                CharStage::Keep(_) => {}
                CharStage::Replace(from, to) => out.push(if c == from { to } else { c }),
                CharStage::Double => {
                    out.push(c);
                    out.push(c);
                }
            }
        }
        out
    };
    let tests = split_cases(rng, |rng| {
        let len = rng.range(0, 8);
        let s: String = (0..len).map(|_| char::from(*rng.pick(LETTERS))).collect();
        let out = transform(&s);
        let expected = match ending {
            Ending::Text => string(&out),
            Ending::Reversed => string(&out.chars().rev().collect::<String>()),
            Ending::Length => int(out.chars().count() as i64),
        };
        Case::new(vec![string(&s)], expected)
    })?;
    // Appending, or prepending when the result is reversed.
    let add = |piece: &str| match ending {
        Ending::Reversed => format!("out = {piece} + out;"),
        _ => format!("out += {piece};"),
    };
    let (step, said) = match stage {
        CharStage::Keep(p) => (
            format!("if {} {{ {} }}", p.code("c"), add("c")),
            format!("keeps the characters c of s with {}", p.code("c")),
        ),
        CharStage::Replace(from, to) => (
            format!(
                "if c == '{from}' {{ {} }} else {{ {} }}",
                add(&format!("'{to}'")),
                add("c")
            ),
            format!("replaces every '{from}' in s by '{to}'"),
        ),
        CharStage::Double => (
            format!("{} {}", add("c"), add("c")),
            "writes every character of s twice".to_string(),
        ),
    };
    let (result, ends) = match ending {
        Ending::Text => ("out", "returns the result"),
        Ending::Reversed => ("out", "returns the result reversed"),
        Ending::Length => ("out.len()", "returns the length of the result"),
    };
    Some(finish(
        "s",
        format!("{said} and {ends}"),
        format!("let out = \"\"; for c in s {{ {step} }} {result}"),
        vec![format!(
            "Build out character by character{}.",
            if ending == Ending::Reversed {
                ", adding in front so it comes out reversed"
            } else {
                ""
            }
        )],
        tests,
    ))
}

// ---- level 5: small algorithms with compound conditions ----

fn algorithm(rng: &mut Rng) -> Option<Spec> {
    match rng.below(6) {
        0 => digits(rng),
        1 => divisors(rng),
        2 => neighbours(rng),
        3 => runs(rng),
        4 => index_of(rng),
        _ => pairs(rng),
    }
}

/// `t += m` (sum), `t += 1` (count) or `t` becomes the largest `m`.
fn fold_statement(agg: Agg, m: &str) -> String {
    match agg {
        Agg::Count => "t += 1;".to_string(),
        Agg::Max => format!("if {m} > t {{ t = {m}; }}"),
        _ => format!("t += {m};"),
    }
}

fn fold_text(agg: Agg, m: &str, over: &str, pred: &Pred, var: &str) -> String {
    let p = pred.code(var);
    match agg {
        Agg::Count => format!("returns how many of {over} have {p}"),
        Agg::Max => {
            format!("returns the largest {m} over {over} with {p} (0 when none is above 0)")
        }
        _ => format!("returns the sum of {m} over {over} with {p} (0 when there are none)"),
    }
}

fn fold_values(agg: Agg, values: impl Iterator<Item = i64>) -> i64 {
    match agg {
        Agg::Count => values.count() as i64,
        Agg::Max => values.fold(0, i64::max),
        _ => values.sum(),
    }
}

fn digits(rng: &mut Rng) -> Option<Spec> {
    let pred = Pred::compound(rng, 0, 9);
    let agg = *rng.pick(&[Agg::Sum, Agg::Count, Agg::Max]);
    let map = if agg == Agg::Count {
        Map::Id
    } else {
        *rng.pick(&[
            Map::Id,
            Map::Id,
            Map::Square,
            Map::Mul(2),
            Map::Mul(3),
            Map::Add(1),
        ])
    };
    let tests = split_cases(rng, |rng| {
        let width = rng.range(1, 5) as u32;
        let n = rng.range(1, 10i64.pow(width));
        let ds = n
            .to_string()
            .bytes()
            .map(|b| i64::from(b - b'0'))
            .collect::<Vec<_>>();
        let value = fold_values(
            agg,
            ds.into_iter()
                .filter(|&d| pred.holds(d))
                .map(|d| map.apply(d)),
        );
        Case::new(vec![int(n)], int(value))
    })?;
    let m = map.code("d");
    Some(finish(
        "n",
        format!(
            "{}; n >= 1",
            fold_text(agg, &m, "the decimal digits d of n", &pred, "d")
        ),
        format!(
            "let t = 0; while n > 0 {{ let d = n % 10; if {} {{ {} }} n /= 10; }} t",
            pred.code("d"),
            fold_statement(agg, &m)
        ),
        vec!["Take the digits from the right with n % 10 and n /= 10.".to_string()],
        tests,
    ))
}

fn divisors(rng: &mut Rng) -> Option<Spec> {
    let pred = Pred::compound(rng, 1, 12);
    let agg = *rng.pick(&[Agg::Sum, Agg::Count]);
    let map = if agg == Agg::Count {
        Map::Id
    } else {
        *rng.pick(&[Map::Id, Map::Id, Map::Square, Map::Add(1), Map::Mul(2)])
    };
    let tests = split_cases(rng, |rng| {
        let n = rng.range(1, 60);
        let values = (1..=n)
            .filter(|d| n % d == 0 && pred.holds(*d))
            .map(|d| map.apply(d));
        Case::new(vec![int(n)], int(fold_values(agg, values)))
    })?;
    let m = map.code("d");
    Some(finish(
        "n",
        format!(
            "{}; n >= 1",
            fold_text(agg, &m, "the divisors d of n", &pred, "d")
        ),
        format!(
            "let t = 0; for d in 1..=n {{ if n % d == 0 {{ if {} {{ {} }} }} }} t",
            pred.code("d"),
            fold_statement(agg, &m)
        ),
        vec!["Try every d in 1..=n; d divides n when n % d == 0.".to_string()],
        tests,
    ))
}

fn neighbours(rng: &mut Rng) -> Option<Spec> {
    let (op, k) = match rng.below(4) {
        0 => (">", rng.range(0, 3)),
        1 => ("<", rng.range(0, 3)),
        2 => ("==", 0),
        _ => ("!=", 0),
    };
    let count = rng.chance(0.5);
    let holds = |now: i64, before: i64| match op {
        ">" => now > before + k,
        "<" => now < before - k,
        "==" => now == before,
        _ => now != before,
    };
    let small = op == "==" || op == "!=";
    let tests = split_cases(rng, |rng| {
        let xs = if small {
            array(rng, 0, 8, 0, 3)
        } else {
            array(rng, 0, 8, -10, 10)
        };
        let picked = (1..xs.len()).filter(|&i| holds(xs[i], xs[i - 1]));
        let value = if count {
            picked.count() as i64
        } else {
            picked.map(|i| xs[i]).sum()
        };
        Case::new(vec![ints(&xs)], int(value))
    })?;
    let right = match (op, k) {
        (">", 0) | ("<", 0) | ("==", _) | ("!=", _) => "xs[i - 1]".to_string(),
        (">", k) => format!("xs[i - 1] + {k}"),
        (_, k) => format!("xs[i - 1] - {k}"),
    };
    let cond = format!("xs[i] {op} {right}");
    let (task, statement) = if count {
        (
            format!("returns how many positions i >= 1 of xs have {cond}"),
            "t += 1;",
        )
    } else {
        (
            format!("returns the sum of xs[i] over the positions i >= 1 of xs with {cond} (0 when there are none)"),
            "t += xs[i];",
        )
    };
    Some(finish(
        "xs",
        task,
        format!("let t = 0; for i in 1..xs.len() {{ if {cond} {{ {statement} }} }} t"),
        vec!["Compare each element with the one before it.".to_string()],
        tests,
    ))
}

fn runs(rng: &mut Rng) -> Option<Spec> {
    let pred = Pred::compound(rng, -10, 10);
    let tests = split_cases(rng, |rng| {
        let xs = array(rng, 0, 10, -10, 10);
        let (mut best, mut run) = (0, 0);
        for &x in &xs {
            run = if pred.holds(x) { run + 1 } else { 0 };
            best = best.max(run);
        }
        Case::new(vec![ints(&xs)], int(best))
    })?;
    let p = pred.code("x");
    Some(finish(
        "xs",
        format!("returns the length of the longest run of consecutive elements x of xs with {p} (0 when there is none)"),
        format!(
            "let best = 0; let run = 0; for x in xs {{ if {p} {{ run += 1; if run > best {{ best = run; }} }} else {{ run = 0; }} }} best"
        ),
        vec!["Count the current run; reset it when the condition fails; keep the longest.".to_string()],
        tests,
    ))
}

fn index_of(rng: &mut Rng) -> Option<Spec> {
    let pred = Pred::compound(rng, -10, 10);
    let first = rng.chance(0.5);
    let tests = split_cases(rng, |rng| {
        let xs = array(rng, 0, 8, -10, 10);
        let mut found = xs
            .iter()
            .enumerate()
            .filter(|(_, &x)| pred.holds(x))
            .map(|(i, _)| i as i64);
        let index = if first {
            found.next()
        } else {
            found.next_back()
        };
        let index = index.unwrap_or(-1);
        Case {
            args: vec![ints(&xs)],
            expected: int(index),
            branch: usize::from(index >= 0),
        }
    })?;
    let p = pred.code("xs[i]");
    let which = if first { "first" } else { "last" };
    let body = if first {
        format!("for i in 0..xs.len() {{ if {p} {{ return i; }} }} -1")
    } else {
        format!("let found = -1; for i in 0..xs.len() {{ if {p} {{ found = i; }} }} found")
    };
    Some(finish(
        "xs",
        format!(
            "returns the index of the {which} element x of xs with {}, or -1 when there is none",
            pred.code("x")
        ),
        body,
        vec![format!(
            "Scan the indices in order and keep the {which} match."
        )],
        tests,
    ))
}

fn pairs(rng: &mut Rng) -> Option<Spec> {
    let (op, combine): (&str, fn(i64, i64) -> i64) = if rng.chance(0.6) {
        ("+", |a, b| a + b)
    } else {
        ("*", |a, b| a * b)
    };
    let rel = *rng.pick(&["==", ">", "<"]);
    let k = if op == "+" {
        rng.range(-4, 12)
    } else {
        rng.range(-6, 20)
    };
    let holds = |v: i64| match rel {
        "==" => v == k,
        ">" => v > k,
        _ => v < k,
    };
    let tests = split_cases(rng, |rng| {
        let xs = array(rng, 0, 7, -5, 8);
        let mut count = 0;
        for i in 0..xs.len() {
            for j in i + 1..xs.len() {
                count += i64::from(holds(combine(xs[i], xs[j])));
            }
        }
        Case::new(vec![ints(&xs)], int(count))
    })?;
    let cond = format!("xs[i] {op} xs[j] {rel} {k}");
    Some(finish(
        "xs",
        format!("returns how many pairs of positions i < j of xs have {cond}"),
        format!(
            "let t = 0; for i in 0..xs.len() {{ for j in (i + 1)..xs.len() {{ if {cond} {{ t += 1; }} }} }} t"
        ),
        vec!["Try every pair i < j with two loops and count the matches.".to_string()],
        tests,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{self, Program};
    use std::collections::HashSet;

    const SEEDS: u64 = 300;

    fn every_spec(mut f: impl FnMut(u32, u64, Spec)) {
        for level in 1..=5 {
            for seed in 0..SEEDS {
                f(level, seed, spec(&mut Rng::new(seed), level));
            }
        }
    }

    /// The expected outputs are computed in Rust from the parts; the
    /// reference source is run by the sandbox: two independent evaluations.
    #[test]
    fn reference_solutions_pass_every_case() {
        every_spec(|level, seed, s| {
            assert_eq!(s.shown.len(), super::super::specs::SHOWN);
            assert_eq!(s.hidden.len(), super::super::specs::HIDDEN);
            let program = Program::compile(&s.source)
                .unwrap_or_else(|e| panic!("{}: {}", s.source, e.reason()));
            for case in s.shown.iter().chain(&s.hidden) {
                let args = case
                    .args
                    .iter()
                    .map(|a| sandbox::parse_literal(a).expect("literal argument"))
                    .collect();
                let got = program.call(NAME, args).map(|v| sandbox::canonical(&v));
                assert_eq!(
                    got.as_ref(),
                    Ok(&case.expected),
                    "{} on {:?}, level {level} seed {seed}",
                    s.source,
                    case.args
                );
            }
            assert!(s.source.is_ascii() && s.task.is_ascii());
            assert!(s.source.len() < 250, "{}", s.source);
        });
    }

    #[test]
    fn hidden_inputs_differ_from_the_examples() {
        every_spec(|_, _, s| {
            for h in &s.hidden {
                assert!(s.shown.iter().all(|e| e.args != h.args), "{}", s.source);
            }
        });
    }

    #[test]
    fn the_fallback_is_never_needed() {
        let fallback = fallback().source;
        every_spec(|level, seed, s| assert_ne!(s.source, fallback, "level {level} seed {seed}"));
    }

    /// Distinct functions among 20,000 draws per level; the full counts are
    /// measured by `distinct_functions_per_level` (ignored, slow).
    #[test]
    fn levels_hold_many_distinct_functions() {
        for (level, minimum) in [(1, 3_500), (2, 10_000), (3, 1_500), (4, 1_500), (5, 4_000)] {
            let distinct: HashSet<String> = (0..20_000)
                .map(|seed| spec(&mut Rng::new(seed), level).source)
                .collect();
            assert!(
                distinct.len() >= minimum,
                "level {level}: {} distinct functions in 20,000 draws",
                distinct.len()
            );
        }
    }

    /// `cargo test -p verity-tasks --release distinct_functions_per_level -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn distinct_functions_per_level() {
        for level in 1..=5 {
            let mut distinct = HashSet::new();
            let mut line = format!("level {level}:");
            for seed in 0..1_000_000u64 {
                distinct.insert(spec(&mut Rng::new(seed), level).source);
                if [9_999, 99_999, 999_999].contains(&seed) {
                    line.push_str(&format!(" {} in {} draws;", distinct.len(), seed + 1));
                }
            }
            println!("{line}");
        }
    }
}
