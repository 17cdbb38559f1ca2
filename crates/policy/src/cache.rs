//! The key/value cache used by generation.
//!
//! Every row of the batch writes its keys and values into the same column, so
//! the buffers stay rectangular; what differs per row is which columns hold a
//! real token (left padding is not attended to) and each row's next position.

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// Keys and values of every layer for a batch of sequences, preallocated to a
/// fixed number of columns.
/// Not `Clone`: a copy would share and overwrite the same buffers; use
/// [`KvCache::select_rows`] for an independent one.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// `[batch * capacity]`: whether a column holds a real (not padding) token.
    valid: Vec<bool>,
    /// Real tokens seen per row: the position the row's next token takes.
    seen: Vec<u32>,
    len: usize,
    capacity: usize,
    batch: usize,
}

/// One layer's buffers, each [batch, kv_heads, capacity, head_dim].
#[derive(Debug)]
pub(crate) struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Where a forward pass writes into the cache: the first column and how many.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSlot {
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl KvCache {
    /// An empty cache for `batch` rows of up to `capacity` tokens each
    /// (padding included), in `dtype` on `device`.
    pub fn new(
        config: &ModelConfig,
        batch: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, config.num_key_value_heads, capacity, config.head_dim);
        let layers = (0..config.num_hidden_layers)
            .map(|_| {
                Ok(LayerKv {
                    k: Tensor::zeros(shape, dtype, device)?,
                    v: Tensor::zeros(shape, dtype, device)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(KvCache {
            layers,
            valid: vec![false; batch * capacity],
            seen: vec![0; batch],
            len: 0,
            capacity,
            batch,
        })
    }

    /// Columns filled so far (the same for every row).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Columns available in total.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// A cache holding the given rows of this one, in that order; a row may
    /// repeat (a prompt prefilled once and shared by a group of samples) or be
    /// dropped (a finished sequence).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch) {
            return Err(Error::Input(format!(
                "cache row {bad} out of range for a batch of {}",
                self.batch
            )));
        }
        let device = self.layers.first().map(|l| l.k.device().clone());
        let layers = match device {
            Some(device) => {
                let index = Tensor::from_vec(
                    rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                    rows.len(),
                    &device,
                )?;
                self.layers
                    .iter()
                    .map(|l| {
                        Ok(LayerKv {
                            k: l.k.index_select(&index, 0)?,
                            v: l.v.index_select(&index, 0)?,
                        })
                    })
                    .collect::<Result<_>>()?
            }
            None => Vec::new(),
        };
        let mut valid = Vec::with_capacity(rows.len() * self.capacity);
        for &r in rows {
            valid.extend_from_slice(&self.valid[r * self.capacity..(r + 1) * self.capacity]);
        }
        Ok(KvCache {
            layers,
            valid,
            seen: rows.iter().map(|&r| self.seen[r]).collect(),
            len: self.len,
            capacity: self.capacity,
            batch: rows.len(),
        })
    }

    /// Per-row count of real tokens seen so far.
    pub(crate) fn seen(&self) -> &[u32] {
        &self.seen
    }

    /// Whether column `col` of `row` holds a real token.
    pub(crate) fn is_valid(&self, row: usize, col: usize) -> bool {
        self.valid[row * self.capacity + col]
    }

    /// Reserves the next `len` columns for a forward pass of that many tokens.
    pub(crate) fn slot(&self, batch: usize, len: usize) -> Result<CacheSlot> {
        if batch != self.batch {
            return Err(Error::Input(format!(
                "batch of {batch} rows does not match the cache's {} rows",
                self.batch
            )));
        }
        if self.len + len > self.capacity {
            return Err(Error::Input(format!(
                "KV cache full: {} of {} columns used, {len} more requested",
                self.len, self.capacity
            )));
        }
        Ok(CacheSlot {
            offset: self.len,
            len,
        })
    }

    /// Writes one layer's new keys and values ([batch, kv_heads, len, head_dim])
    /// into `slot` and returns all keys and values up to the end of it.
    pub(crate) fn append(
        &self,
        layer: usize,
        slot: CacheSlot,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let buffers = &self.layers[layer];
        buffers.k.slice_set(&k.contiguous()?, 2, slot.offset)?;
        buffers.v.slice_set(&v.contiguous()?, 2, slot.offset)?;
        let end = slot.offset + slot.len;
        Ok((buffers.k.narrow(2, 0, end)?, buffers.v.narrow(2, 0, end)?))
    }

    /// Records the tokens written into `slot`: `valid[b * len + t]` per new token,
    /// and the positions the rows have reached.
    pub(crate) fn commit(&mut self, slot: CacheSlot, valid: &[bool], seen: Vec<u32>) {
        for row in 0..self.batch {
            let start = row * self.capacity + slot.offset;
            self.valid[start..start + slot.len]
                .copy_from_slice(&valid[row * slot.len..(row + 1) * slot.len]);
        }
        self.seen = seen;
        self.len = slot.offset + slot.len;
    }
}
