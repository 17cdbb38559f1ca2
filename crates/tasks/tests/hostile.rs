//! Extraction and every verifier survive arbitrary text: huge, unicode,
//! nested or unclosed tags. Rewards stay in [0, 1] and nothing panics.

use proptest::prelude::*;
use tasks::{extract, problem, Problem, Split};

/// One problem per family and level.
fn problems() -> Vec<Problem> {
    tasks::all()
        .iter()
        .flat_map(|family| {
            (1..=family.max_level())
                .map(move |level| problem(family.name(), level, Split::Train, 0).unwrap())
        })
        .collect()
}

/// Text made of the pieces verifiers care about, in any order.
fn fragments() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<answer>".to_string()),
        Just("</answer>".to_string()),
        Just("<answer".to_string()),
        "-?[0-9]{1,30}",
        Just("/".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(", ".to_string()),
        Just(" or ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("*".to_string()),
        Just("fn f(x) { x }".to_string()),
        Just("loop {}".to_string()),
        Just("p=1".to_string()),
        Just("q=0".to_string()),
        Just("RRDDLU".to_string()),
        Just("1234/".to_string()),
        Just("2024-02-29".to_string()),
        Just("knight".to_string()),
        Just("ff".to_string()),
        "\\PC{0,8}",
        "\\s{0,3}",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|parts| parts.concat())
}

fn check_all(problems: &[Problem], text: &str) {
    let _ = extract(text);
    for p in problems {
        let v = p.verify(text);
        assert!((0.0..=1.0).contains(&v.reward), "{}: {v:?}", p.id);
        let wrapped = p.verify(&format!("<think>x</think><answer>{text}</answer>"));
        assert!(
            (0.0..=1.0).contains(&wrapped.reward),
            "{}: {wrapped:?}",
            p.id
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check_all(&problems(), &text);
    }

    #[test]
    fn tag_soup_never_panics(text in fragments()) {
        check_all(&problems(), &text);
    }

    #[test]
    fn format_ok_implies_a_non_blank_answer(text in fragments()) {
        let found = extract(&text);
        if found.format_ok {
            prop_assert!(found.answer.is_some_and(|a| !a.trim().is_empty()), "{:?}", text);
        }
    }

    #[test]
    fn any_tag_free_answer_is_extracted_intact(answer in "[^<]{1,40}", think in "[^<]{0,40}") {
        let completion = format!("<think>{think}</think><answer>{answer}</answer>");
        let found = extract(&completion);
        prop_assert_eq!(found.answer, Some(answer.as_str()));
        prop_assert_eq!(found.format_ok, !answer.trim().is_empty());
    }
}

#[test]
fn huge_completions_are_survived() {
    let problems = problems();
    let digits = "7".repeat(2_000_000);
    let tags = "<answer><think></answer></think>".repeat(50_000);
    let unclosed = format!("<think>{}", "<answer>1".repeat(100_000));
    let unicode = "\u{202e}\u{0}é漢🦀".repeat(100_000);
    for text in [&digits, &tags, &unclosed, &unicode] {
        let _ = extract(text);
        for p in &problems {
            let v = p.verify(&format!("<think></think><answer>{text}</answer>"));
            assert!((0.0..=1.0).contains(&v.reward), "{}", p.id);
            assert!(v
                .extracted
                .is_some_and(|e| e.len() <= tasks::MAX_EXTRACTED_BYTES));
        }
    }
}
