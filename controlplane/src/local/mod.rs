//! This machine: local files read safely, child processes bounded in time,
//! and the signal handling that leaves nothing of a run behind.

pub mod cache;
pub mod compress;
pub mod files;
pub mod interrupt;
pub mod process;
