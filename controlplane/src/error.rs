//! One error type for both plugins, carrying the documented exit code.

/// Exit codes, the same for both plugins (see README "Exit codes").
pub mod exit {
    /// Everything done / nothing failed.
    pub const OK: u8 = 0;
    /// Something failed on the server (bootstrap) or a check failed (cpcheck).
    pub const FAILED: u8 = 1;
    /// Bad input or failed preflight: nothing on the server was changed.
    pub const INPUT: u8 = 2;
    /// Cannot connect, or a host-key problem.
    pub const CONNECT: u8 = 3;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line, config file or local asset. One line: what, where, what to do.
    #[error("{0}")]
    Input(String),
    /// The server cannot be reached or its host key is not trusted.
    #[error("{0}")]
    Connect(String),
    /// Something failed on the server.
    #[error("{0}")]
    Server(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) => exit::INPUT,
            Error::Connect(_) => exit::CONNECT,
            Error::Server(_) => exit::FAILED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something wrong, as one line: what and where, then what to do (a
/// warning is the same shape: it does not change the exit code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The server it was found on, when a run has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub what: String,
    pub fix: String,
    /// The server's own words behind it (journal lines), escaped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
}

impl Problem {
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { server: None, what: what.into(), fix: fix.into(), journal: Vec::new() }
    }
    /// The same problem, with the journal lines that show it.
    pub fn with_journal(mut self, lines: Vec<String>) -> Self {
        self.journal = lines;
        self
    }
    /// The same problem, found on `server`.
    pub fn on(mut self, server: &str) -> Self {
        self.server = Some(server.to_string());
        self
    }
}

/// One line per field, every control character escaped, whatever the
/// fields hold (server text reaches them).
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = crate::output::redact::line;
        if let Some(s) = &self.server {
            write!(f, "{}: ", e(s))?;
        }
        if self.fix.is_empty() {
            write!(f, "{}", e(&self.what))?;
        } else {
            write!(f, "{}: {}", e(&self.what), e(&self.fix))?;
        }
        for l in &self.journal {
            write!(f, "\n    | {}", e(l))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_prints_on_its_lines_whatever_it_holds() {
        let p = Problem::new("x\u{1b}[2J\nforged: line", "fix\r").on("host\n").with_journal(vec!["j\u{0}".into()]);
        assert_eq!(p.to_string(), "host\\n: x\\u{1b}[2J\\nforged: line: fix\\r\n    | j\\u{0}");
    }
}
