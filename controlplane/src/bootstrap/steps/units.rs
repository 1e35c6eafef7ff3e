//! The systemctl steps: daemon-reload, enable, stop, start, restart. Each
//! clears its line of the pending marker in the same round trip, once done.

use std::time::Instant;

use super::Exec;
use crate::bootstrap::plan::Action;
use crate::model::APISERVER;
use crate::remote::probe::pending_marker;
use crate::remote::systemd::{self, Op};
use crate::Error;

/// The shell a systemctl step runs: the operation, its line of the marker
/// cleared, and for a start the generation it began (what the run reads
/// back to tell its own starts from a crash's).
pub fn script(a: &Action) -> String {
    let (op, done): (Op, Vec<String>) = match a {
        Action::DaemonReload { .. } => (Op::DaemonReload, vec!["daemon-reload".into()]),
        Action::Enable { units } => (Op::Enable(units.clone()), vec![]),
        Action::Stop { units, .. } => (Op::Stop(units.clone()), vec![]),
        Action::Start { unit, .. } => (Op::Start(unit.clone()), vec![format!("restart {unit}")]),
        Action::Restart { unit, .. } => (Op::Restart(unit.clone()), vec![format!("restart {unit}")]),
        _ => unreachable!("not a systemctl step"),
    };
    let mut script = op.command();
    if !done.is_empty() {
        script.push('\n');
        script.push_str(&super::clear_marker(&done, &pending_marker()));
    }
    if let Action::Start { unit, .. } | Action::Restart { unit, .. } = a {
        script.push('\n');
        script.push_str(&systemd::generations(&[unit]));
    }
    script
}

pub async fn run(x: &mut Exec<'_>, a: &Action) -> Result<(), Error> {
    let is_apiserver = |unit: &str| crate::model::unit(APISERVER).is_some_and(|u| u.file_name == unit);
    match a {
        Action::Stop { .. } => {
            x.api_restart.get_or_insert_with(Instant::now);
        }
        Action::Restart { unit, .. } if is_apiserver(unit) => {
            x.api_restart.get_or_insert_with(Instant::now);
        }
        _ => {}
    }
    let script = script(a);
    let started = match a {
        Action::Start { unit, .. } | Action::Restart { unit, .. } => Some(unit.as_str()),
        _ => None,
    };
    let out = x.host.sh_ok(&script).await?;
    if let Some(u) = started {
        let g = systemd::parse_generations(&out, 1).map_err(|e| Error::Server(format!("{}: after starting {u}: {e}", x.host.destination)))?;
        x.generations.insert(u.to_string(), g.into_iter().next().expect("one unit"));
    }
    match a {
        Action::Start { unit, .. } => x.outcome.started.push(unit.clone()),
        Action::Restart { unit, .. } => x.outcome.restarted.push(unit.clone()),
        _ => {}
    }
    Ok(())
}
