//! Scoring a completion against a problem: format, extraction, then the
//! judge for the problem's [`Check`].

use crate::answer;
use crate::families::{base, calendar, code_io, code_trace, countdown, logic, maze, sudoku};
use crate::problem::{Check, Problem, Score, Verdict};

/// Extracted answers longer than this are cut in the verdict (they are still
/// judged whole), so a runaway completion cannot bloat logs.
pub const MAX_EXTRACTED_BYTES: usize = 1024;

impl Problem {
    /// Score a model's raw completion. Never panics, whatever the text.
    ///
    /// `format_ok` and `reward` are independent: the reward judges only the
    /// last `<answer>` block (see [`crate::answer`] for both rules), so a
    /// trainer can weight a format term separately. No answer block, an
    /// unclosed one or a blank one scores 0.
    pub fn verify(&self, completion: &str) -> Verdict {
        let found = answer::extract(completion);
        let Some(raw) = found.answer else {
            return Verdict {
                reward: 0.0,
                format_ok: found.format_ok,
                extracted: None,
                normalized: None,
                reason: "no <answer> block".to_string(),
            };
        };
        let text = raw.trim();
        let score = if text.is_empty() {
            Score::fail("empty answer")
        } else {
            self.judge(text)
        };
        let reward = clamp_reward(score.reward);
        let normalized = match &self.check {
            // Many texts are right: every passing one is the reference's equal.
            Check::Countdown { .. }
            | Check::CodeTests { .. }
            | Check::Satisfy { .. }
            | Check::Sudoku { .. }
            | Check::Maze { .. }
                if reward >= 1.0 =>
            {
                self.answer.trim().to_string()
            }
            check => answer::normalize(check, text),
        };
        Verdict {
            reward,
            format_ok: found.format_ok,
            extracted: Some(shorten(text).to_string()),
            normalized: Some(shorten(&normalized).to_string()),
            reason: score.reason,
        }
    }

    /// Judge an extracted, trimmed, non-empty answer.
    fn judge(&self, text: &str) -> Score {
        match &self.check {
            Check::Number => answer::judge_number(&self.answer, text),
            Check::Exact => answer::judge_exact(&self.answer, text),
            Check::List => answer::judge_list(&self.answer, text),
            Check::Fraction => answer::judge_fraction(&self.answer, text),
            Check::Countdown { numbers, target } => countdown::judge(numbers, *target, text),
            Check::CodeTests {
                function,
                tests,
                partial_credit,
            } => code_io::judge(function, tests, *partial_credit, text),
            Check::CodeOutput { .. } => code_trace::judge(&self.answer, text),
            Check::Digits { base } => base::judge(&self.answer, *base, text),
            Check::Words => answer::judge_words(&self.answer, text),
            Check::Date => calendar::judge(&self.answer, text),
            Check::Satisfy { variables, clauses } => logic::judge(variables, clauses, text),
            Check::Sudoku { givens } => sudoku::judge(givens, text),
            Check::Maze { grid, shortest } => maze::judge(grid, *shortest, text),
        }
    }
}

/// Rewards outside [0, 1] (or NaN) from any judge are a bug; never let one
/// through to a gradient.
fn clamp_reward(reward: f64) -> f64 {
    if reward.is_nan() {
        0.0
    } else {
        reward.clamp(0.0, 1.0)
    }
}

/// The first `MAX_EXTRACTED_BYTES` of `text`, cut at a character boundary.
fn shorten(text: &str) -> &str {
    if text.len() <= MAX_EXTRACTED_BYTES {
        return text;
    }
    let mut end = MAX_EXTRACTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
