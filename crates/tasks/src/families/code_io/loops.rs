//! `code_io` templates for levels 3 and 4: loops over arrays and ranges,
//! strings, and arrays built from arrays.

use super::specs::{
    boolean, cases, character, check, int, ints, small_array, split, string, test, Spec,
};
use crate::rng::Rng;

/// Words for string inputs: short, lowercase, ASCII.
const WORDS: [&str; 20] = [
    "apple", "banana", "level", "kayak", "noon", "radar", "rhai", "code", "stats", "refer", "moon",
    "civic", "tenet", "test", "lemon", "madam", "rotor", "abba", "xyz", "a",
];

// ---- level 3: loops ----

pub(super) fn sum_above(rng: &mut Rng) -> Spec {
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

pub(super) fn count_even(rng: &mut Rng) -> Spec {
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

pub(super) fn max_of(rng: &mut Rng) -> Spec {
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

pub(super) fn product(rng: &mut Rng) -> Spec {
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

pub(super) fn sum_squares(rng: &mut Rng) -> Spec {
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

pub(super) fn reverse(rng: &mut Rng) -> Spec {
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

pub(super) fn count_char(rng: &mut Rng) -> Spec {
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

pub(super) fn running_sum(rng: &mut Rng) -> Spec {
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

pub(super) fn keep_positive(rng: &mut Rng) -> Spec {
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

pub(super) fn is_palindrome(rng: &mut Rng) -> Spec {
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

pub(super) fn fizzbuzz(rng: &mut Rng) -> Spec {
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
