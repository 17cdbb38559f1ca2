//! Train and held-out splits, and the proof that they never share a
//! problem, by meaning as well as by text.
//!
//! A problem is a pure function of `(task, level, seed)`. Seeds below 2^63
//! are training seeds; seeds from 2^63 up are held-out seeds, so the two
//! seed spaces are disjoint. Because two seeds can still make the same
//! problem, or the same problem in other words (`4+5` and `5+4`), every
//! family gives each problem a canonical key ([`Generated::key`]), and:
//!
//! * the held-out sets of all families and levels are built together, in
//!   registration order: the set of a `(task, level)` is the first
//!   [`Task::heldout_size`] problems of its held-out seed space whose key
//!   and prompt no earlier held-out problem has, so no problem sits in two
//!   held-out files, even across families that share a question (`arith`
//!   and `add`);
//! * a training draw whose key or prompt (by 64-bit hash) is held out
//!   anywhere is redrawn from a further training seed;
//! * [`audit`] proves it by comparing full keys and full prompt texts,
//!   independently of the hashes.
//!
//! The frozen copies under `data/heldout/<version>/` ([`load_frozen_heldout`])
//! are these sets written as JSONL, so evaluation numbers compare across
//! versions of the code; a test regenerates the current version byte for
//! byte. When a change alters a held-out set, [`HELDOUT_VERSION`] names a
//! new version, and the files of the old one stay where they are.

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

/// Where the frozen held-out sets live, relative to the workspace root: one
/// folder per version, `data/heldout/v2/add-L3.jsonl`.
pub const HELDOUT_DIR: &str = "data/heldout";

/// The version of the held-out sets this code generates: the folder under
/// [`HELDOUT_DIR`] that holds them, and what evaluation records name.
/// `v1` had the 13 original families with prompts deduplicated as text;
/// `v2` deduplicates by canonical key, adds 12 families and composes
/// `code_io` and `code_trace` programs from parts.
pub const HELDOUT_VERSION: &str = "v2";

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
    keyed_problem(task, level, split, index).map(|(problem, _)| problem)
}

/// The canonical key of problem `index` of a split (see [`Generated::key`]).
pub fn canonical_key(task: &str, level: u32, split: Split, index: u64) -> Result<String> {
    keyed_problem(task, level, split, index).map(|(_, key)| key)
}

fn keyed_problem(task: &str, level: u32, split: Split, index: u64) -> Result<(Problem, String)> {
    let family = find(task)?;
    check_level(family, level)?;
    match split {
        Split::Train => train_problem(family, level, index).map(|drawn| (drawn.problem, drawn.key)),
        Split::Heldout => {
            let set = heldout_set(family, level);
            usize::try_from(index)
                .ok()
                .and_then(|i| set.problems.get(i).zip(set.keys.get(i)))
                .map(|(p, k)| (p.clone(), k.clone()))
                .ok_or_else(|| Error::IndexOutOfRange {
                    task: family.name().to_string(),
                    level,
                    split: Split::Heldout.name(),
                    index,
                    size: set.problems.len() as u64,
                })
        }
    }
}

/// The canonical held-out set of `(task, level)`, generated once per process.
pub fn heldout(task: &str, level: u32) -> Result<&'static [Problem]> {
    let family = find(task)?;
    check_level(family, level)?;
    Ok(&heldout_set(family, level).problems)
}

/// The canonical keys of the held-out set of `(task, level)`, in order.
pub fn heldout_keys(task: &str, level: u32) -> Result<&'static [String]> {
    let family = find(task)?;
    check_level(family, level)?;
    Ok(&heldout_set(family, level).keys)
}

/// The problem a family makes from one seed, before any split logic.
pub(crate) fn generate_seeded(task: &dyn Task, level: u32, seed: u64) -> Generated {
    let stream = mix64(hash_str(task.name()) ^ mix64(u64::from(level) ^ mix64(seed)));
    task.generate(&mut Rng::new(stream), level)
}

fn problem_id(task: &str, level: u32, split: Split, index: u64) -> String {
    format!("{task}/{level}/{split}/{index}")
}

/// A training problem with its key and how many redraws it took.
struct Drawn {
    problem: Problem,
    key: String,
    redraws: u32,
}

/// Training problem `index`: the first of its seeds whose key and prompt
/// are held out nowhere.
fn train_problem(family: &dyn Task, level: u32, index: u64) -> Result<Drawn> {
    if index >= TRAIN_SEEDS {
        return Err(Error::IndexOutOfRange {
            task: family.name().to_string(),
            level,
            split: Split::Train.name(),
            index,
            size: TRAIN_SEEDS,
        });
    }
    let held = registry();
    for attempt in 0..MAX_TRAIN_DRAWS {
        let seed = match attempt {
            0 => index,
            n => mix64(index ^ mix64(u64::from(n))) % TRAIN_SEEDS,
        };
        let mut generated = generate_seeded(family, level, seed);
        if !held.excludes(&generated) {
            let id = problem_id(family.name(), level, Split::Train, index);
            let key = std::mem::take(&mut generated.key);
            return Ok(Drawn {
                problem: generated.into_problem(family.name(), level, id),
                key,
                redraws: attempt,
            });
        }
    }
    Err(Error::Exhausted {
        task: family.name().to_string(),
        level,
        index,
        attempts: MAX_TRAIN_DRAWS,
    })
}

/// One held-out set and the keys of its problems.
#[derive(Default)]
struct HeldoutSet {
    problems: Vec<Problem>,
    keys: Vec<String>,
}

/// Every held-out set, and what training draws avoid.
struct Registry {
    /// By family (registration order), then level - 1.
    sets: Vec<Vec<HeldoutSet>>,
    /// Hashes of every held-out key.
    key_hashes: HashSet<u64>,
    /// Hashes of every held-out prompt.
    prompt_hashes: HashSet<u64>,
}

impl Registry {
    fn excludes(&self, generated: &Generated) -> bool {
        self.key_hashes.contains(&hash_str(&generated.key))
            || self.prompt_hashes.contains(&hash_str(&generated.prompt))
    }
}

/// The held-out sets of every family and level, built once, together and
/// in a fixed order, so that a set never depends on which one was asked
/// for first and a family added at the end changes no earlier set.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut keys = HashSet::new();
        let mut prompts = HashSet::new();
        let sets = all()
            .iter()
            .map(|family| {
                family
                    .levels()
                    .map(|level| build_heldout(*family, level, &mut keys, &mut prompts))
                    .collect()
            })
            .collect();
        Registry {
            sets,
            key_hashes: keys.iter().map(|k| hash_str(k)).collect(),
            prompt_hashes: prompts.iter().map(|p| hash_str(p)).collect(),
        }
    })
}

fn heldout_set(family: &dyn Task, level: u32) -> &'static HeldoutSet {
    static EMPTY: HeldoutSet = HeldoutSet {
        problems: Vec::new(),
        keys: Vec::new(),
    };
    let position = all().iter().position(|t| t.name() == family.name());
    position
        .and_then(|f| registry().sets[f].get(level as usize - 1))
        // Only registered families reach here; an unregistered one has no set.
        .unwrap_or(&EMPTY)
}

/// The first distinct problems of a level's held-out seeds whose keys and
/// prompts are not yet taken (`keys` and `prompts` hold those of the sets
/// built before).
fn build_heldout(
    family: &dyn Task,
    level: u32,
    keys: &mut HashSet<String>,
    prompts: &mut HashSet<String>,
) -> HeldoutSet {
    let size = family.heldout_size(level);
    let mut set = HeldoutSet::default();
    for k in 0..(size * HELDOUT_PROBES_PER_PROBLEM) as u64 {
        if set.problems.len() == size {
            break;
        }
        let mut generated = generate_seeded(family, level, HELDOUT_SEED_BASE + k);
        if keys.contains(&generated.key) || prompts.contains(&generated.prompt) {
            continue;
        }
        keys.insert(generated.key.clone());
        prompts.insert(generated.prompt.clone());
        let key = std::mem::take(&mut generated.key);
        let id = problem_id(
            family.name(),
            level,
            Split::Heldout,
            set.problems.len() as u64,
        );
        set.problems
            .push(generated.into_problem(family.name(), level, id));
        set.keys.push(key);
    }
    set
}

/// What [`audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAudit {
    /// Training indices generated.
    pub draws: u64,
    /// Indices whose first seed gave a held-out key or prompt and were
    /// redrawn.
    pub redrawn: u64,
    /// Training problems whose canonical key equals (as full text) the key
    /// of a held-out problem of any family and level. Zero unless the split
    /// is broken.
    pub key_leaks: u64,
    /// Training prompts equal (as full text) to a held-out prompt. Zero
    /// unless the split is broken.
    pub prompt_leaks: u64,
}

/// Generate training problems `0..draws` of `(task, level)` and count those
/// whose full key or full prompt text equals that of any held-out problem
/// of any family and level.
pub fn audit(task: &str, level: u32, draws: u64) -> Result<SplitAudit> {
    static HELD: OnceLock<(HashSet<&'static str>, HashSet<&'static str>)> = OnceLock::new();
    let family = find(task)?;
    check_level(family, level)?;
    let (keys, prompts) = HELD.get_or_init(|| {
        let sets = registry().sets.iter().flatten();
        let keys = sets.clone().flat_map(|s| &s.keys).map(String::as_str);
        let prompts = sets.flat_map(|s| &s.problems).map(|p| p.prompt.as_str());
        (keys.collect(), prompts.collect())
    });
    let mut audit = SplitAudit {
        draws,
        redrawn: 0,
        key_leaks: 0,
        prompt_leaks: 0,
    };
    for index in 0..draws {
        let drawn = train_problem(family, level, index)?;
        audit.redrawn += u64::from(drawn.redraws > 0);
        audit.key_leaks += u64::from(keys.contains(drawn.key.as_str()));
        audit.prompt_leaks += u64::from(prompts.contains(drawn.problem.prompt.as_str()));
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

/// The frozen held-out set of `(task, level)` of the current
/// [`HELDOUT_VERSION`], from `dir` (the workspace's [`HELDOUT_DIR`],
/// resolved by the caller): `dir/<version>/<task>-L<level>.jsonl`.
pub fn load_frozen_heldout(dir: &Path, task: &str, level: u32) -> Result<Vec<Problem>> {
    let family = find(task)?;
    check_level(family, level)?;
    let path: PathBuf = dir
        .join(HELDOUT_VERSION)
        .join(heldout_file_name(task, level));
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
    fn heldout_sets_are_full_and_share_no_key_or_prompt() {
        let mut keys = HashSet::new();
        let mut prompts = HashSet::new();
        for family in all() {
            for level in family.levels() {
                let set = heldout(family.name(), level).unwrap();
                let set_keys = heldout_keys(family.name(), level).unwrap();
                let at = format!("{} L{level}", family.name());
                assert_eq!(set.len(), family.heldout_size(level), "{at}");
                assert_eq!(set_keys.len(), set.len(), "{at}");
                for (p, k) in set.iter().zip(set_keys) {
                    assert!(keys.insert(k.clone()), "{at}: key {k} held out twice");
                    assert!(prompts.insert(p.prompt.clone()), "{at}: {}", p.prompt);
                }
            }
        }
    }

    #[test]
    fn keys_are_those_of_the_problems() {
        let key = canonical_key("add", 3, Split::Heldout, 4).unwrap();
        assert_eq!(key, heldout_keys("add", 3).unwrap()[4]);
        let train = canonical_key("add", 3, Split::Train, 4).unwrap();
        assert!(!heldout_keys("add", 3).unwrap().contains(&train));
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
        // add level 1 has 55 distinct problems by meaning; its own held-out
        // set and arith's additions take 12 of them, so the guard has
        // real work to do.
        let audit = audit("add", 1, 2_000).unwrap();
        assert!(audit.redrawn > 100, "{audit:?}");
        assert_eq!((audit.key_leaks, audit.prompt_leaks), (0, 0));
    }
}
