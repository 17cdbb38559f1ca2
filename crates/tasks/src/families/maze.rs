//! `maze`: a shortest path through a small grid maze, as moves.
//!
//! The maze is written row by row, rows joined by `/`: `#` is a wall, `.`
//! open floor, `S` the start and `E` the exit. An answer is a string of
//! moves `U`, `D`, `L`, `R`; any path from S to E through open cells that
//! is as short as the shortest scores. The worked solution is a
//! breadth-first search: the cells first reached after each number of
//! moves (`23` is row 2, column 3), until E, then the path back:
//!
//! ```text
//! Maze: S.#/..#/#.E
//! <think>1: 12 21
//! 2: 22
//! 3: 32
//! 4: 33 E
//! path: 11 21 22 32 33
//! moves: DRDR</think><answer>DRDR</answer>
//! ```

use std::collections::VecDeque;

use crate::answer;
use crate::problem::{Check, Score};
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `maze` family.
pub(crate) struct Maze;

/// The knobs of one level: rows, columns, and the shortest path's moves.
const LEVELS: [(usize, usize, (usize, usize)); 5] = [
    (3, 4, (3, 6)),
    (4, 4, (4, 8)),
    (5, 5, (5, 10)),
    (6, 6, (7, 12)),
    (7, 7, (9, 14)),
];

/// Chance a cell is a wall.
const WALLS: f64 = 0.3;

impl Task for Maze {
    fn name(&self) -> &'static str {
        "maze"
    }

    fn summary(&self) -> &'static str {
        "a shortest path through a grid maze, as moves U D L R"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let (rows, cols, (least, most)) = LEVELS[level as usize - 1];
        format!("{rows}x{cols} grid, about 30% walls, shortest path {least} to {most} moves")
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let (rows, cols, (least, most)) = LEVELS[level as usize - 1];
        let (grid, layers, path) = loop {
            let grid = draw(rng, rows, cols);
            if let Some((layers, path)) = search(&grid) {
                if (least..=most).contains(&(path.len() - 1)) {
                    break (grid, layers, path);
                }
            }
        };
        let text = grid.text();
        let moves = moves_of(&path);
        let cell = |(r, c): (usize, usize)| format!("{}{}", r + 1, c + 1);
        let mut steps: Vec<String> = layers
            .iter()
            .enumerate()
            .skip(1)
            .map(|(d, cells)| {
                let listed: Vec<String> = cells
                    .iter()
                    .map(|&p| {
                        if p == grid.end {
                            format!("{} E", cell(p))
                        } else {
                            cell(p)
                        }
                    })
                    .collect();
                format!("{d}: {}", listed.join(" "))
            })
            .collect();
        let walked: Vec<String> = path.iter().map(|&p| cell(p)).collect();
        steps.push(format!("path: {}", walked.join(" ")));
        steps.push(format!("moves: {moves}"));
        Generated {
            prompt: format!(
                "Maze (rows top to bottom joined by /; # is a wall, S the start, E the exit): {text}. \
                 Give a shortest path from S to E as moves U, D, L, R (up, down, left, right), \
                 like RRDL."
            ),
            solution: answer::render(&steps, &moves),
            check: Check::Maze {
                grid: text.clone(),
                shortest: moves.len(),
            },
            answer: moves,
            key: format!("maze {text}"),
        }
    }
}

/// A parsed maze.
struct Grid {
    open: Vec<Vec<bool>>,
    start: (usize, usize),
    end: (usize, usize),
}

impl Grid {
    fn rows(&self) -> usize {
        self.open.len()
    }

    fn cols(&self) -> usize {
        self.open[0].len()
    }

    fn text(&self) -> String {
        let rows: Vec<String> = (0..self.rows())
            .map(|r| {
                (0..self.cols())
                    .map(|c| match (r, c) {
                        p if p == self.start => 'S',
                        p if p == self.end => 'E',
                        (r, c) if self.open[r][c] => '.',
                        _ => '#',
                    })
                    .collect()
            })
            .collect();
        rows.join("/")
    }

    /// The open cell one move from `at`, if there is one.
    fn step(&self, (r, c): (usize, usize), dir: u8) -> Option<(usize, usize)> {
        let (r, c) = match dir {
            b'U' => (r.checked_sub(1)?, c),
            b'D' => (r + 1, c),
            b'L' => (r, c.checked_sub(1)?),
            _ => (r, c + 1),
        };
        (r < self.rows() && c < self.cols() && self.open[r][c]).then_some((r, c))
    }

    fn parse(text: &str) -> Option<Grid> {
        let rows: Vec<&[u8]> = text.split('/').map(str::as_bytes).collect();
        let cols = rows.first()?.len();
        if cols == 0 || rows.iter().any(|r| r.len() != cols) || rows.len() > 32 || cols > 32 {
            return None;
        }
        let find = |ch: u8| -> Option<(usize, usize)> {
            let mut found = rows.iter().enumerate().flat_map(|(r, row)| {
                row.iter()
                    .enumerate()
                    .filter(move |(_, &b)| b == ch)
                    .map(move |(c, _)| (r, c))
            });
            let first = found.next()?;
            found.next().is_none().then_some(first)
        };
        Some(Grid {
            open: rows
                .iter()
                .map(|row| row.iter().map(|&b| b != b'#').collect())
                .collect(),
            start: find(b'S')?,
            end: find(b'E')?,
        })
    }
}

const MOVES: [u8; 4] = [b'U', b'D', b'L', b'R'];

fn draw(rng: &mut Rng, rows: usize, cols: usize) -> Grid {
    let open: Vec<Vec<bool>> = (0..rows)
        .map(|_| (0..cols).map(|_| !rng.chance(WALLS)).collect())
        .collect();
    let start = (rng.below(rows), rng.below(cols));
    let mut end = (rng.below(rows), rng.below(cols));
    while end == start {
        end = (rng.below(rows), rng.below(cols));
    }
    let mut grid = Grid { open, start, end };
    grid.open[start.0][start.1] = true;
    grid.open[end.0][end.1] = true;
    grid
}

/// Breadth-first search from S: the cells first reached after each number
/// of moves (up to E's) and one shortest path (moves tried U, D, L, R).
#[allow(clippy::type_complexity)]
fn search(grid: &Grid) -> Option<(Vec<Vec<(usize, usize)>>, Vec<(usize, usize)>)> {
    let mut from: Vec<Vec<Option<(usize, usize)>>> = vec![vec![None; grid.cols()]; grid.rows()];
    let mut distance = vec![vec![usize::MAX; grid.cols()]; grid.rows()];
    distance[grid.start.0][grid.start.1] = 0;
    let mut layers: Vec<Vec<(usize, usize)>> = vec![vec![grid.start]];
    let mut queue = VecDeque::from([grid.start]);
    while let Some(at) = queue.pop_front() {
        let d = distance[at.0][at.1];
        if at == grid.end {
            break;
        }
        for dir in MOVES {
            if let Some(next) = grid.step(at, dir) {
                if distance[next.0][next.1] == usize::MAX {
                    distance[next.0][next.1] = d + 1;
                    from[next.0][next.1] = Some(at);
                    if layers.len() <= d + 1 {
                        layers.push(Vec::new());
                    }
                    layers[d + 1].push(next);
                    queue.push_back(next);
                }
            }
        }
    }
    let total = distance[grid.end.0][grid.end.1];
    if total == usize::MAX {
        return None;
    }
    layers.truncate(total + 1);
    for layer in &mut layers {
        layer.sort_unstable();
    }
    let mut path = vec![grid.end];
    while let Some(prev) = from[path[path.len() - 1].0][path[path.len() - 1].1] {
        path.push(prev);
    }
    path.reverse();
    Some((layers, path))
}

fn moves_of(path: &[(usize, usize)]) -> String {
    path.windows(2)
        .map(
            |w| match (w[1].0 as i64 - w[0].0 as i64, w[1].1 as i64 - w[0].1 as i64) {
                (-1, _) => 'U',
                (1, _) => 'D',
                (_, -1) => 'L',
                _ => 'R',
            },
        )
        .collect()
}

/// Longest answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 400;

/// Judge moves through `grid`: they must stay on open cells and end on E
/// after exactly `shortest` moves.
pub(crate) fn judge(grid: &str, shortest: usize, extracted: &str) -> Score {
    let Some(grid) = Grid::parse(grid) else {
        return Score::fail("the maze is malformed");
    };
    if extracted.len() > MAX_ANSWER_BYTES {
        return Score::fail("answer too long");
    }
    let mut moves = Vec::new();
    for c in extracted.chars() {
        match c.to_ascii_uppercase() {
            m @ ('U' | 'D' | 'L' | 'R') => moves.push(m as u8),
            ' ' | ',' => {}
            other => return Score::fail(format!("'{other}' is not a move (U, D, L, R)")),
        }
    }
    let mut at = grid.start;
    for (k, &dir) in moves.iter().enumerate() {
        match grid.step(at, dir) {
            Some(next) => at = next,
            None => return Score::fail(format!("move {} hits a wall or leaves the maze", k + 1)),
        }
    }
    if at != grid.end {
        return Score::fail("does not end at E");
    }
    if moves.len() != shortest {
        return Score::fail(format!(
            "reaches E in {} moves; the shortest takes {shortest}",
            moves.len()
        ));
    }
    Score::pass("a shortest path")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};
    use std::collections::HashSet;

    const SEEDS: u64 = 300;

    fn grid_of(prompt: &str) -> String {
        let rest = prompt.split_once("the exit): ").unwrap().1;
        rest.split_once(". Give").unwrap().0.to_string()
    }

    /// Paths of exactly `depth` moves from S to E (at most `cap` of them),
    /// by depth-first search over the maze text, never revisiting a cell
    /// and pruning by the straight-line distance: no breadth-first search.
    fn paths(
        grid: &Grid,
        at: (usize, usize),
        depth: usize,
        walked: &mut Vec<(usize, usize)>,
        so_far: &mut String,
        out: &mut Vec<String>,
    ) {
        if out.len() >= 20 {
            return;
        }
        let left = at.0.abs_diff(grid.end.0) + at.1.abs_diff(grid.end.1);
        if left > depth {
            return;
        }
        if depth == 0 {
            out.push(so_far.clone());
            return;
        }
        for dir in MOVES {
            if let Some(next) = grid.step(at, dir) {
                if walked.contains(&next) {
                    continue;
                }
                walked.push(next);
                so_far.push(dir as char);
                paths(grid, next, depth - 1, walked, so_far, out);
                so_far.pop();
                walked.pop();
            }
        }
    }

    #[test]
    fn the_shortest_length_agrees_with_iterative_deepening() {
        for level in 1..=Maze.max_level() {
            for seed in 0..SEEDS {
                let g = Maze.generate(&mut Rng::new(seed), level);
                let grid = Grid::parse(&grid_of(&g.prompt)).unwrap();
                // The least depth with a path is the shortest length.
                let mut shortest = None;
                for depth in 1..=g.answer.len() {
                    let mut found = Vec::new();
                    paths(
                        &grid,
                        grid.start,
                        depth,
                        &mut vec![grid.start],
                        &mut String::new(),
                        &mut found,
                    );
                    if !found.is_empty() {
                        shortest = Some((depth, found));
                        break;
                    }
                }
                let (depth, found) = shortest.unwrap();
                assert_eq!(depth, g.answer.len(), "{}", g.prompt);
                let p = g.into_problem("maze", level, "maze/test".to_string());
                // Every shortest path scores; a longer walk does not.
                for moves in &found {
                    let v = p.verify(&format!("<think></think><answer>{moves}</answer>"));
                    assert_eq!(v.reward, 1.0, "{moves}: {v:?}");
                }
                let detour = format!("{}UD", found[0]);
                assert_eq!(p.verify(&format!("<answer>{detour}</answer>")).reward, 0.0);
                assert_eq!(p.verify(&p.solution).reward, 1.0);
            }
        }
    }

    #[test]
    fn judge_says_what_is_wrong() {
        let grid = "S.#/..#/#.E";
        assert_eq!(judge(grid, 4, "DRDR").reward, 1.0);
        assert_eq!(judge(grid, 4, "rddr").reward, 1.0);
        assert_eq!(judge(grid, 4, "R, D, D, R").reward, 1.0);
        assert_eq!(
            judge(grid, 4, "RR").reason,
            "move 2 hits a wall or leaves the maze"
        );
        assert_eq!(
            judge(grid, 4, "U").reason,
            "move 1 hits a wall or leaves the maze"
        );
        assert_eq!(judge(grid, 4, "DR").reason, "does not end at E");
        assert_eq!(
            judge(grid, 4, "DRDRLR").reason,
            "reaches E in 6 moves; the shortest takes 4"
        );
        assert_eq!(judge(grid, 4, "DRDR or RDDR").reward, 0.0);
        assert_eq!(judge(grid, 4, "→↓").reward, 0.0);
        assert_eq!(judge("S.#/..", 4, "DRDR").reason, "the maze is malformed");
        assert_eq!(judge("S.S/..E", 2, "DR").reason, "the maze is malformed");
    }

    #[test]
    fn mazes_match_the_level_and_vary() {
        for level in 1..=Maze.max_level() {
            let (rows, cols, (least, most)) = LEVELS[level as usize - 1];
            let mut keys = HashSet::new();
            for seed in 0..2_000 {
                let g = Maze.generate(&mut Rng::new(seed), level);
                assert!((least..=most).contains(&g.answer.len()));
                let grid = grid_of(&g.prompt);
                assert_eq!(grid.split('/').count(), rows);
                assert!(grid.split('/').all(|r| r.len() == cols));
                keys.insert(g.key);
                if seed < 300 {
                    assert!(g.solution.lines().count() <= 16, "{}", g.solution);
                }
            }
            assert!(keys.len() >= 1_700, "level {level}: {}", keys.len());
        }
    }

    proptest! {
        #[test]
        fn judge_never_panics(grid in "[S.E#/]{0,30}", moves in "\\PC{0,60}", shortest in 0usize..50) {
            let s = judge(&grid, shortest, &moves);
            prop_assert!(s.reward == 0.0 || s.reward == 1.0);
        }
    }
}
