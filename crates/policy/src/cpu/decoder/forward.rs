//! One forward pass of the CPU decoder over a batch of token runs, each run
//! continuing one sequence's KV cache. A prefill is one run per prompt; a
//! decode step is one single-token run per sequence; a step of continuous
//! batching mixes both.

use super::ops::RopeTable;
use super::ops::{attend, prefetch, push_key, rms_norm, rms_norm_in_place, rotate, swiglu};
use super::{CpuDecoder, LayerWeights, Split};
use crate::cpu::packed::{Output, PackedLinear};
use crate::cpu::parallel::{par_for, SharedMut};

/// One sequence's keys and values per layer: keys in blocks of positions
/// (see [`push_key`]), values `[position][kv_heads * head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl Sequence {
    /// An empty sequence with room for `capacity` tokens before it reallocates.
    pub(crate) fn new(decoder: &CpuDecoder, capacity: usize) -> Self {
        let width = decoder.dims.kv_heads * decoder.dims.head_dim;
        let layers = decoder.layers.len();
        let buffer = || Vec::with_capacity(capacity * width);
        Sequence {
            keys: (0..layers).map(|_| buffer()).collect(),
            values: (0..layers).map(|_| buffer()).collect(),
            len: 0,
        }
    }

    /// A copy with room for `more` tokens before it reallocates (a sample
    /// continuing a shared prompt).
    pub(crate) fn fork(&self, more: usize) -> Self {
        let copy = |parts: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            parts
                .iter()
                .map(|v| {
                    let per_token = v.len() / self.len.max(1);
                    let mut c = Vec::with_capacity(v.len() + more * per_token);
                    c.extend_from_slice(v);
                    c
                })
                .collect()
        };
        Sequence {
            keys: copy(&self.keys),
            values: copy(&self.values),
            len: self.len,
        }
    }

    /// Tokens cached so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn keys_and_values(&self) -> (&[Vec<f32>], &[Vec<f32>]) {
        (&self.keys, &self.values)
    }
}

/// `tokens` continue the sequence cached in `cache`.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) cache: &'a mut Sequence,
    pub(crate) tokens: &'a [u32],
}

/// Activation buffers and rotary angles, reused from pass to pass.
#[derive(Debug)]
pub(crate) struct Scratch {
    /// Grown to the longest sequence seen.
    rope: RopeTable,
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    gate_up: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
    last: Vec<f32>,
    logits: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(decoder: &CpuDecoder) -> Self {
        Scratch {
            rope: decoder.rope.clone(),
            x: Vec::new(),
            normed: Vec::new(),
            qkv: Vec::new(),
            attended: Vec::new(),
            gate_up: Vec::new(),
            hidden: Vec::new(),
            scores: Vec::new(),
            last: Vec::new(),
            logits: Vec::new(),
        }
    }
}

impl CpuDecoder {
    /// Runs every run through the model, appending to the runs' caches,
    /// and returns the logits of each run's last token, `[runs, vocab]`.
    pub(crate) fn forward<'s>(
        &self,
        runs: &mut [Run],
        scratch: &'s mut Scratch,
        split: Split,
    ) -> &'s [f32] {
        let d = &self.dims;
        let s = scratch;
        self.layers(runs, s, split);

        // The final norm and LM head for the last token of each run only.
        s.last.clear();
        let mut end = 0;
        for run in runs.iter() {
            end += run.tokens.len();
            s.last
                .extend_from_slice(&s.x[(end - 1) * d.hidden..end * d.hidden]);
        }
        rms_norm_in_place(&mut s.last, &self.norm, d.eps);
        resize(&mut s.logits, runs.len() * d.vocab);
        self.product(
            &self.lm_head,
            &s.last,
            runs.len(),
            &mut s.logits,
            Output::Overwrite,
            split,
        );
        &s.logits
    }

    /// Runs every run through the model, appending to the runs' caches,
    /// and returns every row's final hidden state (after the last norm),
    /// `[rows, hidden]`, runs in order: what the LM head reads to score
    /// each token's successor.
    pub(crate) fn forward_hidden<'s>(
        &self,
        runs: &mut [Run],
        scratch: &'s mut Scratch,
        split: Split,
    ) -> &'s [f32] {
        let d = &self.dims;
        let rows = self.layers(runs, scratch, split);
        let x = &mut scratch.x[..rows * d.hidden];
        rms_norm_in_place(x, &self.norm, d.eps);
        x
    }

    /// The embedding and the decoder layers over every run, appending to
    /// the runs' caches; leaves the residual stream in `scratch.x` and
    /// returns its rows.
    fn layers(&self, runs: &mut [Run], scratch: &mut Scratch, split: Split) -> usize {
        let d = &self.dims;
        let rows: usize = runs.iter().map(|r| r.tokens.len()).sum();
        let qkv_width = (d.heads + 2 * d.kv_heads) * d.head_dim;
        let s = scratch;
        resize(&mut s.x, rows * d.hidden);
        resize(&mut s.normed, rows * d.hidden);
        resize(&mut s.qkv, rows * qkv_width);
        resize(&mut s.attended, rows * d.heads * d.head_dim);
        resize(&mut s.gate_up, rows * 2 * d.intermediate);
        resize(&mut s.hidden, rows * d.intermediate);
        let end = runs.iter().map(|r| r.cache.len + r.tokens.len());
        s.rope.extend_to(end.max().unwrap_or(0));

        let ids = runs.iter().flat_map(|r| r.tokens.iter());
        for (x, &id) in s.x.chunks_exact_mut(d.hidden).zip(ids) {
            self.embed(id as usize, x);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            self.attention_block(l, layer, runs, rows, s, split);
            self.mlp_block(layer, rows, s, split);
        }
        for run in runs.iter_mut() {
            run.cache.len += run.tokens.len();
        }
        rows
    }

    /// `x += o_proj(attention(input_layernorm(x)))`, caching the new keys and values.
    fn attention_block(
        &self,
        l: usize,
        layer: &LayerWeights,
        runs: &mut [Run],
        rows: usize,
        s: &mut Scratch,
        split: Split,
    ) {
        let d = &self.dims;
        let (q_width, kv_width) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let qkv_width = q_width + 2 * kv_width;
        rms_norm(&s.x, &layer.input_norm, d.eps, &mut s.normed);
        self.product(
            &layer.qkv,
            &s.normed,
            rows,
            &mut s.qkv,
            Output::Overwrite,
            split,
        );

        // Normalise and rotate queries and keys, then cache keys and values.
        let mut row = 0;
        for run in runs.iter_mut() {
            let seq = &mut *run.cache;
            for t in 0..run.tokens.len() {
                let position = seq.len + t;
                let qkv = &mut s.qkv[(row + t) * qkv_width..(row + t + 1) * qkv_width];
                let (q, kv) = qkv.split_at_mut(q_width);
                let (k, v) = kv.split_at_mut(kv_width);
                for (part, norm) in [(&mut *q, &layer.q_norm), (&mut *k, &layer.k_norm)] {
                    if let Some(w) = norm {
                        rms_norm_in_place(part, w, d.eps);
                    }
                    for head in part.chunks_exact_mut(d.head_dim) {
                        let (cos, sin) = s.rope.at(position);
                        rotate(head, cos, sin);
                    }
                }
                push_key(&mut seq.keys[l], position, k);
                seq.values[l].extend_from_slice(v);
            }
            row += run.tokens.len();
        }

        // Each token attends over its own sequence's cache.
        let attend_row =
            |seq: &Sequence, visible: usize, row: usize, scores: &mut Vec<f32>, out: &mut [f32]| {
                let q = &s.qkv[row * qkv_width..][..q_width];
                attend(q, &seq.keys[l], &seq.values[l], visible, d, scores, out);
            };
        match split {
            Split::Rows => {
                let mut row = 0;
                let mut scores = std::mem::take(&mut s.scores);
                for (i, run) in runs.iter().enumerate() {
                    if let Some(next) = runs.get(i + 1) {
                        prefetch(&next.cache.keys[l]);
                        prefetch(&next.cache.values[l]);
                    }
                    for t in 0..run.tokens.len() {
                        let out = &mut s.attended[(row + t) * q_width..(row + t + 1) * q_width];
                        attend_row(run.cache, run.cache.len + t + 1, row + t, &mut scores, out);
                    }
                    row += run.tokens.len();
                }
                s.scores = scores;
            }
            Split::Columns => {
                let mut owner = Vec::with_capacity(rows);
                for (r, run) in runs.iter().enumerate() {
                    owner.extend((0..run.tokens.len()).map(|t| (r, run.cache.len + t + 1)));
                }
                let out = SharedMut(s.attended.as_mut_ptr());
                let runs = &*runs;
                par_for(rows, |range| {
                    let mut scores = Vec::new();
                    for row in range {
                        let (r, visible) = owner[row];
                        // SAFETY: row `row` of `attended`, written by this task only.
                        let out = unsafe { out.slice(row * q_width..(row + 1) * q_width) };
                        attend_row(runs[r].cache, visible, row, &mut scores, out);
                    }
                });
            }
        }
        self.product(
            &layer.o_proj,
            &s.attended,
            rows,
            &mut s.x,
            Output::Accumulate,
            split,
        );
    }

    /// `x += down(silu(gate(h)) * up(h))`, h = post_attention_layernorm(x).
    fn mlp_block(&self, layer: &LayerWeights, rows: usize, s: &mut Scratch, split: Split) {
        let d = &self.dims;
        rms_norm(&s.x, &layer.post_norm, d.eps, &mut s.normed);
        self.product(
            &layer.gate_up,
            &s.normed,
            rows,
            &mut s.gate_up,
            Output::Overwrite,
            split,
        );
        swiglu(&s.gate_up, d.intermediate, &mut s.hidden);
        self.product(
            &layer.down_proj,
            &s.hidden,
            rows,
            &mut s.x,
            Output::Accumulate,
            split,
        );
    }
}

impl CpuDecoder {
    /// `w.forward`, on this thread or split over the worker threads.
    pub(super) fn product(
        &self,
        w: &PackedLinear,
        x: &[f32],
        rows: usize,
        y: &mut [f32],
        output: Output,
        split: Split,
    ) {
        match split {
            Split::Rows => w.forward(x, rows, y, output),
            Split::Columns => w.forward_split(x, rows, y, output),
        }
    }
}

fn resize(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}
