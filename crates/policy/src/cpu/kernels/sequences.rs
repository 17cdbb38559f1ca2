//! Which keys each query of the fused attention sees: the token rows of one
//! forward pass cut into sequences, each causal over its own tokens, and
//! optionally continuing a shared prefix sequence (a prompt whose group of
//! completions all attend to it, computed once).

use crate::error::{Error, Result};

/// One sequence: rows `start..start + len` of the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequence {
    /// Its first row.
    pub(crate) start: usize,
    /// Its number of rows.
    pub(crate) len: usize,
    /// The index of a sequence this one continues: its queries see every
    /// real token of that one before their own. That sequence continues none.
    pub(crate) prefix: Option<usize>,
}

/// Sequences covering the rows of a pass, in order, and which rows are real
/// tokens. Query row i of a sequence sees: every real token of its prefix,
/// the real tokens before it in its own sequence, and itself.
#[derive(Debug, Clone)]
pub(crate) struct SequenceLayout {
    seqs: Vec<Sequence>,
    /// Per row: a real token (false: padding, which only its own query sees).
    key_valid: Vec<bool>,
}

impl SequenceLayout {
    /// `batch` rows of `seq` tokens each, `key_valid` [batch * seq] marking
    /// the real ones (the padded batch of `Transformer::forward`).
    pub(crate) fn rectangular(batch: usize, seq: usize, key_valid: Vec<bool>) -> Self {
        assert_eq!(key_valid.len(), batch * seq, "one key flag per row");
        let seqs = (0..batch)
            .map(|b| Sequence {
                start: b * seq,
                len: seq,
                prefix: None,
            })
            .collect();
        SequenceLayout { seqs, key_valid }
    }

    /// Sequences of real tokens only, given in order: each starts where the
    /// one before it ends, the last ends at `rows`, and a prefix comes
    /// before the sequences continuing it and continues none itself.
    pub(crate) fn new(seqs: Vec<Sequence>, rows: usize) -> Result<Self> {
        let mut end = 0;
        for (i, s) in seqs.iter().enumerate() {
            let prefix_ok = s.prefix.is_none_or(|p| p < i && seqs[p].prefix.is_none());
            if s.start != end || s.len == 0 || !prefix_ok {
                return Err(Error::Input(format!(
                    "sequence {i} ({s:?}) does not continue the layout"
                )));
            }
            end += s.len;
        }
        if end != rows {
            return Err(Error::Input(format!(
                "the sequences cover {end} rows, not {rows}"
            )));
        }
        Ok(SequenceLayout {
            seqs,
            key_valid: vec![true; rows],
        })
    }

    /// Rows of the pass.
    pub(crate) fn rows(&self) -> usize {
        self.key_valid.len()
    }

    pub(crate) fn sequences(&self) -> &[Sequence] {
        &self.seqs
    }

    /// Rows of the prefix sequence `s` sees (0 without one) and where they start.
    pub(crate) fn prefix_of(&self, s: usize) -> (usize, usize) {
        match self.seqs[s].prefix {
            Some(p) => (self.seqs[p].start, self.seqs[p].len),
            None => (0, 0),
        }
    }

    /// Whether `row` holds a real token.
    pub(crate) fn is_valid(&self, row: usize) -> bool {
        self.key_valid[row]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_must_tile_the_rows_and_prefixes_come_first() {
        let seq = |start, len, prefix| Sequence { start, len, prefix };
        assert!(SequenceLayout::new(vec![seq(0, 3, None), seq(3, 2, Some(0))], 5).is_ok());
        for bad in [
            vec![seq(0, 3, None), seq(4, 1, Some(0))],
            vec![seq(0, 3, Some(1)), seq(3, 2, None)],
            vec![seq(0, 3, None), seq(3, 1, Some(0)), seq(4, 1, Some(1))],
            vec![seq(0, 3, None), seq(3, 0, None), seq(3, 2, None)],
            vec![seq(0, 4, None)],
        ] {
            assert!(SequenceLayout::new(bad.clone(), 5).is_err(), "{bad:?}");
        }
    }
}
