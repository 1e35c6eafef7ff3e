//! The error every manifest problem becomes: `path:line: message`.

use std::fmt;
use std::path::PathBuf;

/// A problem in one manifest: the file, the 1-based line, and what is wrong.
/// Displayed as `path:line: message`, the way compilers report, so a failed
/// build points straight at the line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl ManifestError {
    pub fn new(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self { path: path.into(), line, message: message.into() }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for ManifestError {}

impl From<unitfile::ParseError> for ManifestError {
    fn from(e: unitfile::ParseError) -> Self {
        ManifestError { path: e.path, line: e.line, message: e.message }
    }
}
