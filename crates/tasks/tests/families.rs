//! Every family and level, 1,000 problems each: the worked solution is a
//! perfect completion, a perturbed answer earns nothing, and generation is
//! deterministic.

mod common;

use std::thread;

use tasks::{problem, Problem, Split, Task};

const PER_LEVEL: u64 = 1_000;

fn check_family(family: &dyn Task) -> Vec<String> {
    let mut failures = Vec::new();
    for level in 1..=family.max_level() {
        for index in 0..PER_LEVEL {
            let p = problem(family.name(), level, Split::Train, index).expect("a problem");
            let again = problem(family.name(), level, Split::Train, index).expect("a problem");
            if p != again {
                failures.push(format!("{}: not deterministic", p.id));
            }
            failures.extend(check_problem(&p));
            if failures.len() > 20 {
                return failures;
            }
        }
    }
    failures
}

fn check_problem(p: &Problem) -> Vec<String> {
    let mut failures = Vec::new();
    let good = p.verify(&p.solution);
    if good.reward != 1.0 || !good.format_ok {
        failures.push(format!(
            "{}: worked solution scored {good:?}\n{}",
            p.id, p.solution
        ));
    }
    if good.extracted.as_deref() != Some(p.answer.trim()) {
        failures.push(format!(
            "{}: solution's answer block is not the answer",
            p.id
        ));
    }
    let wrong = common::perturbed(p);
    let bad = p.verify(&common::answered(&wrong));
    if bad.reward != 0.0 {
        failures.push(format!(
            "{}: perturbed answer {wrong:?} scored {bad:?}",
            p.id
        ));
    }
    if !p.prompt.is_ascii() || p.prompt.contains('\n') {
        failures.push(format!("{}: prompt is not one line of ASCII", p.id));
    }
    // A character-level tokenizer is built over the task alphabet.
    if !p.solution.is_ascii() {
        failures.push(format!("{}: solution is not ASCII", p.id));
    }
    failures
}

#[test]
fn solutions_score_one_and_perturbed_answers_zero() {
    let failures: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = tasks::all()
            .iter()
            .map(|family| scope.spawn(move || check_family(*family)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("family check panicked"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_family_documents_every_level() {
    assert_eq!(tasks::all().len(), 25);
    for family in tasks::all() {
        assert!(
            family.max_level() >= 5,
            "{} has too few levels",
            family.name()
        );
        for level in 1..=family.max_level() {
            assert!(!family.level_doc(level).is_empty());
        }
    }
}

/// A few problems pinned as text: generators must never drift silently
/// (the frozen held-out files pin many more).
#[test]
fn generation_is_pinned() {
    let pinned = [
        ("add", 3, "What is 756+239?", "<think>6+9=15 -> 5\n5+3+1=9 -> 95\n7+2=9 -> 995\n756+239=995</think><answer>995</answer>"),
        ("mul", 2, "What is 57*82?", "<think>57*2=114\n57*8=456\n114+4560=4674\n57*82=4674</think><answer>4674</answer>"),
        ("expr", 4, "What is 1-4*(12-10)+3?", "<think>1-4*2+3\n1-8+3\n-7+3\n-4</think><answer>-4</answer>"),
        ("linear", 5, "Solve -5x-3y=38, -2x+4y=10. Answer [x, y].", "<think>2*(1): -10x-6y=76\n5*(2): -10x+20y=50\n(1)-(2): -26y=26\ny=26/(-26)=-1\n-5x+3=38\n-5x=38-3=35\nx=35/(-5)=-7</think><answer>[-7, -1]</answer>"),
        ("fraction", 6, "What is 3/8-2/7+1/10 in lowest terms?", "<think>lcm(8,7)=56\n21/56-16/56=5/56\n5/56+1/10\nlcm(56,10)=280\n25/280+28/280=53/280</think><answer>53/280</answer>"),
    ];
    for (task, level, prompt, solution) in pinned {
        let p = problem(task, level, Split::Train, 0).unwrap();
        assert_eq!((p.prompt.as_str(), p.solution.as_str()), (prompt, solution));
    }
}

#[test]
fn passing_answers_normalise_to_the_reference_and_wrong_ones_differ() {
    for family in tasks::all() {
        for level in 1..=family.max_level() {
            let p = problem(family.name(), level, Split::Train, 3).unwrap();
            let right = p.verify(&p.solution);
            let reference = p.verify(&common::answered(&p.answer));
            assert!(right.normalized.is_some(), "{}", p.id);
            assert_eq!(right.normalized, reference.normalized, "{}", p.id);
            let wrong = p.verify(&common::answered(&common::perturbed(&p)));
            assert_ne!(wrong.normalized, right.normalized, "{}", p.id);
            assert_eq!(p.verify("<think>x</think>").normalized, None);
        }
    }
}
