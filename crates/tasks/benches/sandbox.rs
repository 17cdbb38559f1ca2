//! How long the code verifiers take on the worst programs a model can write.
//!
//! Every case is a `code_io` completion judged end to end through
//! `Problem::verify` against eight hidden tests, with partial credit on so
//! that no early failure shortens the run. The slowest possible completion
//! is one that spends almost the whole operation budget in every test
//! without crossing it (crossing it ends the run); the bench finds that
//! program by bisection and times it alongside the hostile ones.
//!
//! Run with `cargo bench -p verity-tasks --bench sandbox`. Each figure is
//! the median of repeated runs, in milliseconds per verified completion.

use std::hint::black_box;
use std::time::Instant;

use tasks::{problem, Check, CodeTest, Problem, Split};

const RUNS: usize = 15;

/// A `code_io` problem asking for `fn f(x)` that doubles, with 8 hidden tests.
fn doubling() -> Problem {
    let tests = (1..=8)
        .map(|x: i64| CodeTest {
            args: vec![x.to_string()],
            expected: (2 * x).to_string(),
        })
        .collect();
    Problem {
        id: "bench/double".to_string(),
        task: "code_io".to_string(),
        level: 1,
        prompt: "Write fn f(x) returning 2 * x.".to_string(),
        answer: "fn f(x) { 2 * x }".to_string(),
        solution: "<think>double</think><answer>fn f(x) { 2 * x }</answer>".to_string(),
        check: Check::CodeTests {
            function: "f".to_string(),
            tests,
            partial_credit: true,
        },
    }
}

fn completion(answer: &str) -> String {
    format!("<think>try</think><answer>{answer}</answer>")
}

/// `fn f(x)` that counts to `n` before answering correctly.
fn busy(n: u64) -> String {
    format!("fn f(x) {{ let i = 0; while i < {n} {{ i += 1; }} 2 * x }}")
}

/// The largest count `busy` can reach in every test without hitting a limit.
fn slowest_passing(p: &Problem) -> u64 {
    let (mut lo, mut hi) = (0u64, 10_000_000u64);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if p.verify(&completion(&busy(mid))).reward == 1.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Median milliseconds of `verify` on `text`, and the verdict's reason.
fn time(p: &Problem, text: &str) -> (f64, String) {
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(p.verify(black_box(text)));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[RUNS / 2], p.verify(text).reason)
}

fn main() {
    let p = doubling();
    let n = slowest_passing(&p);
    let big = "fn big() { let a = []; for i in 0..300 { a.push(i); } a }";
    let cases: Vec<(&str, String)> = vec![
        ("reference solution", "fn f(x) { 2 * x }".to_string()),
        ("slowest passing program", busy(n)),
        ("loop {}", "fn f(x) { loop {} }".to_string()),
        ("endless recursion", "fn f(x) { f(x + 1) }".to_string()),
        ("two-way recursion", "fn f(x) { f(x) + f(x) }".to_string()),
        (
            "string doubling",
            "fn f(x) { let s = \"x\"; loop { s += s; } }".to_string(),
        ),
        (
            "array growth",
            "fn f(x) { let a = []; loop { a.push(a.len()); } }".to_string(),
        ),
        (
            "nested callbacks",
            format!("{big} fn f(x) {{ big().map(|a| big().map(|b| big().map(|c| c))) }}"),
        ),
        (
            "sort with a looping comparator",
            format!("{big} fn f(x) {{ big().sort(|a, b| {{ loop {{}} }}); 2 * x }}"),
        ),
        (
            "deeply nested source",
            format!("fn f(x) {{ {}x{} }}", "(".repeat(5_000), ")".repeat(5_000)),
        ),
        ("10 MB of '('", "(".repeat(10 << 20)),
    ];
    println!("fn f(x) that counts to {n} in each of 8 tests still passes\n");
    println!("{:<32} {:>10}  verdict", "completion", "ms");
    for (name, answer) in &cases {
        let text = completion(answer);
        let (ms, reason) = time(&p, &text);
        println!("{name:<32} {ms:>10.3}  {reason}");
    }

    // Generation runs every code_trace program in the sandbox once.
    let start = Instant::now();
    let count = 2_000u64;
    for index in 0..count {
        black_box(problem("code_trace", 1 + (index % 5) as u32, Split::Train, index).ok());
    }
    let per_second = count as f64 / start.elapsed().as_secs_f64();
    println!("\ncode_trace problems generated (program run included): {per_second:.0}/s");
}
