//! `graph`: the length of the shortest route between two towns of a small
//! road map with lengths on the roads.
//!
//! The worked solution is Dijkstra's algorithm: towns are settled in order
//! of distance, one line each, with the road that reaches them, until the
//! destination is settled:
//!
//! ```text
//! Roads: A-B 4, A-C 2, B-C 1, B-D 5, C-D 8. Shortest route from A to D?
//! <think>A=0
//! C=0+2=2 (A-C)
//! B=2+1=3 (C-B)
//! D=3+5=8 (B-D)</think><answer>8</answer>
//! ```

use crate::answer;
use crate::problem::Check;
use crate::rng::Rng;
use crate::task::{Generated, Task};

/// The `graph` family.
pub(crate) struct Graph;

/// The knobs of one level: towns, roads, longest road.
const LEVELS: [(usize, usize, i64); 5] =
    [(4, 4, 9), (5, 6, 9), (6, 8, 12), (7, 10, 15), (8, 12, 20)];

const TOWNS: &[u8] = b"ABCDEFGH";

impl Task for Graph {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn summary(&self) -> &'static str {
        "shortest route between two towns of a small road map"
    }

    fn max_level(&self) -> u32 {
        LEVELS.len() as u32
    }

    fn level_doc(&self, level: u32) -> String {
        let (towns, roads, longest) = LEVELS[level as usize - 1];
        format!("{towns} towns, {roads} roads of length 1..={longest}; the best route takes at least two roads")
    }

    fn generate(&self, rng: &mut Rng, level: u32) -> Generated {
        let (towns, roads, longest) = LEVELS[level as usize - 1];
        let (edges, target, steps, distance) = loop {
            let edges = draw_roads(rng, towns, roads, longest);
            let target = rng.range(1, towns as i64 - 1) as usize;
            let (steps, distance, hops) = dijkstra(&edges, towns, 0, target);
            if hops >= 2 {
                break (edges, target, steps, distance);
            }
        };
        let name = |i: usize| char::from(TOWNS[i]);
        let listed: Vec<String> = edges
            .iter()
            .map(|&(a, b, w)| format!("{}-{} {w}", name(a), name(b)))
            .collect();
        let answer = distance.to_string();
        let mut key_edges = listed.clone();
        key_edges.sort();
        Generated {
            prompt: format!(
                "Roads between towns (two-way, with their lengths): {}. What is the length of the \
                 shortest route from {} to {}? Answer with a single integer.",
                listed.join(", "),
                name(0),
                name(target)
            ),
            solution: answer::render(&steps, &answer),
            answer,
            check: Check::Number,
            key: format!(
                "graph {}; {}-{}",
                key_edges.join(", "),
                name(0),
                name(target)
            ),
        }
    }
}

/// A connected map: a random spanning tree, then other roads, in a random
/// order, each written with its towns in alphabetical order.
fn draw_roads(rng: &mut Rng, towns: usize, roads: usize, longest: i64) -> Vec<(usize, usize, i64)> {
    let mut order: Vec<usize> = (0..towns).collect();
    rng.shuffle(&mut order);
    let mut pairs: Vec<(usize, usize)> = (1..towns)
        .map(|i| {
            let (a, b) = (order[i], order[rng.below(i)]);
            (a.min(b), a.max(b))
        })
        .collect();
    let mut others: Vec<(usize, usize)> = (0..towns)
        .flat_map(|a| (a + 1..towns).map(move |b| (a, b)))
        .filter(|p| !pairs.contains(p))
        .collect();
    rng.shuffle(&mut others);
    pairs.extend(others.into_iter().take(roads.saturating_sub(towns - 1)));
    pairs.sort_unstable();
    pairs
        .into_iter()
        .map(|(a, b)| (a, b, rng.range(1, longest)))
        .collect()
}

/// Dijkstra from `start` until `target` is settled: the steps, the
/// distance, and how many roads the route takes.
fn dijkstra(
    edges: &[(usize, usize, i64)],
    towns: usize,
    start: usize,
    target: usize,
) -> (Vec<String>, i64, usize) {
    let name = |i: usize| char::from(TOWNS[i]);
    let mut best: Vec<Option<(i64, usize, usize)>> = vec![None; towns]; // (distance, from, hops)
    let mut settled = vec![false; towns];
    best[start] = Some((0, start, 0));
    let mut steps = Vec::new();
    loop {
        // The unsettled town with the smallest distance; ties to the first.
        let Some(u) = (0..towns)
            .filter(|&t| !settled[t] && best[t].is_some())
            .min_by_key(|&t| best[t].map(|b| b.0))
        else {
            return (steps, -1, 0);
        };
        settled[u] = true;
        let (d, from, hops) = best[u].unwrap_or((0, u, 0));
        if u == start {
            steps.push(format!("{}=0", name(u)));
        } else {
            let w = d - best[from].map_or(0, |b| b.0);
            let before = d - w;
            steps.push(format!(
                "{}={before}+{w}={d} ({}-{})",
                name(u),
                name(from),
                name(u)
            ));
        }
        if u == target {
            return (steps, d, hops);
        }
        for &(a, b, w) in edges {
            let v = match (a == u, b == u) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            if settled[v] {
                continue;
            }
            if best[v].is_none_or(|(dv, _, _)| d + w < dv) {
                best[v] = Some((d + w, u, hops + 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith_expr::assert_true_arithmetic;
    use std::collections::HashSet;

    const SEEDS: u64 = 400;

    /// The shortest route by trying every route without repeated towns,
    /// read from the prompt text.
    fn brute_force(prompt: &str) -> i64 {
        let roads = prompt
            .split_once("lengths): ")
            .unwrap()
            .1
            .split_once(". What")
            .unwrap()
            .0;
        let edges: Vec<(char, char, i64)> = roads
            .split(", ")
            .map(|r| {
                let (pair, w) = r.split_once(' ').unwrap();
                let (a, b) = pair.split_once('-').unwrap();
                (
                    a.chars().next().unwrap(),
                    b.chars().next().unwrap(),
                    w.parse().unwrap(),
                )
            })
            .collect();
        let ends = prompt.split_once("route from ").unwrap().1;
        let from = ends.chars().next().unwrap();
        let to = ends.split_once(" to ").unwrap().1.chars().next().unwrap();
        fn walk(
            at: char,
            to: char,
            edges: &[(char, char, i64)],
            seen: &mut Vec<char>,
            length: i64,
            best: &mut i64,
        ) {
            if at == to {
                *best = (*best).min(length);
                return;
            }
            for &(a, b, w) in edges {
                let next = if a == at {
                    b
                } else if b == at {
                    a
                } else {
                    continue;
                };
                if !seen.contains(&next) {
                    seen.push(next);
                    walk(next, to, edges, seen, length + w, best);
                    seen.pop();
                }
            }
        }
        let mut best = i64::MAX;
        walk(from, to, &edges, &mut vec![from], 0, &mut best);
        best
    }

    #[test]
    fn answers_match_every_route_tried() {
        for level in 1..=Graph.max_level() {
            for seed in 0..SEEDS {
                let g = Graph.generate(&mut Rng::new(seed), level);
                assert_eq!(g.answer, brute_force(&g.prompt).to_string(), "{}", g.prompt);
                let p = g.into_problem("graph", level, "graph/test".to_string());
                assert_eq!(p.verify(&p.solution).reward, 1.0);
                let think = p.solution.split("</think>").next().unwrap();
                for line in think.trim_start_matches("<think>").lines() {
                    assert_true_arithmetic(line.split(' ').next().unwrap());
                }
            }
        }
    }

    #[test]
    fn maps_match_the_level() {
        for level in 1..=Graph.max_level() {
            let (towns, roads, longest) = LEVELS[level as usize - 1];
            for seed in 0..SEEDS {
                let edges = draw_roads(&mut Rng::new(seed), towns, roads, longest);
                assert_eq!(edges.len(), roads);
                assert!(edges
                    .iter()
                    .all(|&(a, b, w)| a < b && b < towns && (1..=longest).contains(&w)));
                let distinct: HashSet<(usize, usize)> =
                    edges.iter().map(|&(a, b, _)| (a, b)).collect();
                assert_eq!(distinct.len(), roads);
            }
        }
    }

    #[test]
    fn levels_have_many_distinct_problems() {
        for level in 1..=Graph.max_level() {
            let keys: HashSet<String> = (0..3_000)
                .map(|seed| Graph.generate(&mut Rng::new(seed), level).key)
                .collect();
            assert!(keys.len() >= 2_500, "level {level}: {}", keys.len());
        }
    }
}
