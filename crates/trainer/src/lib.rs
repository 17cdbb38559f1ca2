//! verity trainer.
