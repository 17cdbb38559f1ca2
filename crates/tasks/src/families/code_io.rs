//! `code_io`: write a rhai function from a description and input/output
//! examples; hidden unit tests decide.
//!
//! Every function is composed from parts (conditions, maps, accumulators,
//! loops over arrays, ranges, digits or divisors, array and string stages;
//! see `levels.rs`), so a level holds thousands of distinct functions and a
//! held-out function is never trained on: the key of a problem is its
//! reference function, written the one way the parts are always written.
//! The prompt says what `f` returns (leaving constants to be read off the
//! examples at level 1) and shows four examples; eight hidden tests on other
//! inputs decide the reward, and every branch of the function is among both.
//! The worked solution is a line or two of reasoning and the reference
//! function. The expected outputs are computed in Rust; the tests run every
//! reference in the sandbox against them.

mod levels;
mod parts;
mod specs;

use crate::answer;
use crate::problem::{Check, CodeTest, Score};
use crate::rng::Rng;
use crate::sandbox::{self, Failure, Program};
use crate::task::{Generated, Task};
use levels::spec;
use specs::{call, NAME};

/// The `code_io` family.
pub(crate) struct CodeIo;

/// What each level asks, in order.
const LEVELS: [&str; 5] = [
    "a * g(x) + b with a and b hidden (read off the examples); g one of x, x * x, x * x * x, \
     x * (x + 1), x / 3, x % 5",
    "if / else if on one or two integers: conditions on x, piecewise ranges, comparisons of a and b",
    "one loop with an accumulator: sum, count, product, max or min of a mapped value over an \
     array or 1..=n, with a condition",
    "two array stages (filter, map, reverse, running sums) or a string stage (keep, replace, \
     double characters) with an ending (text, reversed, length)",
    "small algorithms with compound conditions: over digits, divisors, neighbouring elements, \
     runs, first or last index, pairs",
];

impl Task for CodeIo {
    fn name(&self) -> &'static str {
        "code_io"
    }

    fn summary(&self) -> &'static str {
        "write a rhai function from a description and examples; hidden tests decide"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        LEVELS[level as usize - 1].to_string()
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let s = spec(rng, level);
        let signature = format!("fn {NAME}({})", s.params);
        let examples: Vec<String> = s
            .shown
            .iter()
            .map(|case| format!("{} == {}", call(NAME, case), case.expected))
            .collect();
        Generated {
            prompt: format!(
                "Write a rhai function {signature} that {}. Examples: {}. Hidden tests try other \
                 inputs. Answer with the function definition only: {signature} {{ ... }}",
                s.task,
                examples.join("; ")
            ),
            solution: answer::render(&s.reasoning, &s.source),
            key: format!("code_io {}", s.source),
            answer: s.source,
            check: Check::CodeTests {
                function: NAME.to_string(),
                tests: s.hidden,
                partial_credit: false,
            },
        }
    }
}

/// Judge `extracted` (the source of the model's answer, optionally in a
/// ```` ```rhai ```` fence) by calling `function` on each hidden test. Reward
/// 1 when all pass, else 0, or the fraction passed with `partial_credit`.
/// A test that exhausts a sandbox limit ends the run: the remaining tests
/// count as failed, so a hostile answer costs at most one budget.
pub(crate) fn judge(
    function: &str,
    tests: &[CodeTest],
    partial_credit: bool,
    extracted: &str,
) -> Score {
    let Some(arity) = tests.first().map(|t| t.args.len()) else {
        return zero("no tests to run".to_string());
    };
    let program = match Program::compile(strip_fence(extracted)) {
        Ok(program) => program,
        Err(failure) => return zero(failure.reason()),
    };
    if !program.defines(function, arity) {
        return zero(format!("no function {function} with {arity} parameters"));
    }
    let mut passed = 0;
    let mut first_failure = None;
    for (i, test) in tests.iter().enumerate() {
        let outcome = run_test(&program, function, test);
        match outcome {
            Ok(()) => passed += 1,
            Err(reason) => {
                let stop = matches!(reason, TestFailure::Sandbox(Failure::Limit(_)));
                first_failure.get_or_insert(format!("test {} {}", i + 1, reason.describe()));
                if stop || !partial_credit {
                    break;
                }
            }
        }
    }
    let total = tests.len();
    match first_failure {
        None => Score {
            reward: 1.0,
            reason: format!("passed all {total} tests"),
        },
        Some(reason) => Score {
            reward: if partial_credit {
                passed as f64 / total as f64
            } else {
                0.0
            },
            reason: format!("passed {passed} of {total} tests; {reason}"),
        },
    }
}

/// Why one test did not pass.
enum TestFailure {
    /// The test itself is not made of literals (a broken problem file).
    BadTest,
    Sandbox(Failure),
    Wrong {
        got: String,
        expected: String,
    },
}

impl TestFailure {
    fn describe(&self) -> String {
        match self {
            TestFailure::BadTest => "is not made of rhai literals".to_string(),
            TestFailure::Sandbox(failure) => failure.reason(),
            TestFailure::Wrong { got, expected } => {
                format!(
                    "returned {} instead of {}",
                    sandbox::clip(got, 40),
                    sandbox::clip(expected, 40)
                )
            }
        }
    }
}

fn run_test(program: &Program, function: &str, test: &CodeTest) -> Result<(), TestFailure> {
    let args = test
        .args
        .iter()
        .map(|a| sandbox::parse_literal(a))
        .collect::<Option<Vec<_>>>()
        .ok_or(TestFailure::BadTest)?;
    let expected = sandbox::parse_literal(&test.expected).ok_or(TestFailure::BadTest)?;
    let got = program.call(function, args).map_err(TestFailure::Sandbox)?;
    let (got, expected) = (sandbox::canonical(&got), sandbox::canonical(&expected));
    if got == expected {
        Ok(())
    } else {
        Err(TestFailure::Wrong { got, expected })
    }
}

/// The code inside a Markdown fence, if the answer is fenced.
fn strip_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(body) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let body = body.strip_suffix("```").unwrap_or(body);
    // Drop a language tag: a first line of one word, or a known tag
    // before code on the same line.
    let first_line = body.lines().next().unwrap_or("");
    let tag_line = !first_line.trim().is_empty()
        && first_line.trim().chars().all(|c| c.is_ascii_alphanumeric());
    if tag_line && body.contains('\n') {
        return body[first_line.len()..].trim();
    }
    for tag in ["rhai ", "rust ", "rs "] {
        if let Some(code) = body.strip_prefix(tag) {
            return code.trim();
        }
    }
    body.trim()
}

fn zero(reason: String) -> Score {
    Score::fail(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::{prop_assert, proptest, ProptestConfig};

    fn literal_tests(cases: &[(&str, &str)]) -> Vec<CodeTest> {
        cases
            .iter()
            .map(|(arg, expected)| CodeTest {
                args: vec![arg.to_string()],
                expected: expected.to_string(),
            })
            .collect()
    }

    /// `double(x)` on four inputs.
    fn double_tests() -> Vec<CodeTest> {
        literal_tests(&[("1", "2"), ("-3", "-6"), ("0", "0"), ("50", "100")])
    }

    fn reward(source: &str) -> f64 {
        judge("double", &double_tests(), false, source).reward
    }

    #[test]
    fn correct_programs_pass_in_any_dress() {
        assert_eq!(reward("fn double(x) { x * 2 }"), 1.0);
        assert_eq!(reward("fn double(x) { x + x }"), 1.0);
        assert_eq!(
            reward("fn helper(y) { y * 2 } fn double(x) { helper(x) }"),
            1.0
        );
        assert_eq!(reward("```rhai\nfn double(x) {\n    x * 2\n}\n```"), 1.0);
        assert_eq!(reward("```\nfn double(x) { x * 2 }\n```"), 1.0);
        assert_eq!(reward("```rhai fn double(x) { x * 2 }```"), 1.0);
        assert_eq!(reward("```fn double(x) { x * 2 }```"), 1.0);
        // Top-level statements are not run, so they cannot interfere.
        assert_eq!(reward("fn double(x) { x * 2 } loop {}"), 1.0);
    }

    #[test]
    fn wrong_programs_fail() {
        assert_eq!(reward("fn double(x) { x * 3 }"), 0.0);
        assert_eq!(reward("fn double(x) { if x == 1 { 2 } else { 0 } }"), 0.0);
        assert_eq!(reward("fn double(x) { \"2\" }"), 0.0);
        assert_eq!(reward("fn double(x, y) { x * 2 }"), 0.0);
        assert_eq!(reward("fn triple(x) { x * 2 }"), 0.0);
        assert_eq!(reward("x * 2"), 0.0);
        assert_eq!(reward("2"), 0.0);
        assert_eq!(reward(""), 0.0);
    }

    #[test]
    fn partial_credit_counts_the_fraction_passed() {
        let tests = double_tests();
        let half = "fn double(x) { if x > 0 { x * 2 } else { 1 } }";
        assert_eq!(judge("double", &tests, true, half).reward, 0.5);
        assert_eq!(judge("double", &tests, false, half).reward, 0.0);
        let none = "fn double(x) { 7 }";
        assert_eq!(judge("double", &tests, true, none).reward, 0.0);
        let all = "fn double(x) { 2 * x }";
        assert_eq!(judge("double", &tests, true, all).reward, 1.0);
        // A limit ends the run; the tests before it still count.
        let hang = "fn double(x) { if x == 0 { loop {} } x * 2 }";
        let score = judge("double", &tests, true, hang);
        assert_eq!(score.reward, 0.5, "{}", score.reason);
    }

    #[test]
    fn hostile_programs_earn_zero_and_return() {
        let nested = format!(
            "fn double(x) {{ {}x{} }}",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let huge = format!("fn double(x) {{ x * 2 }} // {}", "y".repeat(10 << 20));
        let parens = "(".repeat(10 << 20);
        let hostile = [
            "fn double(x) { loop {} }",
            "fn double(x) { while true {} x * 2 }",
            "fn double(x) { double(x) }",
            "fn double(x) { double(x + 1) + 1 }",
            "fn double(x) { let s = \"x\"; loop { s += s; } }",
            "fn double(x) { let a = []; loop { a.push(a.len()); } }",
            "fn double(x) { let a = [1]; loop { a += a; } }",
            "fn double(x) { let a = []; a.pad(1000000000, 0); x * 2 }",
            "fn double(x) { missing(x) }",
            "fn double(x) { x * 2 ",
            "fn double(x) { x / 0 }",
            "fn double(x) { (x + 1) * 9223372036854775807 }",
            "fn double(x) { eval(\"x * 2\") }",
            "fn double(x) { sleep(1000000); x * 2 }",
            "fn double(x) { throw x * 2; }",
            "fn double(x) { [1, 2].map(|y| { loop {} }) }",
            "fn double(x) { \"\u{202e}é漢🦀\" }",
            "fn double(x) { x * 2 } fn double(x) { x * 3 }",
            "\u{0}fn double(x) { x * 2 }",
            "<answer>fn double(x) { x * 2 }</answer>",
            &nested,
            &huge,
            &parens,
        ];
        for source in hostile {
            let score = judge("double", &double_tests(), true, source);
            assert_eq!(
                score.reward,
                0.0,
                "{}: {}",
                sandbox::clip(source, 60),
                score.reason
            );
            assert!(score.reason.len() < 400, "{}", score.reason);
        }
    }

    #[test]
    fn broken_tests_fail_instead_of_passing() {
        let tests = literal_tests(&[("1 + 1", "4")]);
        assert_eq!(
            judge("double", &tests, false, "fn double(x) { 4 }").reward,
            0.0
        );
        assert_eq!(judge("double", &[], false, "fn double() { 4 }").reward, 0.0);
    }

    #[test]
    fn reference_solutions_pass_and_problems_repeat() {
        for level in 1..=CodeIo.max_level() {
            for seed in 0..100 {
                let g = CodeIo.generate(&mut Rng::new(seed), level);
                assert_eq!(g, CodeIo.generate(&mut Rng::new(seed), level));
                assert!(
                    g.prompt.is_ascii() && !g.prompt.contains('\n'),
                    "{}",
                    g.prompt
                );
                let Check::CodeTests {
                    function, tests, ..
                } = &g.check
                else {
                    panic!("wrong check {:?}", g.check);
                };
                assert!(g.prompt.contains(&format!("fn {function}(")));
                assert!(g
                    .solution
                    .ends_with(&format!("<answer>{}</answer>", g.answer)));
                let score = judge(function, tests, false, &g.answer);
                assert_eq!(score.reward, 1.0, "{}: {}", g.answer, score.reason);
                // A function that only knows the shown examples fails.
                let lookup = format!("fn {function}(a, b, c) {{ 0 }}");
                assert_eq!(judge(function, tests, false, &lookup).reward, 0.0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn judge_survives_any_text(text in "\\PC{0,300}") {
            let score = judge("double", &double_tests(), true, &text);
            prop_assert!((0.0..=1.0).contains(&score.reward));
        }

        #[test]
        fn judge_survives_code_soup(text in "(fn double\\(x\\) |[{}()\\[\\];x*+=<>0-9 ]|loop |let |\"){0,80}") {
            let score = judge("double", &double_tests(), true, &text);
            prop_assert!((0.0..=1.0).contains(&score.reward));
        }
    }
}
