//! The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language
//! Models Trained on Code").
//!
//! From `n` samples of which `c` are correct, the probability that at least one
//! of `k` samples drawn without replacement is correct is
//! `1 - C(n-c, k) / C(n, k)`. The binomials overflow for realistic `n`, so the
//! ratio is computed as the product `prod_{i=n-c+1}^{n} (1 - k/i)`, which stays
//! in [0, 1] at every step.

use crate::{Error, Result};

/// Unbiased estimate of pass@k from `n` samples with `c` correct.
///
/// Returns 1 when fewer than `k` samples are wrong (every k-subset holds a
/// correct one) and 0 when none is correct.
///
/// # Errors
///
/// `k` of 0, `k` larger than `n`, or `c` larger than `n`.
///
/// ```
/// use trainer::pass_at_k;
///
/// // 10 samples, 3 correct: pass@1 is the plain accuracy.
/// assert!((pass_at_k(10, 3, 1).unwrap() - 0.3).abs() < 1e-12);
/// // Fewer than k wrong samples: every draw of k contains a correct one.
/// assert_eq!(pass_at_k(10, 8, 3).unwrap(), 1.0);
/// ```
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Result<f64> {
    if k == 0 {
        return Err(Error::invalid("k", "pass@k needs k >= 1, got 0"));
    }
    if k > n {
        return Err(Error::invalid(
            "k",
            format!("pass@{k} needs at least {k} samples per problem, got n = {n}"),
        ));
    }
    if c > n {
        return Err(Error::invalid(
            "pass@k",
            format!("{c} correct samples out of only n = {n}"),
        ));
    }
    if n - c < k {
        return Ok(1.0);
    }
    // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    let all_wrong: f64 = (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    Ok(1.0 - all_wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fraction of all k-subsets of `n` samples (the first `c` correct) that
    /// hold at least one correct sample, by enumerating every subset.
    fn brute_force(n: usize, c: usize, k: usize) -> f64 {
        let (mut hit, mut total) = (0u64, 0u64);
        for subset in 0u32..(1 << n) {
            if subset.count_ones() as usize != k {
                continue;
            }
            total += 1;
            if (0..c).any(|i| subset & (1 << i) != 0) {
                hit += 1;
            }
        }
        hit as f64 / total as f64
    }

    #[test]
    fn matches_enumeration_of_all_subsets() {
        for n in 1..=12 {
            for c in 0..=n {
                for k in 1..=n {
                    let got = pass_at_k(n, c, k).unwrap();
                    let want = brute_force(n, c, k);
                    assert!(
                        (got - want).abs() <= 1e-12,
                        "n={n} c={c} k={k}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(pass_at_k(5, 0, 3).unwrap(), 0.0);
        assert_eq!(pass_at_k(5, 5, 1).unwrap(), 1.0);
        // n - c < k: one wrong sample cannot fill a draw of 2.
        assert_eq!(pass_at_k(5, 4, 2).unwrap(), 1.0);
        assert_eq!(pass_at_k(1, 1, 1).unwrap(), 1.0);
    }

    #[test]
    fn large_n_stays_finite_and_in_range() {
        // C(1000, 500) overflows f64; the product form does not.
        let p = pass_at_k(1000, 7, 500).unwrap();
        assert!(p.is_finite() && (0.0..=1.0).contains(&p), "{p}");
        // With 1 correct sample out of n, pass@k is exactly k/n.
        let p = pass_at_k(1000, 1, 250).unwrap();
        assert!((p - 0.25).abs() < 1e-12, "{p}");
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(pass_at_k(3, 1, 0).is_err());
        let err = pass_at_k(3, 1, 4).unwrap_err().to_string();
        assert!(err.contains("pass@4") && err.contains("n = 3"), "{err}");
        assert!(pass_at_k(3, 4, 1).is_err());
    }
}
