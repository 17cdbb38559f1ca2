//! A small, safe evaluator for integer arithmetic that a model wrote.
//!
//! Grammar (ASCII only, whitespace between tokens ignored):
//!
//! ```text
//! expr   := term (('+' | '-') term)*
//! term   := factor (('*' | '/') factor)*
//! factor := integer | '(' expr ')' | '-' factor      (unary minus only if allowed)
//! ```
//!
//! Arithmetic is checked `i64`; `/` must divide exactly, so `7/2` is an error,
//! not 3. The text length and the nesting depth are bounded by [`Syntax`], so
//! hostile input costs at most `max_len` steps and `max_depth` stack frames.

use std::fmt;

/// What the evaluator accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// Longest accepted text, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting of parentheses and unary minus.
    pub max_depth: usize,
    /// Whether `-x` is allowed (binary minus always is).
    pub unary_minus: bool,
}

/// Why a text is not a valid expression or has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExprError {
    Empty,
    TooLong { len: usize, max: usize },
    TooDeep { max: usize },
    Unexpected { at: usize, found: char },
    UnexpectedEnd,
    NumberTooLarge,
    Overflow,
    DivisionByZero,
    InexactDivision { num: i64, den: i64 },
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty expression"),
            Self::TooLong { len, max } => write!(f, "expression of {len} bytes (limit {max})"),
            Self::TooDeep { max } => write!(f, "nested deeper than {max}"),
            Self::Unexpected { at, found } => write!(f, "unexpected {found:?} at byte {at}"),
            Self::UnexpectedEnd => write!(f, "expression ends early"),
            Self::NumberTooLarge => write!(f, "number too large"),
            Self::Overflow => write!(f, "arithmetic overflow"),
            Self::DivisionByZero => write!(f, "division by zero"),
            Self::InexactDivision { num, den } => write!(f, "{num}/{den} is not exact"),
        }
    }
}

/// The value of an expression and the integer literals it used, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evaluation {
    pub value: i64,
    pub literals: Vec<i64>,
}

/// Parse and evaluate `text` under `syntax`.
pub(crate) fn evaluate(text: &str, syntax: &Syntax) -> Result<Evaluation, ExprError> {
    if text.len() > syntax.max_len {
        return Err(ExprError::TooLong {
            len: text.len(),
            max: syntax.max_len,
        });
    }
    if text.trim().is_empty() {
        return Err(ExprError::Empty);
    }
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
        syntax,
        literals: Vec::new(),
    };
    let value = parser.expr()?;
    parser.skip_space();
    if parser.pos < parser.bytes.len() {
        return Err(parser.unexpected());
    }
    Ok(Evaluation {
        value,
        literals: parser.literals,
    })
}

/// Recursive descent that evaluates as it parses.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    syntax: &'a Syntax,
    literals: Vec<i64>,
}

impl Parser<'_> {
    fn expr(&mut self) -> Result<i64, ExprError> {
        let mut acc = self.term()?;
        loop {
            match self.peek() {
                Some(b'+') => {
                    self.pos += 1;
                    let rhs = self.term()?;
                    acc = acc.checked_add(rhs).ok_or(ExprError::Overflow)?;
                }
                Some(b'-') => {
                    self.pos += 1;
                    let rhs = self.term()?;
                    acc = acc.checked_sub(rhs).ok_or(ExprError::Overflow)?;
                }
                _ => return Ok(acc),
            }
        }
    }

    fn term(&mut self) -> Result<i64, ExprError> {
        let mut acc = self.factor()?;
        loop {
            match self.peek() {
                Some(b'*') => {
                    self.pos += 1;
                    let rhs = self.factor()?;
                    acc = acc.checked_mul(rhs).ok_or(ExprError::Overflow)?;
                }
                Some(b'/') => {
                    self.pos += 1;
                    let rhs = self.factor()?;
                    acc = divide_exactly(acc, rhs)?;
                }
                _ => return Ok(acc),
            }
        }
    }

    fn factor(&mut self) -> Result<i64, ExprError> {
        match self.peek() {
            None => Err(ExprError::UnexpectedEnd),
            Some(b'0'..=b'9') => self.number(),
            Some(b'(') => {
                self.pos += 1;
                self.enter()?;
                let value = self.expr()?;
                self.depth -= 1;
                match self.peek() {
                    Some(b')') => {
                        self.pos += 1;
                        Ok(value)
                    }
                    None => Err(ExprError::UnexpectedEnd),
                    Some(_) => Err(self.unexpected()),
                }
            }
            Some(b'-') if self.syntax.unary_minus => {
                self.pos += 1;
                self.enter()?;
                let value = self.factor()?;
                self.depth -= 1;
                value.checked_neg().ok_or(ExprError::Overflow)
            }
            Some(_) => Err(self.unexpected()),
        }
    }

    fn number(&mut self) -> Result<i64, ExprError> {
        let mut value: i64 = 0;
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or(ExprError::NumberTooLarge)?;
            self.pos += 1;
        }
        self.literals.push(value);
        Ok(value)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > self.syntax.max_depth {
            return Err(ExprError::TooDeep {
                max: self.syntax.max_depth,
            });
        }
        Ok(())
    }

    /// The next non-space byte, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    /// An error naming the character at the current position. `pos` only
    /// ever advances over ASCII bytes, so it is a char boundary.
    fn unexpected(&self) -> ExprError {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(found) => ExprError::Unexpected {
                at: self.pos,
                found,
            },
            None => ExprError::UnexpectedEnd,
        }
    }
}

fn divide_exactly(num: i64, den: i64) -> Result<i64, ExprError> {
    if den == 0 {
        return Err(ExprError::DivisionByZero);
    }
    if num.checked_rem(den).ok_or(ExprError::Overflow)? != 0 {
        return Err(ExprError::InexactDivision { num, den });
    }
    num.checked_div(den).ok_or(ExprError::Overflow)
}

/// Panic unless every arithmetic claim in a worked-solution line is true;
/// returns how many claims it checked. After an optional `label: ` prefix,
/// a line is split into clauses at `, `. A clause `A mod M=R` claims that
/// `A` leaves remainder `R` (in `0..M`); a clause of numbers, operators and
/// `=` claims that all its sides are equal, after an optional leading
/// `name=`. Clauses with words are skipped.
#[cfg(test)]
pub(crate) fn assert_true_arithmetic(line: &str) -> usize {
    const ANY: Syntax = Syntax {
        max_len: 1_000,
        max_depth: 64,
        unary_minus: true,
    };
    let eval = |text: &str| match evaluate(text, &ANY) {
        Ok(e) => e.value,
        Err(e) => panic!("{text:?} in {line:?}: {e}"),
    };
    let body = line.split_once(": ").map_or(line, |(_, rest)| rest);
    let mut claims = 0;
    for clause in body.split(", ") {
        if let Some((a, rest)) = clause.split_once(" mod ") {
            let (m, r) = rest.split_once('=').expect("mod clause has '='");
            let m = eval(m);
            assert_eq!(eval(a).rem_euclid(m), eval(r), "{line:?}");
            claims += 1;
            continue;
        }
        let clause = match clause.split_once('=') {
            Some((name, rest)) if name.chars().all(|c| c.is_ascii_alphabetic()) => rest,
            _ => clause,
        };
        if !clause.chars().all(|c| "0123456789+-*/()= ".contains(c)) {
            continue;
        }
        let mut sides = clause.split('=').map(eval);
        if let Some(first) = sides.next() {
            for side in sides {
                assert_eq!(side, first, "{line:?}");
                claims += 1;
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOOSE: Syntax = Syntax {
        max_len: 10_000,
        max_depth: 64,
        unary_minus: true,
    };
    const STRICT: Syntax = Syntax {
        max_len: 100,
        max_depth: 8,
        unary_minus: false,
    };

    fn value(text: &str) -> Result<i64, ExprError> {
        evaluate(text, &LOOSE).map(|e| e.value)
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(value("2+3*4"), Ok(14));
        assert_eq!(value("(2+3)*4"), Ok(20));
        assert_eq!(value("10-4-3"), Ok(3));
        assert_eq!(value("100/5/2"), Ok(10));
        assert_eq!(value(" ( 25 - 5 ) * 4 + 3 "), Ok(83));
        assert_eq!(value("-3*-2"), Ok(6));
        assert_eq!(value("2--3"), Ok(5));
    }

    #[test]
    fn literals_are_listed_in_order() {
        let e = evaluate("(25-5)*4+3", &STRICT).unwrap();
        assert_eq!(e.literals, vec![25, 5, 4, 3]);
        assert_eq!(e.value, 83);
    }

    #[test]
    fn division_must_be_exact() {
        assert_eq!(
            value("7/2"),
            Err(ExprError::InexactDivision { num: 7, den: 2 })
        );
        assert_eq!(value("8/(2-2)"), Err(ExprError::DivisionByZero));
        assert_eq!(value("-8/2"), Ok(-4));
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in [
            "", "   ", "1+", "(1+2", "1+2)", "1 2", "1x2", "1×2", "3,4", "1=1", "+1", "()",
        ] {
            assert!(value(bad).is_err(), "{bad:?} should not evaluate");
        }
        assert!(matches!(
            evaluate("-1", &STRICT),
            Err(ExprError::Unexpected { at: 0, found: '-' })
        ));
        assert_eq!(
            value("1×2"),
            Err(ExprError::Unexpected { at: 1, found: '×' })
        );
    }

    #[test]
    fn limits_and_overflow_are_errors() {
        assert_eq!(value("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(value("9223372036854775808"), Err(ExprError::NumberTooLarge));
        assert_eq!(value("9223372036854775807+1"), Err(ExprError::Overflow));
        assert_eq!(value("4611686018427387904*2"), Err(ExprError::Overflow));
        assert_eq!(value("0-9223372036854775807-2"), Err(ExprError::Overflow));
        assert_eq!(
            value("(0-9223372036854775807-1)/(0-1)"),
            Err(ExprError::Overflow)
        );
        let deep = format!("{}1{}", "(".repeat(9), ")".repeat(9));
        assert_eq!(evaluate(&deep, &STRICT), Err(ExprError::TooDeep { max: 8 }));
        let shallow = format!("{}1{}", "(".repeat(8), ")".repeat(8));
        assert_eq!(evaluate(&shallow, &STRICT).map(|e| e.value), Ok(1));
        assert!(matches!(
            evaluate(&"1+".repeat(60), &STRICT),
            Err(ExprError::TooLong { len: 120, max: 100 })
        ));
        let minus_chain = "-".repeat(5000) + "1";
        assert_eq!(value(&minus_chain), Err(ExprError::TooDeep { max: 64 }));
    }

    #[test]
    fn arithmetic_claims_are_checked() {
        assert_eq!(assert_true_arithmetic("84=2*36+12"), 1);
        assert_eq!(assert_true_arithmetic("3^4: 9*9=81, 81 mod 50=31"), 2);
        assert_eq!(assert_true_arithmetic("43=1*30+13, t=0-1*1=-1"), 2);
        assert_eq!(assert_true_arithmetic("-10 mod 43=33"), 1);
        assert_eq!(assert_true_arithmetic("gcd=12"), 0);
        assert_eq!(assert_true_arithmetic("Mia has 3 apples"), 0);
        for false_claim in ["84=2*36+11", "9*9=81, 81 mod 50=30", "t=1-2*(-1)=1"] {
            let caught = std::panic::catch_unwind(|| assert_true_arithmetic(false_claim));
            assert!(caught.is_err(), "{false_claim:?} passed");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = evaluate(&text, &LOOSE);
            let _ = evaluate(&text, &STRICT);
        }

        #[test]
        fn arithmetic_shaped_text_never_panics(text in "[0-9()+*/ -]{0,400}") {
            let _ = evaluate(&text, &LOOSE);
        }

        #[test]
        fn matches_i128_reference(a in -1000i64..1000, b in -1000i64..1000, c in 1i64..50) {
            let text = format!("({a})*({b})-({a})+({b})*{c}");
            let expected = a as i128 * b as i128 - a as i128 + b as i128 * c as i128;
            prop_assert_eq!(value(&text).map(i128::from), Ok(expected));
        }
    }
}
