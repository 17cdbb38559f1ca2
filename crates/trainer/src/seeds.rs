//! Every random choice of a run comes from a stream named by
//! `(run seed, purpose, step)`, never from one long generator: a run resumed
//! at step N draws exactly what it would have drawn without stopping.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tasks::Rng;

/// What a random stream is used for; each purpose gets independent streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Random initial weights.
    Init,
    /// Which training problems SFT sees (a seed for `Mixture::draw`).
    SftData,
    /// Which training prompts GRPO samples (a seed for `Mixture::draw`).
    GrpoData,
    /// Sampling GRPO completions.
    Rollout,
    /// Sampling completions for held-out pass@k.
    EvalSampling,
}

impl Purpose {
    fn tag(self) -> u64 {
        match self {
            Purpose::Init => 1,
            Purpose::SftData => 2,
            Purpose::GrpoData => 3,
            Purpose::Rollout => 4,
            Purpose::EvalSampling => 5,
        }
    }
}

/// A 64-bit seed for `(run_seed, purpose, index)`, well mixed (SplitMix64)
/// so nearby inputs give unrelated seeds.
pub(crate) fn seed_for(run_seed: u64, purpose: Purpose, index: u64) -> u64 {
    let a = Rng::new(run_seed).next_u64();
    let b = Rng::new(a ^ purpose.tag()).next_u64();
    Rng::new(b ^ index).next_u64()
}

/// A generator for `(run_seed, purpose, index)`.
pub(crate) fn rng_for(run_seed: u64, purpose: Purpose, index: u64) -> StdRng {
    StdRng::seed_from_u64(seed_for(run_seed, purpose, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_are_fixed_by_their_name_and_differ_between_names() {
        let a = seed_for(7, Purpose::Rollout, 3);
        assert_eq!(a, seed_for(7, Purpose::Rollout, 3));
        assert_ne!(a, seed_for(7, Purpose::Rollout, 4));
        assert_ne!(a, seed_for(7, Purpose::EvalSampling, 3));
        assert_ne!(a, seed_for(8, Purpose::Rollout, 3));
        assert_eq!(
            rng_for(1, Purpose::Init, 0).next_u64(),
            rng_for(1, Purpose::Init, 0).next_u64()
        );
    }
}
