//! Packing prompt and completion ids into the tensors a scoring forward pass
//! takes: rows of `[left-padded prompt | right-padded completion]`, TRL's
//! layout, so every completion starts at the same column.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// One packed batch.
pub(crate) struct Packed {
    /// `[B, P + C]` token ids (u32); padding holds the pad id.
    pub input_ids: Tensor,
    /// `[B, P + C]`: 1 for real tokens, 0 for padding (u32).
    pub attention_mask: Tensor,
    /// `[B, C]`: 1.0 for completion tokens that count in the loss (f32).
    pub completion_mask: Tensor,
    /// `C`, the widest completion.
    pub completion_len: usize,
    /// Ones in `completion_mask`.
    pub active_tokens: usize,
}

/// One row: its prompt, its completion, and whether the completion counts in
/// the loss (a masked truncated completion does not).
pub(crate) struct Row<'a> {
    pub prompt: &'a [u32],
    pub completion: &'a [u32],
    pub counts: bool,
}

/// Packs rows with `pad` in padded positions.
pub(crate) fn pack(rows: &[Row<'_>], pad: u32, device: &Device) -> Result<Packed> {
    let p = rows.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    let c = rows.iter().map(|r| r.completion.len()).max().unwrap_or(0);
    let width = p + c;
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut attention = Vec::with_capacity(rows.len() * width);
    let mut completion_mask = Vec::with_capacity(rows.len() * c);
    let mut active_tokens = 0;
    for row in rows {
        let left = p - row.prompt.len();
        let right = c - row.completion.len();
        ids.extend(std::iter::repeat_n(pad, left));
        ids.extend_from_slice(row.prompt);
        ids.extend_from_slice(row.completion);
        ids.extend(std::iter::repeat_n(pad, right));
        attention.extend(std::iter::repeat_n(0u32, left));
        attention.extend(std::iter::repeat_n(
            1u32,
            row.prompt.len() + row.completion.len(),
        ));
        attention.extend(std::iter::repeat_n(0u32, right));
        let weight = if row.counts { 1f32 } else { 0f32 };
        completion_mask.extend(std::iter::repeat_n(weight, row.completion.len()));
        completion_mask.extend(std::iter::repeat_n(0f32, right));
        if row.counts {
            active_tokens += row.completion.len();
        }
    }
    let b = rows.len();
    Ok(Packed {
        input_ids: Tensor::from_vec(ids, (b, width), device)?,
        attention_mask: Tensor::from_vec(attention, (b, width), device)?,
        completion_mask: Tensor::from_vec(completion_mask, (b, c), device)?.to_dtype(DType::F32)?,
        completion_len: c,
        active_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_pad_left_and_completions_pad_right() {
        let rows = [
            Row {
                prompt: &[1, 2, 3],
                completion: &[7],
                counts: true,
            },
            Row {
                prompt: &[4],
                completion: &[8, 9],
                counts: true,
            },
            Row {
                prompt: &[5, 6],
                completion: &[10, 11],
                counts: false,
            },
        ];
        let packed = pack(&rows, 0, &Device::Cpu).unwrap();
        let ids = packed.input_ids.to_vec2::<u32>().unwrap();
        assert_eq!(
            ids,
            vec![
                vec![1, 2, 3, 7, 0],
                vec![0, 0, 4, 8, 9],
                vec![0, 5, 6, 10, 11]
            ]
        );
        let mask = packed.attention_mask.to_vec2::<u32>().unwrap();
        assert_eq!(
            mask,
            vec![
                vec![1, 1, 1, 1, 0],
                vec![0, 0, 1, 1, 1],
                vec![0, 1, 1, 1, 1]
            ]
        );
        let cm = packed.completion_mask.to_vec2::<f32>().unwrap();
        assert_eq!(cm, vec![vec![1.0, 0.0], vec![1.0, 1.0], vec![0.0, 0.0]]);
        assert_eq!(packed.completion_len, 2);
        assert_eq!(packed.active_tokens, 3);
    }
}
