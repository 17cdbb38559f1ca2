//! verity policy.
