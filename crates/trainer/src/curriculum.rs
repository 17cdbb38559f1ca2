//! An adaptive curriculum: during GRPO each task family's level moves up
//! when the rolling pass rate of its groups reaches `curriculum.raise_at`,
//! and down when it falls to `curriculum.lower_at` (reasoning-gym's 0.70 and
//! 0.10 by default), within the configured bounds and the family's own
//! levels.
//!
//! A group that all passes or all fails carries no learning signal; keeping
//! each family where its pass rate sits inside the band keeps groups mixed.
//! The pass rate is over the last `window` groups sampled at the family's
//! current level (dynamic-sampling refills and the groups they replaced
//! included: every sample says how hard the level is), counting a completion
//! as passing when its verifier gives full reward, as evaluation does. A
//! level moves only once its window is full, and each move starts an empty
//! window, so a level is judged only on its own groups.
//!
//! The state ([`CurriculumState`]) is part of every checkpoint's
//! trainer_state.json, and the problems of a step depend only on it and the
//! stored data position, so a resumed run draws what an uninterrupted one
//! would. Problem sets (`jsonl` entries) keep their place in the mixture.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use tasks::{Mixture, MixtureEntry, Source};

use crate::config::CurriculumSection;
use crate::error::{Error, Result};

/// Where each family of the mixture stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurriculumState {
    /// By family name.
    pub families: BTreeMap<String, FamilyLevel>,
}

/// One family's level and recent results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyLevel {
    /// The level GRPO draws this family's problems at.
    pub level: u32,
    /// `[passing, sampled]` completions of each of the latest groups at
    /// this level, oldest first, at most `curriculum.window` of them.
    pub window: VecDeque<(u32, u32)>,
    /// Every level GRPO has trained this family at, the start included.
    pub visited: BTreeSet<u32>,
}

/// One sampled GRPO group, as the curriculum sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupOutcome {
    /// The problem's task (family or problem-set name).
    pub task: String,
    /// The level it was drawn at.
    pub level: u32,
    /// Completions with full reward.
    pub passes: usize,
    /// Completions sampled.
    pub size: usize,
}

/// A level change, for the progress display.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LevelMove {
    pub family: String,
    pub from: u32,
    pub to: u32,
    /// The window's pass rate that moved it.
    pub pass_rate: f64,
}

impl std::fmt::Display for LevelMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "curriculum: {} level {} -> {} (pass rate {:.2})",
            self.family, self.from, self.to, self.pass_rate
        )
    }
}

impl CurriculumState {
    /// Every family of `mixture` at its configured level.
    pub fn start(mixture: &Mixture) -> Self {
        let families = mixture
            .entries()
            .iter()
            .filter_map(|entry| match &entry.source {
                Source::Family { task, level } => Some((
                    task.clone(),
                    FamilyLevel {
                        level: *level,
                        window: VecDeque::new(),
                        visited: BTreeSet::from([*level]),
                    },
                )),
                Source::Set(_) => None,
            })
            .collect();
        CurriculumState { families }
    }

    /// Takes in a step's groups, in sampling order, and moves the levels
    /// whose window filled outside the band. Groups of other families, or
    /// drawn at a level the family has since left, are ignored.
    pub(crate) fn observe(
        &mut self,
        cfg: &CurriculumSection,
        groups: &[GroupOutcome],
    ) -> Result<Vec<LevelMove>> {
        let mut moves = Vec::new();
        for group in groups {
            let Some(family) = self.families.get_mut(&group.task) else {
                continue;
            };
            if group.level != family.level || group.size == 0 {
                continue;
            }
            family
                .window
                .push_back((group.passes as u32, group.size as u32));
            while family.window.len() > cfg.window {
                family.window.pop_front();
            }
            if family.window.len() < cfg.window {
                continue;
            }
            let (passes, sampled) = family
                .window
                .iter()
                .fold((0u64, 0u64), |(p, s), &(gp, gs)| {
                    (p + u64::from(gp), s + u64::from(gs))
                });
            let pass_rate = passes as f64 / sampled as f64;
            let (lo, hi) = bounds(cfg, &group.task)?;
            let to = if pass_rate >= cfg.raise_at && family.level < hi {
                family.level + 1
            } else if pass_rate <= cfg.lower_at && family.level > lo {
                family.level - 1
            } else {
                continue;
            };
            moves.push(LevelMove {
                family: group.task.clone(),
                from: family.level,
                to,
                pass_rate,
            });
            family.level = to;
            family.window.clear();
            family.visited.insert(to);
        }
        Ok(moves)
    }

    /// `base` with each family at its current level.
    pub(crate) fn mixture(&self, base: &Mixture) -> Result<Mixture> {
        let entries = base
            .entries()
            .iter()
            .map(|entry| match &entry.source {
                Source::Family { task, .. } => {
                    let level = self.families.get(task).map_or(1, |f| f.level);
                    MixtureEntry::family(task, level, entry.weight)
                }
                Source::Set(_) => entry.clone(),
            })
            .collect();
        Ok(Mixture::new(entries)?)
    }

    /// The levels of a GRPO step as metrics.jsonl keys: `curriculum/<family>`.
    pub(crate) fn metrics(&self) -> BTreeMap<String, u32> {
        self.families
            .iter()
            .map(|(name, f)| (format!("curriculum/{name}"), f.level))
            .collect()
    }

    /// What evaluation covers: `base`'s entries, then every other level a
    /// family has been trained at.
    pub(crate) fn visited_mixture(&self, base: &Mixture) -> Result<Mixture> {
        let mut entries = base.entries().to_vec();
        for (name, family) in &self.families {
            for &level in &family.visited {
                let listed = base.entries().iter().any(|e| {
                    matches!(&e.source, Source::Family { task, level: l } if task == name && *l == level)
                });
                if !listed {
                    entries.push(MixtureEntry::family(name, level, 1.0));
                }
            }
        }
        Ok(Mixture::new(entries)?)
    }

    /// Pairs of family and level trained at so far.
    pub(crate) fn visited_count(&self) -> usize {
        self.families.values().map(|f| f.visited.len()).sum()
    }
}

/// The levels `family` may move between: `[min_level, max_level]` cut to
/// the family's own levels.
pub(crate) fn bounds(cfg: &CurriculumSection, family: &str) -> Result<(u32, u32)> {
    let top = tasks::find(family)?.max_level();
    let hi = match cfg.max_level {
        0 => top,
        n => n.min(top),
    };
    Ok((cfg.min_level.max(1), hi))
}

/// `base` plus every level each family may reach: a scratch tokenizer's
/// alphabet must cover all of them.
pub(crate) fn reachable_mixture(cfg: &CurriculumSection, base: &Mixture) -> Result<Mixture> {
    let mut entries = base.entries().to_vec();
    for entry in base.entries() {
        if let Source::Family { task, level } = &entry.source {
            let (lo, hi) = bounds(cfg, task)?;
            entries.extend(
                (lo..=hi)
                    .filter(|l| l != level)
                    .map(|l| MixtureEntry::family(task, l, entry.weight)),
            );
        }
    }
    Ok(Mixture::new(entries)?)
}

/// The config's curriculum rules that depend on the mixture: each family
/// once, starting inside its bounds.
pub(crate) fn check(cfg: &CurriculumSection, mixture: &Mixture) -> Result<()> {
    let key = "tasks.mixture";
    let mut seen = BTreeSet::new();
    for entry in mixture.entries() {
        let Source::Family { task, level } = &entry.source else {
            continue;
        };
        if !seen.insert(task.clone()) {
            return Err(Error::invalid(
                key,
                format!(
                    "{task} appears twice: with the curriculum on, each family has one entry, whose level is where it starts"
                ),
            ));
        }
        let (lo, hi) = bounds(cfg, task)?;
        if lo > hi {
            return Err(Error::invalid(
                "curriculum.min_level",
                format!("{lo} is above {task}'s highest level {hi}"),
            ));
        }
        if !(lo..=hi).contains(level) {
            return Err(Error::invalid(
                key,
                format!(
                    "{task} starts at level {level}, outside the curriculum's levels {lo}..={hi}"
                ),
            ));
        }
    }
    if seen.is_empty() {
        return Err(Error::invalid(
            "curriculum.enabled",
            "the mixture has no task family whose level could move (problem sets keep theirs)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(window: usize) -> CurriculumSection {
        CurriculumSection {
            enabled: true,
            window,
            ..CurriculumSection::default()
        }
    }

    fn group(task: &str, level: u32, passes: usize) -> GroupOutcome {
        GroupOutcome {
            task: task.into(),
            level,
            passes,
            size: 8,
        }
    }

    fn state() -> CurriculumState {
        let mixture = Mixture::new(vec![
            MixtureEntry::family("add", 3, 2.0),
            MixtureEntry::family("mul", 1, 1.0),
        ])
        .unwrap();
        CurriculumState::start(&mixture)
    }

    #[test]
    fn a_full_window_above_the_band_raises_the_level_and_starts_a_new_window() {
        let mut s = state();
        let cfg = cfg(3);
        // Two groups do not fill the window, whatever they score.
        assert!(s
            .observe(&cfg, &[group("add", 3, 8), group("add", 3, 8)])
            .unwrap()
            .is_empty());
        // 6 + 6 + 5 of 24 = 0.708 >= 0.70.
        let mut s2 = state();
        let moves = s2
            .observe(
                &cfg,
                &[group("add", 3, 6), group("add", 3, 6), group("add", 3, 5)],
            )
            .unwrap();
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from, moves[0].to), (3, 4));
        assert!((moves[0].pass_rate - 17.0 / 24.0).abs() < 1e-12);
        let add = &s2.families["add"];
        assert_eq!(add.level, 4);
        assert!(add.window.is_empty());
        assert_eq!(add.visited, BTreeSet::from([3, 4]));
        // 16, then 13, then 11 of 24 passing: inside the band, no move; the
        // window rolls on, the oldest groups leaving.
        let moves = s
            .observe(
                &cfg,
                &[group("add", 3, 0), group("add", 3, 5), group("add", 3, 6)],
            )
            .unwrap();
        assert!(moves.is_empty(), "{moves:?}");
        assert_eq!(
            s.families["add"].window,
            VecDeque::from([(0, 8), (5, 8), (6, 8)])
        );
    }

    #[test]
    fn a_full_window_below_the_band_lowers_the_level_within_the_bounds() {
        let mut s = state();
        let cfg = cfg(2);
        // 1 of 16 = 0.0625 <= 0.10: mul at level 1 cannot go lower.
        assert!(s
            .observe(&cfg, &[group("mul", 1, 1), group("mul", 1, 0)])
            .unwrap()
            .is_empty());
        let moves = s
            .observe(&cfg, &[group("add", 3, 0), group("add", 3, 0)])
            .unwrap();
        assert_eq!((moves[0].from, moves[0].to), (3, 2));
        // Groups still arriving from the old level do not count for the new one.
        assert!(s
            .observe(&cfg, &[group("add", 3, 0), group("other", 2, 0)])
            .unwrap()
            .is_empty());
        assert!(s.families["add"].window.is_empty());
        let bounded = CurriculumSection {
            min_level: 2,
            ..cfg.clone()
        };
        assert!(s
            .observe(&bounded, &[group("add", 2, 0), group("add", 2, 0)])
            .unwrap()
            .is_empty());
        assert_eq!(s.families["add"].level, 2);
        let capped = CurriculumSection {
            max_level: 2,
            ..cfg
        };
        assert!(s
            .observe(&capped, &[group("add", 2, 8), group("add", 2, 8)])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn mixtures_follow_the_levels_and_evaluation_covers_the_visited_ones() {
        let base = Mixture::new(vec![
            MixtureEntry::family("add", 3, 2.0),
            MixtureEntry::family("mul", 1, 1.0),
        ])
        .unwrap();
        let mut s = CurriculumState::start(&base);
        s.observe(&cfg(1), &[group("add", 3, 8)]).unwrap();
        let now = s.mixture(&base).unwrap();
        let levels: Vec<(String, u32, f64)> = now
            .entries()
            .iter()
            .map(|e| match &e.source {
                Source::Family { task, level } => (task.clone(), *level, e.weight),
                Source::Set(_) => unreachable!(),
            })
            .collect();
        assert_eq!(levels, [("add".into(), 4, 2.0), ("mul".into(), 1, 1.0)]);
        let problem = now.draw(tasks::Split::Train, 1, 0).unwrap();
        assert!(problem.level == 4 || problem.task == "mul", "{problem:?}");
        let visited = s.visited_mixture(&base).unwrap();
        assert_eq!(visited.entries().len(), 3);
        assert_eq!(s.visited_count(), 3);
        assert_eq!(
            s.metrics(),
            BTreeMap::from([("curriculum/add".into(), 4), ("curriculum/mul".into(), 1)])
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<CurriculumState>(&json).unwrap(), s);
    }

    #[test]
    fn the_mixture_must_name_each_family_once_inside_the_bounds() {
        let twice = Mixture::new(vec![
            MixtureEntry::family("add", 3, 1.0),
            MixtureEntry::family("add", 4, 1.0),
        ])
        .unwrap();
        let m = check(&cfg(4), &twice).unwrap_err().to_string();
        assert!(m.contains("add appears twice"), "{m}");
        let high = Mixture::new(vec![MixtureEntry::family("add", 3, 1.0)]).unwrap();
        let capped = CurriculumSection {
            max_level: 2,
            ..cfg(4)
        };
        let m = check(&capped, &high).unwrap_err().to_string();
        assert!(
            m.contains("add starts at level 3, outside the curriculum's levels 1..=2"),
            "{m}"
        );
        check(&cfg(4), &high).unwrap();
        let reach = reachable_mixture(
            &capped,
            &Mixture::new(vec![MixtureEntry::family("add", 1, 1.0)]).unwrap(),
        )
        .unwrap();
        assert_eq!(reach.entries().len(), 2);
    }
}
