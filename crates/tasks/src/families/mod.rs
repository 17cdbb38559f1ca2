//! The built-in problem families, one file each.

use crate::task::Task;

/// Registered families, in display order.
pub(crate) static ALL: &[&dyn Task] = &[];
