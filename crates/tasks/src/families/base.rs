//! `base`: convert a whole number between bases 2 to 16.
//!
//! Into base 10 the digits are folded left to right (Horner); out of base 10
//! the number is divided repeatedly and the remainders read from the last:
//!
//! ```text
//! Convert 2f from base 16 to base 2.
//! <think>2f: 2, 15
//! 2*16+15=47
//! 47=23*2+1
//! 23=11*2+1
//! 11=5*2+1
//! 5=2*2+1
//! 2=1*2+0
//! 1=0*2+1
//! remainders from the last: 101111</think><answer>101111</answer>
//! ```
//!
//! Digits above 9 are the letters a to f. An answer is the digits only, in
//! either case, leading zeros free; a prefix like `0x` is refused.

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `base` family.
pub(crate) struct Base;

/// The knobs of one level.
struct Level {
    /// (from, to) base pairs a problem picks from; 0 stands for "any base
    /// in 3..=9" and 1 for "any base in 2..=16 but 10".
    pairs: &'static [(u32, u32)],
    /// Smallest and largest value.
    values: (i64, i64),
}

const ANY_SMALL: u32 = 0;
const ANY: u32 = 1;

const LEVELS: [Level; 5] = [
    Level {
        pairs: &[(2, 10)],
        values: (4, 255),
    },
    Level {
        pairs: &[(10, 2)],
        values: (4, 255),
    },
    Level {
        pairs: &[(16, 10), (10, 16)],
        values: (16, 255),
    },
    Level {
        pairs: &[(ANY_SMALL, 10), (10, ANY_SMALL)],
        values: (10, 500),
    },
    Level {
        pairs: &[(ANY, ANY)],
        values: (16, 4095),
    },
];

impl Task for Base {
    fn name(&self) -> &'static str {
        "base"
    }

    fn summary(&self) -> &'static str {
        "convert a whole number between bases 2 to 16"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let name = |b: u32| match b {
            ANY_SMALL => "base 3..=9".to_string(),
            ANY => "any base 2..=16".to_string(),
            b => format!("base {b}"),
        };
        let pairs: Vec<String> = l
            .pairs
            .iter()
            .map(|&(f, t)| format!("{} to {}", name(f), name(t)))
            .collect();
        format!(
            "{}; values {}..={}",
            pairs.join(" or "),
            l.values.0,
            l.values.1
        )
    }

    /// Levels 1 to 3 hold 252, 252 and 480 distinct questions: hold out
    /// about a tenth.
    fn heldout_size(&self, level: u32) -> usize {
        match level {
            1 | 2 => 25,
            3 => 50,
            _ => crate::split::HELDOUT_SIZE,
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let pair = *rng.pick(l.pairs);
        let (from, to) = bases(rng, pair);
        let value = rng.range(l.values.0, l.values.1);
        let written = to_digits(value, from);
        let (steps, answer) = solve(value, from, to);
        let letters = if to > 10 {
            " (a to f for ten to fifteen)"
        } else {
            ""
        };
        Generated {
            prompt: format!(
                "Convert {written} from base {from} to base {to}. Answer with the digits \
                 only{letters}."
            ),
            solution: answer::render(&steps, &answer),
            answer,
            check: if to == 10 {
                Check::Number
            } else {
                Check::Digits { base: to }
            },
            key: format!("base {from}->{to} {value}"),
        }
    }
}

/// The bases of a pair, drawing the wildcards.
fn bases(rng: &mut Rng, (from, to): (u32, u32)) -> (u32, u32) {
    match (from, to) {
        (ANY, ANY) => {
            let all: Vec<u32> = (2..=16).filter(|&b| b != 10).collect();
            let from = *rng.pick(&all);
            let others: Vec<u32> = all.into_iter().filter(|&b| b != from).collect();
            (from, *rng.pick(&others))
        }
        (ANY_SMALL, to) => (rng.range(3, 9) as u32, to),
        (from, ANY_SMALL) => (from, rng.range(3, 9) as u32),
        pair => pair,
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `value` (>= 0) written in `base`.
fn to_digits(mut value: i64, base: u32) -> String {
    let base = i64::from(base);
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % base) as usize]);
        value /= base;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The worked steps from `from` to `to`, and the answer.
fn solve(value: i64, from: u32, to: u32) -> (Vec<String>, String) {
    let mut steps = Vec::new();
    if from != 10 {
        fold_digits(&to_digits(value, from), from, &mut steps);
    }
    if to != 10 {
        divide_out(value, to, &mut steps);
    }
    (steps, to_digits(value, to))
}

/// Horner's rule: `acc*base+digit=next`, one digit per line.
fn fold_digits(written: &str, base: u32, steps: &mut Vec<String>) {
    let digits: Vec<i64> = written
        .bytes()
        .map(|b| DIGITS.iter().position(|&d| d == b).unwrap_or(0) as i64)
        .collect();
    if written.bytes().any(|b| b.is_ascii_alphabetic()) {
        let listed: Vec<String> = digits.iter().map(i64::to_string).collect();
        steps.push(format!("{written}: {}", listed.join(", ")));
    }
    let mut acc = digits[0];
    for &d in &digits[1..] {
        let next = acc * i64::from(base) + d;
        steps.push(format!("{acc}*{base}+{d}={next}"));
        acc = next;
    }
    if digits.len() == 1 {
        steps.push(format!("{written}={acc}"));
    }
}

/// Repeated division: `n=q*base+r`, then the remainders from the last.
fn divide_out(mut value: i64, base: u32, steps: &mut Vec<String>) {
    let b = i64::from(base);
    let mut remainders = String::new();
    loop {
        let (q, r) = (value / b, value % b);
        let digit = char::from(DIGITS[r as usize]);
        let letter = if r >= 10 {
            format!(" ({digit})")
        } else {
            String::new()
        };
        steps.push(format!("{value}={q}*{base}+{r}{letter}"));
        remainders.insert(0, digit);
        value = q;
        if value == 0 {
            break;
        }
    }
    steps.push(format!("remainders from the last: {remainders}"));
}

/// `text` as the canonical digits of its value in `base` (lowercase, no
/// leading zeros), when it reads as a number in that base.
pub(crate) fn canonical(text: &str, base: u32) -> Option<String> {
    if !(2..=16).contains(&base) {
        return None;
    }
    let mut value = parse(text.trim(), base).ok()?;
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % u128::from(base)) as usize]);
        value /= u128::from(base);
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).ok()
}

/// Longest answer read, in characters; more is refused unread.
const MAX_DIGITS: usize = 64;

/// Judge digits in `base` against the reference (also in `base`).
pub(crate) fn judge(reference: &str, base: u32, extracted: &str) -> Score {
    if !(2..=16).contains(&base) {
        return Score::fail(format!("base {base} is not in 2..=16"));
    }
    let Ok(want) = parse(reference.trim(), base) else {
        return Score::fail(format!("reference is not a base-{base} number"));
    };
    match parse(extracted.trim(), base) {
        Ok(got) if got == want => Score::pass("correct"),
        Ok(_) => Score::fail("wrong answer"),
        Err(why) => Score::fail(why),
    }
}

/// The value of a digit string in `base`.
fn parse(text: &str, base: u32) -> Result<u128, String> {
    if text.is_empty() {
        return Err("empty answer".to_string());
    }
    if text.len() > MAX_DIGITS {
        return Err("too many digits".to_string());
    }
    let lower = text.to_ascii_lowercase();
    if ["0x", "0b", "0o"].iter().any(|p| lower.starts_with(p)) && text.len() > 2 {
        return Err("digits only, without a base prefix".to_string());
    }
    if text.split_whitespace().count() > 1 || text.contains([',', ';']) {
        return Err("several answers".to_string());
    }
    let mut value: u128 = 0;
    for c in lower.chars() {
        let digit = c
            .to_digit(16)
            .filter(|&d| d < base)
            .ok_or_else(|| format!("'{c}' is not a base-{base} digit"))?;
        value = value * u128::from(base) + u128::from(digit);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use proptest::prelude::{prop_assert, proptest};

    const SEEDS: u64 = 400;

    fn each(mut f: impl FnMut(u32, Generated)) {
        for level in 1..=Base.max_level() {
            for seed in 0..SEEDS {
                f(level, Base.generate(&mut Rng::new(seed), level));
            }
        }
    }

    /// The question as the prompt states it.
    fn asked(prompt: &str) -> (String, u32, u32) {
        let rest = prompt.strip_prefix("Convert ").unwrap();
        let (written, rest) = rest.split_once(" from base ").unwrap();
        let (from, rest) = rest.split_once(" to base ").unwrap();
        let to = rest.split('.').next().unwrap();
        (
            written.to_string(),
            from.parse().unwrap(),
            to.parse().unwrap(),
        )
    }

    /// Counting: the digit string after `n` increments of "0" in `base`,
    /// carrying by hand. A different method from division and Horner.
    fn count_to(n: i64, base: u32) -> String {
        let mut digits = vec![0u32];
        for _ in 0..n {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    break;
                }
                i -= 1;
                digits[i] += 1;
                if digits[i] < base {
                    break;
                }
                digits[i] = 0;
            }
        }
        digits
            .iter()
            .map(|&d| char::from(DIGITS[d as usize]))
            .collect()
    }

    #[test]
    fn answers_agree_with_counting() {
        each(|_, g| {
            let (written, from, to) = asked(&g.prompt);
            // The value is the number of increments that reach the written digits.
            let value = (0..5_000).find(|&n| count_to(n, from) == written).unwrap();
            assert_eq!(g.answer, count_to(value, to), "{}", g.prompt);
        });
    }

    #[test]
    fn worked_steps_are_true_and_end_in_the_answer() {
        each(|level, g| {
            let p = g.into_problem("base", level, "base/test".to_string());
            assert_eq!(p.verify(&p.solution).reward, 1.0, "{}", p.solution);
            let think = p.solution.split("</think>").next().unwrap();
            for line in think.trim_start_matches("<think>").lines() {
                if line.contains(':') {
                    continue;
                }
                let arithmetic = line.split(' ').next().unwrap();
                assert_true_arithmetic(arithmetic);
            }
            assert!(p.prompt.len() < 120, "{}", p.prompt);
        });
    }

    #[test]
    fn levels_ask_what_they_say() {
        each(|level, g| {
            let (written, from, to) = asked(&g.prompt);
            let l = &LEVELS[level as usize - 1];
            let value = i64::from_str_radix(&written, from).unwrap();
            assert!((l.values.0..=l.values.1).contains(&value), "{}", g.prompt);
            assert_ne!(from, to);
            match level {
                1 => assert_eq!((from, to), (2, 10)),
                2 => assert_eq!((from, to), (10, 2)),
                _ => {}
            }
        });
    }

    #[test]
    fn judge_reads_digits_in_the_base() {
        assert_eq!(judge("2f", 16, "2F").reward, 1.0);
        assert_eq!(judge("2f", 16, "002f").reward, 1.0);
        assert_eq!(judge("101", 2, "101").reward, 1.0);
        assert_eq!(
            judge("101", 2, "0b101").reason,
            "digits only, without a base prefix"
        );
        assert_eq!(judge("101", 2, "121").reason, "'2' is not a base-2 digit");
        assert_eq!(judge("101", 2, "101 or 110").reason, "several answers");
        assert_eq!(judge("101", 2, "110").reason, "wrong answer");
        assert_eq!(
            judge("101", 2, &"1".repeat(1_000)).reason,
            "too many digits"
        );
        assert_eq!(judge("101", 99, "101").reward, 0.0);
    }

    proptest! {
        #[test]
        fn judge_never_panics(text in "\\PC{0,80}", base in 0u32..40) {
            let s = judge("1a", base, &text);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }
    }
}
