//! The task families and how a problem is made from `(task, level, seed)`.

use crate::error::{Error, Result};
use crate::families;
use crate::problem::{Check, Problem};
use crate::rng::Rng;

/// What a family's generator produces; the split adds the identity
/// (id, task, level) to make a [`Problem`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The text the model is asked.
    pub prompt: String,
    /// Reference answer in canonical form.
    pub answer: String,
    /// Worked solution in the output format.
    pub solution: String,
    /// What the verifier needs.
    pub check: Check,
    /// The problem's meaning, as the family defines it: two problems with
    /// the same key are the same problem for the train / held-out split
    /// (`4+5` and `5+4`, countdown numbers in another order, a program with
    /// its variables renamed). Keys start with a kind (`+`, `gcd`,
    /// `countdown`...) so that families asking the same question share
    /// keys and unrelated ones do not.
    pub key: String,
}

impl Generated {
    /// This problem under an identity.
    pub(crate) fn into_problem(self, task: &str, level: u32, id: String) -> Problem {
        Problem {
            id,
            task: task.to_string(),
            level,
            prompt: self.prompt,
            answer: self.answer,
            solution: self.solution,
            check: self.check,
        }
    }
}

/// One problem family. Generation must be a pure function of the RNG stream
/// and the level: no clocks, no global state, no floating point that could
/// differ between machines.
pub trait Task: Sync {
    /// Short lowercase name used on the command line and in configs.
    fn name(&self) -> &'static str;
    /// One line saying what the family asks.
    fn summary(&self) -> &'static str;
    /// Highest level; levels are `1..=max_level()`.
    fn max_level(&self) -> u32;
    /// The valid levels, `1..=max_level()`: the range a curriculum may move
    /// this family's level in.
    fn levels(&self) -> std::ops::RangeInclusive<u32> {
        1..=self.max_level()
    }
    /// What a level means (its knobs), for `verity tasks list`.
    fn level_doc(&self, level: u32) -> String;
    /// How many distinct problems the level holds out for evaluation.
    /// Lower it for a level with few distinct problems, so that training
    /// keeps most of them (a tenth or less of the level is a good share).
    fn heldout_size(&self, _level: u32) -> usize {
        crate::split::HELDOUT_SIZE
    }
    /// Make one problem. `level` is already validated.
    fn generate(&self, rng: &mut Rng, level: u32) -> Generated;
}

/// Every built-in family, in the order `verity tasks list` shows them.
pub fn all() -> &'static [&'static dyn Task] {
    families::ALL
}

/// The family called `name`.
pub fn find(name: &str) -> Result<&'static dyn Task> {
    all()
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .ok_or_else(|| Error::UnknownTask {
            name: name.to_string(),
            known: all()
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Check that `level` exists for `task`.
pub fn check_level(task: &dyn Task, level: u32) -> Result<()> {
    if !task.levels().contains(&level) {
        return Err(Error::LevelOutOfRange {
            task: task.name().to_string(),
            level,
            max: task.max_level(),
        });
    }
    Ok(())
}
