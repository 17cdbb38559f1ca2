//! The small language `code_trace` programs are composed in: a subset of
//! rhai (integers, strings, arrays of either; `let`, assignments, `if`,
//! `for` over ranges and arrays, `while`, `push`, indexing, helper
//! functions), written out as rhai source and run here by an interpreter
//! that records the steps a careful reader takes. The sandbox runs the same
//! source; the tests check the two agree.
//!
//! Values stay small: a program whose values leave `-LIMIT..=LIMIT`, that
//! divides by zero or indexes out of bounds is refused by [`run`], and the
//! generator draws another.

use std::collections::HashMap;

use crate::families::op::{Op, Tree};

/// Largest magnitude any value may take.
const LIMIT: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Int(i64),
    Str(String),
    Arr(Vec<Value>),
}

impl Value {
    /// The value as a rhai literal.
    pub(super) fn literal(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Str(s) => format!("\"{s}\""),
            Value::Arr(items) => {
                let parts: Vec<String> = items.iter().map(Value::literal).collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
}

pub(super) fn ints(items: &[i64]) -> Value {
    Value::Arr(items.iter().map(|&n| Value::Int(n)).collect())
}

/// One operand of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Atom {
    Var(&'static str),
    Lit(Value),
    /// `xs[i]`, the index a variable or a literal.
    Index(&'static str, Box<Atom>),
    /// `xs.len()` (arrays and strings).
    Len(&'static str),
    /// A call of a helper function with one argument.
    Call(&'static str, Box<Expr>),
}

impl Atom {
    pub(super) fn int(n: i64) -> Atom {
        Atom::Lit(Value::Int(n))
    }

    fn code(&self) -> String {
        match self {
            Atom::Var(v) => v.to_string(),
            Atom::Lit(value) => value.literal(),
            Atom::Index(arr, at) => format!("{arr}[{}]", at.code()),
            Atom::Len(arr) => format!("{arr}.len()"),
            Atom::Call(f, arg) => format!("{f}({})", arg.code()),
        }
    }
}

/// Operands joined by `+ - * / %`, read with rhai's precedence (`* / %`
/// before `+ -`, left to right); no parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Expr {
    pub(super) atoms: Vec<Atom>,
    pub(super) ops: Vec<char>,
}

impl Expr {
    pub(super) fn atom(atom: Atom) -> Expr {
        Expr {
            atoms: vec![atom],
            ops: Vec::new(),
        }
    }

    pub(super) fn var(name: &'static str) -> Expr {
        Expr::atom(Atom::Var(name))
    }

    pub(super) fn int(n: i64) -> Expr {
        Expr::atom(Atom::int(n))
    }

    /// `self op atom`.
    pub(super) fn then(mut self, op: char, atom: Atom) -> Expr {
        self.ops.push(op);
        self.atoms.push(atom);
        self
    }

    pub(super) fn code(&self) -> String {
        let mut out = self.atoms[0].code();
        for (op, atom) in self.ops.iter().zip(&self.atoms[1..]) {
            out.push_str(&format!(" {op} {}", atom.code()));
        }
        out
    }

    /// The expression with the terms of sums and the factors of products in
    /// one order, for keys (`a * 2 + b` is `b + 2 * a`).
    fn canonical(&self) -> String {
        let ops: Option<Vec<Op>> = self
            .ops
            .iter()
            .map(|op| match op {
                '+' => Some(Op::Add),
                '-' => Some(Op::Sub),
                '*' => Some(Op::Mul),
                _ => None,
            })
            .collect();
        match ops {
            Some(ops) if !ops.is_empty() => {
                let leaves: Vec<String> = self.atoms.iter().map(Atom::code).collect();
                Tree::from_flat(&leaves, &ops).canonical()
            }
            _ => self.code(),
        }
    }
}

/// `left cmp right`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cond {
    pub(super) left: Expr,
    pub(super) cmp: &'static str,
    pub(super) right: Expr,
}

impl Cond {
    pub(super) fn new(left: Expr, cmp: &'static str, right: Expr) -> Cond {
        Cond { left, cmp, right }
    }

    fn code(&self) -> String {
        format!("{} {} {}", self.left.code(), self.cmp, self.right.code())
    }

    fn canonical(&self) -> String {
        format!(
            "{} {} {}",
            self.left.canonical(),
            self.cmp,
            self.right.canonical()
        )
    }
}

/// Where a `for` loop's range ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    Lit(i64),
    Len(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stmt {
    Let(&'static str, Expr),
    /// `let v = if cond { a } else { b };`
    LetIf(&'static str, Cond, Expr, Expr),
    Assign(&'static str, Expr),
    /// `v += e`, `v -= e`, `v *= e`, `v /= e`.
    Update(&'static str, char, Expr),
    If(Cond, Vec<Stmt>, Vec<Stmt>),
    /// `for v in start..end` (or `..=`).
    ForRange(&'static str, i64, End, bool, Vec<Stmt>),
    ForEach(&'static str, &'static str, Vec<Stmt>),
    While(Cond, Vec<Stmt>),
    Push(&'static str, Expr),
    SetIndex(&'static str, Atom, Expr),
}

/// A helper function of one parameter: `fn name(param) { body }`, its body
/// an expression or an if-expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Func {
    pub(super) name: &'static str,
    pub(super) param: &'static str,
    pub(super) body: FuncBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FuncBody {
    Expr(Expr),
    If(Cond, Expr, Expr),
}

/// A whole program: helper functions, statements, the final expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Program {
    pub(super) funcs: Vec<Func>,
    pub(super) body: Vec<Stmt>,
    pub(super) result: Expr,
}

impl Program {
    /// The program as one line of rhai.
    pub(super) fn source(&self) -> String {
        self.write(false)
    }

    /// The program with every sum and product in one order: the canonical
    /// key of the problem. Variable names come from fixed pools in order of
    /// first use, so renaming is already normalised.
    pub(super) fn key(&self) -> String {
        self.write(true)
    }

    fn write(&self, canonical: bool) -> String {
        let e = |x: &Expr| if canonical { x.canonical() } else { x.code() };
        let c = |x: &Cond| if canonical { x.canonical() } else { x.code() };
        let mut parts: Vec<String> = self
            .funcs
            .iter()
            .map(|f| {
                let body = match &f.body {
                    FuncBody::Expr(x) => e(x),
                    FuncBody::If(cond, a, b) => {
                        format!("if {} {{ {} }} else {{ {} }}", c(cond), e(a), e(b))
                    }
                };
                format!("fn {}({}) {{ {body} }}", f.name, f.param)
            })
            .collect();
        parts.extend(self.body.iter().map(|s| write_stmt(s, &e, &c)));
        parts.push(e(&self.result));
        parts.join(" ")
    }
}

fn write_stmt(stmt: &Stmt, e: &dyn Fn(&Expr) -> String, c: &dyn Fn(&Cond) -> String) -> String {
    let block = |stmts: &[Stmt]| {
        let inner: Vec<String> = stmts.iter().map(|s| write_stmt(s, e, c)).collect();
        format!("{{ {} }}", inner.join(" "))
    };
    match stmt {
        Stmt::Let(v, x) => format!("let {v} = {};", e(x)),
        Stmt::LetIf(v, cond, a, b) => format!(
            "let {v} = if {} {{ {} }} else {{ {} }};",
            c(cond),
            e(a),
            e(b)
        ),
        Stmt::Assign(v, x) => format!("{v} = {};", e(x)),
        Stmt::Update(v, op, x) => format!("{v} {op}= {};", e(x)),
        Stmt::If(cond, yes, no) if no.is_empty() => format!("if {} {}", c(cond), block(yes)),
        Stmt::If(cond, yes, no) => format!("if {} {} else {}", c(cond), block(yes), block(no)),
        Stmt::ForRange(v, start, end, inclusive, body) => {
            let end = match end {
                End::Lit(n) => n.to_string(),
                End::Len(arr) => format!("{arr}.len()"),
            };
            let dots = if *inclusive { "..=" } else { ".." };
            format!("for {v} in {start}{dots}{end} {}", block(body))
        }
        Stmt::ForEach(v, arr, body) => format!("for {v} in {arr} {}", block(body)),
        Stmt::While(cond, body) => format!("while {} {}", c(cond), block(body)),
        Stmt::Push(arr, x) => format!("{arr}.push({});", e(x)),
        Stmt::SetIndex(arr, at, x) => format!("{arr}[{}] = {};", at.code(), e(x)),
    }
}

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refused;

type Outcome<T> = Result<T, Refused>;

/// The steps of a run and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trace {
    pub(super) steps: Vec<String>,
    pub(super) value: Value,
}

/// Run `program`, recording one step per statement (one per loop pass).
pub(super) fn run(program: &Program) -> Outcome<Trace> {
    let mut machine = Machine {
        funcs: &program.funcs,
        vars: HashMap::new(),
        steps: Vec::new(),
        budget: 2_000,
    };
    for stmt in &program.body {
        let mut lines = Vec::new();
        machine.exec(stmt, &mut lines)?;
        machine.steps.extend(lines);
    }
    let mut calls = Vec::new();
    let (trace, value) = machine.eval(&program.result, &mut calls)?;
    machine.steps.extend(calls);
    machine.steps.push(format!("last expression: {trace}"));
    Ok(Trace {
        steps: machine.steps,
        value,
    })
}

struct Machine<'a> {
    funcs: &'a [Func],
    vars: HashMap<&'static str, Value>,
    steps: Vec<String>,
    /// Statements left to execute; a runaway loop is refused.
    budget: usize,
}

impl Machine<'_> {
    fn exec(&mut self, stmt: &Stmt, lines: &mut Vec<String>) -> Outcome<()> {
        self.budget = self.budget.checked_sub(1).ok_or(Refused)?;
        match stmt {
            Stmt::Let(v, x) | Stmt::Assign(v, x) => {
                let (trace, value) = self.eval(x, lines)?;
                lines.push(format!("{v} = {trace}"));
                self.vars.insert(v, value);
            }
            Stmt::LetIf(v, cond, a, b) => {
                let (said, holds) = self.test(cond, lines)?;
                let (trace, value) = self.eval(if holds { a } else { b }, lines)?;
                lines.push(format!("{said}, so {v} = {trace}"));
                self.vars.insert(v, value);
            }
            Stmt::Update(v, op, x) => {
                let old = self.vars.get(v).cloned().ok_or(Refused)?;
                let (trace, value) = self.eval(x, lines)?;
                let new = apply(&old, *op, &value)?;
                let working = format!("{} {op} {}", shown(&old), shown(&value));
                let line = if x.atoms.len() == 1 {
                    format!(
                        "{v} {op}= {}: {v} = {working} = {}",
                        x.code(),
                        new.literal()
                    )
                } else {
                    format!("{v} {op}= {trace}: {v} = {working} = {}", new.literal())
                };
                lines.push(line);
                self.vars.insert(v, new);
            }
            Stmt::If(cond, yes, no) => {
                let (said, holds) = self.test(cond, lines)?;
                lines.push(said);
                for s in if holds { yes } else { no } {
                    self.exec(s, lines)?;
                }
            }
            Stmt::ForRange(v, start, end, inclusive, body) => {
                let end = match end {
                    End::Lit(n) => *n,
                    End::Len(arr) => self.length(arr)?,
                };
                let stop = if *inclusive { end + 1 } else { end };
                let items: Vec<Value> = (*start..stop.max(*start)).map(Value::Int).collect();
                self.iterate(v, items, body, lines)?;
            }
            Stmt::ForEach(v, arr, body) => {
                let Some(Value::Arr(items)) = self.vars.get(arr).cloned() else {
                    return Err(Refused);
                };
                self.iterate(v, items, body, lines)?;
            }
            Stmt::While(cond, body) => loop {
                let mut pass = Vec::new();
                let (said, holds) = self.test(cond, &mut pass)?;
                if !holds {
                    pass.push(format!("{said}, stop"));
                    lines.push(pass.join("; "));
                    break;
                }
                pass.push(said);
                for s in body {
                    self.exec(s, &mut pass)?;
                }
                lines.push(pass.join("; "));
            },
            Stmt::Push(arr, x) => {
                let (trace, value) = self.eval(x, lines)?;
                let Some(Value::Arr(items)) = self.vars.get_mut(arr) else {
                    return Err(Refused);
                };
                items.push(value);
                let now = Value::Arr(items.clone()).literal();
                lines.push(format!("push {trace}: {arr} = {now}"));
            }
            Stmt::SetIndex(arr, at, x) => {
                let index = self.atom(at, lines)?.int().ok_or(Refused)?;
                let (trace, value) = self.eval(x, lines)?;
                let Some(Value::Arr(items)) = self.vars.get_mut(arr) else {
                    return Err(Refused);
                };
                let slot = usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or(Refused)?;
                *slot = value;
                let now = Value::Arr(items.clone()).literal();
                lines.push(format!("{arr}[{index}] = {trace}: {arr} = {now}"));
            }
        }
        Ok(())
    }

    /// One line per pass: `i = 2: ...; ...`.
    fn iterate(
        &mut self,
        v: &'static str,
        items: Vec<Value>,
        body: &[Stmt],
        lines: &mut Vec<String>,
    ) -> Outcome<()> {
        if items.is_empty() {
            lines.push(format!("{v} takes no values, the loop body never runs"));
        }
        for item in items {
            let mut pass = Vec::new();
            let head = format!("{v} = {}", item.literal());
            self.vars.insert(v, item);
            for s in body {
                self.exec(s, &mut pass)?;
            }
            lines.push(format!("{head}: {}", pass.join("; ")));
        }
        self.vars.remove(v);
        Ok(())
    }

    fn length(&self, arr: &str) -> Outcome<i64> {
        match self.vars.get(arr) {
            Some(Value::Arr(items)) => Ok(items.len() as i64),
            Some(Value::Str(s)) => Ok(s.chars().count() as i64),
            _ => Err(Refused),
        }
    }

    /// `cond` and whether it holds, as a reader says it: `n % 3 == 2 is 2 == 2, true`.
    fn test(&mut self, cond: &Cond, lines: &mut Vec<String>) -> Outcome<(String, bool)> {
        let (_, left) = self.eval(&cond.left, lines)?;
        let (_, right) = self.eval(&cond.right, lines)?;
        let (a, b) = (left.int().ok_or(Refused)?, right.int().ok_or(Refused)?);
        let holds = match cond.cmp {
            ">" => a > b,
            "<" => a < b,
            ">=" => a >= b,
            "<=" => a <= b,
            "==" => a == b,
            _ => a != b,
        };
        let code = cond.code();
        let values = format!("{a} {} {b}", cond.cmp);
        let said = if code == values {
            format!("{code} is {holds}")
        } else {
            format!("{code} is {values}, {holds}")
        };
        Ok((said, holds))
    }

    fn atom(&mut self, atom: &Atom, lines: &mut Vec<String>) -> Outcome<Value> {
        match atom {
            Atom::Var(v) => self.vars.get(v).cloned().ok_or(Refused),
            Atom::Lit(value) => Ok(value.clone()),
            Atom::Index(arr, at) => {
                let index = self.atom(at, lines)?.int().ok_or(Refused)?;
                let Some(Value::Arr(items)) = self.vars.get(arr) else {
                    return Err(Refused);
                };
                usize::try_from(index)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or(Refused)
            }
            Atom::Len(arr) => self.length(arr).map(Value::Int),
            Atom::Call(name, arg) => {
                let (_, value) = self.eval(arg, lines)?;
                self.call(name, value, lines)
            }
        }
    }

    /// A helper call, traced as `g(3): ...` on its own line.
    fn call(&mut self, name: &str, arg: Value, lines: &mut Vec<String>) -> Outcome<Value> {
        self.budget = self.budget.checked_sub(1).ok_or(Refused)?;
        let func = self.funcs.iter().find(|f| f.name == name).ok_or(Refused)?;
        let head = format!("{name}({})", arg.literal());
        // Helpers see only their parameter.
        let outer = std::mem::replace(&mut self.vars, HashMap::from([(func.param, arg)]));
        let mut inner = Vec::new();
        let result = match &func.body {
            FuncBody::Expr(x) => self.eval(x, &mut inner),
            FuncBody::If(cond, a, b) => self.test(cond, &mut inner).and_then(|(said, holds)| {
                let (trace, value) = self.eval(if holds { a } else { b }, &mut inner)?;
                Ok((format!("{said}, so {trace}"), value))
            }),
        };
        self.vars = outer;
        let (trace, value) = result?;
        lines.extend(inner);
        lines.push(format!("{head}: {trace}"));
        Ok(value)
    }

    /// `x` worked out: `a + b * 2 = 7 + 4 * 2 = 7 + 8 = 15`, and its value.
    fn eval(&mut self, x: &Expr, lines: &mut Vec<String>) -> Outcome<(String, Value)> {
        let mut values = Vec::with_capacity(x.atoms.len());
        for atom in &x.atoms {
            values.push(self.atom(atom, lines)?);
        }
        let mut ops = x.ops.clone();
        let source = x.code();
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
            let value = apply(&values[at], ops[at], &values[at + 1])?;
            values.splice(at..at + 2, [value]);
            ops.remove(at);
            trace.push(render(&values, &ops));
        }
        Ok((trace.join(" = "), values.swap_remove(0)))
    }
}

/// `a op b` as rhai computes it; strings concatenate with `+`.
fn apply(a: &Value, op: char, b: &Value) -> Outcome<Value> {
    let (x, y) = match (a, b) {
        (Value::Int(x), Value::Int(y)) => (*x, *y),
        (Value::Str(x), Value::Str(y)) if op == '+' => return Ok(Value::Str(format!("{x}{y}"))),
        _ => return Err(Refused),
    };
    let value = match op {
        '+' => x.checked_add(y),
        '-' => x.checked_sub(y),
        '*' => x.checked_mul(y),
        '/' if y != 0 => x.checked_div(y),
        '%' if y != 0 => x.checked_rem(y),
        _ => None,
    }
    .ok_or(Refused)?;
    if value.abs() > LIMIT {
        return Err(Refused);
    }
    Ok(Value::Int(value))
}

fn render(values: &[Value], ops: &[char]) -> String {
    let mut out = values[0].literal();
    for (op, v) in ops.iter().zip(&values[1..]) {
        out.push_str(&format!(" {op} {}", shown(v)));
    }
    out
}

/// A value inside worked arithmetic: negatives in brackets.
fn shown(v: &Value) -> String {
    match v {
        Value::Int(n) if *n < 0 => format!("({n})"),
        other => other.literal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(body: Vec<Stmt>, result: Expr) -> Program {
        Program {
            funcs: Vec::new(),
            body,
            result,
        }
    }

    #[test]
    fn expressions_follow_precedence_and_show_each_step() {
        let p = program(
            vec![
                Stmt::Let("a", Expr::int(7)),
                Stmt::Let("b", Expr::int(4)),
                Stmt::Let(
                    "c",
                    Expr::var("a")
                        .then('+', Atom::Var("b"))
                        .then('*', Atom::int(2)),
                ),
            ],
            Expr::var("c").then('-', Atom::Var("a")),
        );
        assert_eq!(p.source(), "let a = 7; let b = 4; let c = a + b * 2; c - a");
        let t = run(&p).unwrap();
        assert_eq!(t.value, Value::Int(8));
        assert_eq!(
            t.steps,
            [
                "a = 7",
                "b = 4",
                "c = a + b * 2 = 7 + 4 * 2 = 7 + 8 = 15",
                "last expression: c - a = 15 - 7 = 8"
            ]
        );
    }

    #[test]
    fn loops_write_one_line_per_pass() {
        let p = program(
            vec![
                Stmt::Let("s", Expr::int(0)),
                Stmt::ForRange(
                    "i",
                    1,
                    End::Lit(4),
                    false,
                    vec![Stmt::If(
                        Cond::new(Expr::var("i").then('%', Atom::int(2)), "==", Expr::int(1)),
                        vec![Stmt::Update("s", '+', Expr::var("i"))],
                        vec![],
                    )],
                ),
            ],
            Expr::var("s"),
        );
        assert_eq!(
            p.source(),
            "let s = 0; for i in 1..4 { if i % 2 == 1 { s += i; } } s"
        );
        let t = run(&p).unwrap();
        assert_eq!(t.value, Value::Int(4));
        assert_eq!(
            t.steps[1..4],
            [
                "i = 1: i % 2 == 1 is 1 == 1, true; s += i: s = 0 + 1 = 1",
                "i = 2: i % 2 == 1 is 0 == 1, false",
                "i = 3: i % 2 == 1 is 1 == 1, true; s += i: s = 1 + 3 = 4",
            ]
        );
    }

    #[test]
    fn keys_ignore_the_order_of_sums_and_products() {
        let with = |x: Expr| program(vec![Stmt::Let("a", Expr::int(3))], x);
        let one = with(
            Expr::var("a")
                .then('*', Atom::int(2))
                .then('+', Atom::int(1)),
        );
        let two = with(
            Expr::int(1)
                .then('+', Atom::int(2))
                .then('*', Atom::Var("a")),
        );
        assert_ne!(one.source(), two.source());
        assert_eq!(one.key(), two.key());
        let three = with(Expr::var("a").then('-', Atom::int(1)));
        assert_ne!(one.key(), three.key());
    }

    #[test]
    fn runaway_or_undefined_programs_are_refused() {
        let forever = program(
            vec![
                Stmt::Let("x", Expr::int(1)),
                Stmt::While(
                    Cond::new(Expr::var("x"), ">", Expr::int(0)),
                    vec![Stmt::Update("x", '+', Expr::int(0))],
                ),
            ],
            Expr::var("x"),
        );
        assert_eq!(run(&forever), Err(Refused));
        assert_eq!(run(&program(vec![], Expr::var("nope"))), Err(Refused));
        let by_zero = program(vec![], Expr::int(1).then('/', Atom::int(0)));
        assert_eq!(run(&by_zero), Err(Refused));
        let huge = program(vec![], Expr::int(1_000).then('*', Atom::int(1_000)));
        assert_eq!(run(&huge), Err(Refused));
    }
}
