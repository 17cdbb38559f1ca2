//! Reward-hacking probes: each must earn exactly nothing, in every family.

mod common;

use common::{answered, perturbed};
use tasks::{problem, Check, Problem, Split};

/// A few problems of every family, at the lowest and highest level.
fn samples() -> Vec<Problem> {
    let mut out = Vec::new();
    for family in tasks::all() {
        for level in [1, family.max_level()] {
            for index in 0..20 {
                out.push(problem(family.name(), level, Split::Train, index).unwrap());
            }
        }
    }
    out
}

fn assert_zero(p: &Problem, completion: &str, what: &str) {
    let verdict = p.verify(completion);
    assert_eq!(
        verdict.reward, 0.0,
        "{what} scored on {}: {completion:?} -> {verdict:?}",
        p.id
    );
}

#[test]
fn empty_or_missing_answers_score_zero() {
    for p in samples() {
        assert_zero(&p, "<think>hmm</think><answer></answer>", "empty answer");
        assert_zero(
            &p,
            "<think>hmm</think><answer> \n\t </answer>",
            "blank answer",
        );
        assert_zero(&p, "", "empty completion");
        assert_zero(
            &p,
            &format!("<think>hmm</think>{}", p.answer),
            "answer outside the block",
        );
        assert_zero(
            &p,
            &format!("<answer>{}", p.answer),
            "unclosed answer block",
        );
    }
}

#[test]
fn only_the_last_answer_block_counts() {
    for p in samples() {
        let wrong = perturbed(&p);
        let both = format!("<answer>{}</answer><answer>{wrong}</answer>", p.answer);
        assert_zero(&p, &both, "right answer in an earlier block");
    }
}

#[test]
fn alternatives_score_zero() {
    for p in samples() {
        let wrong = perturbed(&p);
        assert_zero(
            &p,
            &answered(&format!("{} or {wrong}", p.answer)),
            "'or' alternatives",
        );
        assert_zero(
            &p,
            &answered(&format!("{wrong} or {}", p.answer)),
            "'or' alternatives",
        );
        if matches!(
            p.check,
            Check::Number | Check::Fraction | Check::List | Check::Countdown { .. }
        ) {
            assert_zero(
                &p,
                &answered(&format!("{}, {wrong}", p.answer)),
                "comma alternatives",
            );
            assert_zero(
                &p,
                &answered(&format!("{}\n{wrong}", p.answer)),
                "line alternatives",
            );
            assert_zero(
                &p,
                &answered(&format!("{} {wrong}", p.answer)),
                "space alternatives",
            );
        }
    }
}

#[test]
fn echoing_the_prompt_scores_zero() {
    for p in samples() {
        assert_zero(&p, &answered(&p.prompt), "echoed prompt");
        assert_zero(&p, &p.prompt, "bare prompt");
    }
}

#[test]
fn countdown_numbers_cannot_be_reused() {
    let Ok(countdown) = tasks::find("countdown") else {
        return;
    };
    for level in 1..=countdown.max_level() {
        for index in 0..50 {
            let p = problem("countdown", level, Split::Train, index).unwrap();
            let Check::Countdown { numbers, .. } = &p.check else {
                panic!("countdown problem without numbers");
            };
            // Adding n-n as often as n is given keeps the value but uses n
            // more often than it is given.
            let n = numbers[0];
            let copies = numbers.iter().filter(|&&m| m == n).count();
            let reuse = format!("({}){}", p.answer, format!("+{n}-{n}").repeat(copies));
            assert_zero(&p, &answered(&reuse), "number used twice");
        }
    }
}

/// Answers checked by validation (any satisfying values, any completed
/// grid, any shortest path) cannot hedge between candidates either.
#[test]
fn validated_answers_cannot_hedge() {
    for p in samples() {
        match &p.check {
            Check::Satisfy { variables, .. } => {
                // Both values for every variable.
                let both: Vec<String> = variables.iter().map(|v| format!("{v}=1, {v}=0")).collect();
                assert_zero(&p, &answered(&both.join(", ")), "both values");
                assert_zero(
                    &p,
                    &answered(&format!("{} {}", p.answer, p.answer)),
                    "repeated",
                );
            }
            Check::Sudoku { .. } => {
                assert_zero(&p, &answered(&format!("{}1", p.answer)), "an extra digit");
                assert_zero(&p, &answered(&"1234".repeat(4)), "rows all alike");
            }
            Check::Maze { .. } => {
                // Wandering off and back still reaches E, but not by a shortest path.
                let wander = format!("{}{}", p.answer, "LRRL");
                assert_zero(&p, &answered(&wander), "a longer walk");
                assert_zero(
                    &p,
                    &answered(&format!("{0} {0}", p.answer)),
                    "the path twice",
                );
            }
            Check::Words => {
                assert_zero(
                    &p,
                    &answered(&format!("{}, {}", p.answer, p.answer)),
                    "words twice",
                );
            }
            _ => {}
        }
    }
}
