//! The lifecycle state of one child: defined beside the holder (it crosses the holder's wire),
//! used here unchanged.

pub use drover_holder::{unix_nanos, Status};
