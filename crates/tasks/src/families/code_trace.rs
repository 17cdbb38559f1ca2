//! `code_trace`: predict the value a short rhai program returns.
//!
//! Programs are composed from parts (`lang.rs` is the language, `levels.rs`
//! the parts of each level): statements, conditions, loops and helper
//! functions with drawn constants, so a level holds thousands of distinct
//! programs. A program's canonical key is its source with every sum and
//! product written in one order; a held-out program is never trained on.
//! An interpreter runs each program and records the steps a careful reader
//! takes through it (the worked solution); the reference answer is what
//! the sandbox returns when it runs the program, and the tests check the
//! two agree. An answer is a rhai literal, parsed and compared, never run:
//! running it would let a copy of the program score.

mod lang;
mod levels;

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::sandbox;
use crate::task::{Generated, Task};
use levels::program;

/// The `code_trace` family.
pub(crate) struct CodeTrace;

/// What each level asks, in order.
const LEVELS: [&str; 5] = [
    "let-bindings and updates with + - * and precedence",
    "if/else statements and if-expressions over comparisons and remainders; integer / and %",
    "one loop with accumulators: for over a range (optionally guarded), or while over digits, \
     growth or Euclid's algorithm",
    "arrays: filtered pushes, index scans, in-place updates, cell arithmetic",
    "a helper function (chained or summed), a recursive function, or strings built in a loop",
];

impl Task for CodeTrace {
    fn name(&self) -> &'static str {
        "code_trace"
    }

    fn summary(&self) -> &'static str {
        "predict the value a short rhai program returns"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        LEVELS[level as usize - 1].to_string()
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let (program, trace) = program(rng, level);
        let source = program.source();
        // The levels keep every program small and inside the sandbox
        // limits (tested for every level); the traced value is the same
        // value worked out in Rust, so it stands in if that ever failed.
        let answer = sandbox::run(&source).unwrap_or_else(|_| trace.value.literal());
        let mut steps = trace.steps;
        steps.push(format!("The program returns {answer}."));
        Generated {
            prompt: format!(
                "What does this rhai program return (the value of its last expression; / is \
                 integer division)? {source} Answer with a rhai literal: an integer, true or \
                 false, a \"string\" or an array like [1, 2]."
            ),
            solution: answer::render(&steps, &answer),
            answer,
            key: format!("code_trace {}", program.key()),
            check: Check::CodeOutput { program: source },
        }
    }
}

/// Judge `extracted` against `reference`, the canonical value the program
/// returned when it was run at generation. The answer must be a rhai literal
/// (parsed, never run); when the value is a string, its bare text also counts.
pub(crate) fn judge(reference: &str, extracted: &str) -> Score {
    let answer = extracted.trim();
    if answer.is_empty() {
        return Score::fail("empty answer");
    }
    let Some(expected) = sandbox::parse_literal(reference) else {
        return Score::fail(format!(
            "reference {} is not a rhai literal",
            sandbox::clip(reference, 40)
        ));
    };
    let want = sandbox::canonical(&expected);
    match sandbox::parse_literal(answer) {
        Some(value) => {
            let got = sandbox::canonical(&value);
            if got == want {
                Score::pass(format!("returns {}", sandbox::clip(&want, 40)))
            } else {
                Score::fail(format!(
                    "program returns {}, not {}",
                    sandbox::clip(&want, 40),
                    sandbox::clip(&got, 40)
                ))
            }
        }
        None if expected
            .read_lock::<rhai::ImmutableString>()
            .is_some_and(|s| s.as_str() == answer) =>
        {
            Score::pass("returns this string")
        }
        None => Score::fail("answer is not a rhai literal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    const SEEDS: u64 = 300;

    #[test]
    fn problems_are_deterministic_and_well_formed() {
        for level in 1..=CodeTrace.max_level() {
            for seed in 0..SEEDS {
                let g = CodeTrace.generate(&mut Rng::new(seed), level);
                assert_eq!(g, CodeTrace.generate(&mut Rng::new(seed), level));
                assert!(
                    g.prompt.is_ascii() && !g.prompt.contains('\n'),
                    "{}",
                    g.prompt
                );
                let Check::CodeOutput { program } = &g.check else {
                    panic!("wrong check {:?}", g.check);
                };
                assert!(g.prompt.contains(program.as_str()));
                assert!(g
                    .solution
                    .ends_with(&format!("<answer>{}</answer>", g.answer)));
                assert_eq!(judge(&g.answer, &g.answer).reward, 1.0, "{}", g.answer);
                // The program itself is not an answer: answers are never run.
                assert_eq!(judge(&g.answer, program).reward, 0.0, "{program}");
            }
        }
    }

    #[test]
    fn judge_compares_values_not_text() {
        assert_eq!(judge("[1, -2]", " [1,-2] ").reward, 1.0);
        assert_eq!(judge("[1, -2]", "[1, 2]").reward, 0.0);
        assert_eq!(judge("12", "012").reward, 0.0);
        assert_eq!(judge("0", "00").reward, 0.0);
        assert_eq!(judge("-3", "-3").reward, 1.0);
        assert_eq!(judge("12", "6 + 6").reward, 0.0);
        assert_eq!(judge("12", "12 or 13").reward, 0.0);
        assert_eq!(judge("true", "true").reward, 1.0);
        assert_eq!(judge("true", "1").reward, 0.0);
        assert_eq!(judge("\"lemon\"", "\"lemon\"").reward, 1.0);
        assert_eq!(judge("\"lemon\"", "lemon").reward, 1.0);
        assert_eq!(judge("\"lemon\"", "\"nomel\"").reward, 0.0);
        assert_eq!(judge("\"5\"", "5").reward, 0.0);
        assert_eq!(judge("5", "\"5\"").reward, 0.0);
        assert_eq!(judge("5", "").reward, 0.0);
        assert_eq!(
            judge("5", "[[[[[[[[[[[[[[[[[[[[[[[[[5]]]]]]]]]]]]]]]]]]]]]]]]]").reward,
            0.0
        );
        assert_eq!(judge("not a literal", "5").reward, 0.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn judge_survives_any_text(text in "\\PC{0,300}", reference in "\\PC{0,40}") {
            for r in ["[1, 2]", "\"ab\"", "7", reference.as_str()] {
                let score = judge(r, &text);
                prop_assert!(score.reward == 0.0 || score.reward == 1.0);
            }
        }

        #[test]
        fn judge_survives_literal_soup(text in "[\\[\\]\"'(), 0-9a-z\\\\-]{0,200}") {
            let score = judge("[1, \"a\", 'b', true, ()]", &text);
            prop_assert!(score.reward == 0.0 || score.reward == 1.0);
        }
    }
}
