//! The systemctl steps: daemon-reload, enable, stop, start, restart. Each
//! clears its line of the pending marker in the same round trip, once done.

use std::time::Instant;

use super::Exec;
use crate::bootstrap::plan::Action;
use crate::model::{Owed, APISERVER};
use crate::remote::probe::pending_marker;
use crate::remote::systemd::{self, Op};
use crate::Error;

/// The shell a systemctl step runs: the operation, its line of the marker
/// cleared, and for a start the generation it began (what the run reads
/// back to tell its own starts from a crash's).
pub fn script(a: &Action) -> String {
    let (op, done): (Op, Vec<Owed>) = match a {
        Action::DaemonReload { .. } => (Op::DaemonReload, vec![Owed::DaemonReload]),
        Action::Enable { units } => (Op::Enable(units.clone()), vec![]),
        Action::Stop { units, .. } => (Op::Stop(units.clone()), vec![]),
        Action::Start { unit, .. } => (Op::Start(*unit), vec![Owed::Restart(*unit)]),
        Action::Restart { unit, .. } => (Op::Restart(*unit), vec![Owed::Restart(*unit)]),
        _ => unreachable!("not a systemctl step"),
    };
    let mut script = op.command();
    if !done.is_empty() {
        script.push('\n');
        script.push_str(&super::clear_marker(&done, &pending_marker()));
    }
    if let Action::Start { unit, .. } | Action::Restart { unit, .. } = a {
        script.push('\n');
        script.push_str(&systemd::generations(&[*unit]));
    }
    script
}

pub async fn run(x: &mut Exec<'_>, a: &Action) -> Result<(), Error> {
    if matches!(a, Action::Stop { .. } | Action::Restart { unit: APISERVER, .. }) {
        x.api_restart.get_or_insert_with(Instant::now);
    }
    let script = script(a);
    let started = match a {
        Action::Start { unit, .. } | Action::Restart { unit, .. } => Some(*unit),
        _ => None,
    };
    let out = match x.host.sh_ok(&script).await {
        Ok(out) => out,
        // A start that failed or did not finish (an old process that does
        // not stop: an apiserver whose etcd is gone waits on it to shut
        // down) says why, as the wait step does: the known cause and fix
        // read from the unit's journal, above its status and journal tail.
        Err(Error::Server(e)) if started.is_some() => {
            let u = started.expect("a start");
            let why = super::wait::explain(x.host, &[u], x.timeout.as_secs() + 60).await.concat();
            return Err(Error::Server(format!("{e}\n{}", why.trim_end())));
        }
        Err(e) => return Err(e),
    };
    if let Some(u) = started {
        let g = systemd::parse_generations(&out, 1).map_err(|e| Error::Server(format!("{}: after starting {}: {e}", x.host.destination, u.unit())))?;
        x.generations.insert(u, g.into_iter().next().expect("one unit"));
    }
    match a {
        Action::Start { unit, .. } => x.outcome.started.push(unit.unit().to_string()),
        Action::Restart { unit, .. } => x.outcome.restarted.push(unit.unit().to_string()),
        _ => {}
    }
    Ok(())
}
