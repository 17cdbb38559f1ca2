//! `arith`, `add`, `sub`, `mul`: one operation on two integers whose digit
//! count is the level.
//!
//! `arith` mixes the three operations; `add`, `sub` and `mul` each fix one,
//! so a run can train on, say, 3-digit addition alone. The worked solutions
//! are the school methods, one short line per step:
//!
//! ```text
//! add  847+589:  7+9=16 -> 6 / 4+8+1=13 -> 36 / 8+5+1=14 -> 436 / 847+589=1436
//! sub  542-389:  12-9=3 -> 3 / 14-1-8=5 -> 53 / 5-1-3=1 -> 153 / 542-389=153
//! mul  47*38:    47*8=376 / 47*3=141 / 376+1410=1786 / 47*38=1786
//! ```
//!
//! A column line is `top+bottom[+carry]=sum -> digits so far`; a borrowing
//! subtraction column shows the borrowed ten on the top digit (`12-9`) and
//! the borrow paid on the next column (`-1`). When the first operand is
//! smaller, the solution computes the reverse difference and negates it.

use super::op::{Op, Tree};
use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// Highest level: 8-digit operands (products still fit in i64).
const MAX_LEVEL: u32 = 8;

/// One of the four arithmetic families; they differ only in their operations.
pub(crate) struct Arith {
    name: &'static str,
    summary: &'static str,
    ops: &'static [Op],
}

/// `+`, `-` and `*` mixed.
pub(crate) static ARITH: Arith = Arith {
    name: "arith",
    summary: "add, subtract or multiply two integers",
    ops: &[Op::Add, Op::Sub, Op::Mul],
};

/// Addition only.
pub(crate) static ADD: Arith = Arith {
    name: "add",
    summary: "add two integers (column addition with carries)",
    ops: &[Op::Add],
};

/// Subtraction only.
pub(crate) static SUB: Arith = Arith {
    name: "sub",
    summary: "subtract two integers (column subtraction with borrows)",
    ops: &[Op::Sub],
};

/// Multiplication only.
pub(crate) static MUL: Arith = Arith {
    name: "mul",
    summary: "multiply two integers (partial products, then their sum)",
    ops: &[Op::Mul],
};

impl Task for Arith {
    fn name(&self) -> &'static str {
        self.name
    }

    fn summary(&self) -> &'static str {
        self.summary
    }

    fn max_level(&self) -> u32 {
        MAX_LEVEL
    }

    fn level_doc(&self, level: u32) -> String {
        if level == 1 {
            "both operands 0..=9".to_string()
        } else {
            format!("both operands {level}-digit")
        }
    }

    /// Level 1 has only 55 distinct sums, 55 products and 100 differences
    /// (by meaning: `4+5` is `5+4`), so `arith` holds out 12 problems and
    /// `add` and `mul` 8 more each, `sub` 16 (each avoiding the keys held out
    /// before it): about a fifth of the 100 ordered problems of each
    /// operation are then never drawn for training.
    fn heldout_size(&self, level: u32) -> usize {
        match (level, self.ops) {
            (1, [Op::Sub]) => 16,
            (1, [_]) => 8,
            (1, _) => 12,
            _ => crate::split::HELDOUT_SIZE,
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let op = *rng.pick(self.ops);
        let (lo, hi) = operand_range(level);
        let a = rng.range(lo, hi);
        let b = rng.range(lo, hi);
        let (result, steps) = match op {
            Op::Add => (a + b, add_steps(a, b)),
            Op::Sub => (a - b, sub_steps(a, b)),
            Op::Mul => (a * b, mul_steps(a, b)),
        };
        let answer = result.to_string();
        let key = Tree::from_flat(&[a.to_string(), b.to_string()], &[op]).canonical();
        Generated {
            prompt: format!("What is {a}{}{b}?", op.symbol()),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Number,
            key: format!("expr {key}"),
        }
    }
}

/// Operands with exactly `level` digits (0..=9 at level 1).
fn operand_range(level: u32) -> (i64, i64) {
    if level <= 1 {
        (0, 9)
    } else {
        (10i64.pow(level - 1), 10i64.pow(level) - 1)
    }
}

/// Decimal digits, least significant first.
fn digits(n: i64) -> Vec<i64> {
    n.to_string()
        .bytes()
        .rev()
        .map(|b| i64::from(b - b'0'))
        .collect()
}

/// Column addition of two non-negative integers.
fn add_steps(a: i64, b: i64) -> Vec<String> {
    let (da, db) = (digits(a), digits(b));
    let mut steps = Vec::new();
    let mut partial = String::new();
    let mut carry = 0;
    for i in 0..da.len().max(db.len()) {
        let (x, y) = (digit_at(&da, i), digit_at(&db, i));
        let sum = x + y + carry;
        partial.insert(0, char::from(b'0' + (sum % 10) as u8));
        let carried = if carry > 0 {
            format!("+{carry}")
        } else {
            String::new()
        };
        steps.push(format!("{x}+{y}{carried}={sum} -> {partial}"));
        carry = sum / 10;
    }
    steps.push(format!("{a}+{b}={}", a + b));
    steps
}

/// Column subtraction; a smaller first operand flips the problem and negates.
fn sub_steps(a: i64, b: i64) -> Vec<String> {
    let mut steps = Vec::new();
    let (top, bottom) = if a >= b {
        (a, b)
    } else {
        steps.push(format!("{a}-{b}=-({b}-{a})"));
        (b, a)
    };
    let (dt, db) = (digits(top), digits(bottom));
    let mut partial = String::new();
    let mut borrow = 0;
    for (i, &t) in dt.iter().enumerate() {
        let d = digit_at(&db, i);
        let borrow_out = i64::from(t - borrow < d);
        let lent = t + 10 * borrow_out;
        let diff = lent - borrow - d;
        partial.insert(0, char::from(b'0' + diff as u8));
        let paid = if borrow > 0 {
            format!("-{borrow}")
        } else {
            String::new()
        };
        steps.push(format!("{lent}{paid}-{d}={diff} -> {partial}"));
        borrow = borrow_out;
    }
    steps.push(format!("{a}-{b}={}", a - b));
    steps
}

/// One partial product per non-zero digit of `b`, then running sums.
fn mul_steps(a: i64, b: i64) -> Vec<String> {
    let db = digits(b);
    if db.len() == 1 {
        return vec![format!("{a}*{b}={}", a * b)];
    }
    let mut steps = Vec::new();
    let mut total: Option<i64> = None;
    for (shift, &d) in db.iter().enumerate() {
        if d == 0 {
            continue;
        }
        let product = a * d;
        steps.push(format!("{a}*{d}={product}"));
        let shifted = product * 10i64.pow(shift as u32);
        total = Some(match total {
            None => shifted,
            Some(sum) => {
                steps.push(format!("{sum}+{shifted}={}", sum + shifted));
                sum + shifted
            }
        });
    }
    steps.push(format!("{a}*{b}={}", a * b));
    steps
}

fn digit_at(digits: &[i64], i: usize) -> i64 {
    digits.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_shows_columns_with_carries() {
        assert_eq!(
            add_steps(847, 589),
            [
                "7+9=16 -> 6",
                "4+8+1=13 -> 36",
                "8+5+1=14 -> 436",
                "847+589=1436"
            ]
        );
        assert_eq!(add_steps(3, 4), ["3+4=7 -> 7", "3+4=7"]);
    }

    #[test]
    fn subtraction_shows_borrows_and_sign() {
        assert_eq!(
            sub_steps(542, 389),
            [
                "12-9=3 -> 3",
                "14-1-8=5 -> 53",
                "5-1-3=1 -> 153",
                "542-389=153"
            ]
        );
        assert_eq!(
            sub_steps(12, 47),
            ["12-47=-(47-12)", "7-2=5 -> 5", "4-1=3 -> 35", "12-47=-35"]
        );
        assert_eq!(sub_steps(100, 99)[..2], ["10-9=1 -> 1", "10-1-9=0 -> 01"]);
    }

    #[test]
    fn multiplication_sums_partial_products() {
        assert_eq!(
            mul_steps(47, 38),
            ["47*8=376", "47*3=141", "376+1410=1786", "47*38=1786"]
        );
        assert_eq!(mul_steps(47, 30), ["47*3=141", "47*30=1410"]);
        assert_eq!(mul_steps(7, 8), ["7*8=56"]);
    }

    #[test]
    fn level_sets_the_digit_count() {
        let mut rng = Rng::new(5);
        for level in 2..=MAX_LEVEL {
            for _ in 0..200 {
                let g = MUL.generate(&mut rng, level);
                let body = g
                    .prompt
                    .trim_start_matches("What is ")
                    .trim_end_matches('?');
                let (a, b) = body.split_once('*').expect("a product");
                assert_eq!(a.len(), level as usize, "{}", g.prompt);
                assert_eq!(b.len(), level as usize, "{}", g.prompt);
            }
        }
    }
}
