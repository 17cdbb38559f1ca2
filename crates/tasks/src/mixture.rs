//! A weighted mixture of families, levels and user problem sets: what a
//! trainer draws its prompts from.
//!
//! [`Mixture::draw`] is a pure function of `(split, seed, index)`: a trainer
//! that stores the next index resumes exactly where it stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::jsonl::ProblemSet;
use crate::problem::Problem;
use crate::rng::{mix64, Rng};
use crate::split::{heldout, problem, Split};
use crate::task::{check_level, find};

/// Where one entry's problems come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A built-in family at one level.
    Family {
        /// Family name.
        task: String,
        /// Level, `1..=max_level`.
        level: u32,
    },
    /// A user's problem set.
    Set(Arc<ProblemSet>),
}

/// One weighted entry of a mixture.
#[derive(Debug, Clone)]
pub struct MixtureEntry {
    /// Where its problems come from.
    pub source: Source,
    /// Relative weight, finite and >= 0.
    pub weight: f64,
}

impl MixtureEntry {
    /// A family at one level (checked when the mixture is built).
    pub fn family(task: &str, level: u32, weight: f64) -> Self {
        Self {
            source: Source::Family {
                task: task.to_string(),
                level,
            },
            weight,
        }
    }

    /// A user problem set.
    pub fn set(set: Arc<ProblemSet>, weight: f64) -> Self {
        Self {
            source: Source::Set(set),
            weight,
        }
    }

    fn label(&self, position: usize) -> String {
        match &self.source {
            Source::Family { task, level } => format!("entry {position} ({task} level {level})"),
            Source::Set(set) => format!("entry {position} (set '{}')", set.name()),
        }
    }
}

/// One mixture entry as written in a config file: either `task` and
/// `level`, or `jsonl` (a problem file), plus `weight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// A built-in family name. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The family's level; required with `task`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// A JSONL problem file, relative to the config's folder. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<PathBuf>,
    /// Relative weight. Default: 1.0.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

/// A validated weighted mixture.
#[derive(Debug, Clone)]
pub struct Mixture {
    entries: Vec<MixtureEntry>,
    /// Running totals of the weights, for picking an entry.
    cumulative: Vec<f64>,
}

impl Mixture {
    /// Validate entries: known families and levels, finite non-negative
    /// weights with a positive total, user sets with problems on both sides
    /// of the split. Errors name the entry (counted from 1).
    pub fn new(entries: Vec<MixtureEntry>) -> Result<Self> {
        if entries.is_empty() {
            return Err(Error::Mixture("no entries".to_string()));
        }
        let mut cumulative = Vec::with_capacity(entries.len());
        let mut total = 0.0;
        for (i, entry) in entries.iter().enumerate() {
            let bad = |why: String| Error::Mixture(format!("{}: {why}", entry.label(i + 1)));
            if !entry.weight.is_finite() || entry.weight < 0.0 {
                return Err(bad(format!(
                    "weight must be finite and >= 0, not {}",
                    entry.weight
                )));
            }
            match &entry.source {
                Source::Family { task, level } => {
                    let family = find(task).map_err(|e| bad(e.to_string()))?;
                    check_level(family, *level).map_err(|e| bad(e.to_string()))?;
                }
                Source::Set(set) => {
                    for split in [Split::Train, Split::Heldout] {
                        if set.len(split) == 0 {
                            return Err(bad(format!(
                                "no {split} problems ({} in the set; about one in ten is held out)",
                                set.problems().len()
                            )));
                        }
                    }
                }
            }
            total += entry.weight;
            cumulative.push(total);
        }
        if total <= 0.0 {
            return Err(Error::Mixture("the weights sum to 0".to_string()));
        }
        Ok(Self {
            entries,
            cumulative,
        })
    }

    /// Build from config entries; `base` resolves relative `jsonl` paths.
    pub fn from_specs(specs: &[EntrySpec], base: &Path) -> Result<Self> {
        let mut entries = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let bad = |why: &str| Error::Mixture(format!("entry {}: {why}", i + 1));
            let entry = match (&spec.task, spec.level, &spec.jsonl) {
                (Some(task), Some(level), None) => MixtureEntry::family(task, level, spec.weight),
                (Some(_), None, None) => return Err(bad("`task` needs a `level`")),
                (None, None, Some(path)) => {
                    let set = ProblemSet::load(&base.join(path))
                        .map_err(|e| Error::Mixture(format!("entry {}: {e}", i + 1)))?;
                    MixtureEntry::set(Arc::new(set), spec.weight)
                }
                (None, Some(_), Some(_)) => {
                    return Err(bad("`level` belongs with `task`, not `jsonl`"))
                }
                _ => return Err(bad("give either `task` and `level`, or `jsonl`")),
            };
            entries.push(entry);
        }
        Self::new(entries)
    }

    /// The entries, as given.
    pub fn entries(&self) -> &[MixtureEntry] {
        &self.entries
    }

    /// Draw problem `index` of the stream named by `seed`. The same
    /// `(split, seed, index)` always gives the same problem. Training draws
    /// pick a fresh training problem of the entry; held-out draws pick from
    /// its held-out set (so they repeat once the set is used up).
    pub fn draw(&self, split: Split, seed: u64, index: u64) -> Result<Problem> {
        let salt = match split {
            Split::Train => 0,
            Split::Heldout => 0x5EED_4E1D,
        };
        let mut rng = Rng::new(mix64(seed ^ mix64(index ^ salt)));
        let entry = self.pick(&mut rng);
        match (&entry.source, split) {
            (Source::Family { task, level }, Split::Train) => {
                problem(task, *level, Split::Train, rng.next_u64() >> 1)
            }
            (Source::Family { task, level }, Split::Heldout) => {
                let set = heldout(task, *level)?;
                if set.is_empty() {
                    return Err(Error::Mixture(format!(
                        "{task} level {level} holds out no problems"
                    )));
                }
                Ok(set[rng.below(set.len())].clone())
            }
            (Source::Set(set), split) => {
                let i = rng.below(set.len(split));
                set.get(split, i).cloned().ok_or_else(|| {
                    Error::Mixture(format!("set '{}' has no {split} problems", set.name()))
                })
            }
        }
    }

    fn pick(&self, rng: &mut Rng) -> &MixtureEntry {
        let total = self.cumulative[self.cumulative.len() - 1];
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let at = self.cumulative.partition_point(|&c| c <= unit * total);
        &self.entries[at.min(self.entries.len() - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Check;

    fn two_families() -> Mixture {
        Mixture::new(vec![
            MixtureEntry::family("add", 2, 3.0),
            MixtureEntry::family("mul", 2, 1.0),
        ])
        .unwrap()
    }

    #[test]
    fn draws_are_pure_and_follow_the_weights() {
        let mix = two_families();
        let draws: Vec<Problem> = (0..4_000)
            .map(|i| mix.draw(Split::Train, 7, i).unwrap())
            .collect();
        let adds = draws.iter().filter(|p| p.task == "add").count();
        assert!((2_800..3_200).contains(&adds), "{adds}");
        assert_eq!(mix.draw(Split::Train, 7, 123).unwrap(), draws[123]);
        assert_ne!(mix.draw(Split::Train, 8, 123).unwrap(), draws[123]);
        let held = mix.draw(Split::Heldout, 7, 5).unwrap();
        assert!(held.id.contains("/heldout/"), "{}", held.id);
    }

    #[test]
    fn zero_weight_entries_are_never_drawn() {
        let mix = Mixture::new(vec![
            MixtureEntry::family("add", 2, 0.0),
            MixtureEntry::family("mul", 2, 1.0),
        ])
        .unwrap();
        assert!((0..500).all(|i| mix.draw(Split::Train, 1, i).unwrap().task == "mul"));
    }

    #[test]
    fn errors_name_the_entry() {
        let err = |entries| Mixture::new(entries).unwrap_err().to_string();
        let e = err(vec![
            MixtureEntry::family("add", 2, 1.0),
            MixtureEntry::family("add", 99, 1.0),
        ]);
        assert!(e.contains("entry 2 (add level 99)"), "{e}");
        let e = err(vec![MixtureEntry::family("nope", 1, 1.0)]);
        assert!(e.contains("entry 1 (nope level 1): unknown task"), "{e}");
        let e = err(vec![MixtureEntry::family("add", 1, f64::NAN)]);
        assert!(e.contains("weight"), "{e}");
        assert!(err(vec![MixtureEntry::family("add", 1, 0.0)]).contains("sum to 0"));
        let specs = [EntrySpec {
            task: Some("add".into()),
            level: None,
            jsonl: None,
            weight: 1.0,
        }];
        let e = Mixture::from_specs(&specs, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("entry 1: `task` needs a `level`"), "{e}");
    }

    #[test]
    fn user_sets_draw_from_their_own_split() {
        let problems: Vec<Problem> = (0..100)
            .map(|i| Problem {
                id: format!("s/{i}"),
                task: "s".into(),
                level: 1,
                prompt: format!("question {i}"),
                answer: "1".into(),
                solution: String::new(),
                check: Check::Number,
            })
            .collect();
        let set = Arc::new(ProblemSet::new("s", problems));
        let mix = Mixture::new(vec![MixtureEntry::set(set.clone(), 1.0)]).unwrap();
        let held: Vec<String> = (0..set.len(Split::Heldout))
            .filter_map(|i| set.get(Split::Heldout, i).map(|p| p.prompt.clone()))
            .collect();
        for i in 0..300 {
            let train = mix.draw(Split::Train, 0, i).unwrap();
            assert!(!held.contains(&train.prompt));
            let eval = mix.draw(Split::Heldout, 0, i).unwrap();
            assert!(held.contains(&eval.prompt));
        }
    }
}
