//! `code_io` templates for level 5: small classic algorithms.

use super::specs::{boolean, cases, check, int, ints, small_array, split, test, Spec};
use crate::rng::Rng;

// ---- level 5: small algorithms ----

/// Largest `n` asked of `fib`: small enough that the textbook double
/// recursion stays inside the operation budget.
const MAX_FIB: i64 = 16;

pub(super) fn fib(rng: &mut Rng) -> Spec {
    let fibs: Vec<i64> = (0..=MAX_FIB)
        .scan((0_i64, 1_i64), |state, _| {
            let f = state.0;
            *state = (state.1, state.0 + state.1);
            Some(f)
        })
        .collect();
    let cases = cases(rng, vec![], |rng| {
        let n = rng.range(0, MAX_FIB);
        test(&[int(n)], int(fibs[n as usize]))
    });
    Spec {
        name: "fib",
        params: "n",
        task: "returns the n-th Fibonacci number: fib(0) = 0, fib(1) = 1, fib(n) = fib(n - 1) + \
               fib(n - 2)"
            .to_string(),
        source: "fn fib(n) { let a = 0; let b = 1; for i in 0..n { let t = a + b; a = b; b = t; \
                 } a }"
            .to_string(),
        reasoning: vec![
            "Walk up from (0, 1) n times, replacing (a, b) with (b, a + b); a is the answer."
                .to_string(),
            check(&cases[0], "fib"),
        ],
        ..split(cases)
    }
}

pub(super) fn gcd(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let common = rng.range(1, 15);
        let (a, b) = (common * rng.range(1, 20), common * rng.range(1, 20));
        test(&[int(a), int(b)], int(euclid(a, b)))
    });
    Spec {
        name: "gcd",
        params: "a, b",
        task: "returns the greatest common divisor of the positive integers a and b".to_string(),
        source: "fn gcd(a, b) { while b != 0 { let t = a % b; a = b; b = t; } a }".to_string(),
        reasoning: vec![
            "Euclid: replace (a, b) with (b, a % b) until b is 0; then a is the gcd.".to_string(),
            check(&cases[0], "gcd"),
        ],
        ..split(cases)
    }
}

pub(super) fn digit_sum(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![test(&[int(0)], int(0))], |rng| {
        let digits = rng.range(1, 5) as u32;
        let n = rng.range(0, 10_i64.pow(digits));
        let sum = n.to_string().bytes().map(|b| (b - b'0') as i64).sum();
        test(&[int(n)], int(sum))
    });
    Spec {
        name: "digit_sum",
        params: "n",
        task: "returns the sum of the decimal digits of n (n >= 0)".to_string(),
        source: "fn digit_sum(n) { let s = 0; while n > 0 { s += n % 10; n /= 10; } s }"
            .to_string(),
        reasoning: vec![
            "Take the last digit with n % 10 and drop it with n / 10 until n is 0.".to_string(),
            check(&cases[1], "digit_sum"),
        ],
        ..split(cases)
    }
}

fn prime(n: i64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

pub(super) fn is_prime(rng: &mut Rng) -> Spec {
    let fixed = vec![
        test(&[int(1)], boolean(false)),
        test(&[int(2)], boolean(true)),
    ];
    let primes: Vec<i64> = (0..300).filter(|&n| prime(n)).collect();
    // Half primes, so that always answering false is far from enough.
    let cases = cases(rng, fixed, |rng| {
        let n = if rng.chance(0.5) {
            *rng.pick(&primes)
        } else {
            rng.range(0, 300)
        };
        test(&[int(n)], boolean(prime(n)))
    });
    Spec {
        name: "is_prime",
        params: "n",
        task: "returns true when n is a prime number, else false".to_string(),
        source: "fn is_prime(n) { if n < 2 { return false; } let d = 2; while d * d <= n { if n \
                 % d == 0 { return false; } d += 1; } true }"
            .to_string(),
        reasoning: vec![
            "Numbers below 2 are not prime; otherwise look for a divisor d with d * d <= n."
                .to_string(),
            check(&cases[2], "is_prime"),
        ],
        ..split(cases)
    }
}

pub(super) fn count_primes(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let n = rng.range(0, 120);
        test(&[int(n)], int((0..=n).filter(|&k| prime(k)).count() as i64))
    });
    Spec {
        name: "count_primes",
        params: "n",
        task: "returns how many prime numbers are less than or equal to n".to_string(),
        source: "fn count_primes(n) { let count = 0; for k in 2..=n { let p = true; let d = 2; \
                 while d * d <= k { if k % d == 0 { p = false; break; } d += 1; } if p { count \
                 += 1; } } count }"
            .to_string(),
        reasoning: vec![
            "For each k from 2 to n, trial-divide by d while d * d <= k; count the k with no \
             divisor."
                .to_string(),
            check(&cases[0], "count_primes"),
        ],
        ..split(cases)
    }
}

pub(super) fn second_largest(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let mut xs = small_array(rng, 7, -20, 30);
        xs.push(rng.range(-20, 30));
        let top = xs.iter().copied().max().unwrap_or_default();
        if xs.iter().all(|&x| x == top) {
            xs.push(top - rng.range(1, 10));
        }
        let second = xs
            .iter()
            .copied()
            .filter(|&x| x < top)
            .max()
            .unwrap_or_default();
        test(&[ints(&xs)], int(second))
    });
    Spec {
        name: "second_largest",
        params: "xs",
        task: "returns the second largest distinct value in the array xs (xs holds at least two \
               distinct values)"
            .to_string(),
        source: "fn second_largest(xs) { let top = xs[0]; for x in xs { if x > top { top = x; } \
                 } let second = (); for x in xs { if x < top && (second == () || x > second) { \
                 second = x; } } second }"
            .to_string(),
        reasoning: vec![
            "Find the largest value, then the largest value below it.".to_string(),
            check(&cases[0], "second_largest"),
        ],
        ..split(cases)
    }
}

pub(super) fn factorial(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![test(&[int(0)], int(1))], |rng| {
        let n = rng.range(0, 20);
        test(&[int(n)], int((1..=n).product()))
    });
    Spec {
        name: "factorial",
        params: "n",
        task: "returns n! = 1 * 2 * ... * n (0! = 1)".to_string(),
        source: "fn factorial(n) { let p = 1; for i in 1..=n { p *= i; } p }".to_string(),
        reasoning: vec![
            "Multiply 1 by every i from 1 to n; for n = 0 the loop is empty and gives 1."
                .to_string(),
            check(&cases[1], "factorial"),
        ],
        ..split(cases)
    }
}

fn euclid(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        euclid(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{self, Program};
    use rhai::Dynamic;

    #[test]
    fn naive_recursive_solutions_fit_the_budget() {
        // What a model might well write must not run out of operations.
        let fib = Program::compile("fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }")
            .expect("compiles");
        let got = fib.call("fib", vec![Dynamic::from(MAX_FIB)]);
        assert_eq!(got.map(|v| sandbox::canonical(&v)).as_deref(), Ok("987"));
        let primes = Program::compile(
            "fn count_primes(n) { let c = 0; for k in 2..=n { let p = true; for d in 2..k { if k \
             % d == 0 { p = false; } } if p { c += 1; } } c }",
        )
        .expect("compiles");
        let got = primes.call("count_primes", vec![Dynamic::from(120_i64)]);
        assert_eq!(got.map(|v| sandbox::canonical(&v)).as_deref(), Ok("30"));
    }
}
