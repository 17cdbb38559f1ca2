//! One forward pass of the CPU decoder over a batch of token runs, each run
//! continuing one sequence's KV cache. A prefill is one run per prompt; a
//! decode step is one single-token run per sequence.

use super::ops::RopeTable;
use super::ops::{attend, push_key, rms_norm, rms_norm_in_place, rotate, swiglu};
use super::packed::{Output, PackedLinear};
use super::{CpuDecoder, LayerWeights};

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

    /// Tokens cached so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// `tokens` continues sequence `sequence`.
#[derive(Debug, Clone)]
pub(crate) struct Run<'a> {
    pub(crate) sequence: usize,
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
        }
    }
}

impl CpuDecoder {
    /// Runs every run through the model, appending to the sequences' caches,
    /// and returns the logits of each run's last token, `[runs, vocab]`.
    pub(crate) fn forward(
        &self,
        sequences: &mut [Sequence],
        runs: &[Run],
        scratch: &mut Scratch,
    ) -> Vec<f32> {
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
        let end = runs
            .iter()
            .map(|r| sequences[r.sequence].len + r.tokens.len());
        s.rope.extend_to(end.max().unwrap_or(0));

        let ids = runs.iter().flat_map(|r| r.tokens.iter());
        for (x, &id) in s.x.chunks_exact_mut(d.hidden).zip(ids) {
            let id = id as usize;
            x.copy_from_slice(&self.embed[id * d.hidden..(id + 1) * d.hidden]);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            self.attention_block(l, layer, sequences, runs, rows, s);
            self.mlp_block(layer, rows, s);
        }
        for run in runs {
            sequences[run.sequence].len += run.tokens.len();
        }

        // The final norm and LM head for the last token of each run only.
        let mut last = Vec::with_capacity(runs.len() * d.hidden);
        let mut end = 0;
        for run in runs {
            end += run.tokens.len();
            last.extend_from_slice(&s.x[(end - 1) * d.hidden..end * d.hidden]);
        }
        rms_norm_in_place(&mut last, &self.norm, d.eps);
        let mut logits = vec![0f32; runs.len() * d.vocab];
        self.product(
            &self.lm_head,
            &last,
            runs.len(),
            &mut logits,
            Output::Overwrite,
        );
        logits
    }

    /// `x += o_proj(attention(input_layernorm(x)))`, caching the new keys and values.
    fn attention_block(
        &self,
        l: usize,
        layer: &LayerWeights,
        sequences: &mut [Sequence],
        runs: &[Run],
        rows: usize,
        s: &mut Scratch,
    ) {
        let d = &self.dims;
        let (q_width, kv_width) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let qkv_width = q_width + 2 * kv_width;
        rms_norm(&s.x, &layer.input_norm, d.eps, &mut s.normed);
        self.product(&layer.qkv, &s.normed, rows, &mut s.qkv, Output::Overwrite);

        // Normalise and rotate queries and keys, then cache keys and values.
        let mut row = 0;
        for run in runs {
            let seq = &mut sequences[run.sequence];
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

        let mut row = 0;
        for run in runs {
            let seq = &sequences[run.sequence];
            for t in 0..run.tokens.len() {
                let visible = seq.len + t + 1;
                let q = &s.qkv[(row + t) * qkv_width..][..q_width];
                let out = &mut s.attended[(row + t) * q_width..(row + t + 1) * q_width];
                attend(
                    q,
                    &seq.keys[l],
                    &seq.values[l],
                    visible,
                    d,
                    &mut s.scores,
                    out,
                );
            }
            row += run.tokens.len();
        }
        self.product(
            &layer.o_proj,
            &s.attended,
            rows,
            &mut s.x,
            Output::Accumulate,
        );
    }

    /// `x += down(silu(gate(h)) * up(h))`, h = post_attention_layernorm(x).
    fn mlp_block(&self, layer: &LayerWeights, rows: usize, s: &mut Scratch) {
        let d = &self.dims;
        rms_norm(&s.x, &layer.post_norm, d.eps, &mut s.normed);
        self.product(
            &layer.gate_up,
            &s.normed,
            rows,
            &mut s.gate_up,
            Output::Overwrite,
        );
        swiglu(&s.gate_up, d.intermediate, &mut s.hidden);
        self.product(
            &layer.down_proj,
            &s.hidden,
            rows,
            &mut s.x,
            Output::Accumulate,
        );
    }
}

impl CpuDecoder {
    /// `w.forward`, on this thread or split over the worker threads.
    fn product(&self, w: &PackedLinear, x: &[f32], rows: usize, y: &mut [f32], output: Output) {
        if self.split_products {
            w.forward_split(x, rows, y, output);
        } else {
            w.forward(x, rows, y, output);
        }
    }
}

fn resize(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}
