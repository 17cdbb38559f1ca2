//! `countdown`: reach a target from given numbers with + - * /.
//!
//! An answer is one expression over the given numbers, each used at most
//! once, with binary `+ - * /` and parentheses (no unary minus), where every
//! division is exact. It may end in `= N` when N is the target. Any such
//! expression that evaluates to the target scores 1.

use crate::arith_expr::{evaluate, Syntax};
use crate::problem::Score;

/// Countdown answers are short: six numbers fit in well under 100 bytes.
const ANSWER_SYNTAX: Syntax = Syntax {
    max_len: 200,
    max_depth: 32,
    unary_minus: false,
};

/// Judge an extracted answer to "reach `target` from `numbers`".
pub(crate) fn judge(numbers: &[i64], target: i64, extracted: &str) -> Score {
    let text = extracted.trim();
    let expression = match text.split_once('=') {
        None => text,
        Some((lhs, rhs)) => match rhs.trim().parse::<i64>() {
            Ok(claimed) if claimed == target => lhs,
            Ok(claimed) => return wrong(format!("claims {claimed}, target is {target}")),
            Err(_) => return wrong("after '=' expected the target number".to_string()),
        },
    };
    let evaluation = match evaluate(expression, &ANSWER_SYNTAX) {
        Ok(e) => e,
        Err(e) => return wrong(format!("not a valid expression: {e}")),
    };
    if let Some(reason) = misused_number(numbers, &evaluation.literals) {
        return wrong(reason);
    }
    if evaluation.value != target {
        return wrong(format!(
            "evaluates to {}, target is {target}",
            evaluation.value
        ));
    }
    Score {
        reward: 1.0,
        reason: format!("reaches {target}"),
    }
}

/// Why `used` is not a sub-multiset of `given`, if it is not.
fn misused_number(given: &[i64], used: &[i64]) -> Option<String> {
    let mut left = given.to_vec();
    for &n in used {
        match left.iter().position(|&g| g == n) {
            Some(i) => {
                left.swap_remove(i);
            }
            None if given.contains(&n) => {
                return Some(format!("uses {n} more often than given"));
            }
            None => return Some(format!("uses {n}, which is not given")),
        }
    }
    None
}

fn wrong(reason: String) -> Score {
    Score {
        reward: 0.0,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NUMBERS: [i64; 5] = [25, 5, 4, 3, 7];

    fn reward(answer: &str) -> f64 {
        judge(&NUMBERS, 83, answer).reward
    }

    #[test]
    fn correct_expressions_score_one() {
        assert_eq!(reward("(25-5)*4+3"), 1.0);
        assert_eq!(reward(" ( 25 - 5 ) * 4 + 3 "), 1.0);
        assert_eq!(reward("3+4*(25-5)"), 1.0);
        assert_eq!(reward("(25-5)*4+3 = 83"), 1.0);
        assert_eq!(reward("((25-5)*4)+3=83"), 1.0);
        assert_eq!(judge(&[6, 6, 2], 2, "6/6*2").reward, 1.0);
        assert_eq!(judge(&[6, 6, 2], 36, "6*6").reward, 1.0);
    }

    #[test]
    fn wrong_value_or_claim_scores_zero() {
        assert_eq!(reward("(25-5)*4+7"), 0.0);
        assert_eq!(reward("(25-5)*4+3 = 84"), 0.0);
        assert_eq!(reward("(25-5)*4+7 = 83"), 0.0);
        assert_eq!(reward("83 = (25-5)*4+3"), 0.0);
        assert_eq!(reward("(25-5)*4+3 = 83 = 83"), 0.0);
        assert_eq!(reward("83"), 0.0);
    }

    #[test]
    fn misused_numbers_score_zero() {
        let twice = judge(&NUMBERS, 83, "(25-5)*4+3+5-5");
        assert_eq!(twice.reward, 0.0);
        assert!(twice.reason.contains("more often"), "{}", twice.reason);
        let missing = judge(&NUMBERS, 83, "80+3");
        assert_eq!(missing.reward, 0.0);
        assert!(missing.reason.contains("80"), "{}", missing.reason);
        // Duplicates in the given numbers may each be used once.
        assert_eq!(judge(&[5, 5, 2], 50, "5*5*2").reward, 1.0);
        assert_eq!(judge(&[5, 5, 2], 250, "5*5*5*2").reward, 0.0);
        assert_eq!(judge(&[6, 6, 2], 3, "6/(6-2*2)").reward, 0.0);
    }

    #[test]
    fn inexact_division_scores_zero() {
        // 7/2 truncated would be 3, and 3+80 = 83 with the other numbers.
        let s = judge(&[25, 5, 4, 7, 2], 83, "(25-5)*4+7/2");
        assert_eq!(s.reward, 0.0);
        assert!(s.reason.contains("not exact"), "{}", s.reason);
    }

    #[test]
    fn several_expressions_or_other_syntax_score_zero() {
        for bad in [
            "(25-5)*4+3, 25*4-3",
            "(25-5)*4+3 or 25-5",
            "(25-5)*4+3\n(25-5)*4+3",
            "(25-5)x4+3",
            "(25-5)×4+3",
            "-3+(25-5)*4+3+3",
            "",
            "   ",
            "= 83",
        ] {
            assert_eq!(reward(bad), 0.0, "{bad:?}");
        }
    }

    #[test]
    fn hostile_inputs_score_zero() {
        let deep = format!("{}3{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(reward(&deep), 0.0);
        assert_eq!(reward(&"3+".repeat(1_000_000)), 0.0);
        assert_eq!(reward("99999999999999999999999"), 0.0);
        assert_eq!(judge(&[i64::MAX, 2], 0, "9223372036854775807*2").reward, 0.0);
        assert_eq!(reward("(25-5)*4+3 = 99999999999999999999999"), 0.0);
        assert_eq!(reward("\u{0}\u{202e}ß🙂"), 0.0);
    }

    proptest! {
        #[test]
        fn judge_never_panics(text in "\\PC{0,300}", target in any::<i64>()) {
            let s = judge(&NUMBERS, target, &text);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }

        #[test]
        fn judge_never_panics_on_expression_shaped_text(text in "[0-9()+*/= -]{0,250}") {
            let _ = judge(&NUMBERS, 83, &text);
        }
    }
}
