//! The `code_io` function templates: each picks its hidden constants and
//! inputs, computes the expected outputs in Rust, and writes a reference
//! solution in rhai with a short line of reasoning.

use rhai::Dynamic;

use crate::problem::CodeTest;
use crate::rng::Rng;
use crate::sandbox;

/// Examples shown in the prompt.
pub(super) const SHOWN: usize = 4;
/// Hidden tests that decide the reward (inputs differ from the examples).
pub(super) const HIDDEN: usize = 8;

/// Words for string inputs: short, lowercase, ASCII.
const WORDS: [&str; 20] = [
    "apple", "banana", "level", "kayak", "noon", "radar", "rhai", "code", "stats", "refer", "moon",
    "civic", "tenet", "test", "lemon", "madam", "rotor", "abba", "xyz", "a",
];

/// One function to write.
pub(super) struct Spec {
    /// The function's name.
    pub(super) name: &'static str,
    /// Its parameters as written in the signature, e.g. `xs, k`.
    pub(super) params: &'static str,
    /// What it returns, completing "a function that ...".
    pub(super) task: String,
    /// A reference solution, one line of rhai.
    pub(super) source: String,
    /// The worked reasoning, one line per step.
    pub(super) reasoning: Vec<String>,
    /// The examples in the prompt.
    pub(super) shown: Vec<CodeTest>,
    /// The tests that decide.
    pub(super) hidden: Vec<CodeTest>,
}

/// A function to write at `level` (1..=5), from one of its templates.
pub(super) fn spec(rng: &mut Rng, level: u32) -> Spec {
    let templates: &[fn(&mut Rng) -> Spec] = match level {
        1 => &[linear, square_plus, times_shifted],
        2 => &[larger, clamp, collatz_step, distance, sign],
        3 => &[sum_above, count_even, max_of, product, sum_squares],
        4 => &[
            reverse,
            count_char,
            running_sum,
            keep_positive,
            is_palindrome,
            fizzbuzz,
        ],
        _ => &[
            fib,
            gcd,
            digit_sum,
            is_prime,
            count_primes,
            second_largest,
            factorial,
        ],
    };
    rng.pick(templates)(rng)
}

// ---- level 1: arithmetic on one integer, constants found from examples ----

fn linear(rng: &mut Rng) -> Spec {
    let a = nonzero(rng, -9, 9);
    let b = rng.range(-20, 20);
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(-20, 20);
        test(&[int(x)], int(a * x + b))
    });
    let (x1, y1, x2, y2) = (
        arg(&cases[0]),
        out(&cases[0]),
        arg(&cases[1]),
        out(&cases[1]),
    );
    let reasoning = vec![
        format!("From f({x1}) = {y1} and f({x2}) = {y2}:"),
        format!(
            "a = ({y2} - {}) / ({x2} - {}) = {} / {} = {a}",
            paren(y1),
            paren(x1),
            y2 - y1,
            x2 - x1
        ),
        format!("b = {y1} - {a} * {} = {b}", paren(x1)),
    ];
    Spec {
        name: "f",
        params: "x",
        task: "returns a * x + b for fixed integers a and b".to_string(),
        source: format!("fn f(x) {{ {a} * x{} }}", plus(b)),
        reasoning,
        ..split(cases)
    }
}

fn square_plus(rng: &mut Rng) -> Spec {
    let c = rng.range(-30, 30);
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(-15, 15);
        test(&[int(x)], int(x * x + c))
    });
    let (x1, y1) = (arg(&cases[0]), out(&cases[0]));
    Spec {
        name: "f",
        params: "x",
        task: "returns x * x + c for a fixed integer c".to_string(),
        source: format!("fn f(x) {{ x * x{} }}", plus(c)),
        reasoning: vec![format!(
            "From f({x1}) = {y1}: c = {y1} - {} * {} = {c}",
            paren(x1),
            paren(x1)
        )],
        ..split(cases)
    }
}

fn times_shifted(rng: &mut Rng) -> Spec {
    let a = nonzero(rng, -9, 9);
    let first = nonzero(rng, -12, 12);
    let cases = cases(
        rng,
        vec![test(&[int(first)], int(first * (first + a)))],
        |rng| {
            let x = rng.range(-12, 12);
            test(&[int(x)], int(x * (x + a)))
        },
    );
    let y1 = first * (first + a);
    Spec {
        name: "f",
        params: "x",
        task: "returns x * (x + a) for a fixed integer a".to_string(),
        source: format!("fn f(x) {{ x * (x{}) }}", plus(a)),
        reasoning: vec![
            format!(
                "From f({first}) = {y1}: x + a = {y1} / {} = {}",
                paren(first),
                first + a
            ),
            format!("so a = {} - {} = {a}", first + a, paren(first)),
        ],
        ..split(cases)
    }
}

// ---- level 2: conditionals ----

fn larger(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let (a, b) = (rng.range(-50, 50), rng.range(-50, 50));
        test(&[int(a), int(b)], int(a.max(b)))
    });
    Spec {
        name: "larger",
        params: "a, b",
        task: "returns the larger of a and b".to_string(),
        source: "fn larger(a, b) { if a > b { a } else { b } }".to_string(),
        reasoning: vec!["Compare a and b and return a when it is bigger, else b.".to_string()],
        ..split(cases)
    }
}

fn clamp(rng: &mut Rng) -> Spec {
    let lo = rng.range(-10, 10);
    let hi = lo + rng.range(3, 20);
    let clamped = |x: i64| x.clamp(lo, hi);
    // The examples reveal both bounds: one input below, one above, two inside.
    let below = lo - rng.range(1, 30);
    let above = hi + rng.range(1, 30);
    let inside = [rng.range(lo, hi), rng.range(lo, hi)];
    let mut fixed = vec![test(&[int(below)], int(lo)), test(&[int(above)], int(hi))];
    fixed.extend(inside.iter().map(|&x| test(&[int(x)], int(x))));
    let cases = cases(rng, fixed, |rng| {
        let x = rng.range(lo - 40, hi + 40);
        test(&[int(x)], int(clamped(x)))
    });
    Spec {
        name: "clamp",
        params: "x",
        task: "returns x limited to the range lo..=hi for fixed integers lo < hi: lo when x < lo, \
               hi when x > hi, otherwise x"
            .to_string(),
        source: format!(
            "fn clamp(x) {{ if x < {lo} {{ {lo} }} else if x > {hi} {{ {hi} }} else {{ x }} }}"
        ),
        reasoning: vec![
            format!("clamp({below}) = {lo}, so lo = {lo}; clamp({above}) = {hi}, so hi = {hi}."),
            "Inside the range x is returned unchanged.".to_string(),
        ],
        ..split(cases)
    }
}

fn collatz_step(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let x = rng.range(1, 200);
        let y = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
        test(&[int(x)], int(y))
    });
    Spec {
        name: "step",
        params: "x",
        task: "returns x / 2 when x is even and 3 * x + 1 when x is odd".to_string(),
        source: "fn step(x) { if x % 2 == 0 { x / 2 } else { 3 * x + 1 } }".to_string(),
        reasoning: vec!["x is even when x % 2 == 0; branch on that.".to_string()],
        ..split(cases)
    }
}

fn distance(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let (a, b) = (rng.range(-50, 50), rng.range(-50, 50));
        test(&[int(a), int(b)], int((a - b).abs()))
    });
    Spec {
        name: "distance",
        params: "a, b",
        task: "returns the distance between a and b, |a - b|".to_string(),
        source: "fn distance(a, b) { if a > b { a - b } else { b - a } }".to_string(),
        reasoning: vec![
            "Subtract the smaller from the larger so the result is never negative.".to_string(),
        ],
        ..split(cases)
    }
}

fn sign(rng: &mut Rng) -> Spec {
    let zero = test(&[int(0)], int(0));
    let mut cases = cases(rng, vec![], |rng| {
        let x = nonzero(rng, -100, 100);
        test(&[int(x)], int(x.signum()))
    });
    // Zero must be among the hidden tests.
    cases[SHOWN] = zero;
    Spec {
        name: "sign",
        params: "x",
        task: "returns -1 when x is negative, 0 when x is 0 and 1 when x is positive".to_string(),
        source: "fn sign(x) { if x < 0 { -1 } else if x > 0 { 1 } else { 0 } }".to_string(),
        reasoning: vec!["Test x < 0, then x > 0; what is left is 0.".to_string()],
        ..split(cases)
    }
}

// ---- level 3: loops ----

fn small_array(rng: &mut Rng, max_len: i64, lo: i64, hi: i64) -> Vec<i64> {
    let len = rng.range(0, max_len);
    (0..len).map(|_| rng.range(lo, hi)).collect()
}

fn sum_above(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let xs = small_array(rng, 7, -9, 20);
        let k = rng.range(-5, 12);
        let sum = xs.iter().filter(|&&x| x > k).sum();
        test(&[ints(&xs), int(k)], int(sum))
    });
    Spec {
        name: "sum_above",
        params: "xs, k",
        task: "returns the sum of the elements of the array xs that are greater than k".to_string(),
        source: "fn sum_above(xs, k) { let total = 0; for x in xs { if x > k { total += x; } } \
                 total }"
            .to_string(),
        reasoning: vec![
            "Start a total at 0 and add every element x with x > k.".to_string(),
            check(&cases[0], "sum_above"),
        ],
        ..split(cases)
    }
}

fn count_even(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let xs = small_array(rng, 8, -20, 20);
        let count = xs.iter().filter(|&&x| x % 2 == 0).count() as i64;
        test(&[ints(&xs)], int(count))
    });
    Spec {
        name: "count_even",
        params: "xs",
        task: "returns how many elements of the array xs are even".to_string(),
        source: "fn count_even(xs) { let n = 0; for x in xs { if x % 2 == 0 { n += 1; } } n }"
            .to_string(),
        reasoning: vec![
            "Count the elements with x % 2 == 0.".to_string(),
            check(&cases[0], "count_even"),
        ],
        ..split(cases)
    }
}

fn max_of(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let mut xs = small_array(rng, 7, -50, 50);
        if xs.is_empty() {
            xs.push(rng.range(-50, 50));
        }
        let max = xs.iter().copied().max().unwrap_or_default();
        test(&[ints(&xs)], int(max))
    });
    Spec {
        name: "max_of",
        params: "xs",
        task: "returns the largest element of the non-empty array xs".to_string(),
        source: "fn max_of(xs) { let best = xs[0]; for x in xs { if x > best { best = x; } } \
                 best }"
            .to_string(),
        reasoning: vec![
            "Start from the first element and keep any larger one.".to_string(),
            check(&cases[0], "max_of"),
        ],
        ..split(cases)
    }
}

fn product(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![test(&[ints(&[])], int(1))], |rng| {
        let xs = small_array(rng, 6, -5, 5);
        test(&[ints(&xs)], int(xs.iter().product()))
    });
    Spec {
        name: "product",
        params: "xs",
        task: "returns the product of the elements of the array xs (1 when it is empty)"
            .to_string(),
        source: "fn product(xs) { let p = 1; for x in xs { p *= x; } p }".to_string(),
        reasoning: vec![
            "Start at 1 (the empty product) and multiply by each element.".to_string(),
            check(&cases[1], "product"),
        ],
        ..split(cases)
    }
}

fn sum_squares(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let n = rng.range(-3, 40);
        let sum = (1..=n).map(|i| i * i).sum();
        test(&[int(n)], int(sum))
    });
    Spec {
        name: "sum_squares",
        params: "n",
        task: "returns 1*1 + 2*2 + ... + n*n (0 when n < 1)".to_string(),
        source: "fn sum_squares(n) { let s = 0; for i in 1..=n { s += i * i; } s }".to_string(),
        reasoning: vec![
            "Loop i from 1 to n and add i * i; the loop is empty when n < 1.".to_string(),
            check(&cases[0], "sum_squares"),
        ],
        ..split(cases)
    }
}

// ---- level 4: strings and array transforms ----

fn word(rng: &mut Rng) -> String {
    if rng.chance(0.5) {
        rng.pick(&WORDS).to_string()
    } else {
        let len = rng.range(0, 9);
        (0..len)
            .map(|_| (b'a' + rng.below(6) as u8) as char)
            .collect()
    }
}

fn reverse(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let w = word(rng);
        let r: String = w.chars().rev().collect();
        test(&[string(&w)], string(&r))
    });
    Spec {
        name: "reverse",
        params: "s",
        task: "returns the string s reversed".to_string(),
        source: "fn reverse(s) { let out = \"\"; for c in s { out = c + out; } out }".to_string(),
        reasoning: vec![
            "Put each character in front of what was built so far.".to_string(),
            check(&cases[0], "reverse"),
        ],
        ..split(cases)
    }
}

fn count_char(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let w = word(rng);
        let c = (b'a' + rng.below(6) as u8) as char;
        let n = w.chars().filter(|&x| x == c).count() as i64;
        test(&[string(&w), character(c)], int(n))
    });
    Spec {
        name: "count_char",
        params: "s, c",
        task: "returns how many times the character c occurs in the string s".to_string(),
        source: "fn count_char(s, c) { let n = 0; for x in s { if x == c { n += 1; } } n }"
            .to_string(),
        reasoning: vec![
            "Walk over the characters of s and count those equal to c.".to_string(),
            check(&cases[0], "count_char"),
        ],
        ..split(cases)
    }
}

fn running_sum(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let xs = small_array(rng, 7, -9, 20);
        let sums: Vec<i64> = xs
            .iter()
            .scan(0, |total, &x| {
                *total += x;
                Some(*total)
            })
            .collect();
        test(&[ints(&xs)], ints(&sums))
    });
    Spec {
        name: "running_sum",
        params: "xs",
        task: "returns the running totals of the array xs: element i is xs[0] + ... + xs[i]"
            .to_string(),
        source: "fn running_sum(xs) { let out = []; let total = 0; for x in xs { total += x; \
                 out.push(total); } out }"
            .to_string(),
        reasoning: vec![
            "Keep a total, add each element, and push the total after each one.".to_string(),
            check(&cases[0], "running_sum"),
        ],
        ..split(cases)
    }
}

fn keep_positive(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let xs = small_array(rng, 8, -15, 15);
        let kept: Vec<i64> = xs.iter().copied().filter(|&x| x > 0).collect();
        test(&[ints(&xs)], ints(&kept))
    });
    Spec {
        name: "keep_positive",
        params: "xs",
        task: "returns the elements of the array xs that are greater than 0, in order".to_string(),
        source: "fn keep_positive(xs) { let out = []; for x in xs { if x > 0 { out.push(x); } } \
                 out }"
            .to_string(),
        reasoning: vec![
            "Push every element greater than 0 onto a new array.".to_string(),
            check(&cases[0], "keep_positive"),
        ],
        ..split(cases)
    }
}

fn is_palindrome(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let mut w = word(rng);
        if rng.chance(0.4) {
            let back: String = w.chars().rev().skip(rng.below(2)).collect();
            w.push_str(&back);
        }
        let palindrome = w.chars().eq(w.chars().rev());
        test(&[string(&w)], boolean(palindrome))
    });
    Spec {
        name: "is_palindrome",
        params: "s",
        task: "returns true when the string s reads the same backwards, else false".to_string(),
        source: "fn is_palindrome(s) { let r = \"\"; for c in s { r = c + r; } r == s }"
            .to_string(),
        reasoning: vec![
            "Build s reversed and compare it with s.".to_string(),
            check(&cases[0], "is_palindrome"),
        ],
        ..split(cases)
    }
}

fn fizzbuzz(rng: &mut Rng) -> Spec {
    let cases = cases(rng, vec![], |rng| {
        let n = rng.range(1, 100);
        let said = match (n % 3, n % 5) {
            (0, 0) => "fizzbuzz".to_string(),
            (0, _) => "fizz".to_string(),
            (_, 0) => "buzz".to_string(),
            _ => n.to_string(),
        };
        test(&[int(n)], string(&said))
    });
    Spec {
        name: "fizzbuzz",
        params: "n",
        task: "returns \"fizzbuzz\" when n is divisible by 15, \"fizz\" when by 3, \"buzz\" when \
               by 5, otherwise n as a string (n.to_string())"
            .to_string(),
        source: "fn fizzbuzz(n) { if n % 15 == 0 { \"fizzbuzz\" } else if n % 3 == 0 { \"fizz\" \
                 } else if n % 5 == 0 { \"buzz\" } else { n.to_string() } }"
            .to_string(),
        reasoning: vec![
            "Test divisibility by 15 first, then 3, then 5.".to_string(),
            check(&cases[0], "fizzbuzz"),
        ],
        ..split(cases)
    }
}

// ---- level 5: small algorithms ----

/// Largest `n` asked of `fib`: small enough that the textbook double
/// recursion stays inside the operation budget.
const MAX_FIB: i64 = 16;

fn fib(rng: &mut Rng) -> Spec {
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

fn gcd(rng: &mut Rng) -> Spec {
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

fn digit_sum(rng: &mut Rng) -> Spec {
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

fn is_prime(rng: &mut Rng) -> Spec {
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

fn count_primes(rng: &mut Rng) -> Spec {
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

fn second_largest(rng: &mut Rng) -> Spec {
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

fn factorial(rng: &mut Rng) -> Spec {
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

// ---- helpers ----

/// `SHOWN + HIDDEN` tests with distinct arguments: `fixed` first, then drawn.
fn cases(
    rng: &mut Rng,
    fixed: Vec<CodeTest>,
    mut draw: impl FnMut(&mut Rng) -> CodeTest,
) -> Vec<CodeTest> {
    let mut out: Vec<CodeTest> = Vec::new();
    let candidates = fixed
        .into_iter()
        .chain(std::iter::from_fn(|| Some(draw(rng))));
    // Every template's input space is far larger than the count; the cap
    // only guards against a template bug.
    for case in candidates.take(10_000) {
        if !out.iter().any(|o| o.args == case.args) {
            out.push(case);
        }
        if out.len() == SHOWN + HIDDEN {
            break;
        }
    }
    out
}

/// The shown examples and hidden tests of `cases`, the rest of a [`Spec`].
fn split(mut cases: Vec<CodeTest>) -> Spec {
    let hidden = cases.split_off(SHOWN.min(cases.len()));
    Spec {
        name: "",
        params: "",
        task: String::new(),
        source: String::new(),
        reasoning: Vec::new(),
        shown: cases,
        hidden,
    }
}

/// A line checking the reference against one example.
fn check(case: &CodeTest, name: &str) -> String {
    format!("Check: {} == {}.", call(name, case), case.expected)
}

/// `name(arg1, arg2)` for a test.
pub(super) fn call(name: &str, case: &CodeTest) -> String {
    format!("{name}({})", case.args.join(", "))
}

fn test(args: &[String], expected: String) -> CodeTest {
    CodeTest {
        args: args.to_vec(),
        expected,
    }
}

fn arg(case: &CodeTest) -> i64 {
    case.args[0].parse().unwrap_or_default()
}

fn out(case: &CodeTest) -> i64 {
    case.expected.parse().unwrap_or_default()
}

fn nonzero(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    loop {
        let v = rng.range(lo, hi);
        if v != 0 {
            return v;
        }
    }
}

/// ` + b` or ` - |b|` (nothing for 0), to append to an expression.
fn plus(b: i64) -> String {
    match b {
        0 => String::new(),
        b if b > 0 => format!(" + {b}"),
        b => format!(" - {}", -b),
    }
}

/// A number inside a worked expression: negatives in brackets.
fn paren(v: i64) -> String {
    if v < 0 {
        format!("({v})")
    } else {
        v.to_string()
    }
}

fn int(v: i64) -> String {
    v.to_string()
}

fn ints(items: &[i64]) -> String {
    sandbox::canonical(&Dynamic::from_array(
        items.iter().map(|&v| Dynamic::from(v)).collect(),
    ))
}

fn string(text: &str) -> String {
    sandbox::canonical(&Dynamic::from(text.to_string()))
}

fn character(c: char) -> String {
    sandbox::canonical(&Dynamic::from(c))
}

fn boolean(b: bool) -> String {
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Program;

    const SEEDS: u64 = 200;

    fn every_spec(mut f: impl FnMut(u32, u64, Spec)) {
        for level in 1..=5 {
            for seed in 0..SEEDS {
                f(level, seed, spec(&mut Rng::new(seed), level));
            }
        }
    }

    #[test]
    fn reference_solutions_pass_every_case() {
        every_spec(|level, seed, s| {
            assert_eq!(s.shown.len(), SHOWN, "{} {level}/{seed}", s.name);
            assert_eq!(s.hidden.len(), HIDDEN, "{} {level}/{seed}", s.name);
            let program = Program::compile(&s.source).expect("reference compiles");
            for case in s.shown.iter().chain(&s.hidden) {
                let args = case
                    .args
                    .iter()
                    .map(|a| sandbox::parse_literal(a).expect("literal argument"))
                    .collect();
                let got = program.call(s.name, args).map(|v| sandbox::canonical(&v));
                assert_eq!(
                    got.as_ref(),
                    Ok(&case.expected),
                    "{} on {:?}, level {level} seed {seed}",
                    s.source,
                    case.args
                );
            }
        });
    }

    #[test]
    fn hidden_inputs_differ_from_the_examples() {
        every_spec(|_, _, s| {
            for h in &s.hidden {
                assert!(s.shown.iter().all(|e| e.args != h.args), "{}", s.name);
            }
        });
    }

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
