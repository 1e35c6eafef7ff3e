//! The run's phases, in order, each over every server of the run:
//! [`connect`] → [`read`] (lock, probe, a look at the running plane) →
//! [`plan`] → [`preflight`] → [`apply`]. One server is the N = 1 case of
//! the same path. A server that cannot go on is [`Dropped`] with its error;
//! the others are carried phase to phase as one value each
//! ([`Connected`], [`Read`], [`Target`]), so what a server's lines say and
//! which server they are about can never come apart.

use crate::bootstrap::plan::Plan;
use crate::bootstrap::steps::Look;
use crate::error::{exit, Problem};
use crate::output::Ui;
use crate::remote::lock::Lock;
use crate::remote::probe::Probe;
use crate::remote::Host;
use crate::Error;

pub mod apply;
pub mod connect;
pub mod plan;
pub mod preflight;
pub mod read;

/// A server that could not go on, and why.
#[derive(Debug)]
pub struct Dropped {
    pub name: String,
    pub error: Error,
}

/// A server connected to (as root, or through `sudo -n`).
pub struct Connected {
    pub name: String,
    /// Its lines (prefixed with its name when the run has several).
    pub ui: Ui,
    pub host: Host,
    /// The run's only server: its problems need not name it.
    pub alone: bool,
}

impl Connected {
    /// `p`, naming this server unless it is the run's only one.
    pub fn tag(&self, p: Problem) -> Problem {
        if self.alone {
            p
        } else {
            p.on(&self.name)
        }
    }
}

/// A server read: under its lock (none in a dry run), with what the
/// probe found and what a look at its running plane saw.
pub struct Read<'h> {
    pub server: &'h Connected,
    pub lock: Option<Lock<'h>>,
    pub probe: Probe,
    pub look: Option<Look>,
}

/// A server with its plan.
pub struct Target<'h> {
    pub server: &'h Connected,
    pub lock: Option<Lock<'h>>,
    pub probe: Probe,
    pub look: Option<Look>,
    pub plan: Plan,
}

impl Target<'_> {
    pub fn name(&self) -> &str {
        &self.server.name
    }
}

/// Releases every lock still held.
pub async fn release(locks: impl IntoIterator<Item = Option<Lock<'_>>>) {
    futures::future::join_all(locks.into_iter().flatten().map(Lock::release)).await;
}

/// Why the run stops before anything changed: the servers dropped and the
/// problems preflight found. One server that could not go on, in a run of
/// one, is its own error; otherwise the error counts them, with the exit
/// code of the worst (cannot connect, else failed on a server, else bad
/// input), and every one is listed.
pub fn stopped(dropped: Vec<Dropped>, mut problems: Vec<Problem>, servers: &[String]) -> crate::bootstrap::Failure {
    let code = dropped.iter().map(|d| d.error.exit_code()).max_by_key(|c| match *c {
        exit::CONNECT => 3,
        exit::FAILED => 2,
        _ => 1,
    });
    if servers.len() == 1 && dropped.len() == 1 {
        let error = dropped.into_iter().map(|d| d.error).next().expect("one server dropped");
        return crate::bootstrap::Failure { error, problems };
    }
    let n = problems.len() + dropped.len();
    let s = if n == 1 { "" } else { "s" };
    let unreachable = dropped.iter().filter(|d| d.error.exit_code() == exit::CONNECT).count();
    let mut all: Vec<Problem> = dropped.into_iter().map(|d| Problem::new(d.error.to_string(), "").on(&d.name)).collect();
    all.append(&mut problems);
    let (on, nothing) = match servers {
        [one] => (String::new(), format!("nothing on {one} was changed")),
        _ => (format!(" on {} server(s)", servers.len()), "nothing on any server was changed".to_string()),
    };
    let msg = format!("{n} problem{s}{on}; {nothing}");
    let error = match code {
        Some(exit::CONNECT) => Error::Connect(format!("{unreachable} of {} servers cannot be reached: {msg}", servers.len())),
        Some(exit::FAILED) => Error::Server(msg),
        _ => Error::Input(format!("preflight found {msg}")),
    };
    crate::bootstrap::Failure { error, problems: all }
}
