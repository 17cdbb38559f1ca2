//! Helpers shared by the tasks integration tests.

#![allow(dead_code)]

use tasks::{Check, Problem};

/// A completion in the output format with `answer` in the answer block.
pub fn answered(answer: &str) -> String {
    format!("<think>working</think><answer>{answer}</answer>")
}

/// A wrong answer close to the right one, in the answer's own syntax.
pub fn perturbed(problem: &Problem) -> String {
    let answer = problem.answer.trim();
    match &problem.check {
        Check::Number => {
            let n: i128 = answer.parse().expect("integer reference");
            (n + 1).to_string()
        }
        Check::List => {
            let inner = answer.trim_start_matches('[').trim_end_matches(']');
            let mut items: Vec<i128> = inner
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().expect("integer item"))
                .collect();
            match items.first_mut() {
                Some(first) => *first += 1,
                None => items.push(0),
            }
            let parts: Vec<String> = items.iter().map(i128::to_string).collect();
            format!("[{}]", parts.join(", "))
        }
        // n/d + 1 = (n+d)/d, still in lowest terms.
        Check::Fraction => match answer.split_once('/') {
            Some((n, d)) => {
                let (n, d): (i128, i128) = (n.parse().expect("num"), d.parse().expect("den"));
                format!("{}/{d}", n + d)
            }
            None => (answer.parse::<i128>().expect("integer") + 1).to_string(),
        },
        Check::Exact => format!("{answer} x"),
        Check::Countdown { .. } => format!("{answer}+1"),
        Check::CodeTests { function, .. } => {
            answer.replacen(&format!("fn {function}("), &format!("fn {function}_x("), 1)
        }
        Check::CodeOutput { .. } => format!("{answer}0"),
        Check::Digits { .. } => format!("{answer}1"),
        Check::Words => format!("{answer}x"),
        Check::Date => {
            let (year, rest) = answer.split_once('-').expect("a date");
            format!("{}-{rest}", year.parse::<i64>().expect("a year") + 1)
        }
        // Another assignment that breaks a clause.
        Check::Satisfy { variables, .. } => (0..1u32 << variables.len())
            .map(|row| {
                let parts: Vec<String> = variables
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{v}={}", row >> i & 1))
                    .collect();
                parts.join(", ")
            })
            .find(|candidate| problem.verify(&answered(candidate)).reward == 0.0)
            .expect("an unsatisfying assignment"),
        // The first two cells swapped: another grid, and the solution is unique.
        Check::Sudoku { .. } => {
            let mut cells: Vec<char> = answer.chars().collect();
            cells.swap(0, 1);
            cells.into_iter().collect()
        }
        Check::Maze { .. } => format!("{answer}UD"),
    }
}
