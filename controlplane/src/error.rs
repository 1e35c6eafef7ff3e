//! One error type for both plugins, carrying the documented exit code.

/// Exit codes, the same for both plugins (see README "Exit codes").
pub mod exit {
    /// Everything done / nothing failed.
    pub const OK: u8 = 0;
    /// Something failed: on the server, a check (cpcheck), or this
    /// machine's own I/O mid-run.
    pub const FAILED: u8 = 1;
    /// Bad input or failed preflight: nothing on the server was changed.
    pub const INPUT: u8 = 2;
    /// Cannot connect, or a host-key problem.
    pub const CONNECT: u8 = 3;
}

/// What went wrong, by class: the class decides the exit code. A variant
/// with a cause keeps it typed ([`std::error::Error::source`]) for callers
/// that tell causes apart; its message is the whole line a user reads
/// (what was being done, then the cause's own words).
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
    /// The SSH connection failed under a command (lost, or a tunnel refused).
    #[error("{what}: {source}")]
    Ssh {
        what: String,
        #[source]
        source: openssh::Error,
    },
    /// A Kubernetes API request failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// This machine's own I/O failed mid-run (a pipe, a temp directory, a
    /// file that could be read a moment ago): not bad input.
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A task of this run stopped before it finished (a bug: report it).
    #[error("{what}: {source}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) => exit::INPUT,
            Error::Connect(_) | Error::Ssh { .. } => exit::CONNECT,
            Error::Server(_) | Error::Api { .. } | Error::Local { .. } | Error::Task { .. } => exit::FAILED,
        }
    }

    /// This machine's I/O failed while doing `what`.
    pub fn local(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Local { what: what.into(), source }
    }

    /// The SSH connection failed while doing `what`.
    pub fn ssh(what: impl Into<String>, source: openssh::Error) -> Error {
        Error::Ssh { what: what.into(), source }
    }

    /// The API failed `what`.
    pub fn api(what: impl Into<String>, source: kube::Error) -> Error {
        Error::Api { what: what.into(), source: Box::new(source) }
    }

    /// A task doing `what` stopped.
    pub fn task(what: impl Into<String>, source: tokio::task::JoinError) -> Error {
        Error::Task { what: what.into(), source }
    }

    /// The same error, its message led by `context` (`SERVER: …`); the
    /// class and the cause stay.
    pub fn context(self, context: &str) -> Error {
        let c = |m: String| format!("{context}: {m}");
        match self {
            Error::Input(m) => Error::Input(c(m)),
            Error::Connect(m) => Error::Connect(c(m)),
            Error::Server(m) => Error::Server(c(m)),
            Error::Ssh { what, source } => Error::Ssh { what: c(what), source },
            Error::Api { what, source } => Error::Api { what: c(what), source },
            Error::Local { what, source } => Error::Local { what: c(what), source },
            Error::Task { what, source } => Error::Task { what: c(what), source },
        }
    }
}

/// Why a local input (a certificate, a key, a kubeconfig, a binary) is not
/// usable, as the rest of a sentence that names it: what is wrong with it,
/// never what it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

impl From<String> for Unusable {
    fn from(s: String) -> Self {
        Unusable(s)
    }
}

impl From<&str> for Unusable {
    fn from(s: &str) -> Self {
        Unusable(s.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something wrong, as one line: what and where, then what to do (a
/// warning is the same shape: it does not change the exit code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// A preflight problem's stable id (`--ignore-preflight-errors` names it).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub id: &'static str,
    /// The server it was found on, when a run has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub what: String,
    pub fix: String,
    /// The server's own words behind it (journal lines), escaped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
    /// Found by preflight as a warning: it does not stop the run.
    #[serde(skip)]
    pub warning: bool,
}

impl Problem {
    pub fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { id: "", server: None, what: what.into(), fix: fix.into(), journal: Vec::new(), warning: false }
    }
    /// A preflight problem with its stable id.
    pub fn check(id: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem { id, ..Problem::new(what, fix) }
    }
    /// The same problem as a warning (it does not stop the run).
    pub fn warn(mut self) -> Self {
        self.warning = true;
        self
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
        if !self.id.is_empty() {
            write!(f, " [{}]", self.id)?;
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
    fn a_cause_stays_typed_and_decides_nothing_but_its_class() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::local("cannot make a pipe", io).context("server-1");
        assert_eq!(e.to_string(), "server-1: cannot make a pipe: denied");
        assert_eq!(e.exit_code(), exit::FAILED, "local I/O is not bad input");
        let src = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(src.downcast_ref::<std::io::Error>().map(|e| e.kind()), Some(std::io::ErrorKind::PermissionDenied));
        assert_eq!(Error::Input("x".into()).context("s").exit_code(), exit::INPUT);
    }

    #[test]
    fn a_problem_prints_on_its_lines_whatever_it_holds() {
        let p = Problem::new("x\u{1b}[2J\nforged: line", "fix\r").on("host\n").with_journal(vec!["j\u{0}".into()]);
        assert_eq!(p.to_string(), "host\\n: x\\u{1b}[2J\\nforged: line: fix\\r\n    | j\\u{0}");
    }
}
