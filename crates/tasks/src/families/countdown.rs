//! `countdown`: reach a target from given numbers with + - * /.
//!
//! An answer is one expression over the given numbers, each used at most
//! once, with binary `+ - * /` and parentheses (no unary minus), where every
//! division is exact. It may end in `= N` when N is the target. Any such
//! expression that evaluates to the target scores 1; not every number has
//! to be used.
//!
//! A puzzle is made by combining a random subset of the numbers, two at a
//! time, so a solution always exists; the worked solution is that sequence
//! of combinations, one per line, with positive intermediates:
//!
//! ```text
//! Make 83 from the numbers 7, 25, 3, 5, 4 ...
//! <think>25-5=20
//! 20*4=80
//! 80+3=83</think><answer>(25-5)*4+3</answer>
//! ```

use crate::answer;
use crate::arith_expr::{evaluate, Syntax};
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `countdown` family.
pub(crate) struct Countdown;

/// The knobs of one level.
struct Level {
    /// How many numbers the puzzle gives.
    numbers: usize,
    /// How many of them are drawn from [`LARGE`] (distinct); the rest are
    /// drawn from `1..=small_max`, repeats allowed.
    large: usize,
    small_max: i64,
    /// How many numbers the generated solution combines (inclusive range).
    uses: (usize, usize),
    /// Accepted targets (inclusive range).
    target: (i64, i64),
}

const LARGE: [i64; 4] = [25, 50, 75, 100];

const LEVELS: [Level; 6] = [
    Level {
        numbers: 3,
        large: 0,
        small_max: 12,
        uses: (2, 2),
        target: (2, 100),
    },
    Level {
        numbers: 4,
        large: 0,
        small_max: 12,
        uses: (3, 3),
        target: (10, 100),
    },
    Level {
        numbers: 4,
        large: 1,
        small_max: 10,
        uses: (3, 4),
        target: (10, 250),
    },
    Level {
        numbers: 5,
        large: 1,
        small_max: 10,
        uses: (4, 4),
        target: (50, 500),
    },
    Level {
        numbers: 6,
        large: 2,
        small_max: 10,
        uses: (4, 5),
        target: (100, 999),
    },
    Level {
        numbers: 6,
        large: 2,
        small_max: 10,
        uses: (5, 6),
        target: (100, 999),
    },
];

/// Intermediate results stay below this, so steps remain human-sized.
const MAX_INTERMEDIATE: i64 = 10_000;

/// Draws per problem before the last one is taken even if its target is out
/// of range; in practice a few draws suffice.
const MAX_DRAWS: usize = 500;

impl Task for Countdown {
    fn name(&self) -> &'static str {
        "countdown"
    }

    fn summary(&self) -> &'static str {
        "reach a target from given numbers with + - * / (each at most once)"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let large = match l.large {
            0 => String::new(),
            n => format!(", {n} of them from 25/50/75/100"),
        };
        let uses = if l.uses.0 == l.uses.1 {
            l.uses.0.to_string()
        } else {
            format!("{}-{}", l.uses.0, l.uses.1)
        };
        format!(
            "{} numbers 1..={}{large}; target {}..={}; a solution combines {uses} of them",
            l.numbers, l.small_max, l.target.0, l.target.1
        )
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let puzzle = draw(rng, &LEVELS[level as usize - 1]);
        let listed: Vec<String> = puzzle.numbers.iter().map(i64::to_string).collect();
        Generated {
            prompt: format!(
                "Make {} from the numbers {} using + - * / and parentheses. \
                 Each number may be used at most once and every division must be exact. \
                 Answer with the expression only.",
                puzzle.target,
                listed.join(", ")
            ),
            solution: answer::render(&puzzle.steps, &puzzle.expression),
            answer: puzzle.expression,
            key: key(&puzzle.numbers, puzzle.target),
            check: Check::Countdown {
                numbers: puzzle.numbers,
                target: puzzle.target,
            },
        }
    }
}

/// The numbers as a multiset (sorted) and the target: the same puzzle
/// whatever order the numbers are listed in.
fn key(numbers: &[i64], target: i64) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    let listed: Vec<String> = sorted.iter().map(i64::to_string).collect();
    format!("countdown {} -> {target}", listed.join(","))
}

/// A generated puzzle with its solution.
struct Puzzle {
    numbers: Vec<i64>,
    target: i64,
    /// One combination per line: `25-5=20`.
    steps: Vec<String>,
    /// The solution as one expression with minimal parentheses.
    expression: String,
}

fn draw(rng: &mut Rng, level: &Level) -> Puzzle {
    let mut puzzle = draw_once(rng, level);
    for _ in 1..MAX_DRAWS {
        let (lo, hi) = level.target;
        if (lo..=hi).contains(&puzzle.target) && !puzzle.numbers.contains(&puzzle.target) {
            break;
        }
        puzzle = draw_once(rng, level);
    }
    puzzle
}

/// Draw the numbers, then combine a random subset of them pair by pair.
fn draw_once(rng: &mut Rng, level: &Level) -> Puzzle {
    let mut large = LARGE;
    rng.shuffle(&mut large);
    let mut numbers: Vec<i64> = large[..level.large].to_vec();
    while numbers.len() < level.numbers {
        numbers.push(rng.range(1, level.small_max));
    }
    rng.shuffle(&mut numbers);

    let uses = rng.range(level.uses.0 as i64, level.uses.1 as i64) as usize;
    let mut order: Vec<usize> = (0..numbers.len()).collect();
    rng.shuffle(&mut order);
    let mut pool: Vec<Term> = order[..uses]
        .iter()
        .map(|&i| Term::number(numbers[i]))
        .collect();
    let mut steps = Vec::new();
    while pool.len() > 1 {
        let first = pool.swap_remove(rng.below(pool.len()));
        let second = pool.swap_remove(rng.below(pool.len()));
        let (a, b) = if first.value >= second.value {
            (first, second)
        } else {
            (second, first)
        };
        let op = *rng.pick(&Op::allowed(a.value, b.value));
        let combined = Term::combine(&a, op, &b);
        steps.push(format!(
            "{}{}{}={}",
            a.value,
            op.symbol(),
            b.value,
            combined.value
        ));
        pool.push(combined);
    }
    let last = pool.swap_remove(0);
    Puzzle {
        numbers,
        target: last.value,
        steps,
        expression: last.text,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

impl Op {
    /// The operations that keep `a op b` (with `a >= b >= 1`) a positive
    /// integer below [`MAX_INTERMEDIATE`] and not trivially `a` itself.
    fn allowed(a: i64, b: i64) -> Vec<Op> {
        let mut ops = vec![Op::Add];
        if a > b {
            ops.push(Op::Sub);
        }
        if b > 1 && a * b < MAX_INTERMEDIATE {
            ops.push(Op::Mul);
        }
        if b > 1 && a % b == 0 {
            ops.push(Op::Div);
        }
        ops
    }

    fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            Op::Add => a + b,
            Op::Sub => a - b,
            Op::Mul => a * b,
            Op::Div => a / b,
        }
    }

    fn symbol(self) -> char {
        match self {
            Op::Add => '+',
            Op::Sub => '-',
            Op::Mul => '*',
            Op::Div => '/',
        }
    }

    fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::Div => 2,
        }
    }
}

/// A value with the expression that makes it.
struct Term {
    value: i64,
    text: String,
    /// Precedence of the outermost operation; a bare number binds tightest.
    precedence: u8,
}

impl Term {
    fn number(value: i64) -> Self {
        Self {
            value,
            text: value.to_string(),
            precedence: u8::MAX,
        }
    }

    /// `a op b` with minimal parentheses: a looser operand, or an equally
    /// tight one right of `-` or `/`.
    fn combine(a: &Term, op: Op, b: &Term) -> Term {
        let p = op.precedence();
        let left = wrap(&a.text, a.precedence < p);
        let right_wrap = b.precedence < p || (b.precedence == p && matches!(op, Op::Sub | Op::Div));
        let right = wrap(&b.text, right_wrap);
        Term {
            value: op.apply(a.value, b.value),
            text: format!("{left}{}{right}", op.symbol()),
            precedence: p,
        }
    }
}

fn wrap(text: &str, parenthesise: bool) -> String {
    if parenthesise {
        format!("({text})")
    } else {
        text.to_string()
    }
}

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
            Ok(claimed) => return Score::fail(format!("claims {claimed}, target is {target}")),
            Err(_) => return Score::fail("after '=' expected the target number"),
        },
    };
    let evaluation = match evaluate(expression, &ANSWER_SYNTAX) {
        Ok(e) => e,
        Err(e) => return Score::fail(format!("not a valid expression: {e}")),
    };
    if let Some(reason) = misused_number(numbers, &evaluation.literals) {
        return Score::fail(reason);
    }
    if evaluation.value != target {
        return Score::fail(format!(
            "evaluates to {}, target is {target}",
            evaluation.value
        ));
    }
    Score::pass(format!("reaches {target}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::answer;
    use crate::rng::Rng;
    use std::collections::HashSet;

    const NUMBERS: [i64; 5] = [25, 5, 4, 3, 7];
    const SEEDS: u64 = 400;

    /// Every level's problems for seeds `0..SEEDS`, with their level.
    fn generated() -> impl Iterator<Item = (&'static Level, Generated)> {
        (1..=Countdown.max_level()).flat_map(|level| {
            (0..SEEDS).map(move |seed| {
                let g = Countdown.generate(&mut Rng::new(seed), level);
                (&LEVELS[level as usize - 1], g)
            })
        })
    }

    fn puzzle(g: &Generated) -> (&[i64], i64) {
        match &g.check {
            Check::Countdown { numbers, target } => (numbers, *target),
            other => panic!("countdown made {other:?}"),
        }
    }

    /// The lines of the think block.
    fn think_lines(solution: &str) -> Vec<&str> {
        let body = solution
            .strip_prefix(answer::THINK_OPEN)
            .and_then(|rest| rest.split_once(answer::THINK_CLOSE))
            .map(|(think, _)| think)
            .expect("solution starts with a think block");
        body.lines().collect()
    }

    #[test]
    fn generation_is_deterministic() {
        for level in 1..=Countdown.max_level() {
            for seed in [0, 1, u64::MAX] {
                let a = Countdown.generate(&mut Rng::new(seed), level);
                let b = Countdown.generate(&mut Rng::new(seed), level);
                assert_eq!(a, b);
            }
        }
        let a = Countdown.generate(&mut Rng::new(1), 3);
        let b = Countdown.generate(&mut Rng::new(2), 3);
        assert_ne!(a.prompt, b.prompt);
    }

    #[test]
    fn puzzles_match_their_level() {
        for (level, g) in generated() {
            let (numbers, target) = puzzle(&g);
            assert_eq!(numbers.len(), level.numbers, "{}", g.prompt);
            assert!(
                (level.target.0..=level.target.1).contains(&target),
                "{}",
                g.prompt
            );
            assert!(!numbers.contains(&target), "{}", g.prompt);
            let large = numbers.iter().filter(|n| **n > level.small_max).count();
            assert_eq!(large, level.large, "{}", g.prompt);
            assert!(g.prompt.is_ascii());
            assert!(g.prompt.contains(&format!("Make {target} ")));
        }
    }

    #[test]
    fn worked_solutions_are_correct() {
        let loose = Syntax {
            max_len: 100,
            max_depth: 4,
            unary_minus: false,
        };
        for (level, g) in generated() {
            let (numbers, target) = puzzle(&g);
            // The answer, checked by evaluating it.
            let score = judge(numbers, target, &g.answer);
            assert_eq!(
                score.reward, 1.0,
                "{}: {}: {}",
                g.prompt, g.answer, score.reason
            );
            assert!(g
                .solution
                .ends_with(&format!("<answer>{}</answer>", g.answer)));
            let used = evaluate(&g.answer, &loose).unwrap().literals.len();
            assert!(
                (level.uses.0..=level.uses.1).contains(&used),
                "{}",
                g.answer
            );
            // Each step is true arithmetic on positive values; the last one
            // lands on the target; there is one step per combination.
            let lines = think_lines(&g.solution);
            assert_eq!(lines.len(), used - 1, "{}", g.solution);
            for line in &lines {
                let (lhs, rhs) = line.split_once('=').expect("step has '='");
                let result: i64 = rhs.parse().expect("step result");
                assert_eq!(evaluate(lhs, &loose).unwrap().value, result, "{line}");
                assert!(result > 0, "{line}");
            }
            let last = lines.last().and_then(|l| l.split_once('=')).unwrap().1;
            assert_eq!(last, target.to_string());
        }
    }

    #[test]
    fn perturbed_answers_fail() {
        for (_, g) in generated() {
            let (numbers, target) = puzzle(&g);
            for wrong in [
                format!("{}+1", g.answer),
                format!("({})*2", g.answer),
                format!("{} = {}", g.answer, target + 1),
                format!("{}, {}", g.answer, g.answer),
                target.to_string(),
            ] {
                assert_eq!(judge(numbers, target, &wrong).reward, 0.0, "{wrong}");
            }
            // Reuse one of its numbers more often than it was given.
            let n = evaluate(&g.answer, &ANSWER_SYNTAX).unwrap().literals[0];
            let copies = numbers.iter().filter(|&&m| m == n).count();
            let reused = format!("{}{}", g.answer, format!("+{n}-{n}").repeat(copies));
            let score = judge(numbers, target, &reused);
            assert_eq!(score.reward, 0.0, "{reused}");
            assert!(score.reason.contains("more often"), "{}", score.reason);
        }
    }

    #[test]
    fn verifies_through_the_problem() {
        for (_, g) in generated().step_by(7) {
            let (numbers, target) = puzzle(&g);
            let (numbers, answer) = (numbers.to_vec(), g.answer.clone());
            let p = g.into_problem("countdown", 1, "countdown/test".to_string());
            let good = p.verify(&p.solution);
            assert!(good.reward == 1.0 && good.format_ok, "{good:?}");
            // Adds and takes away a given number more often than it is given.
            let padding = format!("+{n}-{n}", n = numbers[0]).repeat(numbers.len());
            for wrong in [
                format!("{answer}+1"),
                format!("{answer} or {answer}"),
                format!("{answer}{padding}"),
                target.to_string(),
                p.prompt.clone(),
            ] {
                let v = p.verify(&format!("<think></think><answer>{wrong}</answer>"));
                assert_eq!(v.reward, 0.0, "{wrong}: {v:?}");
            }
        }
    }

    #[test]
    fn low_levels_have_many_distinct_problems() {
        for (level, minimum) in [(1, 4_000), (2, 9_000)] {
            let prompts: HashSet<String> = (0..10_000)
                .map(|seed| Countdown.generate(&mut Rng::new(seed), level).prompt)
                .collect();
            assert!(
                prompts.len() >= minimum,
                "level {level}: {} distinct prompts in 10,000 draws",
                prompts.len()
            );
        }
    }

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
        assert_eq!(
            judge(&[i64::MAX, 2], 0, "9223372036854775807*2").reward,
            0.0
        );
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
