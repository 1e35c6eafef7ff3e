//! The executor: runs a plan on a host. Each upload streams to a temp file
//! beside its destination, is sha256-verified on the server, gets its mode and
//! owner, and only then is renamed into place, so a cut connection never leaves
//! a half-written file at a final path (the next run removes the temp).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openssh::Stdio;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::desired::{Content, Desired, DesiredFile};
use crate::facts::TEMP_MARKER;
use crate::health;
use crate::model::{DIRECTORIES, FILES, UNITS};
use crate::output::Ui;
use crate::plan::{human_bytes, Action, Plan};
use crate::rbac::Applied;
use crate::ssh::Host;
use crate::Error;

use crate::ssh::shell_quote as q;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcome {
    pub bytes_sent: u64,
    pub uploaded: Vec<String>,
    pub restarted: Vec<String>,
    pub started: Vec<String>,
    pub rbac: Vec<Applied>,
    /// Seconds per phase, in order.
    pub phases: Vec<(String, f64)>,
}

/// A file streamed to its temp path and verified, not yet in place.
pub struct Staged {
    pub tmp: String,
    pub index: usize,
    pub sent: u64,
    pub secs: f64,
}

/// Streams one file to a temp file beside its destination, hashing it on the
/// server as it arrives (`tee | sha256sum`) and refusing a mismatch. The temp
/// is private (umask 077) until commit gives it its mode and owner.
pub async fn stage(host: &Host, f: &DesiredFile, index: usize, bar: Option<indicatif::ProgressBar>) -> Result<Staged, Error> {
    let t0 = Instant::now();
    let dest = f.spec.dest;
    let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
    let tmp = format!("{dir}/.{name}{TEMP_MARKER}{:08x}", rand::random::<u32>());
    let script = format!(
        "set -e\n{hash_cmd}\nt={t}\numask 077\nh=$(tee \"$t\" | $H | cut -d' ' -f1)\n\
         if [ \"$h\" != {sha} ]; then rm -f \"$t\"; echo \"{dest}: checksum mismatch after upload\" >&2; exit 1; fi\n",
        t = q(&tmp),
        sha = f.sha256,
        hash_cmd = crate::facts::HASH_CMD,
    );
    let mut child = host
        .command(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| host.lost(e))?;
    let mut stdin = child.stdin().take().expect("piped stdin");
    let mut sent = 0u64;
    let write = async {
        match &f.content {
            Content::Text(t) => {
                stdin.write_all(t.as_bytes()).await?;
                sent += t.len() as u64;
            }
            Content::Path(p) => {
                let mut file = tokio::fs::File::open(p).await?;
                let mut buf = vec![0u8; 1 << 18];
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    stdin.write_all(&buf[..n]).await?;
                    sent += n as u64;
                    if let Some(b) = &bar {
                        b.set_position(sent);
                    }
                }
            }
        }
        stdin.shutdown().await?;
        drop(stdin);
        Ok::<(), std::io::Error>(())
    };
    let written = write.await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let out = child.wait_with_output().await.map_err(|e| host.lost(e))?;
    written.map_err(|e| host.lost(format!("while sending {dest}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Server(format!("{}: upload of {dest} failed: {}", host.destination, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(Staged { tmp, index, sent, secs: t0.elapsed().as_secs_f64() })
}

/// Puts staged files in place in one round trip: fsync the temps, give them
/// their owner and mode, then rename each over its destination.
pub async fn commit(host: &Host, desired: &Desired, staged: &[Staged]) -> Result<(), Error> {
    if staged.is_empty() {
        return Ok(());
    }
    let mut script = String::from("set -e\n");
    let temps: Vec<String> = staged.iter().map(|s| q(&s.tmp)).collect();
    script.push_str(&format!("sync {} 2>/dev/null || sync\n", temps.join(" ")));
    for s in staged {
        let f = &desired.files[s.index].spec;
        script.push_str(&format!("chown {}:{} {t} && chmod {:o} {t} && mv -f {t} {}\n", f.owner, f.group, f.mode, q(f.dest), t = q(&s.tmp)));
    }
    host.sh_ok(&script).await.map(drop)
}

/// Files at least this big stream PARALLEL_LARGE at a time; smaller ones
/// PARALLEL_SMALL at a time, all over the one connection. Together they stay
/// well under sshd's default MaxSessions (10 sessions per connection).
const SMALL_FILE: u64 = 1 << 20;
const PARALLEL_LARGE: usize = 2;
const PARALLEL_SMALL: usize = 4;

/// Why a component is not healthy yet.
#[derive(Debug, Clone)]
struct Unhealthy {
    component: &'static str,
    why: String,
}

/// The apiserver's, controller-manager's and scheduler's health endpoints.
pub struct HealthClients {
    pub api: kube::Client,
    pub others: Vec<(&'static str, kube::Client)>,
}

impl HealthClients {
    pub async fn open(host: &Host, desired: &Desired, api_config: kube::Config) -> Result<HealthClients, Error> {
        let mut others = Vec::new();
        let mut api = None;
        for u in &desired.units {
            let port = u.serving_port();
            let addr = health::reach_address(u.bind_address());
            if u.spec.component == "kube-apiserver" {
                api = Some(health::api_client(host, api_config.clone(), port).await?);
            } else {
                others.push((u.spec.component, health::anonymous_client(host, addr, port).await?));
            }
        }
        Ok(HealthClients { api: api.ok_or_else(|| Error::Input("the manifests define no kube-apiserver".into()))?, others })
    }

    async fn check(&self) -> Vec<Unhealthy> {
        let mut bad = Vec::new();
        for path in ["/livez?verbose", "/readyz?verbose"] {
            let (status, body) = health::get(&self.api, path).await;
            if status != 200 {
                let failing = health::failing_checks(&body);
                let why = if failing.is_empty() {
                    format!("{} → {}", path.split('?').next().unwrap_or(path), if status == 0 { body.lines().next().unwrap_or("").to_string() } else { format!("HTTP {status}") })
                } else {
                    format!("{} failing: {}", path.split('?').next().unwrap_or(path), failing.join(", "))
                };
                bad.push(Unhealthy { component: "kube-apiserver", why });
                break;
            }
        }
        for (c, client) in &self.others {
            let (status, body) = health::get(client, "/healthz").await;
            if status != 200 {
                let why = if status == 0 { body.lines().next().unwrap_or("").to_string() } else { format!("HTTP {status}") };
                bad.push(Unhealthy { component: c, why: format!("/healthz → {why}") });
            }
        }
        bad
    }
}

/// `systemctl status` line and the journal's last lines for a component.
pub async fn diagnose(host: &Host, unit: &str) -> String {
    let script = format!(
        "systemctl status {u} --no-pager -n0 2>&1 | grep -m1 'Active:' ; echo '--- journalctl -u {u} (last 20 lines)'; journalctl -u {u} -n 20 --no-pager -o short-iso 2>&1",
        u = q(unit)
    );
    match host.sh(&script).await {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim_end().to_string(),
        Err(e) => e.to_string(),
    }
}

async fn wait_healthy(host: &Host, clients: &HealthClients, timeout: Duration, ui: &Ui) -> Result<(), Error> {
    let start = Instant::now();
    let units: Vec<&str> = UNITS.iter().map(|u| u.file_name).collect();
    let restarts = |out: &str| -> BTreeMap<String, u32> {
        let mut m = BTreeMap::new();
        let mut cur = 0usize;
        for l in out.lines() {
            if let Some(v) = l.strip_prefix("NRestarts=") {
                if let Some(u) = units.get(cur) {
                    m.insert(u.to_string(), v.parse().unwrap_or(0));
                }
                cur += 1;
            }
        }
        m
    };
    let show = format!("for u in {}; do systemctl show -p NRestarts \"$u\"; done", units.join(" "));
    let baseline = restarts(&host.sh_ok(&show).await?);
    let mut last_report = Instant::now();
    loop {
        let bad = clients.check().await;
        if bad.is_empty() {
            return Ok(());
        }
        // A unit restarting again and again will not get healthy: stop waiting.
        let now = restarts(&host.sh_ok(&show).await?);
        // Components that need the apiserver may restart while it is down:
        // count their restarts only once it answers.
        let api_down = bad.iter().any(|b| b.component == "kube-apiserver");
        let looping: Vec<&Unhealthy> = bad
            .iter()
            .filter(|b| b.component == "kube-apiserver" || !api_down)
            .filter(|b| {
                let u = format!("{}.service", b.component);
                now.get(&u).unwrap_or(&0).saturating_sub(*baseline.get(&u).unwrap_or(&0)) >= 3
            })
            .collect();
        let timed_out = start.elapsed() >= timeout;
        if timed_out || !looping.is_empty() {
            let culprits: Vec<&Unhealthy> = if looping.is_empty() { bad.iter().collect() } else { looping };
            let mut msg = String::new();
            for b in culprits {
                let reason = if timed_out { format!("not healthy after {}s", timeout.as_secs()) } else { "keeps restarting".to_string() };
                msg.push_str(&format!("{} {reason} ({})\n", b.component, b.why));
                msg.push_str(&diagnose(host, &format!("{}.service", b.component)).await);
                msg.push('\n');
            }
            return Err(Error::Server(msg.trim_end().to_string()));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            ui.step(&format!("  waiting ({}s): {}", start.elapsed().as_secs(), bad.iter().map(|b| format!("{} {}", b.component, b.why)).collect::<Vec<_>>().join("; ")));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the components that elect a leader (all but the apiserver)
/// hold their kube-system Lease: until then nothing reconciles.
async fn wait_leaders(api: &kube::Client, desired: &Desired, timeout: Duration, ui: &Ui) -> Result<(), Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let start = Instant::now();
    let names: Vec<&str> = desired.units.iter().map(|u| u.spec.component).filter(|c| *c != "kube-apiserver").collect();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    loop {
        let mut missing = Vec::new();
        for n in &names {
            let held = leases.get_opt(n).await.ok().flatten().and_then(|l| l.spec).is_some_and(|s| s.holder_identity.is_some_and(|h| !h.is_empty()));
            if !held {
                missing.push(*n);
            }
        }
        if missing.is_empty() {
            ui.step(&format!("  leaders elected: {}", names.join(", ")));
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Server(format!("no leader Lease in kube-system after {}s for: {}", timeout.as_secs(), missing.join(", "))));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs every action of `plan` in order.
pub async fn execute<'a>(
    host: &Host,
    desired: &Desired,
    plan: &'a Plan,
    api_config: kube::Config,
    timeout: Duration,
    ui: &Ui,
) -> Result<Outcome, Error> {
    let mut o = Outcome::default();
    let mut t = Instant::now();
    let phase = |o: &mut Outcome, name: &str, t: &mut Instant| {
        o.phases.push((name.to_string(), t.elapsed().as_secs_f64()));
        *t = Instant::now();
    };
    let mut uploads_done = false;
    for a in &plan.actions {
        match a {
            Action::RemoveStale { path } => {
                ui.step(&a.line());
                host.sh_ok(&format!("rm -f {}", q(path))).await?;
            }
            Action::CreateDir { path, mode } => {
                ui.step(&a.line());
                host.sh_ok(&format!("install -d -m {mode} -o root -g root {}", q(path))).await?;
            }
            Action::Upload { .. } => {
                if uploads_done {
                    continue;
                }
                uploads_done = true;
                let uploads: Vec<&Action> = plan.actions.iter().filter(|a| matches!(a, Action::Upload { .. })).collect();
                let multi = ui.tty.then(indicatif::MultiProgress::new);
                // Big files are bandwidth-bound (a couple at a time keeps the
                // link full), small ones latency-bound (many at a time).
                let big = |a: &&Action| matches!(a, Action::Upload { bytes, .. } if *bytes >= SMALL_FILE);
                let (large, small): (Vec<&Action>, Vec<&Action>) = uploads.into_iter().partition(big);
                let stage_all = |list: Vec<&'a Action>, n: usize| {
                    futures::stream::iter(list.into_iter().map(|a| {
                    let Action::Upload { index, .. } = a else { unreachable!() };
                    let f = &desired.files[*index];
                    let bar = multi.as_ref().and_then(|m| ui.bar(f.size, f.spec.dest).map(|b| m.add(b)));
                    async move {
                        let r = stage(host, f, *index, bar).await;
                        if let Ok(s) = &r {
                            ui.step(&format!("{} in {:.1}s ({}/s)", a.line(), s.secs, human_bytes((s.sent as f64 / s.secs.max(1e-3)) as u64)));
                        }
                        r
                    }
                    }))
                    .buffer_unordered(n)
                    .collect::<Vec<Result<Staged, Error>>>()
                };
                let (l, m) = futures::join!(stage_all(large, PARALLEL_LARGE), stage_all(small, PARALLEL_SMALL));
                let mut staged: Vec<Staged> = l.into_iter().chain(m).collect::<Result<_, _>>()?;
                staged.sort_by_key(|s| s.index);
                let tc = Instant::now();
                commit(host, desired, &staged).await?;
                let commit_secs = tc.elapsed().as_secs_f64();
                for s in &staged {
                    o.bytes_sent += s.sent;
                    o.uploaded.push(desired.files[s.index].spec.dest.to_string());
                }
                ui.step(&format!("commit   {} file(s) in place (fsync, chown, chmod, rename) in {commit_secs:.1}s", staged.len()));
            }
            Action::SetMode { dest, mode, owner, group } => {
                ui.step(&a.line());
                host.sh_ok(&format!("chown {owner}:{group} {d} && chmod {mode} {d}", d = q(dest))).await?;
            }
            Action::DaemonReload => {
                phase(&mut o, "upload", &mut t);
                ui.step(&a.line());
                host.sh_ok("systemctl daemon-reload").await?;
            }
            Action::Enable { units } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl enable --quiet {}", units.join(" "))).await?;
            }
            Action::Start { unit } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl start {}", q(unit))).await?;
                o.started.push(unit.clone());
            }
            Action::Restart { unit, .. } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl restart {}", q(unit))).await?;
                o.restarted.push(unit.clone());
            }
            Action::WaitHealthy { .. } => {
                phase(&mut o, "install and start", &mut t);
                ui.step(&a.line());
                let clients = HealthClients::open(host, desired, api_config.clone()).await?;
                wait_healthy(host, &clients, timeout, ui).await?;
                wait_leaders(&clients.api, desired, timeout, ui).await?;
                phase(&mut o, "wait healthy", &mut t);
                ui.step("  all healthy: kube-apiserver /livez /readyz, kube-controller-manager /healthz, kube-scheduler /healthz");
                // RBAC uses the same tunnel.
                if plan.actions.iter().any(|a| matches!(a, Action::ApplyRbac { .. })) {
                    o.rbac = crate::rbac::apply(&clients.api).await?;
                    for r in &o.rbac {
                        ui.step(&format!("apply    {} {} {}", r.kind, r.name, r.result));
                    }
                    phase(&mut o, "rbac", &mut t);
                }
            }
            Action::ApplyRbac { .. } => {}
        }
    }
    Ok(o)
}

/// `kubectl bootstrap reset`: stops and disables the units, removes every file
/// bootstrap places and its own directories once empty. etcd and everything
/// else stay. Returns what it did, one line each.
pub async fn reset(host: &Host) -> Result<Vec<String>, Error> {
    let units: Vec<&str> = UNITS.iter().map(|u| u.file_name).collect();
    let files: Vec<String> = FILES.iter().map(|f| q(f.dest)).collect();
    let dirs: Vec<String> = DIRECTORIES.iter().filter(|d| d.owned).map(|d| q(d.path)).collect();
    let script = format!(
        "set -e\nfor u in {u}; do\n  if systemctl cat \"$u\" >/dev/null 2>&1; then systemctl disable --now --quiet \"$u\" && echo \"stopped and disabled $u\"; fi\ndone\n\
         for f in {f}; do\n  d=$(dirname \"$f\"); b=$(basename \"$f\")\n  for t in \"$d\"/.\"$b\"{m}*; do [ -e \"$t\" ] && rm -f \"$t\"; done\n  if [ -e \"$f\" ]; then rm -f \"$f\" && echo \"removed $f\"; fi\ndone\n\
         systemctl daemon-reload\nsystemctl reset-failed {u} 2>/dev/null || true\n\
         for d in {d}; do [ -d \"$d\" ] && rmdir \"$d\" 2>/dev/null && echo \"removed $d/\"; done\ntrue\n",
        u = units.join(" "),
        f = files.join(" "),
        d = dirs.join(" "),
        m = TEMP_MARKER,
    );
    Ok(host.sh_ok(&script).await?.lines().map(str::to_string).collect())
}
