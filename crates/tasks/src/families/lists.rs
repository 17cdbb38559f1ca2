//! `lists`: sort a list, find its k-th smallest number, remove repeats, or
//! compute running sums.
//!
//! List answers are written `[1, 2, 3]`; the k-th smallest is one integer.
//! Worked solutions, one short line per element:
//!
//! ```text
//! sort [5, 3, 8, 3]        5: [5] / 3: [3, 5] / 8: [3, 5, 8] / 3: [3, 3, 5, 8]
//! 2nd smallest             (the same insertions) / position 2: 3
//! remove repeats           5 new / 3 new / 8 new / 3 seen
//! running sums [5, -3, 8]  5 / 5+(-3)=2 / 2+8=10
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `lists` family.
pub(crate) struct Lists;

/// The knobs of one level.
struct Level {
    /// Shortest and longest list.
    len: (usize, usize),
    /// Smallest and largest value.
    values: (i64, i64),
}

const LEVELS: [Level; 5] = [
    Level {
        len: (4, 4),
        values: (0, 9),
    },
    Level {
        len: (5, 5),
        values: (0, 20),
    },
    Level {
        len: (6, 7),
        values: (-20, 50),
    },
    Level {
        len: (8, 9),
        values: (-99, 99),
    },
    Level {
        len: (10, 12),
        values: (-999, 999),
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Question {
    Sort(Vec<i64>),
    /// The `k`-th smallest (1-based), repeats counted.
    Kth(Vec<i64>, usize),
    /// Keep the first occurrence of each value, in order.
    Dedupe(Vec<i64>),
    RunningSums(Vec<i64>),
}

const LIST_FORM: &str = "Answer with a list like [1, 2, 3].";

impl Task for Lists {
    fn name(&self) -> &'static str {
        "lists"
    }

    fn summary(&self) -> &'static str {
        "sort, k-th smallest, remove repeats, running sums of an integer list"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let len = if l.len.0 == l.len.1 {
            l.len.0.to_string()
        } else {
            format!("{}-{}", l.len.0, l.len.1)
        };
        format!("lists of {len} numbers in {}..={}", l.values.0, l.values.1)
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let q = question(rng, &LEVELS[level as usize - 1]);
        let (steps, answer, check) = solve(&q);
        Generated {
            prompt: ask(&q),
            solution: answer::render(&steps, &answer),
            answer,
            check,
            key: key(&q),
        }
    }
}

fn question(rng: &mut Rng, level: &Level) -> Question {
    let len = rng.range(level.len.0 as i64, level.len.1 as i64) as usize;
    let (lo, hi) = level.values;
    match rng.below(4) {
        0 => Question::Sort(draw(rng, len, lo, hi)),
        1 => Question::Kth(draw(rng, len, lo, hi), rng.range(1, len as i64) as usize),
        2 => {
            // Values from a pool smaller than the list, so repeats exist.
            let pool_len = rng.range(len as i64 / 2, len as i64 - 1) as usize;
            let pool = draw(rng, pool_len, lo, hi);
            Question::Dedupe((0..len).map(|_| *rng.pick(&pool)).collect())
        }
        _ => Question::RunningSums(draw(rng, len, lo, hi)),
    }
}

/// Sorting and the k-th smallest depend only on the multiset of numbers, so
/// their keys list it sorted; removing repeats and running sums depend on
/// the order.
fn key(q: &Question) -> String {
    let sorted = |xs: &[i64]| {
        let mut v = xs.to_vec();
        v.sort_unstable();
        answer::format_list(&v)
    };
    match q {
        Question::Sort(xs) => format!("sort {}", sorted(xs)),
        Question::Kth(xs, k) => format!("kth {k} {}", sorted(xs)),
        Question::Dedupe(xs) => format!("dedupe {}", answer::format_list(xs)),
        Question::RunningSums(xs) => format!("running sums {}", answer::format_list(xs)),
    }
}

fn draw(rng: &mut Rng, len: usize, lo: i64, hi: i64) -> Vec<i64> {
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

fn ask(q: &Question) -> String {
    match q {
        Question::Sort(xs) => format!(
            "Sort {} from smallest to largest. {LIST_FORM}",
            answer::format_list(xs)
        ),
        Question::Kth(xs, k) => {
            let which = match k {
                1 => "smallest".to_string(),
                k => format!("{} smallest", ordinal(*k)),
            };
            format!(
                "What is the {which} number in {}? Repeated numbers count separately. \
                 Answer with a single integer.",
                answer::format_list(xs)
            )
        }
        Question::Dedupe(xs) => format!(
            "Remove the repeated numbers from {}, keeping the first copy of each in order. \
             {LIST_FORM}",
            answer::format_list(xs)
        ),
        Question::RunningSums(xs) => format!(
            "Give the running sums of {}: entry k is the sum of the first k numbers. \
             {LIST_FORM}",
            answer::format_list(xs)
        ),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `12th`, `13th`, `21st`.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The worked steps, the answer and how it is checked.
fn solve(q: &Question) -> (Vec<String>, String, Check) {
    match q {
        Question::Sort(xs) => {
            let (steps, sorted) = insertion_sort(xs);
            (steps, answer::format_list(&sorted), Check::List)
        }
        Question::Kth(xs, k) => {
            let (mut steps, sorted) = insertion_sort(xs);
            let value = sorted[k - 1];
            steps.push(format!("position {k}: {value}"));
            (steps, value.to_string(), Check::Number)
        }
        Question::Dedupe(xs) => {
            let mut kept: Vec<i64> = Vec::new();
            let mut steps = Vec::new();
            for &x in xs {
                if kept.contains(&x) {
                    steps.push(format!("{x} seen"));
                } else {
                    steps.push(format!("{x} new"));
                    kept.push(x);
                }
            }
            (steps, answer::format_list(&kept), Check::List)
        }
        Question::RunningSums(xs) => {
            let mut sums = Vec::with_capacity(xs.len());
            let mut steps = Vec::new();
            for &x in xs {
                match sums.last() {
                    None => steps.push(x.to_string()),
                    Some(&total) => steps.push(format!("{total}+{}={}", signed(x), total + x)),
                }
                sums.push(sums.last().map_or(x, |total| total + x));
            }
            (steps, answer::format_list(&sums), Check::List)
        }
    }
}

/// Insert each number into a sorted prefix, one line per insertion:
/// `3: [3, 5]`.
fn insertion_sort(xs: &[i64]) -> (Vec<String>, Vec<i64>) {
    let mut sorted: Vec<i64> = Vec::with_capacity(xs.len());
    let mut steps = Vec::with_capacity(xs.len());
    for &x in xs {
        let at = sorted.partition_point(|&y| y <= x);
        sorted.insert(at, x);
        steps.push(format!("{x}: {}", answer::format_list(&sorted)));
    }
    (steps, sorted)
}

/// A negative operand in parentheses: `5+(-3)`.
fn signed(n: i64) -> String {
    if n < 0 {
        format!("({n})")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    fn each_problem(mut f: impl FnMut(&Level, Question, Generated)) {
        for level in 1..=Lists.max_level() {
            for seed in 0..SEEDS {
                let q = question(&mut Rng::new(seed), &LEVELS[level as usize - 1]);
                let g = Lists.generate(&mut Rng::new(seed), level);
                f(&LEVELS[level as usize - 1], q, g);
            }
        }
    }

    /// The answer computed another way, independent of the worked solution.
    fn expected(q: &Question) -> String {
        match q {
            Question::Sort(xs) => {
                let mut v = xs.clone();
                v.sort_unstable();
                answer::format_list(&v)
            }
            Question::Kth(xs, k) => {
                // The k-th smallest has fewer than k values below it and at
                // least k values at or below it.
                let found = xs.iter().find(|&&x| {
                    xs.iter().filter(|&&y| y < x).count() < *k
                        && xs.iter().filter(|&&y| y <= x).count() >= *k
                });
                found.unwrap().to_string()
            }
            Question::Dedupe(xs) => {
                let mut seen = HashSet::new();
                let kept: Vec<i64> = xs.iter().copied().filter(|x| seen.insert(*x)).collect();
                answer::format_list(&kept)
            }
            Question::RunningSums(xs) => {
                let sums: Vec<i64> = (1..=xs.len()).map(|k| xs[..k].iter().sum()).collect();
                answer::format_list(&sums)
            }
        }
    }

    fn list_of(q: &Question) -> &[i64] {
        match q {
            Question::Sort(xs)
            | Question::Kth(xs, _)
            | Question::Dedupe(xs)
            | Question::RunningSums(xs) => xs,
        }
    }

    #[test]
    fn generation_is_deterministic() {
        for level in 1..=Lists.max_level() {
            for seed in [0, 3, u64::MAX] {
                assert_eq!(
                    Lists.generate(&mut Rng::new(seed), level),
                    Lists.generate(&mut Rng::new(seed), level)
                );
            }
        }
    }

    #[test]
    fn answers_match_an_independent_computation() {
        each_problem(|_, q, g| {
            assert_eq!(g.answer, expected(&q), "{}", g.prompt);
            assert!(g
                .solution
                .ends_with(&format!("<answer>{}</answer>", g.answer)));
            let check = if matches!(q, Question::Kth(..)) {
                Check::Number
            } else {
                Check::List
            };
            assert_eq!(g.check, check);
        });
    }

    #[test]
    fn questions_match_their_level_and_prompt() {
        let mut kinds = HashSet::new();
        each_problem(|level, q, g| {
            let xs = list_of(&q);
            assert!((level.len.0..=level.len.1).contains(&xs.len()));
            assert!(xs
                .iter()
                .all(|x| (level.values.0..=level.values.1).contains(x)));
            assert!(g.prompt.contains(&answer::format_list(xs)), "{}", g.prompt);
            assert!(g.prompt.is_ascii());
            match &q {
                Question::Kth(_, 1) => assert!(g.prompt.starts_with("What is the smallest ")),
                Question::Kth(_, k) => {
                    assert!((2..=xs.len()).contains(k));
                    let asked = format!("What is the {} smallest ", ordinal(*k));
                    assert!(g.prompt.starts_with(&asked), "{}", g.prompt);
                }
                Question::Dedupe(_) => {
                    let distinct: HashSet<_> = xs.iter().collect();
                    assert!(distinct.len() < xs.len(), "{xs:?} has no repeat");
                }
                _ => {}
            }
            kinds.insert(std::mem::discriminant(&q));
        });
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn worked_steps_are_correct() {
        each_problem(|_, q, g| {
            let think = g.solution.split(answer::THINK_CLOSE).next().unwrap();
            let lines: Vec<&str> = think
                .trim_start_matches(answer::THINK_OPEN)
                .lines()
                .collect();
            let xs = list_of(&q);
            match &q {
                Question::Sort(_) | Question::Kth(..) => {
                    // Line i holds the first i+1 numbers sorted.
                    for (i, line) in lines.iter().take(xs.len()).enumerate() {
                        let mut prefix = xs[..=i].to_vec();
                        prefix.sort_unstable();
                        let want = format!("{}: {}", xs[i], answer::format_list(&prefix));
                        assert_eq!(*line, want);
                    }
                }
                Question::Dedupe(_) => {
                    for (i, line) in lines.iter().enumerate() {
                        let new = !xs[..i].contains(&xs[i]);
                        let want = format!("{} {}", xs[i], if new { "new" } else { "seen" });
                        assert_eq!(*line, want);
                    }
                }
                Question::RunningSums(_) => {
                    for line in &lines[1..] {
                        assert_eq!(assert_true_arithmetic(line), 1, "{line}");
                    }
                }
            }
            let extra = usize::from(matches!(q, Question::Kth(..)));
            assert_eq!(lines.len(), xs.len() + extra, "{}", g.solution);
        });
    }

    #[test]
    fn verifies_through_the_problem() {
        each_problem(|_, q, g| {
            let p = g.into_problem("lists", 1, "lists/test".to_string());
            let good = p.verify(&p.solution);
            assert!(good.reward == 1.0 && good.format_ok, "{good:?}");
            let wrong = match &q {
                Question::Kth(..) => {
                    let n: i64 = p.answer.parse().unwrap();
                    vec![(n + 1).to_string(), format!("[{n}]")]
                }
                Question::Sort(xs) | Question::Dedupe(xs) | Question::RunningSums(xs) => {
                    let inner = p.answer.trim_matches(|c| c == '[' || c == ']');
                    vec![
                        format!("[{inner}, 0]"),
                        // The question's own list, unless it already is the answer.
                        if answer::format_list(xs) == p.answer {
                            format!("[{inner}, {inner}]")
                        } else {
                            answer::format_list(xs)
                        },
                        format!("{} or {}", p.answer, p.answer),
                    ]
                }
            };
            for wrong in wrong {
                let v = p.verify(&format!("<think></think><answer>{wrong}</answer>"));
                assert_eq!(v.reward, 0.0, "{wrong}: {v:?}");
            }
        });
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th"
            ]
        );
    }

    #[test]
    fn level_one_has_many_distinct_problems() {
        let prompts: HashSet<String> = (0..10_000)
            .map(|seed| Lists.generate(&mut Rng::new(seed), 1).prompt)
            .collect();
        assert!(prompts.len() >= 7_000, "{} distinct", prompts.len());
    }
}
