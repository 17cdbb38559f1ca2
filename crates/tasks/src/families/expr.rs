//! `expr`: evaluate an integer expression with `+`, `-`, `*` and parentheses.
//!
//! The worked solution performs one operation per line and rewrites the
//! whole expression, in the order a person would: the innermost parentheses
//! first, inside them (or at top level) the leftmost `*`, else the leftmost
//! `+` or `-`. A negative intermediate after an operator is written `(-3)`.
//!
//! ```text
//! What is 3+4*(5-7)?
//! <think>3+4*(-2)
//! 3+(-8)
//! -5</think><answer>-5</answer>
//! ```

use super::op::{Op, Tree};
use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `expr` family.
pub(crate) struct Expr;

/// (operands, largest operand, parentheses) per level.
const LEVELS: [(usize, i64, bool); 7] = [
    (3, 9, false),
    (4, 9, false),
    (4, 9, true),
    (5, 12, true),
    (6, 20, true),
    (7, 30, true),
    (8, 50, true),
];

impl Task for Expr {
    fn name(&self) -> &'static str {
        "expr"
    }

    fn summary(&self) -> &'static str {
        "evaluate an integer expression with + - * and parentheses"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let (operands, max, parens) = LEVELS[level as usize - 1];
        let shape = if parens {
            "with parentheses"
        } else {
            "no parentheses"
        };
        format!("{operands} operands 1..={max}, {shape}")
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let (operands, max, parens) = LEVELS[level as usize - 1];
        let tokens = if parens {
            nested(rng, operands, max)
        } else {
            flat(rng, operands, max)
        };
        let key = format!("expr {}", parse(&tokens).canonical());
        let mut work = tokens.clone();
        let mut steps = Vec::new();
        while reduce_once(&mut work) {
            steps.push(render(&work));
        }
        let answer = render(&work);
        Generated {
            prompt: format!("What is {}?", render(&tokens)),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Number,
            key,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Num(i64),
    Op(Op),
    Open,
    Close,
}

/// `a op b op c ...` with no parentheses.
fn flat(rng: &mut Rng, operands: usize, max: i64) -> Vec<Token> {
    let mut tokens = vec![Token::Num(rng.range(1, max))];
    for _ in 1..operands {
        tokens.push(Token::Op(*rng.pick(&Op::ALL)));
        tokens.push(Token::Num(rng.range(1, max)));
    }
    tokens
}

/// A random expression tree written with the parentheses it needs; redrawn
/// a few times until it needs at least one pair.
fn nested(rng: &mut Rng, operands: usize, max: i64) -> Vec<Token> {
    let mut tokens = Vec::new();
    for _ in 0..32 {
        tokens.clear();
        write_tree(&tree(rng, operands, max), &mut tokens);
        if tokens.contains(&Token::Open) {
            break;
        }
    }
    tokens
}

enum Node {
    Leaf(i64),
    Branch(Box<Node>, Op, Box<Node>),
}

fn tree(rng: &mut Rng, leaves: usize, max: i64) -> Node {
    if leaves <= 1 {
        return Node::Leaf(rng.range(1, max));
    }
    let left = rng.range(1, leaves as i64 - 1) as usize;
    let op = *rng.pick(&Op::ALL);
    Node::Branch(
        Box::new(tree(rng, left, max)),
        op,
        Box::new(tree(rng, leaves - left, max)),
    )
}

fn precedence(node: &Node) -> u8 {
    match node {
        Node::Leaf(_) => u8::MAX,
        Node::Branch(_, op, _) => op.precedence(),
    }
}

/// Minimal parentheses: a looser child, or a `+`/`-` right of a `-`.
fn write_tree(node: &Node, out: &mut Vec<Token>) {
    match node {
        Node::Leaf(n) => out.push(Token::Num(*n)),
        Node::Branch(left, op, right) => {
            let wrap_left = precedence(left) < op.precedence();
            let wrap_right = precedence(right) < op.precedence()
                || (*op == Op::Sub && precedence(right) == op.precedence());
            write_wrapped(left, wrap_left, out);
            out.push(Token::Op(*op));
            write_wrapped(right, wrap_right, out);
        }
    }
}

fn write_wrapped(node: &Node, wrap: bool, out: &mut Vec<Token>) {
    if wrap {
        out.push(Token::Open);
    }
    write_tree(node, out);
    if wrap {
        out.push(Token::Close);
    }
}

/// Perform the next operation in evaluation order; false once only a number
/// is left.
fn reduce_once(tokens: &mut Vec<Token>) -> bool {
    let group = tokens.iter().position(|t| *t == Token::Close).map(|close| {
        let open = tokens[..close]
            .iter()
            .rposition(|t| *t == Token::Open)
            .unwrap_or(0);
        (open, close)
    });
    let (start, mut end) = match group {
        Some((open, close)) => (open + 1, close),
        None => (0, tokens.len()),
    };
    let is_op = |t: &Token, ops: &[Op]| matches!(t, Token::Op(op) if ops.contains(op));
    let at = (start..end)
        .find(|&i| is_op(&tokens[i], &[Op::Mul]))
        .or_else(|| (start..end).find(|&i| is_op(&tokens[i], &[Op::Add, Op::Sub])));
    let Some(at) = at else {
        return false;
    };
    if let (Token::Num(a), Token::Op(op), Token::Num(b)) =
        (tokens[at - 1], tokens[at], tokens[at + 1])
    {
        tokens.splice(at - 1..=at + 1, [Token::Num(op.apply(a, b))]);
        end -= 2;
    }
    if group.is_some() && end - start == 1 {
        tokens.remove(end);
        tokens.remove(start - 1);
    }
    true
}

fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Num(n) if *n < 0 && i > 0 && matches!(tokens[i - 1], Token::Op(_)) => {
                out.push_str(&format!("({n})"))
            }
            Token::Num(n) => out.push_str(&n.to_string()),
            Token::Op(op) => out.push(match op {
                Op::Add => '+',
                Op::Sub => '-',
                Op::Mul => '*',
            }),
            Token::Open => out.push('('),
            Token::Close => out.push(')'),
        }
    }
    out
}

/// The tree of a token list, `*` before `+` and `-`, left to right.
fn parse(tokens: &[Token]) -> Tree {
    let mut at = 0;
    parse_sum(tokens, &mut at)
}

fn parse_sum(tokens: &[Token], at: &mut usize) -> Tree {
    let mut tree = parse_product(tokens, at);
    while let Some(Token::Op(op @ (Op::Add | Op::Sub))) = tokens.get(*at) {
        *at += 1;
        tree = Tree::node(tree, *op, parse_product(tokens, at));
    }
    tree
}

fn parse_product(tokens: &[Token], at: &mut usize) -> Tree {
    let mut tree = parse_factor(tokens, at);
    while let Some(Token::Op(Op::Mul)) = tokens.get(*at) {
        *at += 1;
        tree = Tree::node(tree, Op::Mul, parse_factor(tokens, at));
    }
    tree
}

fn parse_factor(tokens: &[Token], at: &mut usize) -> Tree {
    let token = tokens.get(*at).copied();
    *at += 1;
    match token {
        Some(Token::Open) => {
            let inner = parse_sum(tokens, at);
            *at += 1; // the closing parenthesis
            inner
        }
        Some(Token::Num(n)) => Tree::Leaf(n.to_string()),
        // Generated token lists are well formed.
        _ => Tree::Leaf(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::{Close as C, Num as N, Open as O};

    const ADD: Token = Token::Op(Op::Add);
    const SUB: Token = Token::Op(Op::Sub);
    const MUL: Token = Token::Op(Op::Mul);

    fn steps(tokens: &[Token]) -> Vec<String> {
        let mut work = tokens.to_vec();
        let mut out = vec![render(&work)];
        while reduce_once(&mut work) {
            out.push(render(&work));
        }
        out
    }

    #[test]
    fn one_operation_per_line_in_precedence_order() {
        let e = [N(3), ADD, N(4), MUL, O, N(5), SUB, N(7), C];
        assert_eq!(steps(&e), ["3+4*(5-7)", "3+4*(-2)", "3+(-8)", "-5"]);
        let e = [N(8), SUB, N(3), SUB, N(5), MUL, N(2)];
        assert_eq!(steps(&e), ["8-3-5*2", "8-3-10", "5-10", "-5"]);
        let e = [O, N(1), SUB, N(4), C, MUL, O, N(2), ADD, N(3), C];
        assert_eq!(steps(&e), ["(1-4)*(2+3)", "-3*(2+3)", "-3*5", "-15"]);
    }

    #[test]
    fn parentheses_only_where_needed() {
        let sum = || {
            Box::new(Node::Branch(
                Box::new(Node::Leaf(1)),
                Op::Add,
                Box::new(Node::Leaf(2)),
            ))
        };
        let mut out = Vec::new();
        write_tree(&Node::Branch(sum(), Op::Sub, sum()), &mut out);
        assert_eq!(render(&out), "1+2-(1+2)");
        out.clear();
        write_tree(
            &Node::Branch(sum(), Op::Mul, Box::new(Node::Leaf(4))),
            &mut out,
        );
        assert_eq!(render(&out), "(1+2)*4");
        out.clear();
        write_tree(
            &Node::Branch(Box::new(Node::Leaf(4)), Op::Add, sum()),
            &mut out,
        );
        assert_eq!(render(&out), "4+1+2");
    }

    /// An independent evaluator of the tree, to check the reductions.
    fn eval(node: &Node) -> i64 {
        match node {
            Node::Leaf(n) => *n,
            Node::Branch(l, op, r) => op.apply(eval(l), eval(r)),
        }
    }

    #[test]
    fn keys_ignore_the_order_of_terms_and_factors() {
        let key = |tokens: &[Token]| parse(tokens).canonical();
        // 3+4*(5-7) and (5-7)*4+3
        let a = [N(3), ADD, N(4), MUL, O, N(5), SUB, N(7), C];
        let b = [O, N(5), SUB, N(7), C, MUL, N(4), ADD, N(3)];
        assert_eq!(key(&a), key(&b));
        // 3+4*(7-5) is another problem.
        let c = [N(3), ADD, N(4), MUL, O, N(7), SUB, N(5), C];
        assert_ne!(key(&a), key(&c));
        assert_eq!(key(&[N(8), SUB, N(3), SUB, N(5)]), "-3-5+8");
    }

    #[test]
    fn reductions_agree_with_the_tree() {
        let mut rng = Rng::new(11);
        for _ in 0..2_000 {
            let node = tree(&mut rng, 7, 30);
            let mut tokens = Vec::new();
            write_tree(&node, &mut tokens);
            while reduce_once(&mut tokens) {}
            assert_eq!(tokens, [N(eval(&node))]);
        }
    }
}
