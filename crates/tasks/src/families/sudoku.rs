//! `sudoku`: complete a 4x4 sudoku (every row, column and 2x2 box holds 1
//! to 4).
//!
//! A puzzle is one of the 288 4x4 grids with cells removed while it stays
//! solvable one forced cell at a time, so it has one solution. The worked
//! solution fills one cell per line with its reason: the digits the cell
//! sees (row, column, box) leave one, or a digit has one place left in a
//! row, column or box:
//!
//! ```text
//! 12.4/...2/..../4..1
//! <think>r1c3=3 (sees 1 2 4)
//! r2c1=3 (sees 1 2 4)
//! ...
//! r3c2=4 (only cell for 4 in column 2)</think><answer>1234/3412/2143/4321</answer>
//! ```
//!
//! An answer is the 16 digits row by row (`/`, spaces, commas or `|`
//! between them are free); any grid that keeps the givens and obeys the
//! rules scores.

use std::sync::OnceLock;

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `sudoku` family.
pub(crate) struct Sudoku;

/// Blank cells per level.
const BLANKS: [usize; 5] = [4, 6, 8, 10, 11];

type Cells = [u8; 16];

/// Every complete 4x4 sudoku grid, found once by backtracking.
fn grids() -> &'static [Cells] {
    static GRIDS: OnceLock<Vec<Cells>> = OnceLock::new();
    GRIDS.get_or_init(|| {
        fn fill(cells: &mut Cells, at: usize, out: &mut Vec<Cells>) {
            if at == 16 {
                out.push(*cells);
                return;
            }
            for d in 1..=4 {
                if !peers(at).any(|p| cells[p] == d) {
                    cells[at] = d;
                    fill(cells, at + 1, out);
                    cells[at] = 0;
                }
            }
        }
        let mut out = Vec::new();
        fill(&mut [0; 16], 0, &mut out);
        out
    })
}

/// The other cells in the row, column or box of `cell`.
fn peers(cell: usize) -> impl Iterator<Item = usize> {
    let (r, c) = (cell / 4, cell % 4);
    (0..16).filter(move |&o| {
        let (or, oc) = (o / 4, o % 4);
        o != cell && (or == r || oc == c || (or / 2 == r / 2 && oc / 2 == c / 2))
    })
}

/// The units: 4 rows, 4 columns, 4 boxes, with their names.
fn units() -> Vec<(String, [usize; 4])> {
    let mut out = Vec::new();
    for i in 0..4 {
        out.push((
            format!("row {}", i + 1),
            [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3],
        ));
    }
    for i in 0..4 {
        out.push((format!("column {}", i + 1), [i, i + 4, i + 8, i + 12]));
    }
    for b in 0..4 {
        let top = (b / 2) * 8 + (b % 2) * 2;
        out.push((format!("box {}", b + 1), [top, top + 1, top + 4, top + 5]));
    }
    out
}

fn name(cell: usize) -> String {
    format!("r{}c{}", cell / 4 + 1, cell % 4 + 1)
}

/// Fill forced cells one at a time: a cell whose peers leave one digit, or
/// a digit with one possible cell in a unit. Returns the steps and the
/// grid (with zeros where it got stuck).
fn solve(givens: &Cells) -> (Vec<String>, Cells) {
    let mut cells = *givens;
    let mut steps = Vec::new();
    let units = units();
    'progress: loop {
        let candidates = |cells: &Cells, cell: usize| -> Vec<u8> {
            (1..=4)
                .filter(|d| !peers(cell).any(|p| cells[p] == *d))
                .collect()
        };
        for cell in (0..16).filter(|&c| cells[c] == 0) {
            let options = candidates(&cells, cell);
            if let [only] = options.as_slice() {
                let mut seen: Vec<u8> = peers(cell).map(|p| cells[p]).filter(|&d| d != 0).collect();
                seen.sort_unstable();
                seen.dedup();
                let seen: Vec<String> = seen.iter().map(u8::to_string).collect();
                steps.push(format!("{}={only} (sees {})", name(cell), seen.join(" ")));
                cells[cell] = *only;
                continue 'progress;
            }
        }
        for (unit, members) in &units {
            for d in 1..=4 {
                if members.iter().any(|&m| cells[m] == d) {
                    continue;
                }
                let places: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&m| cells[m] == 0 && candidates(&cells, m).contains(&d))
                    .collect();
                if let [only] = places.as_slice() {
                    steps.push(format!("{}={d} (only cell for {d} in {unit})", name(*only)));
                    cells[*only] = d;
                    continue 'progress;
                }
            }
        }
        return (steps, cells);
    }
}

fn text(cells: &Cells) -> String {
    let rows: Vec<String> = cells
        .chunks(4)
        .map(|row| {
            row.iter()
                .map(|&d| if d == 0 { '.' } else { char::from(b'0' + d) })
                .collect()
        })
        .collect();
    rows.join("/")
}

impl Task for Sudoku {
    fn name(&self) -> &'static str {
        "sudoku"
    }

    fn summary(&self) -> &'static str {
        "complete a 4x4 sudoku"
    }

    fn max_level(&self) -> u32 {
        BLANKS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        format!(
            "{} blank cells, each forced in turn (one digit left, or one place left)",
            BLANKS[level as usize - 1]
        )
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let blanks = BLANKS[level as usize - 1];
        let (solution, givens) = loop {
            let solution = *rng.pick(grids());
            let mut order: Vec<usize> = (0..16).collect();
            rng.shuffle(&mut order);
            let mut givens = solution;
            let mut removed = 0;
            for cell in order {
                if removed == blanks {
                    break;
                }
                let kept = givens[cell];
                givens[cell] = 0;
                if solve(&givens).1 == solution {
                    removed += 1;
                } else {
                    givens[cell] = kept;
                }
            }
            if removed == blanks {
                break (solution, givens);
            }
        };
        let (steps, _) = solve(&givens);
        let puzzle = text(&givens);
        let answer = text(&solution);
        Generated {
            prompt: format!(
                "Fill in the 4x4 sudoku so that every row, column and 2x2 box holds 1, 2, 3 and \
                 4. Rows top to bottom, joined by /, with . for a blank: {puzzle}. Answer with \
                 the four rows joined by /."
            ),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Sudoku {
                givens: puzzle.replace('/', ""),
            },
            key: format!("sudoku {puzzle}"),
        }
    }
}

/// Longest answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 200;

/// Judge a completed grid against the givens (16 characters, `.` blank).
pub(crate) fn judge(givens: &str, extracted: &str) -> Score {
    let given: Vec<u8> = givens.bytes().collect();
    if given.len() != 16 || given.iter().any(|b| !matches!(b, b'.' | b'1'..=b'4')) {
        return Score::fail("the puzzle is malformed");
    }
    if extracted.len() > MAX_ANSWER_BYTES {
        return Score::fail("answer too long");
    }
    let mut cells = Vec::with_capacity(16);
    for c in extracted.chars() {
        match c {
            '1'..='4' => cells.push(c as u8 - b'0'),
            '/' | ',' | '|' => {}
            c if c.is_whitespace() => {}
            other => return Score::fail(format!("'{other}' is not a digit 1-4")),
        }
    }
    if cells.len() != 16 {
        return Score::fail(format!("expected 16 digits, got {}", cells.len()));
    }
    for (cell, (&g, &d)) in given.iter().zip(&cells).enumerate() {
        if g != b'.' && g - b'0' != d {
            return Score::fail(format!("changes the given {}", name(cell)));
        }
    }
    for (unit, members) in units() {
        let mut seen: Vec<u8> = members.iter().map(|&m| cells[m]).collect();
        seen.sort_unstable();
        if seen != [1, 2, 3, 4] {
            return Score::fail(format!("{unit} repeats a digit"));
        }
    }
    Score::pass("a valid completion")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};
    use std::collections::HashSet;

    const SEEDS: u64 = 300;

    /// Every grid whose rows are permutations of 1..4 and whose columns and
    /// boxes hold each digit once: brute force over 24^4 row choices.
    fn all_grids() -> Vec<[u8; 16]> {
        let mut perms = Vec::new();
        for a in 1..=4u8 {
            for b in 1..=4u8 {
                for c in 1..=4u8 {
                    for d in 1..=4u8 {
                        let row = [a, b, c, d];
                        let mut sorted = row;
                        sorted.sort_unstable();
                        if sorted == [1, 2, 3, 4] {
                            perms.push(row);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for r0 in &perms {
            for r1 in &perms {
                for r2 in &perms {
                    for r3 in &perms {
                        let rows = [r0, r1, r2, r3];
                        let columns_ok = (0..4).all(|c| {
                            let mut col: Vec<u8> = rows.iter().map(|r| r[c]).collect();
                            col.sort_unstable();
                            col == [1, 2, 3, 4]
                        });
                        let boxes_ok = [(0, 0), (0, 2), (2, 0), (2, 2)].iter().all(|&(r, c)| {
                            let mut b = vec![
                                rows[r][c],
                                rows[r][c + 1],
                                rows[r + 1][c],
                                rows[r + 1][c + 1],
                            ];
                            b.sort_unstable();
                            b == [1, 2, 3, 4]
                        });
                        if columns_ok && boxes_ok {
                            let mut cells = [0u8; 16];
                            for (i, row) in rows.iter().enumerate() {
                                cells[4 * i..4 * i + 4].copy_from_slice(*row);
                            }
                            out.push(cells);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn there_are_288_grids_either_way() {
        let brute: HashSet<[u8; 16]> = all_grids().into_iter().collect();
        let searched: HashSet<[u8; 16]> = grids().iter().copied().collect();
        assert_eq!(brute.len(), 288);
        assert_eq!(brute, searched);
    }

    #[test]
    fn each_puzzle_has_one_completion_and_it_is_the_answer() {
        let all = all_grids();
        for level in 1..=Sudoku.max_level() {
            for seed in 0..SEEDS {
                let g = Sudoku.generate(&mut Rng::new(seed), level);
                let Check::Sudoku { givens } = &g.check else {
                    panic!()
                };
                assert_eq!(givens.matches('.').count(), BLANKS[level as usize - 1]);
                let fits: Vec<&[u8; 16]> = all
                    .iter()
                    .filter(|grid| {
                        givens
                            .bytes()
                            .zip(grid.iter())
                            .all(|(g, &d)| g == b'.' || g - b'0' == d)
                    })
                    .collect();
                assert_eq!(fits.len(), 1, "{}", g.prompt);
                assert_eq!(g.answer, text(fits[0]));
                let p = g.into_problem("sudoku", level, "sudoku/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                assert_eq!(
                    p.solution.lines().count(),
                    BLANKS[level as usize - 1],
                    "{}",
                    p.solution
                );
            }
        }
    }

    #[test]
    fn judge_says_what_is_wrong() {
        let givens = "12.4...2....4..1";
        let good = "1234/3412/2143/4321";
        assert_eq!(judge(givens, good).reward, 1.0);
        assert_eq!(judge(givens, "1234 3412 2143 4321").reward, 1.0);
        assert_eq!(judge(givens, "1234341221434321").reward, 1.0);
        assert_eq!(
            judge(givens, "1234/3412/2143").reason,
            "expected 16 digits, got 12"
        );
        assert_eq!(
            judge(givens, "1234/3412/2143/4325").reason,
            "'5' is not a digit 1-4"
        );
        assert_eq!(
            judge(givens, "2134/3412/1243/4321").reason,
            "changes the given r1c1"
        );
        assert_eq!(
            judge(givens, "1234/3412/2413/4321").reason,
            "column 2 repeats a digit"
        );
        assert_eq!(
            judge(givens, "1234/3412/1243/4321").reason,
            "column 1 repeats a digit"
        );
        // A Latin square that is not a sudoku.
        assert_eq!(
            judge(&".".repeat(16), "1234/2341/3412/4123").reason,
            "box 1 repeats a digit"
        );
        assert_eq!(judge(givens, &format!("{good} or {good}")).reward, 0.0);
        assert_eq!(judge("bad", good).reason, "the puzzle is malformed");
    }

    #[test]
    fn levels_have_many_distinct_puzzles() {
        for level in 1..=Sudoku.max_level() {
            let keys: HashSet<String> = (0..3_000)
                .map(|seed| Sudoku.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= 2_000, "level {level}: {}", keys.len());
        }
    }

    proptest! {
        #[test]
        fn judge_never_panics(givens in "[.1-5]{0,20}", text in "\\PC{0,60}") {
            let s = judge(&givens, &text);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }
    }
}
