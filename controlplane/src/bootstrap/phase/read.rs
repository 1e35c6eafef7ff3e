//! Phase 2: read every server. Under its lock, all or nothing over the
//! servers (a dry run changes nothing and takes none), one probe in the
//! lock's own session; meanwhile a look at the running plane (health,
//! leaders, RBAC; reads only): a no-op run needs nothing more.

use std::time::SystemTime;

use futures::StreamExt;

use super::{Connected, Dropped, Read};
use crate::bootstrap::desired::Desired;
use crate::bootstrap::steps;
use crate::bootstrap::ServerOptions;
use crate::output::Ui;
use crate::remote::lock::{self, Lock, Then};
use crate::remote::probe::{self, Probe, Request};
use crate::remote::Host;
use crate::Error;

/// The probe's answer as facts.
fn parse(host: &Host, out: Option<Then>, asked: SystemTime) -> Result<Probe, Error> {
    match out {
        Some((text, 0)) => {
            let mut p = Probe::default();
            probe::finish(&text, asked, &mut p).map(|_| p).map_err(|e| Error::Server(format!("{}: {e}", host.destination)))
        }
        Some((_, code)) => Err(Error::Server(format!("{}: reading the server failed (exit {code})", host.destination))),
        None => Err(Error::Server(format!("{}: nothing was read", host.destination))),
    }
}

/// Runs the probe on every server, under their locks unless `o.dry_run`.
async fn probes<'h>(servers: &'h [Connected], o: &ServerOptions, script: &str) -> Vec<Result<(Option<Lock<'h>>, Option<Then>), Error>> {
    if o.dry_run {
        return futures::stream::iter(servers)
            .map(|s| async move { s.host.sh(script).await.map(|out| (None, Some((out.stdout, out.status.code().unwrap_or(1))))) })
            .buffered(o.concurrency())
            .collect()
            .await;
    }
    let hosts: Vec<(&Host, &Ui)> = servers.iter().map(|s| (&s.host, &s.ui)).collect();
    lock::acquire_all(&hosts, o.timeout, Some(script)).await.into_iter().map(|r| r.map(|(l, out)| (Some(l), out))).collect()
}

/// Every server read, or dropped with why, in the order given. `api`: the
/// admin credentials to look at the running plane with (none in a dry run).
pub async fn run<'h>(servers: &'h [Connected], o: &ServerOptions, desired: &Desired, api: Option<&kube::Config>) -> (Vec<Read<'h>>, Vec<Dropped>) {
    // A dry run changes nothing, not even the server's hash cache.
    let script = probe::script(&Request { write_cache: !o.dry_run, ..Request::bootstrap() });
    let asked = SystemTime::now();
    let looks = futures::future::join_all(servers.iter().map(|s| async move {
        match api {
            Some(c) => steps::look(&s.host, &desired.units, c.clone()).await.ok(),
            None => None,
        }
    }));
    let (answers, looks) = tokio::join!(probes(servers, o, &script), looks);
    let mut read = Vec::new();
    let mut dropped = Vec::new();
    for ((server, answer), look) in servers.iter().zip(answers).zip(looks) {
        let error = match answer {
            Ok((lock, out)) => match parse(&server.host, out, asked) {
                Ok(probe) => {
                    read.push(Read { server, lock, probe, look });
                    continue;
                }
                Err(e) => {
                    super::release([lock]).await;
                    e
                }
            },
            Err(e) => e,
        };
        dropped.push(Dropped { name: server.name.clone(), error });
    }
    (read, dropped)
}
