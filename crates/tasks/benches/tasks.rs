//! Throughput of every family on one core: problems generated per second,
//! completions verified per second (the worked solution, a wrong answer, and
//! a hostile completion), at the lowest and highest level.
//!
//! Run with `cargo bench -p verity-tasks`. Each figure is the best of three
//! timed rounds of at least 0.2 s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tasks::{problem, Check, Problem, Split};

const PROBLEMS: u64 = 512;
const ROUND: Duration = Duration::from_millis(200);

/// Calls per second of `f`, which handles `batch` items per call.
fn rate(batch: usize, mut f: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let mut calls = 0usize;
        while start.elapsed() < ROUND {
            f();
            calls += 1;
        }
        best = best.max((calls * batch) as f64 / start.elapsed().as_secs_f64());
    }
    best
}

/// A completion that is wrong in the answer's own syntax.
fn wrong(p: &Problem) -> String {
    let answer = match &p.check {
        Check::CodeTests { function, .. } => format!("fn {function}(x) {{ 0 }}"),
        _ => format!("{}1", p.answer),
    };
    format!("<think>guess</think><answer>{answer}</answer>")
}

/// The worst thing a model could write for this kind of problem.
fn hostile(p: &Problem) -> String {
    let answer = match &p.check {
        Check::CodeTests { function, .. } => {
            format!("fn {function}(x) {{ let a = []; loop {{ a.push(a.len()); }} }}")
        }
        Check::CodeOutput { .. } | Check::Countdown { .. } => "((((1+1)".repeat(2_000),
        _ => "9".repeat(100_000),
    };
    format!(
        "<think>{}</think><answer>{answer}</answer>",
        "hm ".repeat(1_000)
    )
}

fn main() {
    // Building the held-out sets (which training draws avoid) is a one-off.
    let start = Instant::now();
    let _ = problem("arith", 1, Split::Train, 0);
    println!("held-out sets built in {:.2?}\n", start.elapsed());

    println!(
        "{:<12} {:>5} {:>14} {:>16} {:>16} {:>16}",
        "family", "level", "generated/s", "verified/s ok", "verified/s wrong", "hostile/s"
    );
    for family in tasks::all() {
        for level in [1, family.max_level()] {
            let name = family.name();
            let mut next = 0u64;
            let generated = rate(1, || {
                black_box(problem(name, level, Split::Train, next).ok());
                next += 1;
            });
            let problems: Vec<Problem> = (0..PROBLEMS)
                .map(|i| problem(name, level, Split::Train, 1_000_000 + i).expect("a problem"))
                .collect();
            let verify_all = |completions: &[String]| {
                rate(problems.len(), || {
                    for (p, c) in problems.iter().zip(completions) {
                        black_box(p.verify(c));
                    }
                })
            };
            let solutions: Vec<String> = problems.iter().map(|p| p.solution.clone()).collect();
            let wrongs: Vec<String> = problems.iter().map(wrong).collect();
            let hostiles: Vec<String> = problems.iter().take(16).map(hostile).collect();
            let hostile_rate = rate(hostiles.len(), || {
                for (p, c) in problems.iter().zip(&hostiles) {
                    black_box(p.verify(c));
                }
            });
            println!(
                "{:<12} {:>5} {:>14.0} {:>16.0} {:>16.0} {:>16.0}",
                name,
                level,
                generated,
                verify_all(&solutions),
                verify_all(&wrongs),
                hostile_rate
            );
        }
    }
}
