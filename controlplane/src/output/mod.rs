//! What the plugins print and how: progress for people on stderr, output
//! macros that never panic on a closed pipe, and the redaction rules.

pub mod redact;
pub mod ui;

pub use ui::Ui;

/// `1.4 KiB`, `278.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
