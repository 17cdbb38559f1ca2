//! The built-in problem families, one file each.

pub(crate) mod code_io;
pub(crate) mod code_trace;

pub(crate) mod countdown;

use crate::task::Task;

/// Registered families, in display order.
pub(crate) static ALL: &[&dyn Task] = &[];
