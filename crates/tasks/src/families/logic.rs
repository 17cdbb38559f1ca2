//! `logic`: boolean formulas over p, q, r, s with `and`, `or`, `not`:
//! evaluate one, count the rows of its truth table that make it true, or
//! find values that satisfy a formula in conjunctive normal form.
//!
//! `not` binds tightest; every `and` or `or` inside another connective is
//! in parentheses. Worked solutions evaluate the parts from the inside out,
//! list truth-table rows, or search with unit propagation:
//!
//! ```text
//! Find values of p, q, r that make (p or q) and (not p or r) and (not q or not r) true.
//! <think>try p=0
//! clause 1 forces q=1
//! clause 3 forces r=0
//! all clauses true</think><answer>p=0, q=1, r=0</answer>
//! ```
//!
//! Any satisfying values score; an answer gives every variable once, as
//! `p=1, q=0` (1 / 0, true / false or T / F).

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `logic` family.
pub(crate) struct Logic;

const VARIABLES: [&str; 4] = ["p", "q", "r", "s"];

/// Rows of the search a worked solution may take before a CNF is redrawn.
const MAX_SEARCH_STEPS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Formula {
    Var(usize),
    Not(Box<Formula>),
    And(Box<Formula>, Box<Formula>),
    Or(Box<Formula>, Box<Formula>),
}

impl Formula {
    fn eval(&self, values: &[bool]) -> bool {
        match self {
            Formula::Var(i) => values[*i],
            Formula::Not(f) => !f.eval(values),
            Formula::And(a, b) => a.eval(values) && b.eval(values),
            Formula::Or(a, b) => a.eval(values) || b.eval(values),
        }
    }

    fn text(&self) -> String {
        let inner = |f: &Formula| match f {
            Formula::And(..) | Formula::Or(..) => format!("({})", f.text()),
            _ => f.text(),
        };
        match self {
            Formula::Var(i) => VARIABLES[*i].to_string(),
            Formula::Not(f) => format!("not {}", inner(f)),
            Formula::And(a, b) => format!("{} and {}", inner(a), inner(b)),
            Formula::Or(a, b) => format!("{} or {}", inner(a), inner(b)),
        }
    }

    /// The text with the operands of every `and` and `or` sorted: the
    /// same formula however its operands are ordered.
    fn canonical(&self) -> String {
        match self {
            Formula::Var(i) => VARIABLES[*i].to_string(),
            Formula::Not(f) => format!("not({})", f.canonical()),
            Formula::And(a, b) | Formula::Or(a, b) => {
                let mut parts = [a.canonical(), b.canonical()];
                parts.sort();
                let op = if matches!(self, Formula::And(..)) {
                    "and"
                } else {
                    "or"
                };
                format!("{op}({},{})", parts[0], parts[1])
            }
        }
    }

    fn uses(&self, i: usize) -> bool {
        match self {
            Formula::Var(j) => *j == i,
            Formula::Not(f) => f.uses(i),
            Formula::And(a, b) | Formula::Or(a, b) => a.uses(i) || b.uses(i),
        }
    }

    /// `part = operands = value` for every connective, innermost first.
    fn explain(&self, values: &[bool], steps: &mut Vec<String>) -> bool {
        let word = |b: bool| if b { "true" } else { "false" };
        match self {
            Formula::Var(i) => values[*i],
            Formula::Not(f) => {
                let v = f.explain(values, steps);
                steps.push(format!("{} = not {} = {}", self.text(), word(v), word(!v)));
                !v
            }
            Formula::And(a, b) | Formula::Or(a, b) => {
                let (x, y) = (a.explain(values, steps), b.explain(values, steps));
                let (op, v) = if matches!(self, Formula::And(..)) {
                    ("and", x && y)
                } else {
                    ("or", x || y)
                };
                steps.push(format!(
                    "{} = {} {op} {} = {}",
                    self.text(),
                    word(x),
                    word(y),
                    word(v)
                ));
                v
            }
        }
    }
}

/// A formula over `vars` variables with `connectives` connectives.
fn formula(rng: &mut Rng, vars: usize, connectives: usize) -> Formula {
    if connectives == 0 {
        return Formula::Var(rng.below(vars));
    }
    if rng.chance(0.25) {
        let inner = formula(rng, vars, connectives - 1);
        if !matches!(inner, Formula::Not(_)) {
            return Formula::Not(Box::new(inner));
        }
    }
    let left = rng.below(connectives);
    let (a, b) = (
        Box::new(formula(rng, vars, left)),
        Box::new(formula(rng, vars, connectives - 1 - left)),
    );
    if rng.chance(0.5) {
        Formula::And(a, b)
    } else {
        Formula::Or(a, b)
    }
}

/// The knobs of one level.
struct Level {
    vars: usize,
    /// Connectives of an evaluated or counted formula; clauses of a CNF.
    size: (usize, usize),
    ask: Ask,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Evaluate,
    Count,
    Satisfy,
}

const LEVELS: [Level; 5] = [
    Level {
        vars: 3,
        size: (2, 3),
        ask: Ask::Evaluate,
    },
    Level {
        vars: 4,
        size: (4, 5),
        ask: Ask::Evaluate,
    },
    Level {
        vars: 3,
        size: (3, 4),
        ask: Ask::Count,
    },
    Level {
        vars: 3,
        size: (3, 4),
        ask: Ask::Satisfy,
    },
    Level {
        vars: 4,
        size: (4, 6),
        ask: Ask::Satisfy,
    },
];

impl Task for Logic {
    fn name(&self) -> &'static str {
        "logic"
    }

    fn summary(&self) -> &'static str {
        "boolean formulas: evaluate, count true rows of the truth table, satisfy a CNF"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let (lo, hi) = l.size;
        match l.ask {
            Ask::Evaluate => format!(
                "evaluate a formula of {} variables, {lo}-{hi} connectives",
                l.vars
            ),
            Ask::Count => format!(
                "count the true rows of a formula of {} variables, {lo}-{hi} connectives",
                l.vars
            ),
            Ask::Satisfy => format!(
                "satisfy a CNF of {} variables, {lo}-{hi} clauses of 2 or 3 literals",
                l.vars
            ),
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        match l.ask {
            Ask::Evaluate => evaluate(rng, l),
            Ask::Count => count(rng, l),
            Ask::Satisfy => satisfy(rng, l),
        }
    }
}

fn bit(b: bool) -> u8 {
    u8::from(b)
}

/// A formula that uses every variable (and, for counting, is neither
/// always true nor always false).
fn full_formula(rng: &mut Rng, l: &Level) -> Formula {
    loop {
        let size = rng.range(l.size.0 as i64, l.size.1 as i64) as usize;
        let f = formula(rng, l.vars, size);
        if (0..l.vars).all(|i| f.uses(i)) {
            return f;
        }
    }
}

fn evaluate(rng: &mut Rng, l: &Level) -> Generated {
    let f = full_formula(rng, l);
    let values: Vec<bool> = (0..l.vars).map(|_| rng.chance(0.5)).collect();
    let given: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{}={}", VARIABLES[i], bit(v)))
        .collect();
    let mut steps = Vec::new();
    let value = f.explain(&values, &mut steps);
    let answer = if value { "true" } else { "false" }.to_string();
    Generated {
        prompt: format!(
            "With {} (1 is true, 0 is false), is {} true or false? Answer true or false.",
            given.join(", "),
            f.text()
        ),
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::Words,
        key: format!("logic eval {} at {}", f.canonical(), given.join(",")),
    }
}

fn count(rng: &mut Rng, l: &Level) -> Generated {
    let rows = 1usize << l.vars;
    let (f, trues) = loop {
        let f = full_formula(rng, l);
        let trues = (0..rows).filter(|&r| f.eval(&row(r, l.vars))).count();
        if trues != 0 && trues != rows {
            break (f, trues);
        }
    };
    let names = VARIABLES[..l.vars].join("");
    let mut steps: Vec<String> = (0..rows)
        .map(|r| {
            let values = row(r, l.vars);
            let bits: String = values.iter().map(|&b| char::from(b'0' + bit(b))).collect();
            format!("{names}={bits}: {}", f.eval(&values))
        })
        .collect();
    steps.push(format!("true rows: {trues}"));
    let answer = trues.to_string();
    Generated {
        prompt: format!(
            "In how many of the {rows} rows of the truth table of {} over {} is it true? \
             Answer with a single integer.",
            f.text(),
            list(&VARIABLES[..l.vars])
        ),
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::Number,
        key: format!("logic count {}", f.canonical()),
    }
}

/// Values of row `r` of a truth table, the first variable most significant.
fn row(r: usize, vars: usize) -> Vec<bool> {
    (0..vars).map(|i| r >> (vars - 1 - i) & 1 == 1).collect()
}

fn list(names: &[&str]) -> String {
    match names {
        [rest @ .., last] if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// A literal's text: `p` or `not p`.
fn literal(lit: i64) -> String {
    let name = VARIABLES[lit.unsigned_abs() as usize - 1];
    if lit < 0 {
        format!("not {name}")
    } else {
        name.to_string()
    }
}

fn clause_text(clause: &[i64]) -> String {
    let parts: Vec<String> = clause.iter().map(|&l| literal(l)).collect();
    format!("({})", parts.join(" or "))
}

fn satisfy(rng: &mut Rng, l: &Level) -> Generated {
    let (clauses, found, steps) = loop {
        let count = rng.range(l.size.0 as i64, l.size.1 as i64) as usize;
        let clauses: Vec<Vec<i64>> = (0..count)
            .map(|_| {
                let width = if rng.chance(0.4) { 3 } else { 2 };
                let mut vars: Vec<i64> = (1..=l.vars as i64).collect();
                rng.shuffle(&mut vars);
                let mut clause: Vec<i64> = vars[..width]
                    .iter()
                    .map(|&v| if rng.chance(0.5) { -v } else { v })
                    .collect();
                clause.sort_by_key(|l| l.abs());
                clause
            })
            .collect();
        let mut distinct = clauses.clone();
        distinct.sort();
        distinct.dedup();
        let used = (1..=l.vars as i64).all(|v| clauses.iter().flatten().any(|l| l.abs() == v));
        if distinct.len() != clauses.len() || !used {
            continue;
        }
        let mut steps = Vec::new();
        let found = search(&clauses, &mut vec![None; l.vars], &mut steps);
        if let Some(found) = found {
            if steps.len() < MAX_SEARCH_STEPS {
                break (clauses, found, steps);
            }
        }
    };
    let mut steps = steps;
    steps.push("all clauses true".to_string());
    let answer = assignment_text(&found);
    let formula: Vec<String> = clauses.iter().map(|c| clause_text(c)).collect();
    let mut key_clauses: Vec<String> = clauses.iter().map(|c| format!("{c:?}")).collect();
    key_clauses.sort();
    let names = list(&VARIABLES[..l.vars]);
    let example: Vec<bool> = (0..l.vars).map(|i| i % 2 == 0).collect();
    let example = assignment_text(&example);
    Generated {
        prompt: format!(
            "Find values of {names} that make {} true. Answer like {example} (1 is true, 0 is false).",
            formula.join(" and ")
        ),
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::Satisfy {
            variables: VARIABLES[..l.vars].iter().map(|v| v.to_string()).collect(),
            clauses,
        },
        key: format!("cnf {}", key_clauses.join(" ")),
    }
}

fn assignment_text(values: &[bool]) -> String {
    let parts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{}={}", VARIABLES[i], bit(v)))
        .collect();
    parts.join(", ")
}

/// The value of a literal under a partial assignment.
fn literal_value(lit: i64, values: &[Option<bool>]) -> Option<bool> {
    values[lit.unsigned_abs() as usize - 1].map(|v| v == (lit > 0))
}

/// Depth-first search with unit propagation, trying false before true;
/// one step per decision, forced value and conflict.
fn search(
    clauses: &[Vec<i64>],
    values: &mut [Option<bool>],
    steps: &mut Vec<String>,
) -> Option<Vec<bool>> {
    loop {
        let mut forced = None;
        for (k, clause) in clauses.iter().enumerate() {
            let states: Vec<Option<bool>> =
                clause.iter().map(|&l| literal_value(l, values)).collect();
            if states.contains(&Some(true)) {
                continue;
            }
            let open: Vec<i64> = clause
                .iter()
                .zip(&states)
                .filter(|(_, s)| s.is_none())
                .map(|(&l, _)| l)
                .collect();
            match open.as_slice() {
                [] => {
                    steps.push(format!("clause {} is false", k + 1));
                    return None;
                }
                [only] if forced.is_none() => forced = Some((k, *only)),
                _ => {}
            }
        }
        let Some((k, lit)) = forced else { break };
        let var = lit.unsigned_abs() as usize - 1;
        values[var] = Some(lit > 0);
        steps.push(format!(
            "clause {} forces {}={}",
            k + 1,
            VARIABLES[var],
            bit(lit > 0)
        ));
    }
    let Some(var) = values.iter().position(Option::is_none) else {
        return Some(values.iter().map(|v| v.unwrap_or(false)).collect());
    };
    for choice in [false, true] {
        let mut trial = values.to_vec();
        trial[var] = Some(choice);
        steps.push(format!("try {}={}", VARIABLES[var], bit(choice)));
        if let Some(found) = search(clauses, &mut trial, steps) {
            return Some(found);
        }
    }
    None
}

/// Judge an assignment `p=1, q=0, ...` against the clauses.
pub(crate) fn judge(variables: &[String], clauses: &[Vec<i64>], extracted: &str) -> Score {
    let values = match parse_assignment(variables, extracted) {
        Ok(values) => values,
        Err(why) => return Score::fail(why),
    };
    for (k, clause) in clauses.iter().enumerate() {
        let satisfied = clause.iter().any(|&lit| {
            let i = lit.unsigned_abs() as usize;
            (1..=values.len()).contains(&i) && values[i - 1] == (lit > 0)
        });
        if !satisfied {
            return Score::fail(format!("clause {} is false", k + 1));
        }
    }
    Score::pass("every clause is true")
}

/// Longest answer read.
const MAX_ANSWER_BYTES: usize = 200;

fn parse_assignment(variables: &[String], text: &str) -> Result<Vec<bool>, String> {
    if text.len() > MAX_ANSWER_BYTES {
        return Err("answer too long".to_string());
    }
    let mut values: Vec<Option<bool>> = vec![None; variables.len()];
    let normalised = text
        .replace(" = ", "=")
        .replace("= ", "=")
        .replace(" =", "=");
    for part in normalised.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once('=') else {
            return Err(format!("'{part}' is not name=value"));
        };
        let Some(i) = variables.iter().position(|v| v == name) else {
            return Err(format!("unknown variable '{name}'"));
        };
        let value = match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" => true,
            "0" | "false" | "f" => false,
            _ => return Err(format!("'{value}' is not 1 or 0")),
        };
        if values[i].replace(value).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    values
        .iter()
        .zip(variables)
        .map(|(v, name)| v.ok_or_else(|| format!("no value for {name}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};
    use std::collections::HashSet;

    const SEEDS: u64 = 400;

    /// An independent reader of the prompt's formulas: `or` below `and`
    /// below `not`, parentheses.
    struct Reader {
        words: Vec<String>,
        at: usize,
    }

    impl Reader {
        fn new(text: &str) -> Self {
            let spaced = text.replace('(', " ( ").replace(')', " ) ");
            Reader {
                words: spaced.split_whitespace().map(str::to_string).collect(),
                at: 0,
            }
        }

        fn next(&mut self) -> String {
            self.at += 1;
            self.words[self.at - 1].clone()
        }

        fn peek(&self) -> Option<&str> {
            self.words.get(self.at).map(String::as_str)
        }

        /// Evaluate under `value` of each variable name.
        fn or(&mut self, value: &dyn Fn(&str) -> bool) -> bool {
            let mut v = self.and(value);
            while self.peek() == Some("or") {
                self.next();
                let w = self.and(value);
                v = v || w;
            }
            v
        }

        fn and(&mut self, value: &dyn Fn(&str) -> bool) -> bool {
            let mut v = self.not(value);
            while self.peek() == Some("and") {
                self.next();
                let w = self.not(value);
                v = v && w;
            }
            v
        }

        fn not(&mut self, value: &dyn Fn(&str) -> bool) -> bool {
            match self.next().as_str() {
                "not" => !self.not(value),
                "(" => {
                    let v = self.or(value);
                    assert_eq!(self.next(), ")");
                    v
                }
                name => value(name),
            }
        }
    }

    fn holds(formula: &str, values: &[(String, bool)]) -> bool {
        let lookup = |name: &str| values.iter().find(|(n, _)| n == name).unwrap().1;
        let mut reader = Reader::new(formula);
        let v = reader.or(&lookup);
        assert_eq!(reader.peek(), None, "{formula}");
        v
    }

    fn all_rows(names: &[&str]) -> Vec<Vec<(String, bool)>> {
        (0..1usize << names.len())
            .map(|r| {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), r >> i & 1 == 1))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn answers_agree_with_an_independent_reading_of_the_prompt() {
        for level in 1..=Logic.max_level() {
            let l = &LEVELS[level as usize - 1];
            let names = &VARIABLES[..l.vars];
            for seed in 0..SEEDS {
                let g = Logic.generate(&mut Rng::new(seed), level);
                match l.ask {
                    Ask::Evaluate => {
                        let rest = g.prompt.strip_prefix("With ").unwrap();
                        let (given, rest) =
                            rest.split_once(" (1 is true, 0 is false), is ").unwrap();
                        let formula = rest.split_once(" true or false?").unwrap().0;
                        let values: Vec<(String, bool)> = given
                            .split(", ")
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap();
                                (k.to_string(), v == "1")
                            })
                            .collect();
                        assert_eq!(
                            g.answer,
                            holds(formula, &values).to_string(),
                            "{}",
                            g.prompt
                        );
                    }
                    Ask::Count => {
                        let rest = g.prompt.split_once(" truth table of ").unwrap().1;
                        let formula = rest.split_once(" over ").unwrap().0;
                        let trues = all_rows(names).iter().filter(|r| holds(formula, r)).count();
                        assert_eq!(g.answer, trues.to_string(), "{}", g.prompt);
                    }
                    Ask::Satisfy => {
                        let rest = g.prompt.split_once(" that make ").unwrap().1;
                        let formula = rest.split_once(" true. Answer").unwrap().0;
                        let solutions: Vec<Vec<(String, bool)>> = all_rows(names)
                            .into_iter()
                            .filter(|r| holds(formula, r))
                            .collect();
                        assert!(!solutions.is_empty());
                        let p = g.into_problem("logic", level, "logic/test".to_string());
                        // Every satisfying row scores, every other row fails.
                        for r in all_rows(names) {
                            let text: Vec<String> = r
                                .iter()
                                .map(|(n, v)| format!("{n}={}", u8::from(*v)))
                                .collect();
                            let v = p.verify(&format!(
                                "<think></think><answer>{}</answer>",
                                text.join(", ")
                            ));
                            assert_eq!(
                                v.reward == 1.0,
                                solutions.contains(&r),
                                "{}: {:?}",
                                p.prompt,
                                v
                            );
                        }
                        continue;
                    }
                }
            }
        }
    }

    #[test]
    fn worked_solutions_score_and_stay_short() {
        for level in 1..=Logic.max_level() {
            for seed in 0..SEEDS {
                let g = Logic.generate(&mut Rng::new(seed), level);
                let p = g.into_problem("logic", level, "logic/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0, "{}", p.solution);
                assert!(p.solution.lines().count() <= 12, "{}", p.solution);
                assert!(p.prompt.len() < 260, "{}", p.prompt);
            }
        }
    }

    #[test]
    fn assignments_are_read_strictly() {
        let vars: Vec<String> = ["p", "q"].iter().map(|s| s.to_string()).collect();
        let clauses = vec![vec![1, 2], vec![-1]];
        assert_eq!(judge(&vars, &clauses, "p=0, q=1").reward, 1.0);
        assert_eq!(judge(&vars, &clauses, "p = false q = TRUE").reward, 1.0);
        assert_eq!(judge(&vars, &clauses, "p=F;q=T").reward, 1.0);
        assert_eq!(
            judge(&vars, &clauses, "p=1, q=1").reason,
            "clause 2 is false"
        );
        assert_eq!(judge(&vars, &clauses, "q=1").reason, "no value for p");
        assert_eq!(
            judge(&vars, &clauses, "p=0, q=1, p=1").reason,
            "p is given twice"
        );
        assert_eq!(
            judge(&vars, &clauses, "p=0, x=1").reason,
            "unknown variable 'x'"
        );
        assert_eq!(
            judge(&vars, &clauses, "p=0, q=2").reason,
            "'2' is not 1 or 0"
        );
        assert_eq!(judge(&vars, &clauses, "p=0 or p=1, q=1").reward, 0.0);
        assert_eq!(judge(&vars, &clauses, "01").reward, 0.0);
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for level in 1..=Logic.max_level() {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Logic.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= 700, "level {level}: {}", keys.len());
        }
    }

    proptest! {
        #[test]
        fn judge_never_panics(text in "\\PC{0,120}") {
            let vars: Vec<String> = ["p", "q", "r"].iter().map(|s| s.to_string()).collect();
            let s = judge(&vars, &[vec![1, -2], vec![3, 4]], &text);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }
    }
}
