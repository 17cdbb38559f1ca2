//! `code_trace`: predict the value a short rhai program returns; the
//! reference is what the sandbox computed by running it.

use crate::problem::Score;
use crate::sandbox;

/// Judge `extracted` against `reference`, the canonical value the program
/// returned when it was run at generation. The answer must be a rhai literal
/// (parsed, never run); when the value is a string, its bare text also counts.
pub(crate) fn judge(reference: &str, extracted: &str) -> Score {
    let answer = extracted.trim();
    if answer.is_empty() {
        return score(false, "empty answer".to_string());
    }
    let Some(expected) = sandbox::parse_literal(reference) else {
        return score(
            false,
            format!("reference {reference:?} is not a rhai literal"),
        );
    };
    let expected = sandbox::canonical(&expected);
    match sandbox::parse_literal(answer) {
        Some(value) => {
            let got = sandbox::canonical(&value);
            let ok = got == expected;
            score(
                ok,
                if ok {
                    format!("returns {expected}")
                } else {
                    format!(
                        "program returns {expected}, not {}",
                        sandbox::clip(&got, 40)
                    )
                },
            )
        }
        None => {
            let bare_string = sandbox::parse_literal(reference)
                .and_then(|v| v.into_immutable_string().ok())
                .is_some_and(|s| s.as_str() == answer);
            score(
                bare_string,
                if bare_string {
                    format!("returns {expected}")
                } else {
                    "answer is not a rhai literal".to_string()
                },
            )
        }
    }
}

fn score(ok: bool, reason: String) -> Score {
    Score {
        reward: if ok { 1.0 } else { 0.0 },
        reason,
    }
}
