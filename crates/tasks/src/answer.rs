//! The output format, and how an answer is read out of a completion and
//! compared with a reference.
//!
//! **Format.** A completion follows the format (`format_ok`) when, after
//! surrounding whitespace is trimmed, it is exactly
//! `<think>T</think>`, optional whitespace, `<answer>A</answer>`, where
//! neither `T` nor `A` contains any of the four tags and `A` is not blank.
//! `T` may be empty. Nothing may come before `<think>` or after `</answer>`.
//!
//! **Answer.** The answer is the text between the *last* `<answer>` and the
//! first `</answer>` after it, whether or not the format was followed; an
//! unclosed last block means there is no answer. Correctness is judged on
//! that text alone, trimmed, so the format and the correctness rewards stay
//! separate.
//!
//! **Normalisation.** Readers are strict: one value of the expected kind and
//! nothing else. Alternatives (`3 or 4`, `3, 4` where one integer is
//! expected, two lists) fail, so hedging never pays. Everything here runs in
//! time linear in the input and never panics.

use crate::problem::{Check, Score};

/// Opens the reasoning block.
pub const THINK_OPEN: &str = "<think>";
/// Closes the reasoning block.
pub const THINK_CLOSE: &str = "</think>";
/// Opens the answer block.
pub const ANSWER_OPEN: &str = "<answer>";
/// Closes the answer block.
pub const ANSWER_CLOSE: &str = "</answer>";

const TAGS: [&str; 4] = [THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE];

/// What a completion holds, as far as the output format goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extraction<'a> {
    /// Content of the last complete answer block, untrimmed.
    pub answer: Option<&'a str>,
    /// Whether the whole completion follows the format (see the module docs).
    pub format_ok: bool,
}

/// Take the answer and the format judgement out of a completion.
pub fn extract(completion: &str) -> Extraction<'_> {
    let answer = completion.rfind(ANSWER_OPEN).and_then(|start| {
        let body = &completion[start + ANSWER_OPEN.len()..];
        body.find(ANSWER_CLOSE).map(|end| &body[..end])
    });
    Extraction {
        answer,
        format_ok: follows_format(completion),
    }
}

fn follows_format(completion: &str) -> bool {
    let text = completion.trim();
    let Some(rest) = text.strip_prefix(THINK_OPEN) else {
        return false;
    };
    let Some((think, rest)) = rest.split_once(THINK_CLOSE) else {
        return false;
    };
    let Some(rest) = rest.trim_start().strip_prefix(ANSWER_OPEN) else {
        return false;
    };
    let Some(answer) = rest.strip_suffix(ANSWER_CLOSE) else {
        return false;
    };
    !contains_tag(think) && !contains_tag(answer) && !answer.trim().is_empty()
}

fn contains_tag(text: &str) -> bool {
    TAGS.iter().any(|tag| text.contains(tag))
}

/// A worked solution in the output format: reasoning lines, then the answer.
pub(crate) fn render(steps: &[String], answer: &str) -> String {
    format!(
        "{THINK_OPEN}{}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}",
        steps.join("\n")
    )
}

/// An integer list in canonical form: `[1, -2, 3]`.
pub(crate) fn format_list(items: &[i64]) -> String {
    let parts: Vec<String> = items.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Check that a reference answer can be matched under `check`, so a user's
/// problem whose answer no completion could ever match is refused on load.
pub(crate) fn validate_reference(check: &Check, reference: &str) -> Result<(), String> {
    let text = reference.trim();
    let ok = match check {
        Check::Number => canonical_integer(text, true).is_some(),
        Check::List => parse_list(text).is_some(),
        Check::Fraction => {
            return match parse_fraction(text) {
                Ok(f) if in_lowest_terms(f) => Ok(()),
                Ok(_) => Err(format!("fraction answer '{text}' is not in lowest terms")),
                Err(why) => Err(format!("answer '{text}': {why}")),
            }
        }
        Check::Exact | Check::Words => !text.is_empty(),
        // Checked by running or evaluating; the families own their references.
        Check::Countdown { .. } | Check::CodeTests { .. } | Check::CodeOutput { .. } => true,
        // The reference must pass its own check.
        Check::Digits { .. }
        | Check::Date
        | Check::Satisfy { .. }
        | Check::Sudoku { .. }
        | Check::Maze { .. } => {
            let probe = crate::problem::Problem {
                id: String::new(),
                task: String::new(),
                level: 1,
                prompt: String::new(),
                answer: text.to_string(),
                solution: String::new(),
                check: check.clone(),
            };
            let verdict = probe.verify(&format!("{ANSWER_OPEN}{text}{ANSWER_CLOSE}"));
            if verdict.reward < 1.0 {
                return Err(format!(
                    "answer '{text}' fails its own {} check: {}",
                    check.kind(),
                    verdict.reason
                ));
            }
            true
        }
    };
    if ok {
        Ok(())
    } else if text.is_empty() {
        Err("empty answer".to_string())
    } else {
        Err(format!("answer '{text}' is not a valid {}", check.kind()))
    }
}

/// Judge an integer answer: sign and leading zeros are free, and thousands
/// may be grouped with commas (`1,234`), nothing else.
pub(crate) fn judge_number(reference: &str, answer: &str) -> Score {
    let Some(want) = canonical_integer(reference.trim(), true) else {
        return Score::fail("reference answer is not an integer");
    };
    match canonical_integer(answer, true) {
        Some(got) if got == want => Score::pass("correct"),
        Some(_) => Score::fail("wrong answer"),
        None => Score::fail(not_an_integer(answer)),
    }
}

/// Why `text` (trimmed, not an integer) is not one: several values, or one
/// value written another way (`1e3`, `7.0`, `0x7`, `1_000`, `3/4`).
pub(crate) fn not_an_integer(text: &str) -> String {
    let several = text.split_whitespace().count() > 1
        || text.contains([',', ';'])
        || text.matches(['=']).count() > 1;
    if several && digit_runs(text) >= 2 {
        return "several answers".to_string();
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let starts_with_digit = body.starts_with(|c: char| c.is_ascii_digit());
    let lower = body.to_ascii_lowercase();
    let why = if !starts_with_digit {
        None
    } else if ["0x", "0b", "0o"].iter().any(|p| lower.starts_with(p)) {
        Some("a base prefix; write it in decimal")
    } else if body.contains('.') {
        Some("a decimal point")
    } else if lower.contains('e') && lower.split('e').all(|p| !p.is_empty()) {
        Some("an exponent")
    } else if body.contains('_') {
        Some("an underscore")
    } else if body.contains('/') {
        Some("a fraction")
    } else {
        None
    };
    match why {
        Some(why) => format!("not an integer literal ({why})"),
        None => "not an integer literal".to_string(),
    }
}

/// Judge a fraction answer: `a/b` in lowest terms (spaces around `/` and a
/// sign on either part are free), or a bare integer when the value is whole.
pub(crate) fn judge_fraction(reference: &str, answer: &str) -> Score {
    let Ok(want) = parse_fraction(reference.trim()) else {
        return Score::fail("reference answer is not a fraction");
    };
    match parse_fraction(answer) {
        Ok(got) if !in_lowest_terms(got) => Score::fail("not in lowest terms"),
        Ok(got) if got == want => Score::pass("correct"),
        Ok(_) => Score::fail("wrong answer"),
        Err(_) if digit_runs(answer) > 2 => Score::fail("several answers"),
        Err(_) if answer.contains('.') => Score::fail("not a fraction (a decimal point)"),
        Err(why) => Score::fail(why),
    }
}

/// Judge an integer-list answer, order significant: `[1, 2, 3]`, `1,2,3`,
/// `1 2 3` and `[1 2 3]` all read the same; `[]` is the empty list.
pub(crate) fn judge_list(reference: &str, answer: &str) -> Score {
    let Some(want) = parse_list(reference.trim()) else {
        return Score::fail("reference answer is not a list");
    };
    match parse_list(answer) {
        Some(got) if got == want => Score::pass("correct"),
        Some(got) if got.len() != want.len() => Score::fail("wrong length"),
        Some(_) => Score::fail("wrong answer"),
        None => Score::fail(not_a_list(answer)),
    }
}

/// Why `text` is not a list of integers, naming the first bad item.
fn not_a_list(text: &str) -> String {
    let inner = text.trim_start_matches('[').trim_end_matches(']');
    let items: Vec<&str> = if inner.contains(',') {
        inner.split(',').map(str::trim).collect()
    } else {
        inner.split_whitespace().collect()
    };
    let bad = items
        .iter()
        .find(|item| canonical_integer(item, false).is_none());
    match bad {
        Some(item) if !item.is_empty() && item.len() <= 20 && !item.contains(['[', ']']) => {
            let why = not_an_integer(item);
            format!("not a list of integers: '{item}' is {why}")
        }
        _ => "not a list of integers".to_string(),
    }
}

/// Judge words that must be the reference's, in order, whatever their case:
/// separated by commas and/or whitespace, optionally in brackets.
pub(crate) fn judge_words(reference: &str, answer: &str) -> Score {
    let want = words(reference);
    if want.is_empty() {
        return Score::fail("reference answer has no words");
    }
    let got = words(answer);
    if got.len() != want.len() {
        return Score::fail(match (want.len(), got.len()) {
            (1, _) => "expected one word".to_string(),
            (n, m) => format!("expected {n} words, got {m}"),
        });
    }
    if got
        .iter()
        .zip(&want)
        .all(|(g, w)| g.eq_ignore_ascii_case(w))
    {
        Score::pass("correct")
    } else {
        Score::fail("wrong answer")
    }
}

/// The words of a comma- or space-separated answer, brackets and a final
/// full stop dropped.
fn words(text: &str) -> Vec<&str> {
    let text = text.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    let text = match (text.strip_prefix('['), text.strip_suffix(']')) {
        (Some(_), Some(_)) => &text[1..text.len() - 1],
        _ => text,
    };
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Judge text that must match the reference after whitespace runs are
/// collapsed to single spaces. Case matters.
pub(crate) fn judge_exact(reference: &str, answer: &str) -> Score {
    if reference.split_whitespace().eq(answer.split_whitespace()) {
        Score::pass("correct")
    } else {
        Score::fail("wrong answer")
    }
}

/// `text` (an extracted, trimmed answer) in the canonical form of `check`'s
/// kind of answer, so that answers its judge treats alike are equal strings;
/// text that does not read as that kind keeps its words, whitespace runs
/// collapsed. A fraction not in lowest terms stays as written (its judge
/// fails it, unlike the reduced form).
pub(crate) fn normalize(check: &Check, text: &str) -> String {
    let canonical = match check {
        Check::Number => canonical_integer(text, true),
        Check::Fraction => parse_fraction(text)
            .ok()
            .filter(|&f| in_lowest_terms(f))
            .map(|(num, den)| match den {
                1 => num.to_string(),
                _ => format!("{num}/{den}"),
            }),
        Check::List => parse_list(text).map(|items| format!("[{}]", items.join(", "))),
        Check::CodeOutput { .. } => {
            crate::sandbox::parse_literal(text).map(|v| crate::sandbox::canonical(&v))
        }
        Check::Digits { base } => crate::families::base::canonical(text, *base),
        Check::Words => Some(words(text).join(", ").to_ascii_lowercase()).filter(|w| !w.is_empty()),
        Check::Date => crate::families::calendar::canonical(text),
        // Many texts are right; a passing one normalises to the reference.
        Check::Exact
        | Check::Countdown { .. }
        | Check::CodeTests { .. }
        | Check::Satisfy { .. }
        | Check::Sudoku { .. }
        | Check::Maze { .. } => None,
    };
    canonical.unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `[+-]digits` (or `[+-]d,ddd,ddd` when `grouping`) as sign and digits with
/// no leading zeros; zero has no sign. Returns None for anything else.
pub(crate) fn canonical_integer(text: &str, grouping: bool) -> Option<String> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = if body.bytes().all(|b| b.is_ascii_digit()) {
        body.to_string()
    } else if grouping && is_grouped(body) {
        body.replace(',', "")
    } else {
        return None;
    };
    if digits.is_empty() {
        return None;
    }
    let trimmed = digits.trim_start_matches('0');
    Some(match (trimmed.is_empty(), negative) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{trimmed}"),
        (false, false) => trimmed.to_string(),
    })
}

/// `d`, `dd` or `ddd`, then one or more `,ddd` groups.
fn is_grouped(body: &str) -> bool {
    let mut groups = body.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    let mut rest = 0usize;
    let rest_ok = groups.all(|g| {
        rest += 1;
        g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())
    });
    first_ok && rest_ok && rest > 0
}

/// How many maximal runs of ASCII digits `text` holds.
fn digit_runs(text: &str) -> usize {
    let mut runs = 0;
    let mut in_run = false;
    for b in text.bytes() {
        let digit = b.is_ascii_digit();
        if digit && !in_run {
            runs += 1;
        }
        in_run = digit;
    }
    runs
}

/// A fraction as (numerator, denominator > 0), not reduced.
fn parse_fraction(text: &str) -> Result<(i128, i128), &'static str> {
    let (num, den) = match text.split_once('/') {
        Some((n, d)) => (small_integer(n.trim())?, small_integer(d.trim())?),
        None => (small_integer(text)?, 1),
    };
    match den {
        0 => Err("zero denominator"),
        d if d < 0 => Ok((-num, -d)),
        d => Ok((num, d)),
    }
}

/// An integer that fits comfortably in i128 (no grouping).
fn small_integer(text: &str) -> Result<i128, &'static str> {
    let canonical = canonical_integer(text, false).ok_or("not a fraction")?;
    if canonical.trim_start_matches('-').len() > 30 {
        return Err("number too large");
    }
    canonical.parse().map_err(|_| "not a fraction")
}

fn in_lowest_terms((num, den): (i128, i128)) -> bool {
    if num == 0 {
        return den == 1;
    }
    gcd(num.unsigned_abs(), den.unsigned_abs()) == 1
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// An integer list in any accepted syntax, as canonical integers.
fn parse_list(text: &str) -> Option<Vec<String>> {
    let inner = match (text.strip_prefix('['), text.ends_with(']')) {
        (Some(rest), true) => rest.strip_suffix(']')?.trim(),
        (None, false) => text,
        _ => return None,
    };
    if inner.is_empty() {
        return Some(Vec::new());
    }
    if inner.contains(',') {
        inner
            .split(',')
            .map(|item| canonical_integer(item.trim(), false))
            .collect()
    } else {
        inner
            .split_whitespace()
            .map(|item| canonical_integer(item, false))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(completion: &str) -> Option<&str> {
        extract(completion).answer
    }

    #[test]
    fn extraction_takes_the_last_complete_block() {
        assert_eq!(answer("<answer>1</answer> <answer>2</answer>"), Some("2"));
        assert_eq!(answer("<think>x</think><answer> 7 </answer>"), Some(" 7 "));
        assert_eq!(answer("<answer>1</answer><answer>2"), None);
        assert_eq!(answer("the answer is 5"), None);
        assert_eq!(answer("<answer><answer>5</answer></answer>"), Some("5"));
        assert_eq!(answer("</answer><answer>"), None);
    }

    #[test]
    fn format_requires_exactly_one_think_then_one_answer() {
        let ok = |c: &str| extract(c).format_ok;
        assert!(ok("<think>a</think><answer>1</answer>"));
        assert!(ok("  <think></think>\n<answer>1</answer>\n"));
        assert!(!ok("<answer>1</answer>"));
        assert!(!ok("<think>a</think><answer> </answer>"));
        assert!(!ok("hi <think>a</think><answer>1</answer>"));
        assert!(!ok("<think>a</think><answer>1</answer> bye"));
        assert!(!ok("<think>a</think>x<answer>1</answer>"));
        assert!(!ok("<think>a<answer>2</answer></think><answer>1</answer>"));
        assert!(!ok("<think>a</think><answer>1</answer><answer>2</answer>"));
        assert!(!ok("<think>a</think><think>b</think><answer>1</answer>"));
    }

    #[test]
    fn integers_normalise_sign_zeros_and_grouping() {
        let c = |t: &str| canonical_integer(t, true);
        assert_eq!(c("-0012").as_deref(), Some("-12"));
        assert_eq!(c("+7").as_deref(), Some("7"));
        assert_eq!(c("-000").as_deref(), Some("0"));
        assert_eq!(c("1,234,567").as_deref(), Some("1234567"));
        for bad in [
            "", "-", "1.0", "1,23", "12,3456", "1 2", "- 3", "3a", "٣", ",123",
        ] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        assert_eq!(canonical_integer("1,234", false), None);
    }

    #[test]
    fn number_judge_rejects_alternatives() {
        assert_eq!(judge_number("34", "034").reward, 1.0);
        assert_eq!(judge_number("-5", "-5").reward, 1.0);
        assert_eq!(judge_number("1234", "1,234").reward, 1.0);
        assert_eq!(judge_number("34", "35").reason, "wrong answer");
        assert_eq!(judge_number("3", "3 or 4").reason, "several answers");
        assert_eq!(judge_number("3", "3, 4").reason, "several answers");
        assert_eq!(judge_number("3", "x=3").reason, "not an integer literal");
        assert_eq!(judge_number("3", "three").reason, "not an integer literal");
        assert_eq!(
            judge_number("99999999999999999999999", "99999999999999999999999").reward,
            1.0
        );
    }

    #[test]
    fn number_judge_says_what_is_wrong() {
        let reason = |text: &str| judge_number("1000", text).reason;
        assert_eq!(reason("1e3"), "not an integer literal (an exponent)");
        assert_eq!(reason("7.0"), "not an integer literal (a decimal point)");
        assert_eq!(reason("-7.5"), "not an integer literal (a decimal point)");
        assert_eq!(
            reason("0x7"),
            "not an integer literal (a base prefix; write it in decimal)"
        );
        assert_eq!(
            reason("0b101"),
            "not an integer literal (a base prefix; write it in decimal)"
        );
        assert_eq!(reason("1_000"), "not an integer literal (an underscore)");
        assert_eq!(reason("3/4"), "not an integer literal (a fraction)");
        assert_eq!(reason("3 or 4"), "several answers");
        assert_eq!(reason("1e3 or 1000"), "several answers");
        assert_eq!(reason("x = 3 = 4"), "several answers");
        for text in ["1e3", "7.0", "0x7"] {
            assert_eq!(judge_number("7", text).reward, 0.0, "{text}");
        }
    }

    #[test]
    fn fraction_judge_wants_lowest_terms() {
        assert_eq!(judge_fraction("3/4", "3/4").reward, 1.0);
        assert_eq!(judge_fraction("3/4", "3 / 4").reward, 1.0);
        assert_eq!(judge_fraction("-3/4", "3/-4").reward, 1.0);
        assert_eq!(judge_fraction("-3/4", "-3/4").reward, 1.0);
        assert_eq!(judge_fraction("2", "2").reward, 1.0);
        assert_eq!(judge_fraction("2", "2/1").reward, 1.0);
        assert_eq!(judge_fraction("0", "0").reward, 1.0);
        assert_eq!(judge_fraction("3/4", "6/8").reason, "not in lowest terms");
        assert_eq!(judge_fraction("0", "0/5").reason, "not in lowest terms");
        assert_eq!(judge_fraction("3/4", "3/0").reason, "zero denominator");
        assert_eq!(
            judge_fraction("3/4", "1/2 or 3/4").reason,
            "several answers"
        );
        assert_eq!(
            judge_fraction("3/4", "0.75").reason,
            "not a fraction (a decimal point)"
        );
        assert_eq!(
            judge_fraction("3/4", "three quarters").reason,
            "not a fraction"
        );
        assert_eq!(
            judge_fraction("3/4", "9999999999999999999999999999999999/2").reason,
            "number too large"
        );
    }

    #[test]
    fn list_syntaxes_agree() {
        for form in [
            "[1, -2, 3]",
            "1,-2,3",
            "1 -2 3",
            "[1 -2 3]",
            "[ 1 ,-2, 03 ]",
        ] {
            assert_eq!(judge_list("[1, -2, 3]", form).reward, 1.0, "{form}");
        }
        assert_eq!(judge_list("[]", "[]").reward, 1.0);
        assert_eq!(judge_list("[1, 2]", "[2, 1]").reason, "wrong answer");
        assert_eq!(judge_list("[1, 2]", "[1, 2, 3]").reason, "wrong length");
        assert_eq!(
            judge_list("[1, 2]", "[1.0, 2]").reason,
            "not a list of integers: '1.0' is not an integer literal (a decimal point)"
        );
        assert_eq!(
            judge_list("[1, 2]", "[[1, 2]]").reason,
            "not a list of integers"
        );
        for bad in [
            "[1, 2] or [2, 1]",
            "[1,,2]",
            "[1, 2",
            "1, 2]",
            "[[1, 2]]",
            "1, 2 3",
        ] {
            assert_eq!(judge_list("[1, 2]", bad).reward, 0.0, "{bad}");
        }
    }

    #[test]
    fn answers_the_judge_treats_alike_normalise_alike() {
        let same = |check: &Check, a: &str, b: &str| normalize(check, a) == normalize(check, b);
        assert!(same(&Check::Number, "-0012", "-12"));
        assert!(same(&Check::Number, "1,234", "1234"));
        assert!(!same(&Check::Number, "12", "13"));
        assert!(same(&Check::Fraction, "3 / -4", "-3/4"));
        assert!(same(&Check::Fraction, "2/1", "2"));
        assert!(!same(&Check::Fraction, "6/8", "3/4"));
        assert!(same(&Check::List, "[1 , 02, -3]", "1 2 -3"));
        assert!(!same(&Check::List, "[1, 2]", "[2, 1]"));
        assert!(same(&Check::Exact, "a  b", "a b"));
        assert_eq!(normalize(&Check::Number, "3 or  4"), "3 or 4");
        let trace = Check::CodeOutput {
            program: String::new(),
        };
        assert!(same(&trace, "[1,2]", "[1, 2]"));
        assert!(same(&Check::Digits { base: 16 }, "002F", "2f"));
        assert!(!same(&Check::Digits { base: 16 }, "2f", "2e"));
        assert!(same(&Check::Words, "Cy,Ann  bo", "cy, ann, Bo"));
        assert!(!same(&Check::Words, "Cy, Ann", "Ann, Cy"));
        assert!(same(&Check::Date, "2023-4-8", "2023-04-08"));
    }

    #[test]
    fn words_ignore_case_and_separators() {
        assert_eq!(judge_words("Cy, Ann, Bo", "cy ann bo").reward, 1.0);
        assert_eq!(judge_words("Cy, Ann, Bo", "[Cy,Ann,Bo]").reward, 1.0);
        assert_eq!(judge_words("Tuesday", " tuesday. ").reward, 1.0);
        assert_eq!(
            judge_words("Cy, Ann, Bo", "Ann, Cy, Bo").reason,
            "wrong answer"
        );
        assert_eq!(
            judge_words("Tuesday", "Tuesday or Monday").reason,
            "expected one word"
        );
        assert_eq!(
            judge_words("knight, knave", "knight, knave, knight").reason,
            "expected 2 words, got 3"
        );
        assert_eq!(judge_words("Tuesday", "Tue").reward, 0.0);
        assert_eq!(judge_words("Tuesday", "").reward, 0.0);
    }

    #[test]
    fn exact_collapses_whitespace_only() {
        assert_eq!(judge_exact("a b", " a \n b").reward, 1.0);
        assert_eq!(judge_exact("a b", "A b").reward, 0.0);
    }

    mod hostile {
        use super::super::*;
        use proptest::prelude::{prop_assert, proptest};

        proptest! {
            #[test]
            fn judges_never_panic(text in "\\PC{0,200}") {
                for score in [
                    judge_words("Cy, Ann, Bo", &text),
                    judge_number("12", &text),
                    judge_fraction("3/4", &text),
                    judge_list("[1, 2]", &text),
                ] {
                    prop_assert!(score.reward == 0.0 || score.reward == 1.0);
                    prop_assert!(score.reason.len() < 200);
                }
            }

            #[test]
            fn number_shaped_text_gets_a_reason(text in "[-+0-9.,eExXbo_/ ]{0,30}") {
                let score = judge_number("12", &text);
                prop_assert!(!score.reason.is_empty());
            }
        }
    }

    #[test]
    fn huge_inputs_are_handled_quickly() {
        let big = format!("{}{}", "<answer>".repeat(200_000), "9".repeat(1_000_000));
        assert_eq!(answer(&big), None);
        let digits = "1".repeat(1_000_000);
        assert_eq!(judge_number("1", &digits).reward, 0.0);
        assert_eq!(judge_list("[1]", &"1 ".repeat(300_000)).reward, 0.0);
    }
}
