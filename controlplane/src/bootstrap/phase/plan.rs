//! Phase 3: each server's plan. A first deploy (nothing runs on any
//! server yet) runs every server's one pass at once; a change to a running
//! plane of several rolls, apiservers first. How each server's large files
//! travel: its codecs, its link.

use super::{Read, Target};
use crate::bootstrap::desired::{self, Desired};
use crate::bootstrap::plan::{self, Plan};
use crate::bootstrap::{preflight, ServerOptions};
use crate::error::Problem;
use crate::local::compress::{self, Codec, Compress, Decision};
use crate::model::Component;
use crate::remote::probe::Probe;
use crate::remote::Host;

/// How the large files of `plan` travel to `host`: `--compress` as given
/// (a codec the server lacks is a preflight problem), or with `auto` the
/// codec whose estimate beats sending as is, by the link measured now and
/// a sample of the largest file compressed here.
async fn transfer(c: Compress, desired: &Desired, host: &Host, probe: &Probe, plan: &Plan) -> Result<Decision, Problem> {
    let bytes = plan.large_upload_bytes();
    match c {
        Compress::Use(Codec::None) => Ok(Decision::none("--compress none")),
        Compress::Use(codec) if !probe.has(codec) => Err(Problem::check(
            "compress",
            format!("--compress {}: the server has no {} to decompress with", codec.name(), codec.name()),
            format!("install it on the server (apt install {}), or pass --compress auto", codec.name()),
        )),
        Compress::Use(codec) => Ok(Decision { codec, link_bytes_per_second: None, sample: None, why: format!("--compress {}", codec.name()) }),
        Compress::Auto if bytes == 0 => Ok(Decision::none("no large file to send")),
        Compress::Auto => {
            // zstd beats gzip at both speed and size: gzip only without it.
            let have: Vec<Codec> = [Codec::Zstd, Codec::Gzip].into_iter().filter(|c| probe.has(*c)).take(1).collect();
            if have.is_empty() {
                return Ok(Decision::none("the server has neither zstd nor gzip"));
            }
            let link = match host.measure_link().await {
                Ok(l) => l,
                Err(e) => return Ok(Decision::none(format!("the link could not be measured ({e})"))),
            };
            // The largest upload stands for all (the binaries dominate).
            let largest = plan.uploads().iter().max_by_key(|f| f.bytes).map(|f| &desired.files[f.index]);
            let Some(desired::DesiredFile { content: desired::Content::File(asset), .. }) = largest else {
                return Ok(Decision::none("no large file on disk"));
            };
            let asset = asset.clone();
            let samples =
                tokio::task::spawn_blocking(move || have.into_iter().filter_map(|c| asset.reopen().and_then(|f| compress::sample(c, f)).ok().map(|s| (c, s))).collect::<Vec<_>>())
                    .await
                    .unwrap_or_default();
            Ok(compress::choose(bytes, link, &samples))
        }
    }
}

/// What the plan phase decided for the run as a whole.
pub struct Planned<'h> {
    pub targets: Vec<Target<'h>>,
    /// No control-plane unit is active on any server.
    pub first_deploy: bool,
    /// A codec `--compress` names that a server lacks.
    pub problems: Vec<Problem>,
}

/// Every read server's plan.
pub async fn run<'h>(reads: Vec<Read<'h>>, desired: &Desired, o: &ServerOptions) -> Planned<'h> {
    let first_deploy = reads.iter().all(|r| !Component::ALL.iter().any(|c| r.probe.active(c.unit())));
    let passes = if reads.len() > 1 && !first_deploy { plan::Passes::ApiserversFirst } else { plan::Passes::One };
    // With several servers, the first waits until the apiserver lists every one.
    let addresses: Vec<String> = if reads.len() > 1 { reads.iter().filter_map(|r| preflight::advertise_address(desired, &r.probe)).collect() } else { Vec::new() };
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    for r in reads {
        let mut plan = plan::build_for(desired, &r.probe, passes);
        if targets.is_empty() && !addresses.is_empty() {
            plan.wait_for_endpoints(addresses.clone());
        }
        targets.push(Target { server: r.server, lock: r.lock, probe: r.probe, look: r.look, plan });
    }
    let decisions = futures::future::join_all(targets.iter().map(|t| transfer(o.compress, desired, &t.server.host, &t.probe, &t.plan))).await;
    for (t, d) in targets.iter_mut().zip(decisions) {
        match d {
            Ok(d) => t.plan.set_transfer(d),
            Err(p) => problems.push(t.server.tag(p)),
        }
    }
    Planned { targets, first_deploy, problems }
}
