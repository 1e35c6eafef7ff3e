//! Phase 4: preflight over what was read: every problem on each server and
//! across them (the local ones were found while connecting). Nothing on
//! any server changes unless this finds nothing.

use super::Target;
use crate::bootstrap::desired::Desired;
use crate::bootstrap::{preflight, ServerOptions};
use crate::error::Problem;
use crate::remote::probe::Probe;

/// Every problem on the servers of `targets`, and across them.
pub fn run(targets: &[Target<'_>], desired: &Desired, o: &ServerOptions) -> Vec<Problem> {
    let mut problems: Vec<Problem> = targets.iter().flat_map(|t| preflight::remote(desired, &t.probe, &t.plan).into_iter().map(|p| t.server.tag(p))).collect();
    let servers: Vec<(&str, &Probe)> = targets.iter().map(|t| (t.name(), &t.probe)).collect();
    problems.extend(preflight::cluster(desired, &servers, o.endpoint.as_ref()));
    problems
}
