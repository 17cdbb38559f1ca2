//! `code_io`: write a rhai function from a description and input/output
//! examples; hidden unit tests decide.

use crate::problem::{CodeTest, Score};
use crate::sandbox::{self, Failure, Program};

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
    let source = strip_fence(extracted);
    let arity = tests.first().map_or(0, |t| t.args.len());
    let program = match Program::compile(source) {
        Ok(program) => program,
        Err(failure) => return zero(failure.reason()),
    };
    if !program.defines(function, arity) {
        return zero(format!("no function {function} with {arity} parameters"));
    }
    if tests.is_empty() {
        return zero("no tests to run".to_string());
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
                format!("returned {} instead of {expected}", sandbox::clip(got, 40))
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
    // Drop the language tag line (```rhai), then the closing fence.
    let body = match body.find('\n') {
        Some(newline) if !body[..newline].contains(['{', '(']) => &body[newline + 1..],
        _ => body,
    };
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

fn zero(reason: String) -> Score {
    Score {
        reward: 0.0,
        reason,
    }
}
