//! `strings`: transform a word step by step: reverse it, shift its letters
//! along the alphabet (a Caesar shift), sort its letters, remove its
//! vowels, replace a letter; or count a letter.
//!
//! The worked solution writes the word after each step:
//!
//! ```text
//! Take the word planet, reverse it, then shift each letter 2 forward ...
//! <think>reverse: tenalp
//! shift 2: t>v e>g n>p a>c l>n p>r: vgpcnr</think><answer>vgpcnr</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `strings` family.
pub(crate) struct Strings;

const WORDS: [&str; 40] = [
    "apple", "banana", "cherry", "planet", "rocket", "garden", "silver", "winter", "pencil",
    "window", "basket", "castle", "dragon", "forest", "guitar", "island", "jacket", "kitten",
    "lemon", "magnet", "number", "orange", "pirate", "rabbit", "saddle", "tomato", "violin",
    "yellow", "zebra", "bridge", "candle", "doctor", "engine", "flower", "hammer", "ladder",
    "monkey", "nature", "pepper", "school",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Reverse,
    Shift(u8),
    Sort,
    DropVowels,
    Replace(char, char),
}

impl Op {
    fn apply(self, word: &str) -> String {
        match self {
            Op::Reverse => word.chars().rev().collect(),
            Op::Shift(k) => word
                .bytes()
                .map(|b| char::from(b'a' + (b - b'a' + k) % 26))
                .collect(),
            Op::Sort => {
                let mut letters: Vec<char> = word.chars().collect();
                letters.sort_unstable();
                letters.into_iter().collect()
            }
            Op::DropVowels => word.chars().filter(|c| !"aeiou".contains(*c)).collect(),
            Op::Replace(a, b) => word.chars().map(|c| if c == a { b } else { c }).collect(),
        }
    }

    fn ask(self) -> String {
        match self {
            Op::Reverse => "reverse it".to_string(),
            Op::Shift(k) => format!("shift each letter {k} forward in the alphabet (z wraps to a)"),
            Op::Sort => "sort its letters alphabetically".to_string(),
            Op::DropVowels => "remove the vowels (a, e, i, o, u)".to_string(),
            Op::Replace(a, b) => format!("replace every {a} with {b}"),
        }
    }

    /// The step line: what was done and the word after it.
    fn step(self, before: &str, after: &str) -> String {
        match self {
            Op::Reverse => format!("reverse: {after}"),
            Op::Shift(k) => {
                let pairs: Vec<String> = before
                    .chars()
                    .zip(after.chars())
                    .map(|(x, y)| format!("{x}>{y}"))
                    .collect();
                format!("shift {k}: {}: {after}", pairs.join(" "))
            }
            Op::Sort => format!("sort: {after}"),
            Op::DropVowels => format!("remove vowels: {after}"),
            Op::Replace(a, b) => format!("{a} to {b}: {after}"),
        }
    }

    fn key(self) -> String {
        format!("{self:?}")
    }
}

/// The knobs of one level.
struct Level {
    /// Operations chained (0: count a letter).
    ops: usize,
    max_shift: u8,
    /// Random letters instead of a dictionary word, with this length.
    random: Option<(i64, i64)>,
}

const LEVELS: [Level; 5] = [
    Level {
        ops: 1,
        max_shift: 0,
        random: Some((4, 6)),
    },
    Level {
        ops: 1,
        max_shift: 3,
        random: None,
    },
    Level {
        ops: 2,
        max_shift: 3,
        random: None,
    },
    Level {
        ops: 3,
        max_shift: 4,
        random: None,
    },
    Level {
        ops: 3,
        max_shift: 5,
        random: Some((7, 10)),
    },
];

impl Task for Strings {
    fn name(&self) -> &'static str {
        "strings"
    }

    fn summary(&self) -> &'static str {
        "transform a word: reverse, Caesar shift, sort letters, remove vowels, replace, count"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let word = match l.random {
            Some((lo, hi)) => format!("random letters, {lo} to {hi} long"),
            None => "a dictionary word".to_string(),
        };
        match level {
            1 => format!("reverse a word ({word}), or count one of its letters"),
            _ => format!(
                "{} step(s) on {word}: reverse, shift by 1..={}, sort, remove vowels, replace a letter",
                l.ops, l.max_shift
            ),
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let draw_word = |rng: &mut Rng| -> String {
            match l.random {
                Some((lo, hi)) => {
                    let len = rng.range(lo, hi);
                    (0..len)
                        .map(|_| char::from(b'a' + rng.below(26) as u8))
                        .collect()
                }
                None => rng.pick(&WORDS).to_string(),
            }
        };
        if level == 1 && rng.chance(0.5) {
            let word = draw_word(rng);
            return count(rng, &word);
        }
        // Every step must change the word (a palindrome is not reversed).
        let (word, ops, steps, result) = loop {
            let word = draw_word(rng);
            let ops: Vec<Op> = (0..l.ops).map(|_| draw_op(rng, l, &word)).collect();
            let mut steps = Vec::new();
            let mut now = word.clone();
            let mut changed_every_time = true;
            for &op in &ops {
                let next = op.apply(&now);
                changed_every_time &= next != now;
                steps.push(op.step(&now, &next));
                now = next;
            }
            if changed_every_time && !now.is_empty() {
                break (word, ops, steps, now);
            }
        };
        let asked: Vec<String> = ops.iter().map(|op| op.ask()).collect();
        let chain = match asked.as_slice() {
            [one] => one.clone(),
            [rest @ .., last] => format!("{}, then {last}", rest.join(", then ")),
            [] => String::new(),
        };
        let keys: Vec<String> = ops.iter().map(|op| op.key()).collect();
        Generated {
            prompt: format!("Take the word {word}, {chain}. Answer with the resulting word."),
            solution: answer::render(&steps, &result),
            answer: result,
            check: Check::Words,
            key: format!("strings {word} {}", keys.join(" ")),
        }
    }
}

fn draw_op(rng: &mut Rng, l: &Level, word: &str) -> Op {
    if l.max_shift == 0 {
        return Op::Reverse;
    }
    match rng.below(5) {
        0 => Op::Reverse,
        1 => Op::Shift(rng.range(1, i64::from(l.max_shift)) as u8),
        2 => Op::Sort,
        3 => Op::DropVowels,
        _ => {
            let letters: Vec<char> = word.chars().collect();
            let from = *rng.pick(&letters);
            let to = char::from(b'a' + rng.below(26) as u8);
            Op::Replace(from, to)
        }
    }
}

fn count(rng: &mut Rng, word: &str) -> Generated {
    let letters: Vec<char> = word.chars().collect();
    let letter = *rng.pick(&letters);
    let n = letters.iter().filter(|&&c| c == letter).count();
    let spelled: Vec<String> = letters.iter().map(char::to_string).collect();
    let marks: Vec<String> = letters
        .iter()
        .filter(|&&c| c == letter)
        .enumerate()
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let steps = vec![
        format!("letters: {}", spelled.join(" ")),
        format!("each {letter}: {}", marks.join(" ")),
    ];
    let answer = n.to_string();
    Generated {
        prompt: format!(
            "How many times does the letter {letter} occur in the word {word}? Answer with a \
             single integer."
        ),
        solution: answer::render(&steps, &answer),
        answer,
        check: Check::Number,
        key: format!("count {letter} in {word}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz";

    /// Each step as the prompt words it, done another way than [`Op::apply`].
    fn perform(step: &str, word: &str) -> String {
        let chars: Vec<char> = word.chars().collect();
        if step == "reverse it" {
            (0..chars.len())
                .map(|i| chars[chars.len() - 1 - i])
                .collect()
        } else if let Some(rest) = step.strip_prefix("shift each letter ") {
            let k: usize = rest.split(' ').next().unwrap().parse().unwrap();
            let doubled = format!("{ALPHABET}{ALPHABET}");
            chars
                .iter()
                .map(|&c| doubled.chars().nth(ALPHABET.find(c).unwrap() + k).unwrap())
                .collect()
        } else if step == "sort its letters alphabetically" {
            ALPHABET
                .chars()
                .flat_map(|a| std::iter::repeat_n(a, chars.iter().filter(|&&c| c == a).count()))
                .collect()
        } else if step.starts_with("remove the vowels") {
            chars
                .iter()
                .filter(|c| !matches!(c, 'a' | 'e' | 'i' | 'o' | 'u'))
                .collect()
        } else if let Some(rest) = step.strip_prefix("replace every ") {
            let (from, to) = rest.split_once(" with ").unwrap();
            word.replace(from, to)
        } else {
            panic!("unknown step {step}")
        }
    }

    #[test]
    fn answers_match_the_steps_as_worded() {
        for level in 1..=Strings.max_level() {
            for seed in 0..SEEDS {
                let g = Strings.generate(&mut Rng::new(seed), level);
                let want =
                    if let Some(rest) = g.prompt.strip_prefix("How many times does the letter ") {
                        let (letter, rest) = rest.split_once(" occur in the word ").unwrap();
                        let word = rest.split('?').next().unwrap();
                        word.matches(letter).count().to_string()
                    } else {
                        let rest = g.prompt.strip_prefix("Take the word ").unwrap();
                        let (word, rest) = rest.split_once(", ").unwrap();
                        let chain = rest.split_once(". Answer").unwrap().0;
                        chain
                            .split(", then ")
                            .fold(word.to_string(), |w, step| perform(step, &w))
                    };
                assert_eq!(g.answer, want, "{}", g.prompt);
                let p = g.into_problem("strings", level, "strings/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                assert!(p.solution.len() < 300, "{}", p.solution);
            }
        }
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for (level, minimum) in [(1, 4_500), (2, 200), (3, 2_000), (4, 3_000), (5, 4_500)] {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Strings.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= minimum, "level {level}: {}", keys.len());
        }
    }
}
