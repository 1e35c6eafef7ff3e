//! What the plugins print and how: progress for people on stderr, output
//! macros that never panic on a closed pipe, and the redaction rules.

pub mod redact;
pub mod ui;

pub use ui::{parse_duration, Ui};
