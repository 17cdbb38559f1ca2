//! `ranking`: order people from comparisons ("Ann is taller than Bo").
//!
//! The facts state every neighbouring pair of a hidden order (so the order
//! is the only one that fits), shuffled, from higher levels on with some
//! written the other way round ("Bo is shorter than Ann") and some
//! redundant ones that skip a place. The question asks for the top, the
//! k-th from the top or bottom, or everyone in order. The worked solution
//! writes every fact one way, then takes the top of who is left, one line
//! per place:
//!
//! ```text
//! Ann, Bo and Cy ... Bo is shorter than Ann. Cy is taller than Ann. Who is the tallest?
//! <think>as taller-than: Ann>Bo, Cy>Ann
//! top of Ann, Bo, Cy: Cy
//! top of Ann, Bo: Ann
//! top of Bo: Bo
//! order: Cy, Ann, Bo</think><answer>Cy</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `ranking` family.
pub(crate) struct Ranking;

const NAMES: [&str; 10] = [
    "Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo",
];

/// (higher, lower, highest, lowest).
const PROPERTIES: [(&str, &str, &str, &str); 4] = [
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
];

/// The knobs of one level.
struct Level {
    people: usize,
    /// Facts beyond the neighbouring pairs (each skips at least one place).
    extra: usize,
    /// Whether facts may be written with the lower word.
    mixed: bool,
    /// The questions a problem picks from.
    asks: &'static [Ask],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Top,
    /// The k-th from the top (k >= 2) or from the bottom.
    Place,
    OrderDown,
    OrderUp,
}

const LEVELS: [Level; 5] = [
    Level {
        people: 3,
        extra: 0,
        mixed: false,
        asks: &[Ask::Top],
    },
    Level {
        people: 4,
        extra: 0,
        mixed: true,
        asks: &[Ask::Top, Ask::OrderDown],
    },
    Level {
        people: 5,
        extra: 1,
        mixed: true,
        asks: &[Ask::Place, Ask::OrderDown],
    },
    Level {
        people: 6,
        extra: 2,
        mixed: true,
        asks: &[Ask::Place, Ask::OrderDown, Ask::OrderUp],
    },
    Level {
        people: 7,
        extra: 3,
        mixed: true,
        asks: &[Ask::Place, Ask::OrderUp],
    },
];

impl Task for Ranking {
    fn name(&self) -> &'static str {
        "ranking"
    }

    fn summary(&self) -> &'static str {
        "order people from pairwise comparisons; who is first, k-th, or the whole order"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        let asks: Vec<&str> = l
            .asks
            .iter()
            .map(|a| match a {
                Ask::Top => "who is first",
                Ask::Place => "who is k-th from the top or bottom",
                Ask::OrderDown => "the order from the top",
                Ask::OrderUp => "the order from the bottom",
            })
            .collect();
        format!(
            "{} people, {} facts ({} redundant){}; asks {}",
            l.people,
            l.people - 1 + l.extra,
            l.extra,
            if l.mixed {
                ", some written the other way round"
            } else {
                ""
            },
            asks.join(" or ")
        )
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let l = &LEVELS[level as usize - 1];
        let property = *rng.pick(&PROPERTIES);
        let (high, low, highest, lowest) = property;
        let mut names = NAMES;
        rng.shuffle(&mut names);
        // The hidden order, highest first.
        let order: Vec<&str> = names[..l.people].to_vec();
        let mut facts: Vec<(usize, usize)> = (0..l.people - 1).map(|i| (i, i + 1)).collect();
        let skips: Vec<(usize, usize)> = (0..l.people)
            .flat_map(|i| (i + 2..l.people).map(move |j| (i, j)))
            .collect();
        let mut skips = skips;
        rng.shuffle(&mut skips);
        facts.extend(skips.into_iter().take(l.extra));
        rng.shuffle(&mut facts);
        let sentences: Vec<String> = facts
            .iter()
            .map(|&(a, b)| {
                if l.mixed && rng.chance(0.4) {
                    format!("{} is {low} than {}.", order[b], order[a])
                } else {
                    format!("{} is {high} than {}.", order[a], order[b])
                }
            })
            .collect();
        // The people as introduced: alphabetical, so the list gives nothing away.
        let mut introduced = order.clone();
        introduced.sort_unstable();
        let ask = *rng.pick(l.asks);
        let from_top = rng.chance(0.5);
        let k = rng.range(2, l.people as i64 - 1) as usize;
        let (question, answer) = match ask {
            Ask::Top => (format!("Who is the {highest}?"), order[0].to_string()),
            Ask::Place if from_top => (
                format!("Who is the {} {highest}?", ordinal(k)),
                order[k - 1].to_string(),
            ),
            Ask::Place => (
                format!("Who is the {} {lowest}?", ordinal(k)),
                order[l.people - k].to_string(),
            ),
            Ask::OrderDown => (
                format!("List everyone from {highest} to {lowest}."),
                order.join(", "),
            ),
            Ask::OrderUp => (
                format!("List everyone from {lowest} to {highest}."),
                order.iter().rev().copied().collect::<Vec<_>>().join(", "),
            ),
        };
        let form = if matches!(ask, Ask::OrderDown | Ask::OrderUp) {
            "Answer with the names separated by commas."
        } else {
            "Answer with a name."
        };
        let mut steps = vec![format!(
            "as {high}-than: {}",
            facts
                .iter()
                .map(|&(a, b)| format!("{}>{}", order[a], order[b]))
                .collect::<Vec<_>>()
                .join(", ")
        )];
        for i in 0..l.people {
            let mut left: Vec<&str> = order[i..].to_vec();
            left.sort_unstable();
            steps.push(format!("top of {}: {}", left.join(", "), order[i]));
        }
        steps.push(format!("order: {}", order.join(", ")));
        let mut normalised: Vec<String> = facts
            .iter()
            .map(|&(a, b)| format!("{}>{}", order[a], order[b]))
            .collect();
        normalised.sort_unstable();
        Generated {
            prompt: format!(
                "{} are compared. {} {question} {form}",
                list(&introduced),
                sentences.join(" ")
            ),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Words,
            key: format!("ranking {high} {}; {question}", normalised.join(",")),
        }
    }
}

/// `Ann, Bo and Cy`.
fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match n {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SEEDS: u64 = 400;

    /// All orders of `items`.
    fn permutations(items: &[String]) -> Vec<Vec<String>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first.clone());
                out.push(tail);
            }
        }
        out
    }

    /// Solve from the prompt text alone: every order of the people that
    /// makes every sentence true, then the question asked of it.
    fn brute_force(prompt: &str) -> Vec<String> {
        let (people, rest) = prompt.split_once(" are compared. ").unwrap();
        let names: Vec<String> = people
            .replace(" and ", ", ")
            .split(", ")
            .map(str::to_string)
            .collect();
        let property = PROPERTIES
            .iter()
            .find(|p| {
                rest.contains(&format!(" {} than ", p.0))
                    || rest.contains(&format!(" {} than ", p.1))
            })
            .unwrap();
        let sentences: Vec<&str> = rest.split(". ").collect();
        let mut facts = Vec::new();
        for s in &sentences {
            for (word, higher_first) in [(property.0, true), (property.1, false)] {
                if let Some((a, b)) = s.split_once(&format!(" is {word} than ")) {
                    let b = b.trim_end_matches('.');
                    facts.push(if higher_first {
                        (a.to_string(), b.to_string())
                    } else {
                        (b.to_string(), a.to_string())
                    });
                }
            }
        }
        let fits: Vec<Vec<String>> = permutations(&names)
            .into_iter()
            .filter(|order| {
                let at = |n: &str| order.iter().position(|m| m == n).unwrap();
                facts.iter().all(|(a, b)| at(a) < at(b))
            })
            .collect();
        assert_eq!(fits.len(), 1, "{prompt}");
        let order = &fits[0];
        let question = sentences
            .iter()
            .find(|s| s.starts_with("Who") || s.starts_with("List"))
            .unwrap();
        let n = order.len();
        if question.starts_with("List everyone from") {
            if question.contains(&format!("from {} ", property.2)) {
                order.clone()
            } else {
                order.iter().rev().cloned().collect()
            }
        } else {
            let k = question
                .split(' ')
                .find_map(|w| w.get(..1).and_then(|d| d.parse::<usize>().ok()))
                .unwrap_or(1);
            if question.contains(property.2) {
                vec![order[k - 1].clone()]
            } else {
                vec![order[n - k].clone()]
            }
        }
    }

    #[test]
    fn answers_are_the_only_order_that_fits() {
        for level in 1..=Ranking.max_level() {
            for seed in 0..SEEDS {
                let g = Ranking.generate(&mut Rng::new(seed), level);
                let want = brute_force(&g.prompt).join(", ");
                assert_eq!(g.answer, want, "{}", g.prompt);
                let p = g.into_problem("ranking", level, "ranking/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                assert!(p.prompt.len() < 420, "{}", p.prompt);
            }
        }
    }

    #[test]
    fn facts_match_the_level() {
        for level in 1..=Ranking.max_level() {
            let l = &LEVELS[level as usize - 1];
            for seed in 0..SEEDS {
                let g = Ranking.generate(&mut Rng::new(seed), level);
                let facts = g.prompt.matches(" than ").count();
                assert_eq!(facts, l.people - 1 + l.extra, "{}", g.prompt);
            }
        }
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for level in 1..=Ranking.max_level() {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Ranking.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= 1_500, "level {level}: {}", keys.len());
        }
    }
}
