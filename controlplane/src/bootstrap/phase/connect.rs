//! Phase 1: connect to every server (at most `--concurrency` at once), as
//! root or through `sudo -n`.

use futures::StreamExt;

use super::{Connected, Dropped};
use crate::bootstrap::ServerOptions;
use crate::output::Ui;
use crate::remote::Host;

/// Every server of `o`, connected or dropped with why, in the order given.
pub async fn run(o: &ServerOptions, ui: &Ui) -> (Vec<Connected>, Vec<Dropped>) {
    let several = o.destinations.len() > 1;
    let results = futures::stream::iter(&o.destinations)
        .map(|d| async move {
            let host = async {
                let host = Host::connect(d, &o.ssh, o.timeout).await?;
                host.require_root().await?;
                Ok(host)
            };
            (d, host.await)
        })
        .buffered(o.concurrency())
        .collect::<Vec<_>>()
        .await;
    let mut connected = Vec::new();
    let mut dropped = Vec::new();
    for (name, r) in results {
        match r {
            Ok(host) => connected.push(Connected { name: name.clone(), ui: if several { ui.for_server(name) } else { ui.clone() }, host, alone: !several }),
            Err(error) => dropped.push(Dropped { name: name.clone(), error }),
        }
    }
    (connected, dropped)
}
