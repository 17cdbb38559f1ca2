//! `calendar`: days of the week and dates: a weekday some days away, the
//! date some days after another, the days between two dates, the weekday
//! of a date given another's (Gregorian calendar, leap years included).
//!
//! Worked solutions count in weeks, or step from month start to month
//! start:
//!
//! ```text
//! What date is 45 days after 2023-03-14?
//! <think>2023-03-14 + 18 = 2023-04-01, 27 left
//! 2023-04-01 + 27 = 2023-04-28</think><answer>2023-04-28</answer>
//! ```
//!
//! Dates are written `YYYY-MM-DD`; weekday answers are the day's name in
//! any case.

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `calendar` family.
pub(crate) struct Calendar;

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MAX_LEVEL: u32 = 5;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Date {
    year: i64,
    month: i64,
    day: i64,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn month_days(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    fn new(year: i64, month: i64, day: i64) -> Option<Date> {
        ((1..=12).contains(&month) && (1..=month_days(year, month)).contains(&day))
            .then_some(Date { year, month, day })
    }

    fn text(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The first day of the next month.
    fn next_month(self) -> Date {
        if self.month == 12 {
            Date {
                year: self.year + 1,
                month: 1,
                day: 1,
            }
        } else {
            Date {
                year: self.year,
                month: self.month + 1,
                day: 1,
            }
        }
    }

    /// Days from this date to the first of the next month.
    fn to_month_end(self) -> i64 {
        month_days(self.year, self.month) - self.day + 1
    }

    /// Days since 1970-01-01 (Howard Hinnant's days-from-civil).
    fn ordinal(self) -> i64 {
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (self.month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + self.day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Monday is 0 (1970-01-01 was a Thursday).
    fn weekday(self) -> usize {
        (self.ordinal() + 3).rem_euclid(7) as usize
    }

    /// Parse `YYYY-MM-DD` (month and day may drop leading zeros).
    fn parse(text: &str) -> Result<Date, String> {
        let parts: Vec<&str> = text.split('-').collect();
        let [y, m, d] = parts.as_slice() else {
            return Err("not a date YYYY-MM-DD".to_string());
        };
        let number = |s: &str, max_len: usize| -> Option<i64> {
            (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (number(y, 4), number(m, 2), number(d, 2)) {
            (Some(y), Some(m), Some(d)) if y.to_string().len() == 4 => {
                Date::new(y, m, d).ok_or_else(|| format!("no such date {text}"))
            }
            _ => Err("not a date YYYY-MM-DD".to_string()),
        }
    }
}

/// From `from` forward `n` days, month start by month start.
fn step_forward(from: Date, mut n: i64, steps: &mut Vec<String>) -> Date {
    let mut at = from;
    while n >= at.to_month_end() {
        let jump = at.to_month_end();
        let next = at.next_month();
        n -= jump;
        steps.push(format!(
            "{} + {jump} = {}, {n} left",
            at.text(),
            next.text()
        ));
        at = next;
    }
    let end = Date {
        day: at.day + n,
        ..at
    };
    if n > 0 {
        steps.push(format!("{} + {n} = {}", at.text(), end.text()));
    }
    end
}

/// Days from `from` to `to` (later), month start by month start.
fn count_between(from: Date, to: Date, steps: &mut Vec<String>) -> i64 {
    let mut at = from;
    let mut parts = Vec::new();
    while (at.year, at.month) != (to.year, to.month) {
        let jump = at.to_month_end();
        let next = at.next_month();
        steps.push(format!("{} to {}: {jump}", at.text(), next.text()));
        parts.push(jump);
        at = next;
    }
    let last = to.day - at.day;
    if last > 0 {
        steps.push(format!("{} to {}: {last}", at.text(), to.text()));
        parts.push(last);
    }
    let total: i64 = parts.iter().sum();
    if parts.len() > 1 {
        let sum: Vec<String> = parts.iter().map(i64::to_string).collect();
        steps.push(format!("total {}={total}", sum.join("+")));
    }
    total
}

/// A date in 2000..=2030 whose month is in `months`.
fn draw_date(rng: &mut Rng, months: (i64, i64)) -> Date {
    let year = rng.range(2000, 2030);
    let month = rng.range(months.0, months.1);
    let day = rng.range(1, month_days(year, month));
    Date { year, month, day }
}

impl Task for Calendar {
    fn name(&self) -> &'static str {
        "calendar"
    }

    fn summary(&self) -> &'static str {
        "weekdays and dates: days later, dates after, days between, weekday of a date"
    }

    fn max_level(&self) -> u32 {
        MAX_LEVEL
    }

    fn level_doc(&self, level: u32) -> String {
        match level {
            1 => "the weekday 2..=30 days from a given weekday",
            2 => "the weekday 30..=400 days before or after a given weekday",
            3 => "the date 5..=70 days after a date (years 2000-2030, leap years included)",
            4 => "the days from one date to another 20..=250 days later",
            _ => "the weekday of a date, given the weekday of another date in the same year",
        }
        .to_string()
    }

    /// Level 1 has 7 x 29 = 203 distinct questions: hold out 20.
    fn heldout_size(&self, level: u32) -> usize {
        if level == 1 {
            20
        } else {
            crate::split::HELDOUT_SIZE
        }
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let mut steps = Vec::new();
        let (prompt, answer, check, key) = match level {
            1 | 2 => {
                let today = rng.below(7);
                let (n, later) = if level == 1 {
                    (rng.range(2, 30), true)
                } else {
                    (rng.range(30, 400), rng.chance(0.5))
                };
                let shift = n % 7;
                steps.push(format!("{n}={}*7+{shift}", n / 7));
                let target = if later {
                    (today + shift as usize) % 7
                } else {
                    (today + 7 - shift as usize) % 7
                };
                let sign = if later { '+' } else { '-' };
                steps.push(format!(
                    "{} {sign} {shift} days = {}",
                    DAYS[today], DAYS[target]
                ));
                let asked = if later {
                    format!("What day of the week will it be {n} days from today?")
                } else {
                    format!("What day of the week was it {n} days ago?")
                };
                (
                    format!(
                        "Today is {}. {asked} Answer with the name of the day.",
                        DAYS[today]
                    ),
                    DAYS[target].to_string(),
                    Check::Words,
                    format!("weekday {} {sign}{n}", DAYS[today]),
                )
            }
            3 => {
                let from = draw_date(rng, (1, 12));
                let n = rng.range(5, 70);
                let end = step_forward(from, n, &mut steps);
                (
                    format!(
                        "What date is {n} days after {}? Answer as YYYY-MM-DD.",
                        from.text()
                    ),
                    end.text(),
                    Check::Date,
                    format!("date {} +{n}", from.text()),
                )
            }
            4 => {
                let from = draw_date(rng, (1, 12));
                let n = rng.range(20, 250);
                let to = step_forward(from, n, &mut Vec::new());
                count_between(from, to, &mut steps);
                (
                    format!(
                        "How many days are there from {} to {}? Answer with a single integer.",
                        from.text(),
                        to.text()
                    ),
                    n.to_string(),
                    Check::Number,
                    format!("between {} {}", from.text(), to.text()),
                )
            }
            _ => {
                let year = rng.range(2000, 2030);
                let pick = |rng: &mut Rng| {
                    let month = rng.range(1, 12);
                    Date {
                        year,
                        month,
                        day: rng.range(1, month_days(year, month)),
                    }
                };
                let (known, asked) = loop {
                    let (a, b) = (pick(rng), pick(rng));
                    if a != b {
                        break (a, b);
                    }
                };
                let (first, last) = (known.min(asked), known.max(asked));
                let n = count_between(first, last, &mut steps);
                let shift = n % 7;
                steps.push(format!("{n}={}*7+{shift}", n / 7));
                let (sign, target) = if asked > known {
                    ('+', (known.weekday() + shift as usize) % 7)
                } else {
                    ('-', (known.weekday() + 7 - shift as usize) % 7)
                };
                steps.push(format!(
                    "{} {sign} {shift} days = {}",
                    DAYS[known.weekday()],
                    DAYS[target]
                ));
                (
                    format!(
                        "{} was a {}. What day of the week was {}? Answer with the name of the day.",
                        known.text(),
                        DAYS[known.weekday()],
                        asked.text()
                    ),
                    DAYS[target].to_string(),
                    Check::Words,
                    format!("weekday of {} from {}", asked.text(), known.text()),
                )
            }
        };
        Generated {
            prompt,
            solution: answer::render(&steps, &answer),
            answer,
            check,
            key,
        }
    }
}

/// `text` as `YYYY-MM-DD`, when it reads as a date.
pub(crate) fn canonical(text: &str) -> Option<String> {
    Date::parse(text.trim()).ok().map(Date::text)
}

/// Judge a `YYYY-MM-DD` date against the reference.
pub(crate) fn judge(reference: &str, extracted: &str) -> Score {
    let Ok(want) = Date::parse(reference.trim()) else {
        return Score::fail("reference is not a date");
    };
    match Date::parse(extracted.trim()) {
        Ok(got) if got == want => Score::pass("correct"),
        Ok(_) => Score::fail("wrong date"),
        Err(why) => Score::fail(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};
    use std::collections::HashSet;

    const SEEDS: u64 = 500;

    /// The next day, from a month-length table of its own.
    fn tomorrow((y, m, d): (i64, i64, i64)) -> (i64, i64, i64) {
        let leap = y % 400 == 0 || (y % 4 == 0 && y % 100 != 0);
        let lengths = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if d < lengths[m as usize - 1] {
            (y, m, d + 1)
        } else if m < 12 {
            (y, m + 1, 1)
        } else {
            (y + 1, 1, 1)
        }
    }

    fn parse(text: &str) -> (i64, i64, i64) {
        let p: Vec<i64> = text.split('-').map(|s| s.parse().unwrap()).collect();
        (p[0], p[1], p[2])
    }

    /// Days from `a` to a later `b`, one day at a time.
    fn days_between(a: (i64, i64, i64), b: (i64, i64, i64)) -> i64 {
        let (mut at, mut n) = (a, 0);
        while at != b {
            at = tomorrow(at);
            n += 1;
        }
        n
    }

    /// Weekday by counting days from 2000-01-01, a Saturday.
    fn weekday(date: (i64, i64, i64)) -> &'static str {
        DAYS[(5 + days_between((2000, 1, 1), date)) as usize % 7]
    }

    fn dates_in(text: &str) -> Vec<(i64, i64, i64)> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .filter(|w| w.len() == 10 && w.matches('-').count() == 2)
            .map(parse)
            .collect()
    }

    #[test]
    fn answers_match_counting_day_by_day() {
        for level in 1..=MAX_LEVEL {
            for seed in 0..SEEDS {
                let g = Calendar.generate(&mut Rng::new(seed), level);
                let number = |after: &str| -> i64 {
                    g.prompt
                        .split_once(after)
                        .unwrap()
                        .1
                        .split(' ')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                };
                let want = match level {
                    1 | 2 => {
                        let today = DAYS
                            .iter()
                            .position(|d| g.prompt.starts_with(&format!("Today is {d}.")))
                            .unwrap();
                        // Step one weekday at a time.
                        let (n, later) = if g.prompt.contains("days ago") {
                            (number("was it "), false)
                        } else {
                            (number("it be "), true)
                        };
                        let mut day = today;
                        for _ in 0..n {
                            day = if later { (day + 1) % 7 } else { (day + 6) % 7 };
                        }
                        DAYS[day].to_string()
                    }
                    3 => {
                        let n = number("What date is ");
                        let mut at = dates_in(&g.prompt)[0];
                        for _ in 0..n {
                            at = tomorrow(at);
                        }
                        format!("{:04}-{:02}-{:02}", at.0, at.1, at.2)
                    }
                    4 => {
                        let dates = dates_in(&g.prompt);
                        days_between(dates[0], dates[1]).to_string()
                    }
                    _ => {
                        let dates = dates_in(&g.prompt);
                        assert!(g.prompt.contains(&format!("was a {}.", weekday(dates[0]))));
                        weekday(dates[1]).to_string()
                    }
                };
                assert_eq!(g.answer, want, "{}", g.prompt);
                let p = g.into_problem("calendar", level, "calendar/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0, "{}", p.solution);
                assert!(p.solution.lines().count() <= 16, "{}", p.solution);
            }
        }
    }

    #[test]
    fn the_ordinal_agrees_with_counting() {
        for (a, b) in [
            ((2000, 1, 1), (2000, 3, 1)),
            ((2023, 12, 31), (2024, 3, 1)),
            ((1999, 2, 28), (2001, 3, 1)),
        ] {
            let (x, y) = (
                Date::new(a.0, a.1, a.2).unwrap(),
                Date::new(b.0, b.1, b.2).unwrap(),
            );
            assert_eq!(y.ordinal() - x.ordinal(), days_between(a, b));
        }
        assert_eq!(DAYS[Date::new(2000, 1, 1).unwrap().weekday()], "Saturday");
    }

    #[test]
    fn dates_are_read_strictly() {
        assert_eq!(judge("2023-04-28", "2023-04-28").reward, 1.0);
        assert_eq!(judge("2023-04-08", "2023-4-8").reward, 1.0);
        assert_eq!(judge("2023-04-28", "2023-04-29").reason, "wrong date");
        assert_eq!(
            judge("2023-04-28", "2023-02-30").reason,
            "no such date 2023-02-30"
        );
        assert_eq!(judge("2024-02-29", "2024-02-29").reward, 1.0);
        assert_eq!(judge("2023-04-28", "2023-02-29").reward, 0.0);
        assert_eq!(
            judge("2023-04-28", "28/04/2023").reason,
            "not a date YYYY-MM-DD"
        );
        assert_eq!(judge("2023-04-28", "April 28, 2023").reward, 0.0);
        assert_eq!(judge("2023-04-28", "2023-04-28 or 2023-04-29").reward, 0.0);
        assert_eq!(judge("2023-04-28", "+2023-04-28").reward, 0.0);
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for (level, minimum) in [(1, 180), (2, 3_000), (3, 4_000), (4, 4_000), (5, 4_000)] {
            let keys: HashSet<String> = (0..5_000)
                .map(|seed| Calendar.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= minimum, "level {level}: {}", keys.len());
        }
    }

    proptest! {
        #[test]
        fn judge_never_panics(text in "\\PC{0,40}") {
            let s = judge("2024-02-29", &text);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }

        #[test]
        fn judge_never_panics_on_date_shapes(text in "[0-9-]{0,20}") {
            let _ = judge("2024-02-29", &text);
        }
    }
}
