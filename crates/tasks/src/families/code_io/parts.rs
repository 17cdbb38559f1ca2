//! The parts `code_io` functions are composed from: conditions on one
//! value and maps of one value. Each part can be evaluated in Rust, written
//! as rhai, and read as a description; the tests run the rhai against the
//! Rust evaluation.

use crate::rng::Rng;

/// A condition on one integer. Constants are drawn inside the range the
/// inputs come from, so both outcomes occur.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pred {
    Gt(i64),
    Lt(i64),
    Ne(i64),
    Even,
    Odd,
    /// `x % m == 0`.
    Div(i64),
    /// `x % m != 0`.
    NotDiv(i64),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
}

impl Pred {
    /// One simple condition whose constants lie in `lo..=hi`.
    pub(super) fn simple(rng: &mut Rng, lo: i64, hi: i64) -> Pred {
        match rng.below(7) {
            0 => Pred::Gt(rng.range(lo, hi - 1)),
            1 => Pred::Lt(rng.range(lo + 1, hi)),
            2 => Pred::Ne(rng.range(lo, hi)),
            3 => Pred::Even,
            4 => Pred::Odd,
            5 => Pred::Div(rng.range(3, 5)),
            _ => Pred::NotDiv(rng.range(3, 5)),
        }
    }

    /// One simple condition, or two joined by `&&` or `||` (half the time),
    /// neither implied by the other on `lo..=hi` (so both matter).
    pub(super) fn compound(rng: &mut Rng, lo: i64, hi: i64) -> Pred {
        let mut first = Pred::simple(rng, lo, hi);
        if rng.chance(0.5) {
            return first;
        }
        let mut second = Pred::simple(rng, lo, hi);
        let independent = |a: &Pred, b: &Pred| {
            let only = |x: &Pred, y: &Pred| (lo..=hi).any(|v| x.holds(v) && !y.holds(v));
            only(a, b) && only(b, a)
        };
        while std::mem::discriminant(&second) == std::mem::discriminant(&first)
            || !independent(&first, &second)
        {
            first = Pred::simple(rng, lo, hi);
            second = Pred::simple(rng, lo, hi);
        }
        // One order of the two, so `a && b` and `b && a` are one function.
        if second.code("x") < first.code("x") {
            std::mem::swap(&mut first, &mut second);
        }
        let (a, b) = (Box::new(first), Box::new(second));
        if rng.chance(0.5) {
            Pred::And(a, b)
        } else {
            Pred::Or(a, b)
        }
    }

    pub(super) fn holds(&self, v: i64) -> bool {
        match self {
            Pred::Gt(k) => v > *k,
            Pred::Lt(k) => v < *k,
            Pred::Ne(k) => v != *k,
            Pred::Even => v % 2 == 0,
            Pred::Odd => v % 2 != 0,
            Pred::Div(m) => v % m == 0,
            Pred::NotDiv(m) => v % m != 0,
            Pred::And(a, b) => a.holds(v) && b.holds(v),
            Pred::Or(a, b) => a.holds(v) || b.holds(v),
        }
    }

    /// The condition in rhai, on the variable or expression `var`.
    pub(super) fn code(&self, var: &str) -> String {
        match self {
            Pred::Gt(k) => format!("{var} > {k}"),
            Pred::Lt(k) => format!("{var} < {k}"),
            Pred::Ne(k) => format!("{var} != {k}"),
            Pred::Even => format!("{var} % 2 == 0"),
            Pred::Odd => format!("{var} % 2 != 0"),
            Pred::Div(m) => format!("{var} % {m} == 0"),
            Pred::NotDiv(m) => format!("{var} % {m} != 0"),
            Pred::And(a, b) => format!("{} && {}", a.code(var), b.code(var)),
            Pred::Or(a, b) => format!("{} || {}", a.code(var), b.code(var)),
        }
    }
}

/// A map of one integer to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Map {
    Id,
    Square,
    Mul(i64),
    /// `x + c` (written `x - |c|` when `c < 0`); `c != 0`.
    Add(i64),
    /// `x % m`.
    Mod(i64),
}

impl Map {
    /// Any map; `Id` a third of the time.
    pub(super) fn draw(rng: &mut Rng) -> Map {
        if rng.chance(1.0 / 3.0) {
            return Map::Id;
        }
        Map::draw_other(rng)
    }

    /// Any map but the identity.
    pub(super) fn draw_other(rng: &mut Rng) -> Map {
        match rng.below(4) {
            0 => Map::Square,
            1 => Map::Mul(rng.range(2, 5)),
            2 => {
                let c = rng.range(1, 9);
                Map::Add(if rng.chance(0.5) { c } else { -c })
            }
            _ => Map::Mod(rng.range(2, 5)),
        }
    }

    pub(super) fn apply(self, v: i64) -> i64 {
        match self {
            Map::Id => v,
            Map::Square => v * v,
            Map::Mul(c) => v * c,
            Map::Add(c) => v + c,
            Map::Mod(m) => v % m,
        }
    }

    /// The map in rhai, applied to `var`.
    pub(super) fn code(self, var: &str) -> String {
        match self {
            Map::Id => var.to_string(),
            Map::Square => format!("{var} * {var}"),
            Map::Mul(c) => format!("{var} * {c}"),
            Map::Add(c) if c < 0 => format!("{var} - {}", -c),
            Map::Add(c) => format!("{var} + {c}"),
            Map::Mod(m) => format!("{var} % {m}"),
        }
    }
}

/// A condition on one lowercase letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CharPred {
    Vowel,
    Consonant,
    Is(char),
    IsNot(char),
    /// Alphabetically before the letter.
    Before(char),
}

/// The letters string inputs are made of.
pub(super) const LETTERS: &[u8] = b"abcdeiou";

impl CharPred {
    pub(super) fn draw(rng: &mut Rng) -> CharPred {
        let letter = |rng: &mut Rng| char::from(*rng.pick(LETTERS));
        match rng.below(5) {
            0 => CharPred::Vowel,
            1 => CharPred::Consonant,
            2 => CharPred::Is(letter(rng)),
            3 => CharPred::IsNot(letter(rng)),
            _ => CharPred::Before(char::from(*rng.pick(b"bcdeio"))),
        }
    }

    pub(super) fn holds(self, c: char) -> bool {
        let vowel = "aeiou".contains(c);
        match self {
            CharPred::Vowel => vowel,
            CharPred::Consonant => !vowel,
            CharPred::Is(l) => c == l,
            CharPred::IsNot(l) => c != l,
            CharPred::Before(l) => c < l,
        }
    }

    pub(super) fn code(self, var: &str) -> String {
        match self {
            CharPred::Vowel => format!("\"aeiou\".contains({var})"),
            CharPred::Consonant => format!("!\"aeiou\".contains({var})"),
            CharPred::Is(l) => format!("{var} == '{l}'"),
            CharPred::IsNot(l) => format!("{var} != '{l}'"),
            CharPred::Before(l) => format!("{var} < '{l}'"),
        }
    }
}
