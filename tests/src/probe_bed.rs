//! The probe's script on a real server prepared so that every fact it can
//! report is there to report: a stale temp, a pending marker, cache hits
//! and misses, certificates and kubeconfigs, a unit systemd restarted by
//! itself, a foreign holder on a port, a failing `systemctl show` and a
//! missing command. Used by the tag-coverage test and by
//! `cargo xtask probe-reply`, which records these replies for the unit
//! tests (controlplane/src/remote/probe/recorded/).

use std::io::Write;
use std::process::{Command, Stdio};

use controlplane::model::{FileKind, Owed, FILES, UNITS};
use controlplane::remote::probe::{self, HmacKey, Journals, Request};
use controlplane::remote::shell_quote;
use testbed::Bed;

/// The replies of the three reads, as the server printed them.
pub struct Replies {
    /// What bootstrap reads (with a cache hit and a miss, a stale temp, a
    /// pending marker).
    pub bootstrap: Vec<u8>,
    /// What cpcheck reads, fingerprints, certificates, kubeconfigs, the
    /// encryption config, etcd's members and a restarted unit's journal included.
    pub cpcheck: Vec<u8>,
    /// The units read while `systemctl show` fails and a command is missing.
    pub failing: Vec<u8>,
}

/// The file names the replies are recorded under, in order.
pub const RECORDED: [&str; 3] = ["bootstrap.reply", "cpcheck.reply", "failing.reply"];

impl Replies {
    pub fn all(&self) -> [&[u8]; 3] {
        [&self.bootstrap, &self.cpcheck, &self.failing]
    }
}

/// Runs the probe `req` on `bed` as the plugins do (`env LC_ALL=C sh -c`),
/// the HMAC key's pads on stdin.
fn run(bed: &Bed, req: &Request) -> Vec<u8> {
    let remote = format!("env LC_ALL=C sh -c {}", shell_quote(&probe::script(req)));
    let mut c = Command::new("ssh").args(bed.ssh_options()).arg(bed.dest()).arg(remote).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pads = req.fingerprints.as_ref().map(|k| k.pads()).unwrap_or_default();
    c.stdin.take().unwrap().write_all(pads.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "the probe failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Prepares `bed` (bootstrapped) and reads it three ways.
pub fn replies(bed: &Bed) -> Replies {
    let scheduler = UNITS.iter().find(|u| u.component != controlplane::model::APISERVER).unwrap();
    // A unit systemd restarted by itself (its journal says why).
    bed.ssh(&format!("systemctl kill -s KILL {u}; for i in $(seq 150); do [ \"$(systemctl show -p NRestarts --value {u})\" -ge 1 ] && systemctl is-active -q {u} && exit 0; sleep 0.2; done; exit 1", u = scheduler.file_name))
        .expect("the killed unit is started again by systemd");
    // A stale temp beside a destination, a pending marker, a file whose
    // stamp changed since the hash cache saw it.
    let dest = FILES.iter().find(|f| f.kind == FileKind::Certificate).unwrap().dest;
    let (dir, name) = dest.rsplit_once('/').unwrap();
    bed.ssh(&format!(
        "touch {dir}/.{name}{}0123456789abcdef; printf '%s\\n' {} > {}; touch {dest}",
        probe::TEMP_MARKER,
        shell_quote(&Owed::Restart(scheduler.component).to_string()),
        shell_quote(&probe::pending_marker())
    ))
    .unwrap();
    let bootstrap = run(bed, &Request { write_cache: false, ..Request::bootstrap() });
    bed.ssh(&format!("rm -f {dir}/.{name}{}0123456789abcdef {}", probe::TEMP_MARKER, shell_quote(&probe::pending_marker()))).unwrap();
    let guess = controlplane::cpcheck::referenced_by(|u| controlplane::model::Flags(u.flags.iter().map(|f| (f.name.to_string(), f.value.map(str::to_string))).collect()));
    let cpcheck = run(
        bed,
        &Request {
            etcd_members: true,
            fingerprints: Some(HmacKey::random()),
            paths: guess.paths,
            certs: guess.certs,
            kubeconfigs: guess.kubeconfigs,
            encryption: guess.encryption,
            pairs: guess.pairs,
            signatures: Some(600),
            ..Request::cpcheck()
        },
    );
    // systemctl show failing (a wrapper first on root's PATH), flock gone.
    bed.ssh("printf '#!/bin/sh\\n[ \"$1\" = show ] && { echo \"Invalid value\" >&2; exit 1; }\\nexec /bin/systemctl \"$@\"\\n' > /usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl && mv /usr/bin/flock /usr/bin/flock.away").unwrap();
    let failing = run(bed, &Request { journals: Journals::None, ..Request::units() });
    bed.ssh("rm /usr/local/sbin/systemctl && mv /usr/bin/flock.away /usr/bin/flock").unwrap();
    Replies { bootstrap, cpcheck, failing }
}

/// The tag words of a reply's lines (the first field of each line that has one).
pub fn tags(reply: &[u8]) -> std::collections::BTreeSet<String> {
    reply.split(|b| *b == b'\n').filter_map(|l| l.iter().position(|b| *b == b'\t').map(|i| String::from_utf8_lossy(&l[..i]).into_owned())).collect()
}

/// A reply as it may be committed: the sha256 of every secret file (a
/// key, a kubeconfig, the encryption config; throwaway ones of a bed, but
/// no key's hash is written down) replaced by zeros.
pub fn masked(reply: &[u8]) -> Vec<u8> {
    let secret = |path: &[u8]| FILES.iter().any(|f| f.kind.is_secret() && f.dest.as_bytes() == path);
    let mut out = Vec::with_capacity(reply.len());
    for line in reply.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        match body.strip_prefix(b"sum\t") {
            Some(rest) if rest.len() > 66 && secret(rest[64..].trim_ascii_start().strip_prefix(b"*").unwrap_or(rest[64..].trim_ascii_start())) => {
                out.extend_from_slice(b"sum\t");
                out.extend_from_slice(&[b'0'; 64]);
                out.extend_from_slice(&line[4 + 64..]);
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}
