//! Weight gradients that the fused blocks hand over outside candle's graph.
//!
//! Given its weights as tracked inputs, a block's weight gradients went
//! through candle's gradient store twice: once for the concatenation of the
//! weights (a zeros tensor, then an add) and once more for each weight. At
//! SmolLM2's size that bookkeeping was 8% of a training pass. A block may
//! take its weights detached instead and leave their gradients here;
//! [`crate::Transformer::backward`] puts them in the store.

use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::Tensor;

/// Weight gradients waiting to join a gradient store, shared by a model and
/// the blocks of its forward passes.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingGrads(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl PendingGrads {
    fn lock(&self) -> MutexGuard<'_, Vec<(Tensor, Tensor)>> {
        // A panic while pushing leaves at worst a shorter list.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every (weight, gradient) left since the last call, in order.
    pub(crate) fn take(&self) -> Vec<(Tensor, Tensor)> {
        std::mem::take(&mut *self.lock())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Where one block leaves its weight gradients: the weights whose rows its
/// concatenated weight input holds, in order (a 1-D norm weight is one
/// row), and its output projection.
#[derive(Debug)]
pub(crate) struct WeightSink {
    pub(crate) parts: Vec<Tensor>,
    pub(crate) out: Tensor,
    pub(crate) pending: PendingGrads,
}

impl WeightSink {
    /// Leaves `d_weights` (the parts' rows, in order) and `d_out`: views of
    /// them, no copies.
    pub(crate) fn hand_over(&self, d_weights: &Tensor, d_out: Tensor) -> candle_core::Result<()> {
        let mut grads = Vec::with_capacity(self.parts.len() + 1);
        let mut row = 0;
        for part in &self.parts {
            let rows = if part.rank() == 1 { 1 } else { part.dim(0)? };
            let grad = d_weights.narrow(0, row, rows)?.reshape(part.shape())?;
            grads.push((part.clone(), grad));
            row += rows;
        }
        if row != d_weights.dim(0)? {
            candle_core::bail!(
                "weight sink: parts of {row} rows for a gradient of {:?}",
                d_weights.dims()
            )
        }
        grads.push((self.out.clone(), d_out));
        self.pending.lock().extend(grads);
        Ok(())
    }
}
