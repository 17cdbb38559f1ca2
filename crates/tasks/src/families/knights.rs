//! `knights`: knights always tell the truth, knaves always lie; from what
//! each person says, tell who is which.
//!
//! Every person makes one claim; the claims are drawn to fit a hidden
//! answer and kept only when no other answer fits. The worked solution
//! tries every assignment in order and names a claim that rules it out:
//!
//! ```text
//! A says "B is a knave." B says "A and B are both knights."
//! <think>knight knight: A fails
//! knight knave: all fit
//! knave knight: A fails
//! knave knave: B fails</think><answer>knight, knave</answer>
//! ```
//!
//! (A person fails when a knight's claim is false or a knave's true.) The
//! answer lists
//! the kinds in the order of the people, separated by commas.

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `knights` family.
pub(crate) struct Knights;

const PEOPLE: [&str; 3] = ["A", "B", "C"];

/// A claim about who is a knight (`true`) or a knave (`false`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    Is(usize, bool),
    Both(usize, usize, bool),
    AtLeastOne(usize, usize, bool),
    Same(usize, usize),
    Different(usize, usize),
    /// Exactly n of everyone are of the kind.
    Exactly(usize, bool),
    /// If the first is of its kind, the second is of its kind.
    If(usize, bool, usize, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Is,
    Both,
    AtLeastOne,
    Same,
    Exactly,
    If,
}

impl Claim {
    fn holds(&self, knights: &[bool]) -> bool {
        match *self {
            Claim::Is(x, k) => knights[x] == k,
            Claim::Both(x, y, k) => knights[x] == k && knights[y] == k,
            Claim::AtLeastOne(x, y, k) => knights[x] == k || knights[y] == k,
            Claim::Same(x, y) => knights[x] == knights[y],
            Claim::Different(x, y) => knights[x] != knights[y],
            Claim::Exactly(n, k) => knights.iter().filter(|&&v| v == k).count() == n,
            Claim::If(x, kx, y, ky) => knights[x] != kx || knights[y] == ky,
        }
    }

    fn text(&self) -> String {
        let kind = |k: bool| if k { "knight" } else { "knave" };
        match *self {
            Claim::Is(x, k) => format!("{} is a {}.", PEOPLE[x], kind(k)),
            Claim::Both(x, y, k) => {
                format!("{} and {} are both {}s.", PEOPLE[x], PEOPLE[y], kind(k))
            }
            Claim::AtLeastOne(x, y, k) => {
                format!(
                    "At least one of {} and {} is a {}.",
                    PEOPLE[x],
                    PEOPLE[y],
                    kind(k)
                )
            }
            Claim::Same(x, y) => format!("{} and {} are the same kind.", PEOPLE[x], PEOPLE[y]),
            Claim::Different(x, y) => {
                format!("{} and {} are different kinds.", PEOPLE[x], PEOPLE[y])
            }
            Claim::Exactly(1, k) => format!("Exactly 1 of us is a {}.", kind(k)),
            Claim::Exactly(n, k) => format!("Exactly {n} of us are {}s.", kind(k)),
            Claim::If(x, kx, y, ky) => format!(
                "If {} is a {}, then {} is a {}.",
                PEOPLE[x],
                kind(kx),
                PEOPLE[y],
                kind(ky)
            ),
        }
    }

    /// A claim of `form` about `people` people.
    fn draw(rng: &mut Rng, form: Form, people: usize) -> Claim {
        let x = rng.below(people);
        let mut y = rng.below(people - 1);
        if y >= x {
            y += 1;
        }
        let (x, y) = (x.min(y), x.max(y));
        let k = rng.chance(0.5);
        match form {
            Form::Is => Claim::Is(rng.below(people), k),
            Form::Both => Claim::Both(x, y, k),
            Form::AtLeastOne => Claim::AtLeastOne(x, y, k),
            Form::Same if k => Claim::Same(x, y),
            Form::Same => Claim::Different(x, y),
            Form::Exactly => Claim::Exactly(rng.range(0, people as i64) as usize, k),
            Form::If => {
                let (x, y) = if rng.chance(0.5) { (x, y) } else { (y, x) };
                Claim::If(x, k, y, rng.chance(0.5))
            }
        }
    }
}

/// The knobs of one level.
struct Level {
    people: usize,
    forms: &'static [Form],
}

const LEVELS: [Level; 5] = [
    Level {
        people: 2,
        forms: &[
            Form::Is,
            Form::Both,
            Form::AtLeastOne,
            Form::Same,
            Form::Exactly,
            Form::If,
        ],
    },
    Level {
        people: 3,
        forms: &[Form::Is, Form::Same],
    },
    Level {
        people: 3,
        forms: &[Form::Is, Form::Same, Form::AtLeastOne],
    },
    Level {
        people: 3,
        forms: &[Form::Both, Form::AtLeastOne, Form::Same, Form::Exactly],
    },
    Level {
        people: 3,
        forms: &[Form::AtLeastOne, Form::Same, Form::Exactly, Form::If],
    },
];

impl Task for Knights {
    fn name(&self) -> &'static str {
        "knights"
    }

    fn summary(&self) -> &'static str {
        "knights and knaves: who tells the truth, from what each person says"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let forms: Vec<&str> = l
            .forms
            .iter()
            .map(|f| match f {
                Form::Is => "X is a knight/knave",
                Form::Both => "X and Y are both ...",
                Form::AtLeastOne => "at least one of X and Y is ...",
                Form::Same => "X and Y are the same/different kinds",
                Form::Exactly => "exactly n of us are ...",
                Form::If => "if X is ..., then Y is ...",
            })
            .collect();
        format!("{} people, one claim each: {}", l.people, forms.join("; "))
    }

    /// Levels 1 and 2 have about 150 and 300 distinct puzzles (by meaning:
    /// the claims); hold out a tenth.
    fn heldout_size(&self, level: u32) -> usize {
        match level {
            1 => 15,
            2 => 30,
            _ => crate::split::HELDOUT_SIZE,
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let n = l.people;
        let rows: Vec<Vec<bool>> = (0..1usize << n)
            .map(|r| {
                (0..n)
                    .map(|i| r >> (n - 1 - i) & 1 == 1)
                    .collect::<Vec<bool>>()
            })
            .map(|bits| bits.into_iter().map(|b| !b).collect())
            .collect();
        let (truth, claims) = loop {
            let truth: Vec<bool> = (0..n).map(|_| rng.chance(0.5)).collect();
            let claims: Vec<Claim> = (0..n)
                .map(|speaker| loop {
                    let form = *rng.pick(l.forms);
                    let claim = Claim::draw(rng, form, n);
                    if claim.holds(&truth) == truth[speaker] {
                        break claim;
                    }
                })
                .collect();
            let fitting = rows.iter().filter(|row| fits(&claims, row)).count();
            if fitting == 1 {
                break (truth, claims);
            }
        };
        let kind = |k: bool| if k { "knight" } else { "knave" };
        let words =
            |row: &[bool], sep: &str| row.iter().map(|&k| kind(k)).collect::<Vec<_>>().join(sep);
        let mut steps = Vec::new();
        for row in &rows {
            let verdict = match (0..n).find(|&s| claims[s].holds(row) != row[s]) {
                Some(s) => format!("{} fails", PEOPLE[s]),
                None => "all fit".to_string(),
            };
            steps.push(format!("{}: {verdict}", words(row, " ")));
        }
        let said: Vec<String> = claims
            .iter()
            .enumerate()
            .map(|(s, c)| format!("{} says \"{}\"", PEOPLE[s], c.text()))
            .collect();
        let order = PEOPLE[..n].join(", ");
        let answer = words(&truth, ", ");
        Generated {
            prompt: format!(
                "Knights always tell the truth and knaves always lie. {} Who is a knight and who \
                 is a knave? Answer for {order} in order, like: knight, knave{}.",
                said.join(" "),
                if n == 3 { ", knave" } else { "" }
            ),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Words,
            key: format!(
                "knights {}",
                claims
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

/// Whether every claim is true exactly when its speaker is a knight.
fn fits(claims: &[Claim], knights: &[bool]) -> bool {
    claims
        .iter()
        .enumerate()
        .all(|(s, c)| c.holds(knights) == knights[s])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SEEDS: u64 = 400;

    /// What a quoted claim means, read from its words alone.
    fn meaning(text: &str, k: &[bool]) -> bool {
        let who = |name: &str| PEOPLE.iter().position(|p| *p == name).unwrap();
        let knight = |word: &str| word.starts_with("knight");
        let words: Vec<&str> = text.trim_end_matches('.').split(' ').collect();
        match words.as_slice() {
            [x, "is", "a", kind] => k[who(x)] == knight(kind),
            [x, "and", y, "are", "both", kind] => {
                k[who(x)] == knight(kind) && k[who(y)] == knight(kind)
            }
            ["At", "least", "one", "of", x, "and", y, "is", "a", kind] => {
                k[who(x)] == knight(kind) || k[who(y)] == knight(kind)
            }
            [x, "and", y, "are", "the", "same", "kind"] => k[who(x)] == k[who(y)],
            [x, "and", y, "are", "different", "kinds"] => k[who(x)] != k[who(y)],
            ["Exactly", n, "of", "us", _, .., kind] => {
                let n: usize = n.parse().unwrap();
                k.iter().filter(|&&v| v == knight(kind)).count() == n
            }
            ["If", x, "is", "a", kx, "then", y, "is", "a", ky] => {
                let kx = kx.trim_end_matches(',');
                k[who(x)] != knight(kx) || k[who(y)] == knight(ky)
            }
            other => panic!("unknown claim {other:?}"),
        }
    }

    /// Every assignment that fits the claims as the prompt words them.
    fn brute_force(prompt: &str, people: usize) -> Vec<Vec<bool>> {
        let claims: Vec<(usize, String)> = prompt
            .split(" says \"")
            .skip(1)
            .enumerate()
            .map(|(s, rest)| (s, rest.split('"').next().unwrap().to_string()))
            .collect();
        assert_eq!(claims.len(), people);
        (0..1usize << people)
            .map(|r| (0..people).map(|i| r >> i & 1 == 1).collect::<Vec<bool>>())
            .filter(|k| claims.iter().all(|(s, text)| meaning(text, k) == k[*s]))
            .collect()
    }

    #[test]
    fn the_answer_is_the_only_assignment_the_words_allow() {
        for level in 1..=Knights.max_level() {
            let l = &LEVELS[level as usize - 1];
            for seed in 0..SEEDS {
                let g = Knights.generate(&mut Rng::new(seed), level);
                let fits = brute_force(&g.prompt, l.people);
                assert_eq!(fits.len(), 1, "{}", g.prompt);
                let words: Vec<&str> = fits[0]
                    .iter()
                    .map(|&k| if k { "knight" } else { "knave" })
                    .collect();
                assert_eq!(g.answer, words.join(", "), "{}", g.prompt);
                let p = g.into_problem("knights", level, "knights/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                assert_eq!(p.solution.matches("all fit").count(), 1);
            }
        }
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for (level, minimum) in [(1, 100), (2, 200), (3, 1_000), (4, 1_000), (5, 1_000)] {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Knights.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= minimum, "level {level}: {}", keys.len());
        }
    }
}
