//! The order a run over several servers takes: plain data built from the
//! servers' plans, printed by `--dry-run` and followed by the executor.
//!
//! - Every server's prepare part (stale temps, directories, staging) runs
//!   at once: nothing at a final path changes there.
//! - A first deploy (no unit active on any server) then runs every server's
//!   pass at once: there is nothing to keep up.
//! - A change to a running plane rolls: pass by pass (the apiservers'
//!   pass before the clients', see [`Passes::ApiserversFirst`]), servers
//!   whose pass changes nothing only wait (all at once), then each server
//!   that changes, one at a time, in the order given, each waiting until it
//!   and every other server are healthy before the next begins.
//! - The RBAC is applied once, through the first server.
//!
//! [`Passes::ApiserversFirst`]: super::plan::Passes::ApiserversFirst

use serde::Serialize;

use super::plan::{Action, Part, Plan};

/// One step of the run: a part of the plans of `servers` (indices into the
/// run's servers), all at once or, in a rollout, one server alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wave {
    #[serde(flatten)]
    pub part: Part,
    pub servers: Vec<usize>,
}

/// Does `actions` change anything?
fn changes(actions: &[Action]) -> bool {
    actions.iter().any(Action::changes)
}

/// The waves for `plans` (one per server, in the order given).
/// `first_deploy`: no control-plane unit is active on any server.
pub fn waves<P: std::borrow::Borrow<Plan>>(plans: &[P], first_deploy: bool) -> Vec<Wave> {
    let plans: Vec<&Plan> = plans.iter().map(|p| p.borrow()).collect();
    let all: Vec<usize> = (0..plans.len()).collect();
    let mut v = Vec::new();
    let prepare: Vec<usize> = all.iter().copied().filter(|&i| !plans[i].part(Part::Prepare).is_empty()).collect();
    if !prepare.is_empty() {
        v.push(Wave { part: Part::Prepare, servers: prepare });
    }
    let passes = plans.iter().map(|p| p.parts().passes.len()).max().unwrap_or(0);
    for k in 0..passes {
        let having: Vec<usize> = all.iter().copied().filter(|&i| !plans[i].part(Part::Pass(k)).is_empty()).collect();
        if first_deploy {
            v.push(Wave { part: Part::Pass(k), servers: having });
            continue;
        }
        let (changing, waiting): (Vec<usize>, Vec<usize>) = having.into_iter().partition(|&i| changes(plans[i].part(Part::Pass(k))));
        if !waiting.is_empty() {
            v.push(Wave { part: Part::Pass(k), servers: waiting });
        }
        for i in changing {
            v.push(Wave { part: Part::Pass(k), servers: vec![i] });
        }
    }
    if let Some(first) = all.iter().copied().find(|&i| !plans[i].part(Part::Finish).is_empty()) {
        v.push(Wave { part: Part::Finish, servers: vec![first] });
    }
    v
}

/// One line for people: `2. server-2: pass 1 (commit, restart, wait)`.
/// `servers`: each server's name and plan, as [`waves`] was given them.
pub fn line(w: &Wave, servers: &[(&str, &Plan)]) -> String {
    let who = if w.servers.len() == servers.len() && servers.len() > 1 {
        "every server at once".to_string()
    } else if w.servers.len() > 1 {
        format!("{} at once", w.servers.iter().map(|&i| servers[i].0).collect::<Vec<_>>().join(", "))
    } else {
        servers[w.servers[0]].0.to_string()
    };
    let kinds = |i: usize| -> String {
        let mut k: Vec<&str> = servers[i].1.part(w.part).iter().map(Action::kind).collect();
        k.dedup();
        k.join(", ")
    };
    let what = match w.part {
        Part::Prepare => "prepare (nothing at a final path changes)".to_string(),
        Part::Pass(k) => format!("pass {} ({})", k + 1, kinds(w.servers[0])),
        Part::Finish => format!("once for the cluster ({})", kinds(w.servers[0])),
    };
    format!("{who}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::desired::{Content, Desired, DesiredFile};
    use crate::bootstrap::plan::{build_for, Passes};
    use crate::model::overrides::{desired_units, Overrides};
    use crate::model::{FileMode, FILES};
    use crate::remote::probe::{Probe, RemoteFile};
    use crate::remote::systemd::UnitStatus;

    fn named<'a>(names: &'a [String], plans: &'a [Plan]) -> Vec<(&'a str, &'a Plan)> {
        names.iter().map(String::as_str).zip(plans).collect()
    }

    fn desired() -> Desired {
        let files = FILES.iter().map(|spec| DesiredFile { spec, content: Content::Text(spec.dest.into()), size: 10, sha256: format!("sha-{}", spec.dest) }).collect();
        Desired { files, units: desired_units(&Overrides::default()), scheduler_version: None, versions: Default::default() }
    }

    fn converged(d: &Desired) -> Probe {
        let mut f = Probe::default();
        for x in &d.files {
            f.files.insert(
                x.spec.dest.into(),
                RemoteFile {
                    sha256: x.sha256.clone(),
                    mtime_ns: 0,
                    mode: FileMode(x.spec.mode),
                    owner: "root".into(),
                    group: "root".into(),
                    size: 10,
                    kind: crate::remote::probe::FileType::Regular,
                },
            );
        }
        for dd in crate::model::DIRECTORIES {
            f.dirs.insert(
                dd.path.into(),
                crate::remote::probe::RemoteDir { mode: FileMode(dd.mode), owner: "root".into(), group: "root".into(), kind: crate::remote::probe::FileType::Directory },
            );
        }
        for u in &d.units {
            let st = UnitStatus { enabled: "enabled".into(), active: crate::model::ActiveState::Active, cmdline: crate::bootstrap::plan::argv(u), ..Default::default() };
            f.units.insert(u.spec.file_name.into(), st);
        }
        f
    }

    fn shape(w: &[Wave]) -> Vec<(Part, Vec<usize>)> {
        w.iter().map(|w| (w.part, w.servers.clone())).collect()
    }

    #[test]
    fn a_first_deploy_runs_everywhere_at_once() {
        let d = desired();
        let plans: Vec<Plan> = (0..3).map(|_| build_for(&d, &Probe::default(), Passes::One)).collect();
        let w = waves(&plans, true);
        assert_eq!(shape(&w), [(Part::Prepare, vec![0, 1, 2]), (Part::Pass(0), vec![0, 1, 2]), (Part::Finish, vec![0])]);
    }

    #[test]
    fn a_change_rolls_one_server_at_a_time_apiservers_first() {
        let d = desired();
        let mut p = converged(&d);
        for b in ["/usr/local/bin/kube-apiserver", "/usr/local/bin/kube-scheduler"] {
            p.files.get_mut(b).unwrap().sha256 = "old".into();
        }
        // Server 2 is already done (a re-run after a stopped rollout).
        let plans = vec![build_for(&d, &p, Passes::ApiserversFirst), build_for(&d, &converged(&d), Passes::ApiserversFirst), build_for(&d, &p, Passes::ApiserversFirst)];
        let w = waves(&plans, false);
        assert_eq!(
            shape(&w),
            [
                (Part::Prepare, vec![0, 2]),
                (Part::Pass(0), vec![1]),
                (Part::Pass(0), vec![0]),
                (Part::Pass(0), vec![2]),
                (Part::Pass(1), vec![0]),
                (Part::Pass(1), vec![2]),
                (Part::Finish, vec![0]),
            ]
        );
        let names: Vec<String> = ["server-1", "server-2", "server-3"].map(String::from).to_vec();
        assert_eq!(line(&w[0], &named(&names, &plans)), "server-1, server-3 at once: prepare (nothing at a final path changes)");
        assert_eq!(line(&w[2], &named(&names, &plans)), "server-1: pass 1 (commit, stop, restart, start, wait-healthy)");
        assert_eq!(line(&w[4], &named(&names, &plans)), "server-1: pass 2 (commit, restart, wait-healthy)");
        // A no-op everywhere: every server waits once, at once; RBAC once.
        let same: Vec<Plan> = (0..3).map(|_| build_for(&d, &converged(&d), Passes::ApiserversFirst)).collect();
        assert_eq!(shape(&waves(&same, false)), [(Part::Pass(0), vec![0, 1, 2]), (Part::Finish, vec![0])]);
        assert_eq!(line(&waves(&same, false)[0], &named(&names, &same)), "every server at once: pass 1 (wait-healthy)");
    }
}
