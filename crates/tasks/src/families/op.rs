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
