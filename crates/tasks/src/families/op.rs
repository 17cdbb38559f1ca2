//! The three integer operations the arithmetic-style families ask about.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
}

impl Op {
    pub(crate) const ALL: [Op; 3] = [Op::Add, Op::Sub, Op::Mul];

    pub(crate) fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
        }
    }

    /// Binding strength: `*` before `+` and `-`.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul => 2,
        }
    }

    pub(crate) fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
        }
    }
}

/// An expression over text leaves and the three operations, for canonical
/// keys: two expressions that differ only by the order of the terms of a
/// sum or the factors of a product have the same [`Tree::canonical`] form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tree {
    Leaf(String),
    Node(Box<Tree>, Op, Box<Tree>),
}

impl Tree {
    pub(crate) fn node(left: Tree, op: Op, right: Tree) -> Tree {
        Tree::Node(Box::new(left), op, Box::new(right))
    }

    /// `leaves[0] ops[0] leaves[1] ...` read with `*` before `+` and `-`,
    /// left to right.
    pub(crate) fn from_flat(leaves: &[String], ops: &[Op]) -> Tree {
        let mut terms: Vec<Tree> = vec![Tree::Leaf(leaves[0].clone())];
        let mut signs: Vec<Op> = Vec::new();
        for (op, leaf) in ops.iter().zip(&leaves[1..]) {
            let leaf = Tree::Leaf(leaf.clone());
            match op {
                Op::Mul => {
                    let last = terms.pop().unwrap_or(Tree::Leaf(String::new()));
                    terms.push(Tree::node(last, Op::Mul, leaf));
                }
                _ => {
                    signs.push(*op);
                    terms.push(leaf);
                }
            }
        }
        let mut terms = terms.into_iter();
        let first = terms.next().unwrap_or(Tree::Leaf(String::new()));
        signs
            .into_iter()
            .zip(terms)
            .fold(first, |acc, (op, term)| Tree::node(acc, op, term))
    }

    /// A sum as its signed terms sorted (`+3+4*5` for `4*5+3`), a product
    /// as its factors sorted (`2*3*x`), nested sums in parentheses.
    pub(crate) fn canonical(&self) -> String {
        let mut terms = Vec::new();
        self.collect_terms(true, &mut terms);
        if let [(true, only)] = terms.as_slice() {
            return only.clone();
        }
        terms.sort();
        terms
            .iter()
            .map(|(positive, t)| format!("{}{t}", if *positive { '+' } else { '-' }))
            .collect()
    }

    fn collect_terms(&self, positive: bool, out: &mut Vec<(bool, String)>) {
        match self {
            Tree::Node(l, Op::Add, r) => {
                l.collect_terms(positive, out);
                r.collect_terms(positive, out);
            }
            Tree::Node(l, Op::Sub, r) => {
                l.collect_terms(positive, out);
                r.collect_terms(!positive, out);
            }
            _ => out.push((positive, self.product())),
        }
    }

    fn product(&self) -> String {
        let mut factors = Vec::new();
        self.collect_factors(&mut factors);
        factors.sort();
        factors.join("*")
    }

    fn collect_factors(&self, out: &mut Vec<String>) {
        match self {
            Tree::Node(l, Op::Mul, r) => {
                l.collect_factors(out);
                r.collect_factors(out);
            }
            Tree::Leaf(text) => out.push(text.clone()),
            sum => out.push(format!("({})", sum.canonical())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(text: &str) -> Tree {
        // Single-character leaves and operators: "3+4*5".
        let leaves: Vec<String> = text.split(['+', '-', '*']).map(str::to_string).collect();
        let ops: Vec<Op> = text
            .chars()
            .filter_map(|c| Op::ALL.into_iter().find(|op| op.symbol() == c))
            .collect();
        Tree::from_flat(&leaves, &ops)
    }

    #[test]
    fn reordered_sums_and_products_share_a_form() {
        assert_eq!(flat("3+4*5").canonical(), flat("5*4+3").canonical());
        assert_eq!(flat("3+4").canonical(), flat("4+3").canonical());
        assert_eq!(flat("8-3-2").canonical(), flat("8-2-3").canonical());
        assert_eq!(flat("2*3*4").canonical(), flat("4*2*3").canonical());
        assert_ne!(flat("5-3").canonical(), flat("3-5").canonical());
        assert_ne!(flat("3+4*5").canonical(), flat("3*4+5").canonical());
        assert_eq!(flat("7").canonical(), "7");
        assert_eq!(flat("3*4").canonical(), "3*4");
        assert_eq!(flat("5-3").canonical(), "-3+5");
    }

    #[test]
    fn nested_sums_keep_their_meaning() {
        let leaf = |s: &str| Tree::Leaf(s.to_string());
        // 4-(2+3) is 4-2-3; (1+2)*4 keeps the sum inside the product.
        let a = Tree::node(
            leaf("4"),
            Op::Sub,
            Tree::node(leaf("2"), Op::Add, leaf("3")),
        );
        assert_eq!(a.canonical(), flat("4-3-2").canonical());
        let b = Tree::node(
            Tree::node(leaf("1"), Op::Add, leaf("2")),
            Op::Mul,
            leaf("4"),
        );
        let c = Tree::node(
            leaf("4"),
            Op::Mul,
            Tree::node(leaf("2"), Op::Add, leaf("1")),
        );
        assert_eq!(b.canonical(), c.canonical());
        assert_eq!(b.canonical(), "(+1+2)*4");
    }
}
