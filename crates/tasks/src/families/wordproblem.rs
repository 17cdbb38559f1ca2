//! `wordproblem`: short multi-step stories in the style of GSM8K with an
//! integer answer.
//!
//! A story follows one quantity (stickers, dollars, cookies, apples...)
//! through a chain of events; each event costs one or two lines of
//! arithmetic, and the level fixes how many lines the whole story takes. The
//! themes give each kind of event several wordings, and names, objects and
//! numbers vary, so every level draws from many templates. The worked
//! solution is one line of arithmetic per step:
//!
//! ```text
//! Mia has 12 stickers. She buys 3 packs with 6 stickers in each pack.
//! She gives 5 stickers to Leo. How many stickers does Mia have now?
//! <think>3*6=18
//! 12+18=30
//! 30-5=25</think><answer>25</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `wordproblem` family.
pub(crate) struct WordProblem;

/// The knobs of one level.
struct Level {
    /// Lines of arithmetic in the solution.
    steps: usize,
    /// Largest starting amount and largest single gain or loss.
    amount_max: i64,
    /// Largest group count (`k` packs, `k` hours...).
    count_max: i64,
    /// Largest group size or unit price.
    size_max: i64,
}

const LEVELS: [Level; 5] = [
    Level {
        steps: 2,
        amount_max: 20,
        count_max: 5,
        size_max: 10,
    },
    Level {
        steps: 3,
        amount_max: 50,
        count_max: 6,
        size_max: 12,
    },
    Level {
        steps: 4,
        amount_max: 100,
        count_max: 8,
        size_max: 15,
    },
    Level {
        steps: 5,
        amount_max: 100,
        count_max: 9,
        size_max: 20,
    },
    Level {
        steps: 5,
        amount_max: 1_000,
        count_max: 12,
        size_max: 50,
    },
];

/// The wording of one kind of story. Placeholders: `{P}` the owner's name,
/// `{S}` / `{h}` / `{o}` the owner's pronouns (She, her, her), `{Q}` another
/// person, `{X}` the item (plural), `{n}` an amount, `{k}` a count of
/// groups, `{m}` a group size or price. Each slice offers alternatives.
struct Theme {
    items: &'static [&'static str],
    /// The owner starts with `{n}`: no arithmetic.
    start: &'static str,
    /// The owner starts with `{k}` groups of `{m}`: one line, `k*m`.
    produce: &'static [&'static str],
    /// `+n`.
    gain: &'static [&'static str],
    /// `-n`.
    lose: &'static [&'static str],
    /// `k*m`, then `+`.
    gain_groups: &'static [&'static str],
    /// `k*m`, then `-`.
    lose_groups: &'static [&'static str],
    /// `/2`.
    halve: &'static str,
    /// `/k` as the last step, with its own question.
    share: &'static [(&'static str, &'static str)],
    /// The question when the story does not end in a share.
    question: &'static str,
}

const THEMES: [Theme; 4] = [
    Theme {
        items: &[
            "stickers",
            "marbles",
            "stamps",
            "seashells",
            "buttons",
            "cards",
        ],
        start: "{P} has {n} {X}.",
        produce: &[
            "{P} collects {m} {X} every week for {k} weeks.",
            "{P} has {k} albums with {m} {X} in each.",
        ],
        gain: &["{S} finds {n} more {X}.", "{Q} gives {o} {n} {X}."],
        lose: &["{S} gives {n} {X} to {Q}.", "{S} loses {n} {X}."],
        gain_groups: &[
            "{S} buys {k} packs with {m} {X} in each pack.",
            "{Q} gives {o} {k} bags with {m} {X} in each bag.",
        ],
        lose_groups: &["{S} gives {m} {X} to each of {k} friends."],
        halve: "{S} gives half of {h} {X} to {Q}.",
        share: &[(
            "{S} puts all of {h} {X} into {k} boxes, the same number in each.",
            "How many {X} are in each box?",
        )],
        question: "How many {X} does {P} have now?",
    },
    Theme {
        items: &["dollars"],
        start: "{P} has {n} dollars.",
        produce: &[
            "{P} earns {m} dollars an hour and works {k} hours.",
            "{P} saves {m} dollars a week for {k} weeks.",
        ],
        gain: &[
            "{S} gets {n} dollars from {Q}.",
            "{S} earns {n} more dollars walking dogs.",
        ],
        lose: &[
            "{S} spends {n} dollars on lunch.",
            "{S} pays {Q} {n} dollars.",
        ],
        gain_groups: &["{S} sells {k} old books for {m} dollars each."],
        lose_groups: &[
            "{S} buys {k} notebooks that cost {m} dollars each.",
            "{S} buys {k} tickets at {m} dollars each.",
        ],
        halve: "{S} gives half of {h} money to {Q}.",
        share: &[(
            "{S} splits the money equally among {k} friends.",
            "How many dollars does each friend get?",
        )],
        question: "How many dollars does {P} have now?",
    },
    Theme {
        items: &["cookies", "muffins", "cupcakes", "rolls", "bagels"],
        start: "{P} has baked {n} {X}.",
        produce: &[
            "{P} bakes {k} trays of {m} {X}.",
            "{P} bakes {m} {X} an hour for {k} hours.",
        ],
        gain: &["{S} bakes {n} more {X}."],
        lose: &["{S} sells {n} {X}.", "{S} gives {n} {X} to {Q}."],
        gain_groups: &["{S} bakes {k} more trays of {m} {X}."],
        lose_groups: &[
            "{S} sells {k} boxes of {m} {X}.",
            "{k} customers each buy {m} {X}.",
        ],
        halve: "{S} sells half of the {X}.",
        share: &[
            (
                "{S} packs all the {X} into bags of {k}.",
                "How many bags does {P} fill?",
            ),
            (
                "{S} shares the {X} equally among {k} classes.",
                "How many {X} does each class get?",
            ),
        ],
        question: "How many {X} does {P} have now?",
    },
    Theme {
        items: &["apples", "pears", "plums", "peaches", "lemons"],
        start: "{P} picks {n} {X}.",
        produce: &["{P} picks {m} {X} from each of {k} trees."],
        gain: &["{S} picks {n} more {X}.", "{Q} gives {o} {n} {X}."],
        lose: &[
            "{S} uses {n} {X} to make juice.",
            "{S} gives {n} {X} to {Q}.",
        ],
        gain_groups: &["{S} picks {k} more baskets with {m} {X} in each."],
        lose_groups: &["{S} sells {k} bags of {m} {X} at the market."],
        halve: "{S} gives half of the {X} to {Q}.",
        share: &[(
            "{S} divides the {X} equally among {k} neighbours.",
            "How many {X} does each neighbour get?",
        )],
        question: "How many {X} does {P} have now?",
    },
];

/// (name, subject, possessive, object) pronouns.
const PEOPLE: [(&str, &str, &str, &str); 16] = [
    ("Mia", "She", "her", "her"),
    ("Leo", "He", "his", "him"),
    ("Ava", "She", "her", "her"),
    ("Noah", "He", "his", "him"),
    ("Zoe", "She", "her", "her"),
    ("Omar", "He", "his", "him"),
    ("Lily", "She", "her", "her"),
    ("Ravi", "He", "his", "him"),
    ("Emma", "She", "her", "her"),
    ("Lucas", "He", "his", "him"),
    ("Sara", "She", "her", "her"),
    ("Ben", "He", "his", "him"),
    ("Nina", "She", "her", "her"),
    ("Kai", "He", "his", "him"),
    ("Ivy", "She", "her", "her"),
    ("Diego", "He", "his", "him"),
];

impl Task for WordProblem {
    fn name(&self) -> &'static str {
        "wordproblem"
    }

    fn summary(&self) -> &'static str {
        "multi-step word problems (GSM8K style) with an integer answer"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let l = &LEVELS[level as usize - 1];
        format!(
            "{} steps; amounts up to {}, {} groups of up to {}",
            l.steps, l.amount_max, l.count_max, l.size_max
        )
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let story = tell(rng, &LEVELS[level as usize - 1]);
        let answer = story.value.to_string();
        Generated {
            prompt: format!("{} Answer with a single integer.", story.text.join(" ")),
            solution: answer::render(&story.lines, &answer),
            answer,
            check: Check::Number,
            // The chain of arithmetic is the problem; names, items and
            // wordings are its dress.
            key: format!("story {}", story.lines.join("; ")),
        }
    }
}

/// A story as sentences, its solution lines and the answer.
struct Story {
    text: Vec<String>,
    lines: Vec<String>,
    value: i64,
}

/// The values a sentence's placeholders take.
struct Cast {
    owner: (&'static str, &'static str, &'static str, &'static str),
    other: &'static str,
    item: &'static str,
}

impl Cast {
    fn fill(&self, template: &str, n: i64, k: i64, m: i64) -> String {
        let (name, subject, possessive, object) = self.owner;
        template
            .replace("{P}", name)
            .replace("{S}", subject)
            .replace("{h}", possessive)
            .replace("{o}", object)
            .replace("{Q}", self.other)
            .replace("{X}", self.item)
            .replace("{n}", &n.to_string())
            .replace("{k}", &k.to_string())
            .replace("{m}", &m.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Gain,
    Lose,
    GainGroups,
    LoseGroups,
    Halve,
    Share,
}

impl Event {
    const ALL: [Event; 6] = [
        Event::Gain,
        Event::Lose,
        Event::GainGroups,
        Event::LoseGroups,
        Event::Halve,
        Event::Share,
    ];

    /// Lines of arithmetic the event costs.
    fn cost(self) -> usize {
        match self {
            Event::GainGroups | Event::LoseGroups => 2,
            _ => 1,
        }
    }

    /// Whether the event can follow a quantity `value` with `remaining`
    /// lines left, keeping every amount a positive integer and every amount
    /// in the text at least 2 (so nouns stay plural).
    fn fits(self, value: i64, remaining: usize) -> bool {
        self.cost() <= remaining
            && match self {
                Event::Gain | Event::GainGroups => true,
                Event::Lose => value >= 3,
                Event::LoseGroups => value > 4,
                Event::Halve => value >= 4 && value % 2 == 0,
                Event::Share => remaining == 1 && !share_sizes(value).is_empty(),
            }
    }
}

/// One of several wordings or names, by value.
fn choose<T: Copy>(rng: &mut Rng, options: &[T]) -> T {
    options[rng.below(options.len())]
}

/// Ways to share `value` equally into 2..=12 parts, each part at least 2.
fn share_sizes(value: i64) -> Vec<i64> {
    (2..=12)
        .filter(|&k| value % k == 0 && value / k >= 2)
        .collect()
}

fn tell(rng: &mut Rng, level: &Level) -> Story {
    let theme = rng.pick(&THEMES);
    let owner = *rng.pick(&PEOPLE);
    let others: Vec<&str> = PEOPLE
        .iter()
        .map(|p| p.0)
        .filter(|&n| n != owner.0)
        .collect();
    let cast = Cast {
        owner,
        other: choose(rng, &others),
        item: choose(rng, theme.items),
    };
    let mut story = Story {
        text: Vec::new(),
        lines: Vec::new(),
        value: 0,
    };
    let mut remaining = level.steps;
    if rng.chance(0.5) {
        let (k, m) = (rng.range(2, level.count_max), rng.range(2, level.size_max));
        story.value = k * m;
        story
            .text
            .push(cast.fill(choose(rng, theme.produce), 0, k, m));
        story.lines.push(format!("{k}*{m}={}", k * m));
        remaining -= 1;
    } else {
        story.value = rng.range(5, level.amount_max);
        story.text.push(cast.fill(theme.start, story.value, 0, 0));
    }
    let mut question = theme.question;
    while remaining > 0 {
        let options: Vec<Event> = Event::ALL
            .into_iter()
            .filter(|e| e.fits(story.value, remaining))
            .collect();
        let event = *rng.pick(&options);
        remaining -= event.cost();
        let v = story.value;
        match event {
            Event::Gain => {
                let n = rng.range(2, level.amount_max);
                story.push(cast.fill(choose(rng, theme.gain), n, 0, 0), v, '+', n);
            }
            Event::Lose => {
                let n = rng.range(2, (v - 1).min(level.amount_max));
                story.push(cast.fill(choose(rng, theme.lose), n, 0, 0), v, '-', n);
            }
            Event::GainGroups => {
                let (k, m) = (rng.range(2, level.count_max), rng.range(2, level.size_max));
                let text = cast.fill(choose(rng, theme.gain_groups), 0, k, m);
                story.lines.push(format!("{k}*{m}={}", k * m));
                story.push(text, v, '+', k * m);
            }
            Event::LoseGroups => {
                let k = rng.range(2, level.count_max.min((v - 1) / 2));
                let m = rng.range(2, level.size_max.min((v - 1) / k));
                let text = cast.fill(choose(rng, theme.lose_groups), 0, k, m);
                story.lines.push(format!("{k}*{m}={}", k * m));
                story.push(text, v, '-', k * m);
            }
            Event::Halve => story.push(cast.fill(theme.halve, 0, 0, 0), v, '/', 2),
            Event::Share => {
                let k = *rng.pick(&share_sizes(v));
                let (sentence, asked) = choose(rng, theme.share);
                story.push(cast.fill(sentence, 0, k, 0), v, '/', k);
                question = asked;
            }
        }
    }
    story.text.push(cast.fill(question, 0, 0, 0));
    story
}

impl Story {
    /// Add a sentence whose arithmetic is `value op operand`.
    fn push(&mut self, sentence: String, value: i64, op: char, operand: i64) {
        self.value = match op {
            '+' => value + operand,
            '-' => value - operand,
            _ => value / operand,
        };
        self.lines
            .push(format!("{value}{op}{operand}={}", self.value));
        self.text.push(sentence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    fn each_problem(mut f: impl FnMut(&Level, Generated)) {
        for level in 1..=WordProblem.max_level() {
            for seed in 0..SEEDS {
                f(
                    &LEVELS[level as usize - 1],
                    WordProblem.generate(&mut Rng::new(seed), level),
                );
            }
        }
    }

    fn think_lines(solution: &str) -> Vec<&str> {
        let think = solution.split(answer::THINK_CLOSE).next().unwrap();
        think
            .trim_start_matches(answer::THINK_OPEN)
            .lines()
            .collect()
    }

    /// The integers written in a text, in order.
    fn integers(text: &str) -> Vec<i64> {
        text.split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    #[test]
    fn generation_is_deterministic() {
        for level in 1..=WordProblem.max_level() {
            for seed in [0, 5, u64::MAX] {
                assert_eq!(
                    WordProblem.generate(&mut Rng::new(seed), level),
                    WordProblem.generate(&mut Rng::new(seed), level)
                );
            }
        }
    }

    /// Every line is true arithmetic on numbers from the story or earlier
    /// lines ("half" brings a 2); the lines count the level's steps; the last
    /// result is the answer, a positive integer.
    #[test]
    fn worked_solutions_are_consistent_with_the_story() {
        each_problem(|level, g| {
            let lines = think_lines(&g.solution);
            assert_eq!(lines.len(), level.steps, "{}", g.solution);
            let mut known: Vec<i64> = integers(&g.prompt);
            assert!(known.iter().all(|&n| n >= 2), "{}", g.prompt);
            if g.prompt.contains("half") {
                known.push(2);
            }
            for line in &lines {
                assert_eq!(assert_true_arithmetic(line), 1, "{line}");
                let (lhs, result) = line.split_once('=').unwrap();
                for operand in integers(lhs) {
                    assert!(known.contains(&operand), "{line} in {}", g.prompt);
                }
                let result: i64 = result.parse().unwrap();
                assert!(result > 0, "{line}");
                known.push(result);
            }
            let last = lines.last().unwrap().split_once('=').unwrap().1;
            assert_eq!(g.answer, last);
            assert!(g
                .solution
                .ends_with(&format!("<answer>{}</answer>", g.answer)));
            assert_eq!(g.check, Check::Number);
        });
    }

    #[test]
    fn prompts_are_filled_plain_text_with_one_question() {
        each_problem(|_, g| {
            assert!(g.prompt.is_ascii(), "{}", g.prompt);
            assert!(!g.prompt.contains('{'), "{}", g.prompt);
            assert_eq!(g.prompt.matches('?').count(), 1, "{}", g.prompt);
            assert!(g.prompt.ends_with("? Answer with a single integer."));
        });
    }

    #[test]
    fn every_theme_and_event_appears_at_every_level() {
        for level in 1..=WordProblem.max_level() {
            let mut starts = HashSet::new();
            let mut shapes = HashSet::new();
            for seed in 0..2_000 {
                let g = WordProblem.generate(&mut Rng::new(seed), level);
                starts.insert(g.prompt.split(' ').nth(1).unwrap().to_string());
                for line in think_lines(&g.solution) {
                    shapes.insert(line.chars().find(|c| "+-*/".contains(*c)).unwrap());
                }
            }
            // "has", "collects", "earns", "saves", "bakes", "picks", ...
            assert!(starts.len() >= 6, "level {level}: {starts:?}");
            assert_eq!(shapes.len(), 4, "level {level}: {shapes:?}");
        }
    }

    #[test]
    fn verifies_through_the_problem() {
        each_problem(|_, g| {
            let p = g.into_problem("wordproblem", 1, "wordproblem/test".to_string());
            let good = p.verify(&p.solution);
            assert!(good.reward == 1.0 && good.format_ok, "{good:?}");
            let n: i64 = p.answer.parse().unwrap();
            for wrong in [format!("{}", n + 1), format!("{n} or {}", n + 1)] {
                let v = p.verify(&format!("<think></think><answer>{wrong}</answer>"));
                assert_eq!(v.reward, 0.0, "{wrong}: {v:?}");
            }
        });
    }

    #[test]
    fn level_one_has_many_distinct_problems() {
        let prompts: HashSet<String> = (0..10_000)
            .map(|seed| WordProblem.generate(&mut Rng::new(seed), 1).prompt)
            .collect();
        assert!(prompts.len() >= 9_000, "{} distinct", prompts.len());
    }
}
