//! Train and held-out splits, and the proof that they never share a prompt.
//!
//! A problem is a pure function of `(task, level, seed)`. Seeds below 2^63
//! are training seeds; seeds from 2^63 up are held-out seeds, so the two
//! seed spaces are disjoint. On top of that, because two seeds can still
//! produce the same prompt in a small level:
//!
//! * the canonical held-out set of a `(task, level)` is the first
//!   [`Task::heldout_size`] *distinct* problems of its held-out seed space
//!   ([`HELDOUT_SIZE`] unless a family lowers it);
//! * a training draw whose prompt (by 64-bit hash) is in the held-out set of
//!   *any* family and level is redrawn from a further training seed, so no
//!   held-out prompt text is ever trained on, even across families that
//!   share a prompt form (`arith` and `add`);
//! * [`audit`] proves it by comparing full prompt texts, independently of
//!   the hash.
//!
//! The frozen copies under `data/heldout/` ([`load_frozen_heldout`]) are
//! these canonical sets written as JSONL, so evaluation numbers compare
//! across versions; a test regenerates them byte for byte.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::jsonl;
use crate::problem::Problem;
use crate::rng::{hash_str, mix64, Rng};
use crate::task::{all, check_level, find, Generated, Task};

/// Held-out problems per `(task, level)` unless a family says fewer.
pub const HELDOUT_SIZE: usize = 100;

/// Where the frozen held-out sets live, relative to the workspace root.
pub const HELDOUT_DIR: &str = "data/heldout";

/// Training indices (and seeds) are `0..TRAIN_SEEDS`.
const TRAIN_SEEDS: u64 = 1 << 63;
/// Held-out seeds are `HELDOUT_SEED_BASE + k`.
const HELDOUT_SEED_BASE: u64 = 1 << 63;
/// Seeds tried per held-out problem before a level counts as exhausted.
const HELDOUT_PROBES_PER_PROBLEM: usize = 64;
/// Training seeds tried per index before giving up.
const MAX_TRAIN_DRAWS: u32 = 1_000;

/// Which side of the train / held-out divide a problem comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Problems to learn from.
    Train,
    /// Problems to measure on; never trained on.
    Heldout,
}

impl Split {
    /// `train` or `heldout`, as in ids, files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "train" => Ok(Split::Train),
            "heldout" => Ok(Split::Heldout),
            other => Err(Error::UnknownSplit {
                name: other.to_string(),
            }),
        }
    }
}

/// Problem `index` of a split: for `Train` any index below 2^63, for
/// `Heldout` an index into the canonical held-out set. Its id is
/// `task/level/split/index`.
pub fn problem(task: &str, level: u32, split: Split, index: u64) -> Result<Problem> {
    let family = find(task)?;
    check_level(family, level)?;
    match split {
        Split::Train => train_problem(family, level, index).map(|(problem, _)| problem),
        Split::Heldout => {
            let set = heldout_set(family, level);
            usize::try_from(index)
                .ok()
                .and_then(|i| set.get(i))
                .cloned()
                .ok_or_else(|| Error::IndexOutOfRange {
                    task: family.name().to_string(),
                    level,
                    split: Split::Heldout.name(),
                    index,
                    size: set.len() as u64,
                })
        }
    }
}

/// The canonical held-out set of `(task, level)`, generated once per process.
pub fn heldout(task: &str, level: u32) -> Result<&'static [Problem]> {
    let family = find(task)?;
    check_level(family, level)?;
    Ok(heldout_set(family, level))
}

/// The problem a family makes from one seed, before any split logic.
pub(crate) fn generate_seeded(task: &dyn Task, level: u32, seed: u64) -> Generated {
    let stream = mix64(hash_str(task.name()) ^ mix64(u64::from(level) ^ mix64(seed)));
    task.generate(&mut Rng::new(stream), level)
}

fn problem_id(task: &str, level: u32, split: Split, index: u64) -> String {
    format!("{task}/{level}/{split}/{index}")
}

/// Training problem `index` and how many redraws it took to avoid every
/// held-out prompt.
fn train_problem(family: &dyn Task, level: u32, index: u64) -> Result<(Problem, u32)> {
    if index >= TRAIN_SEEDS {
        return Err(Error::IndexOutOfRange {
            task: family.name().to_string(),
            level,
            split: Split::Train.name(),
            index,
            size: TRAIN_SEEDS,
        });
    }
    let excluded = excluded_hashes();
    for attempt in 0..MAX_TRAIN_DRAWS {
        let seed = match attempt {
            0 => index,
            n => mix64(index ^ mix64(u64::from(n))) % TRAIN_SEEDS,
        };
        let generated = generate_seeded(family, level, seed);
        if !excluded.contains(&hash_str(&generated.prompt)) {
            let id = problem_id(family.name(), level, Split::Train, index);
            return Ok((generated.into_problem(family.name(), level, id), attempt));
        }
    }
    Err(Error::Exhausted {
        task: family.name().to_string(),
        level,
        index,
        attempts: MAX_TRAIN_DRAWS,
    })
}

/// One lazily built held-out set per family and level.
fn heldout_set(family: &dyn Task, level: u32) -> &'static [Problem] {
    static SETS: OnceLock<Vec<Vec<OnceLock<Vec<Problem>>>>> = OnceLock::new();
    let sets = SETS.get_or_init(|| {
        all()
            .iter()
            .map(|t| (0..t.max_level()).map(|_| OnceLock::new()).collect())
            .collect()
    });
    let position = all().iter().position(|t| t.name() == family.name());
    match position.and_then(|f| sets[f].get(level as usize - 1)) {
        Some(cell) => cell.get_or_init(|| build_heldout(family, level)),
        // Only registered families reach here; an unregistered one has no set.
        None => &[],
    }
}

fn build_heldout(family: &dyn Task, level: u32) -> Vec<Problem> {
    let size = family.heldout_size(level);
    let mut seen = HashSet::new();
    let mut set = Vec::with_capacity(size);
    for k in 0..(size * HELDOUT_PROBES_PER_PROBLEM) as u64 {
        if set.len() == size {
            break;
        }
        let generated = generate_seeded(family, level, HELDOUT_SEED_BASE + k);
        if seen.insert(generated.prompt.clone()) {
            let id = problem_id(family.name(), level, Split::Heldout, set.len() as u64);
            set.push(generated.into_problem(family.name(), level, id));
        }
    }
    set
}

/// Every held-out problem of every family and level.
fn all_heldout() -> impl Iterator<Item = &'static Problem> {
    all().iter().flat_map(|family| {
        (1..=family.max_level()).flat_map(move |level| heldout_set(*family, level))
    })
}

/// Prompt hashes of every held-out problem: what training draws avoid.
fn excluded_hashes() -> &'static HashSet<u64> {
    static EXCLUDED: OnceLock<HashSet<u64>> = OnceLock::new();
    EXCLUDED.get_or_init(|| all_heldout().map(|p| hash_str(&p.prompt)).collect())
}

/// What [`audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAudit {
    /// Training indices generated.
    pub draws: u64,
    /// Indices whose first seed gave a held-out prompt and were redrawn.
    pub redrawn: u64,
    /// Training prompts equal (as full text) to a held-out prompt. Zero
    /// unless the split is broken.
    pub leaks: u64,
}

/// Generate training problems `0..draws` of `(task, level)` and count those
/// whose full prompt text equals any held-out prompt of any family.
pub fn audit(task: &str, level: u32, draws: u64) -> Result<SplitAudit> {
    static PROMPTS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let family = find(task)?;
    check_level(family, level)?;
    let heldout_prompts =
        PROMPTS.get_or_init(|| all_heldout().map(|p| p.prompt.as_str()).collect());
    let mut audit = SplitAudit {
        draws,
        redrawn: 0,
        leaks: 0,
    };
    for index in 0..draws {
        let (problem, redraws) = train_problem(family, level, index)?;
        audit.redrawn += u64::from(redraws > 0);
        audit.leaks += u64::from(heldout_prompts.contains(problem.prompt.as_str()));
    }
    Ok(audit)
}

/// Which part of a user's problem set a prompt belongs to: about one in ten
/// prompts (by hash, so the same prompt always lands on the same side) is
/// held out.
pub(crate) fn user_split(prompt: &str) -> Split {
    if hash_str(prompt).is_multiple_of(10) {
        Split::Heldout
    } else {
        Split::Train
    }
}

/// `<task>-L<level>.jsonl`: a frozen held-out file's name.
pub fn heldout_file_name(task: &str, level: u32) -> String {
    format!("{task}-L{level}.jsonl")
}

/// The frozen held-out set of `(task, level)` from `dir` (the workspace's
/// [`HELDOUT_DIR`], resolved by the caller).
pub fn load_frozen_heldout(dir: &Path, task: &str, level: u32) -> Result<Vec<Problem>> {
    let family = find(task)?;
    check_level(family, level)?;
    let path: PathBuf = dir.join(heldout_file_name(task, level));
    jsonl::read_problems(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_spaces_are_disjoint_and_ids_say_where_from() {
        let train = problem("arith", 3, Split::Train, 5).unwrap();
        let held = problem("arith", 3, Split::Heldout, 5).unwrap();
        assert_eq!(train.id, "arith/3/train/5");
        assert_eq!(held.id, "arith/3/heldout/5");
        assert_ne!(train.prompt, held.prompt);
        assert_eq!(problem("arith", 3, Split::Train, 5).unwrap(), train);
    }

    #[test]
    fn heldout_sets_are_distinct_and_full() {
        for family in all() {
            for level in 1..=family.max_level() {
                let set = heldout(family.name(), level).unwrap();
                assert_eq!(
                    set.len(),
                    family.heldout_size(level),
                    "{} L{level}",
                    family.name()
                );
                let prompts: HashSet<_> = set.iter().map(|p| &p.prompt).collect();
                assert_eq!(prompts.len(), set.len(), "{} L{level}", family.name());
            }
        }
    }

    #[test]
    fn bad_coordinates_are_named() {
        let err = problem("nope", 1, Split::Train, 0).unwrap_err();
        assert!(err.to_string().contains("'nope'"), "{err}");
        let err = problem("arith", 99, Split::Train, 0).unwrap_err();
        assert!(err.to_string().contains("99"), "{err}");
        let err = problem("arith", 2, Split::Heldout, 100).unwrap_err();
        assert!(err.to_string().contains("index 100"), "{err}");
        assert!(problem("arith", 2, Split::Train, u64::MAX).is_err());
        assert!("test".parse::<Split>().is_err());
    }

    #[test]
    fn small_levels_are_redrawn_around_the_heldout_set() {
        // add level 1 has 100 distinct problems, a fifth of them held out,
        // so the guard has real work to do.
        let audit = audit("add", 1, 2_000).unwrap();
        assert!(audit.redrawn > 100, "{audit:?}");
        assert_eq!(audit.leaks, 0);
    }
}
