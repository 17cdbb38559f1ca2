//! `probability`: probabilities by counting equally likely outcomes: dice,
//! numbered cards, coins, and balls drawn from a bag without replacement.
//! Answers are fractions in lowest terms.
//!
//! The worked solution counts all outcomes and the favourable ones (by the
//! first die, by listing, or with pairs and triples `n*(n-1)/2`,
//! `n*(n-1)*(n-2)/6`), then reduces:
//!
//! ```text
//! A bag holds 3 red and 4 blue balls. Two are drawn ... both are red?
//! <think>all pairs: 7*6/2=21
//! red pairs: 3*2/2=3
//! 3/21=1/7</think><answer>1/7</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `probability` family.
pub(crate) struct Probability;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DieEvent {
    Even,
    Above(i64),
    MultipleOf(i64),
    Prime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiceEvent {
    SumIs(i64),
    SumAbove(i64),
    BothEven,
    AtLeastOne(i64),
    ProductEven,
    Doubles,
    DifferBy(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoinEvent {
    Exactly(i64),
    AtLeast(i64),
    FirstLastSame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BagEvent {
    AllRed,
    ExactlyRed(i64),
    AtLeastOneBlue,
    AllSame,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardPairEvent {
    SumEven,
    SumIs(i64),
    ProductEven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Die {
        sides: i64,
        event: DieEvent,
    },
    Card {
        n: i64,
        a: i64,
        b: i64,
    },
    /// An `a`-sided and a `b`-sided die (`a <= b`).
    Dice {
        a: i64,
        b: i64,
        event: DiceEvent,
    },
    Coins {
        n: i64,
        event: CoinEvent,
    },
    Bag {
        red: i64,
        blue: i64,
        green: i64,
        draws: i64,
        event: BagEvent,
    },
    CardPair {
        n: i64,
        event: CardPairEvent,
    },
}

const MAX_LEVEL: u32 = 5;

impl Task for Probability {
    fn name(&self) -> &'static str {
        "probability"
    }

    fn summary(&self) -> &'static str {
        "probability by counting: dice, cards, coins, balls from a bag (a fraction in lowest terms)"
    }

    fn max_level(&self) -> u32 {
        MAX_LEVEL
    }

    fn level_doc(&self, level: u32) -> String {
        match level {
            1 => "one die (4 to 20 sides) or one card numbered 1..=n (10..=40)",
            2 => "two dice of 4, 6 or 8 sides: the sum is or is above a number; or 3 or 4 coins",
            3 => {
                "two dice of 4 to 10 sides: both even, at least one k, product even, doubles, a \
                  difference; or 5 or 6 coins"
            }
            4 => "two balls drawn from a bag of red, blue and maybe green balls; or 4 or 5 coins",
            _ => "three balls drawn from a bag; or two cards drawn from 1..=n (6..=16)",
        }
        .to_string()
    }

    /// Levels 1 to 5 hold about 730, 110, 165, 420 and 670 distinct
    /// questions: hold out about a tenth.
    fn heldout_size(&self, level: u32) -> usize {
        match level {
            2 => 12,
            3 => 15,
            4 => 40,
            5 => 60,
            _ => crate::split::HELDOUT_SIZE / 2,
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let (scenario, steps, (good, all)) = loop {
            let scenario = draw(rng, level);
            let mut steps = Vec::new();
            let counts = count(scenario, &mut steps);
            if counts.0 > 0 && counts.0 < counts.1 {
                break (scenario, steps, counts);
            }
        };
        let mut steps = steps;
        let g = gcd(good, all);
        let answer = if all / g == 1 {
            (good / g).to_string()
        } else {
            format!("{}/{}", good / g, all / g)
        };
        if g > 1 {
            steps.push(format!("{good}/{all}={answer}"));
        } else {
            steps.push(format!("{good}/{all}"));
        }
        Generated {
            prompt: format!("{} Answer as a fraction in lowest terms.", ask(scenario)),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Fraction,
            key: format!("probability {scenario:?}"),
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn draw(rng: &mut Rng, level: u32) -> Scenario {
    match level {
        1 => {
            if rng.chance(0.5) {
                let sides = *rng.pick(&[4, 6, 8, 10, 12, 20]);
                let event = match rng.below(4) {
                    0 => DieEvent::Even,
                    1 => DieEvent::Above(rng.range(1, sides - 1)),
                    2 => DieEvent::MultipleOf(rng.range(3, 5)),
                    _ => DieEvent::Prime,
                };
                Scenario::Die { sides, event }
            } else {
                let a = rng.range(2, 7);
                let mut b = rng.range(2, 8);
                if b == a {
                    b += 1;
                }
                Scenario::Card {
                    n: rng.range(10, 40),
                    a: a.min(b),
                    b: a.max(b),
                }
            }
        }
        2 => {
            if rng.chance(0.8) {
                let (a, b) = dice(rng, &[4, 6, 8]);
                let event = if rng.chance(0.5) {
                    DiceEvent::SumIs(rng.range(3, a + b - 1))
                } else {
                    DiceEvent::SumAbove(rng.range(3, a + b - 2))
                };
                Scenario::Dice { a, b, event }
            } else {
                let n = rng.range(3, 4);
                coins(rng, n)
            }
        }
        3 => {
            if rng.chance(0.8) {
                let (a, b) = dice(rng, &[4, 6, 8, 10]);
                let event = match rng.below(5) {
                    0 => DiceEvent::BothEven,
                    1 => DiceEvent::AtLeastOne(rng.range(1, a)),
                    2 => DiceEvent::ProductEven,
                    3 => DiceEvent::Doubles,
                    _ => DiceEvent::DifferBy(rng.range(1, a - 1)),
                };
                Scenario::Dice { a, b, event }
            } else {
                let n = rng.range(5, 6);
                coins(rng, n)
            }
        }
        4 => {
            if rng.chance(0.2) {
                let n = rng.range(4, 5);
                coins(rng, n)
            } else {
                bag(rng, 2)
            }
        }
        _ => {
            if rng.chance(0.6) {
                bag(rng, 3)
            } else {
                let event = match rng.below(3) {
                    0 => CardPairEvent::SumEven,
                    1 => CardPairEvent::SumIs(rng.range(5, 25)),
                    _ => CardPairEvent::ProductEven,
                };
                Scenario::CardPair {
                    n: rng.range(6, 16),
                    event,
                }
            }
        }
    }
}

/// Two dice sizes from `sides`, smaller first.
fn dice(rng: &mut Rng, sides: &[i64]) -> (i64, i64) {
    let (a, b) = (*rng.pick(sides), *rng.pick(sides));
    (a.min(b), a.max(b))
}

fn coins(rng: &mut Rng, n: i64) -> Scenario {
    let event = match rng.below(3) {
        0 => CoinEvent::Exactly(rng.range(0, n)),
        1 => CoinEvent::AtLeast(rng.range(1, n)),
        _ => CoinEvent::FirstLastSame,
    };
    Scenario::Coins { n, event }
}

fn bag(rng: &mut Rng, draws: i64) -> Scenario {
    let event = match rng.below(4) {
        0 => BagEvent::AllRed,
        1 => BagEvent::ExactlyRed(rng.range(1, draws - 1)),
        2 => BagEvent::AtLeastOneBlue,
        _ => BagEvent::AllSame,
    };
    Scenario::Bag {
        red: rng.range(2, 6),
        blue: rng.range(2, 6),
        green: *rng.pick(&[0, 0, 2, 3, 4]),
        draws,
        event,
    }
}

fn number_word(n: i64) -> String {
    match n {
        2 => "Two".to_string(),
        3 => "Three".to_string(),
        4 => "Four".to_string(),
        5 => "Five".to_string(),
        n => n.to_string(),
    }
}

fn ask(s: Scenario) -> String {
    match s {
        Scenario::Die { sides, event } => {
            let what = match event {
                DieEvent::Even => "an even number".to_string(),
                DieEvent::Above(k) => format!("a number greater than {k}"),
                DieEvent::MultipleOf(k) => format!("a multiple of {k}"),
                DieEvent::Prime => "a prime number".to_string(),
            };
            format!(
                "A fair {sides}-sided die with faces 1 to {sides} is rolled. What is the \
                 probability that it shows {what}?"
            )
        }
        Scenario::Card { n, a, b } => format!(
            "A card is drawn at random from cards numbered 1 to {n}. What is the probability \
             that its number is a multiple of {a} or of {b}?"
        ),
        Scenario::Dice { a, b, event } => {
            let what = match event {
                DiceEvent::SumIs(k) => format!("the sum is {k}"),
                DiceEvent::SumAbove(k) => format!("the sum is greater than {k}"),
                DiceEvent::BothEven => "both show even numbers".to_string(),
                DiceEvent::AtLeastOne(k) => format!("at least one shows a {k}"),
                DiceEvent::ProductEven => "the product is even".to_string(),
                DiceEvent::Doubles => "both show the same number".to_string(),
                DiceEvent::DifferBy(k) => format!("the two numbers differ by {k}"),
            };
            let which = if a == b {
                format!("Two fair {a}-sided dice")
            } else {
                format!("A fair {a}-sided die and a fair {b}-sided die")
            };
            format!(
                "{which} (faces numbered from 1) are rolled. What is the probability that {what}?"
            )
        }
        Scenario::Coins { n, event } => {
            let what = match event {
                CoinEvent::Exactly(k) => format!("exactly {k} heads"),
                CoinEvent::AtLeast(k) => format!("at least {k} heads"),
                CoinEvent::FirstLastSame => {
                    "the first and the last coin landing the same way".to_string()
                }
            };
            format!(
                "{} fair coins are tossed one after another. What is the probability of {what}?",
                number_word(n)
            )
        }
        Scenario::Bag {
            red,
            blue,
            green,
            draws,
            event,
        } => {
            let what = match (event, draws) {
                (BagEvent::AllRed, 2) => "both are red".to_string(),
                (BagEvent::AllRed, _) => "all are red".to_string(),
                (BagEvent::ExactlyRed(1), 2) if green == 0 => {
                    "one is red and one is blue".to_string()
                }
                (BagEvent::ExactlyRed(k), _) => format!("exactly {k} are red"),
                (BagEvent::AtLeastOneBlue, _) => "at least one is blue".to_string(),
                (BagEvent::AllSame, 2) => "both are the same colour".to_string(),
                (BagEvent::AllSame, _) => "all are the same colour".to_string(),
            };
            let holds = if green == 0 {
                format!("{red} red and {blue} blue balls")
            } else {
                format!("{red} red, {blue} blue and {green} green balls")
            };
            format!(
                "A bag holds {holds}. {} are drawn at random without replacement. What is the \
                 probability that {what}?",
                number_word(draws)
            )
        }
        Scenario::CardPair { n, event } => {
            let what = match event {
                CardPairEvent::SumEven => "their sum is even".to_string(),
                CardPairEvent::SumIs(k) => format!("their sum is {k}"),
                CardPairEvent::ProductEven => "their product is even".to_string(),
            };
            format!(
                "Two different cards are drawn at random from cards numbered 1 to {n}. What is \
                 the probability that {what}?"
            )
        }
    }
}

/// Pairs from `n`: `n*(n-1)/2`, written as a step.
fn pairs(label: &str, n: i64, steps: &mut Vec<String>) -> i64 {
    let v = n * (n - 1) / 2;
    steps.push(format!("{label}: {n}*{}/2={v}", n - 1));
    v
}

/// Triples from `n`: `n*(n-1)*(n-2)/6`.
fn triples(label: &str, n: i64, steps: &mut Vec<String>) -> i64 {
    let v = n * (n - 1) * (n - 2) / 6;
    steps.push(format!("{label}: {n}*{}*{}/6={v}", n - 1, n - 2));
    v
}

/// Ways to choose `k` of `n` (k <= 3), with steps.
fn choose(label: &str, n: i64, k: i64, steps: &mut Vec<String>) -> i64 {
    match k {
        0 => 1,
        1 => {
            steps.push(format!("{label}: {n}"));
            n
        }
        2 => pairs(label, n, steps),
        _ => triples(label, n, steps),
    }
}

fn is_prime(n: i64) -> bool {
    n >= 2 && (2..n).all(|d| n % d != 0)
}

fn listed(values: &[i64]) -> String {
    let parts: Vec<String> = values.iter().map(i64::to_string).collect();
    parts.join(" ")
}

/// (favourable, all) with the steps that count them.
fn count(s: Scenario, steps: &mut Vec<String>) -> (i64, i64) {
    match s {
        Scenario::Die { sides, event } => {
            let good: Vec<i64> = (1..=sides)
                .filter(|&f| match event {
                    DieEvent::Even => f % 2 == 0,
                    DieEvent::Above(k) => f > k,
                    DieEvent::MultipleOf(k) => f % k == 0,
                    DieEvent::Prime => is_prime(f),
                })
                .collect();
            steps.push(format!("faces: {sides}"));
            steps.push(format!("favourable: {} ({})", good.len(), listed(&good)));
            (good.len() as i64, sides)
        }
        Scenario::Card { n, a, b } => {
            let (x, y) = (n / a, n / b);
            let l = a * b / gcd(a, b);
            let both = n / l;
            steps.push(format!("multiples of {a}: {n}/{a} -> {x}"));
            steps.push(format!("multiples of {b}: {n}/{b} -> {y}"));
            steps.push(format!("multiples of both ({l}): {n}/{l} -> {both}"));
            steps.push(format!("favourable: {x}+{y}-{both}={}", x + y - both));
            (x + y - both, n)
        }
        Scenario::Dice {
            a: sides_a,
            b: sides_b,
            event,
        } => {
            let holds = |a: i64, b: i64| match event {
                DiceEvent::SumIs(k) => a + b == k,
                DiceEvent::SumAbove(k) => a + b > k,
                DiceEvent::BothEven => a % 2 == 0 && b % 2 == 0,
                DiceEvent::AtLeastOne(k) => a == k || b == k,
                DiceEvent::ProductEven => (a * b) % 2 == 0,
                DiceEvent::Doubles => a == b,
                DiceEvent::DifferBy(k) => (a - b).abs() == k,
            };
            let all = sides_a * sides_b;
            steps.push(format!("outcomes: {sides_a}*{sides_b}={all}"));
            let per_first: Vec<i64> = (1..=sides_a)
                .map(|a| (1..=sides_b).filter(|&b| holds(a, b)).count() as i64)
                .collect();
            let total: i64 = per_first.iter().sum();
            let terms: Vec<String> = per_first.iter().map(i64::to_string).collect();
            steps.push(format!(
                "by the {sides_a}-sided die's number: {}={total}",
                terms.join("+")
            ));
            (total, all)
        }
        Scenario::Coins { n, event } => {
            let all = 1i64 << n;
            steps.push(format!("outcomes: 2^{n}={all}"));
            let good = match event {
                CoinEvent::Exactly(k) => ways_heads(n, k, steps),
                CoinEvent::AtLeast(k) => {
                    let parts: Vec<i64> = (k..=n).map(|j| ways_heads(n, j, steps)).collect();
                    let sum: i64 = parts.iter().sum();
                    if parts.len() > 1 {
                        let terms: Vec<String> = parts.iter().map(i64::to_string).collect();
                        steps.push(format!("favourable: {}={sum}", terms.join("+")));
                    }
                    sum
                }
                CoinEvent::FirstLastSame => {
                    let v = 1i64 << (n - 1);
                    steps.push(format!(
                        "the last coin must match the first; the other {} are free: 2*2^{}={v}",
                        n - 2,
                        n - 2
                    ));
                    v
                }
            };
            (good, all)
        }
        Scenario::Bag {
            red,
            blue,
            green,
            draws,
            event,
        } => {
            let all = choose("all draws", red + blue + green, draws, steps);
            let good = match event {
                BagEvent::AllRed => choose("all red", red, draws, steps),
                BagEvent::ExactlyRed(k) => {
                    let r = choose("red part", red, k, steps);
                    let b = choose("the rest, not red", blue + green, draws - k, steps);
                    steps.push(format!("favourable: {r}*{b}={}", r * b));
                    r * b
                }
                BagEvent::AtLeastOneBlue => {
                    let none = choose("no blue", red + green, draws, steps);
                    steps.push(format!("favourable: {all}-{none}={}", all - none));
                    all - none
                }
                BagEvent::AllSame => {
                    let r = choose("all red", red, draws, steps);
                    let b = choose("all blue", blue, draws, steps);
                    if green == 0 {
                        steps.push(format!("favourable: {r}+{b}={}", r + b));
                        r + b
                    } else {
                        let g = choose("all green", green, draws, steps);
                        steps.push(format!("favourable: {r}+{b}+{g}={}", r + b + g));
                        r + b + g
                    }
                }
            };
            (good, all)
        }
        Scenario::CardPair { n, event } => {
            let all = pairs("all pairs", n, steps);
            let (evens, odds) = (n / 2, n - n / 2);
            let good = match event {
                CardPairEvent::SumEven => {
                    let e = pairs("two even", evens, steps);
                    let o = pairs("two odd", odds, steps);
                    steps.push(format!("favourable: {e}+{o}={}", e + o));
                    e + o
                }
                CardPairEvent::SumIs(k) => {
                    let found: Vec<String> = (1..=n)
                        .filter(|&a| a < k - a && k - a <= n)
                        .map(|a| format!("{a}+{}", k - a))
                        .collect();
                    steps.push(format!(
                        "pairs with sum {k}: {} -> {}",
                        found.join(" "),
                        found.len()
                    ));
                    found.len() as i64
                }
                CardPairEvent::ProductEven => {
                    let o = pairs("two odd (odd product)", odds, steps);
                    steps.push(format!("favourable: {all}-{o}={}", all - o));
                    all - o
                }
            };
            (good, all)
        }
    }
}

/// Ways to get exactly `k` heads from `n` coins.
fn ways_heads(n: i64, k: i64, steps: &mut Vec<String>) -> i64 {
    let k = k.min(n - k);
    let (mut num, mut den) = (1i64, 1i64);
    let mut top = Vec::new();
    let mut bottom = Vec::new();
    for i in 0..k {
        num *= n - i;
        den *= i + 1;
        top.push((n - i).to_string());
        bottom.push((i + 1).to_string());
    }
    let v = num / den;
    if k == 0 {
        steps.push(format!("ways with no heads or all heads of {n}: 1"));
    } else {
        steps.push(format!(
            "ways to place the heads: {}/({})={v}",
            top.join("*"),
            bottom.join("*")
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    /// Every outcome listed and tested one by one.
    fn enumerate(s: Scenario) -> (i64, i64) {
        let tally = |outcomes: Vec<bool>| {
            (
                outcomes.iter().filter(|&&b| b).count() as i64,
                outcomes.len() as i64,
            )
        };
        match s {
            Scenario::Die { sides, event } => tally(
                (1..=sides)
                    .map(|f| match event {
                        DieEvent::Even => f % 2 == 0,
                        DieEvent::Above(k) => f > k,
                        DieEvent::MultipleOf(k) => f % k == 0,
                        DieEvent::Prime => [2, 3, 5, 7, 11, 13, 17, 19].contains(&f),
                    })
                    .collect(),
            ),
            Scenario::Card { n, a, b } => {
                tally((1..=n).map(|c| c % a == 0 || c % b == 0).collect())
            }
            Scenario::Dice {
                a: sa,
                b: sb,
                event,
            } => {
                let mut out = Vec::new();
                for a in 1..=sa {
                    for b in 1..=sb {
                        out.push(match event {
                            DiceEvent::SumIs(k) => a + b == k,
                            DiceEvent::SumAbove(k) => a + b > k,
                            DiceEvent::BothEven => a % 2 == 0 && b % 2 == 0,
                            DiceEvent::AtLeastOne(k) => a == k || b == k,
                            DiceEvent::ProductEven => a * b % 2 == 0,
                            DiceEvent::Doubles => a == b,
                            DiceEvent::DifferBy(k) => a - b == k || b - a == k,
                        });
                    }
                }
                tally(out)
            }
            Scenario::Coins { n, event } => tally(
                (0..1u32 << n)
                    .map(|mask| {
                        let heads = mask.count_ones() as i64;
                        match event {
                            CoinEvent::Exactly(k) => heads == k,
                            CoinEvent::AtLeast(k) => heads >= k,
                            CoinEvent::FirstLastSame => (mask & 1) == (mask >> (n - 1) & 1),
                        }
                    })
                    .collect(),
            ),
            Scenario::Bag {
                red,
                blue,
                green,
                draws,
                event,
            } => {
                // Every set of `draws` distinct balls: red first, then blue, then green.
                let total = red + blue + green;
                let mut out = Vec::new();
                for mask in 0u32..1 << total {
                    if mask.count_ones() as i64 != draws {
                        continue;
                    }
                    let taken = |from: i64, to: i64| {
                        (from..to).filter(|&i| mask >> i & 1 == 1).count() as i64
                    };
                    let (r, b, g) = (
                        taken(0, red),
                        taken(red, red + blue),
                        taken(red + blue, total),
                    );
                    out.push(match event {
                        BagEvent::AllRed => r == draws,
                        BagEvent::ExactlyRed(k) => r == k,
                        BagEvent::AtLeastOneBlue => b > 0,
                        BagEvent::AllSame => r == draws || b == draws || g == draws,
                    });
                }
                tally(out)
            }
            Scenario::CardPair { n, event } => {
                let mut out = Vec::new();
                for a in 1..=n {
                    for b in a + 1..=n {
                        out.push(match event {
                            CardPairEvent::SumEven => (a + b) % 2 == 0,
                            CardPairEvent::SumIs(k) => a + b == k,
                            CardPairEvent::ProductEven => a * b % 2 == 0,
                        });
                    }
                }
                tally(out)
            }
        }
    }

    #[test]
    fn answers_match_enumerating_every_outcome() {
        for level in 1..=MAX_LEVEL {
            for seed in 0..SEEDS {
                let g = Probability.generate(&mut Rng::new(seed), level);
                // The generator's draws, kept when not certain or impossible by enumeration.
                let mut rng = Rng::new(seed);
                let s = loop {
                    let s = draw(&mut rng, level);
                    let (good, all) = enumerate(s);
                    if good > 0 && good < all {
                        break s;
                    }
                };
                assert_eq!(g.key, format!("probability {s:?}"));
                let (good, all) = enumerate(s);
                let d = gcd(good, all);
                let want = if all / d == 1 {
                    (good / d).to_string()
                } else {
                    format!("{}/{}", good / d, all / d)
                };
                assert_eq!(g.answer, want, "{}", g.prompt);
                let p = g.into_problem("probability", level, "probability/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                let think = p.solution.split("</think>").next().unwrap();
                for line in think.trim_start_matches("<think>").lines() {
                    let claim = line
                        .rsplit(": ")
                        .next()
                        .unwrap()
                        .split(" (")
                        .next()
                        .unwrap();
                    if let Some((a, b)) = claim
                        .split_once('=')
                        .filter(|(a, b)| a.contains('/') && b.contains('/'))
                    {
                        // A fraction reduced: a/b=c/d, checked crosswise.
                        let frac = |t: &str| {
                            let (n, d) = t.split_once('/').unwrap();
                            (n.parse::<i64>().unwrap(), d.parse::<i64>().unwrap())
                        };
                        let ((n1, d1), (n2, d2)) = (frac(a), frac(b));
                        assert_eq!(n1 * d2, n2 * d1, "{line}");
                    } else if claim.contains('=') && !claim.contains('^') {
                        assert_true_arithmetic(claim);
                    }
                }
            }
        }
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for (level, minimum) in [(1, 400), (2, 120), (3, 120), (4, 250), (5, 350)] {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Probability.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= minimum, "level {level}: {}", keys.len());
        }
    }
}
