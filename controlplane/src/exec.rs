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

/// The server-side script that receives `files` back to back on stdin: each
/// goes to a temp file beside its destination (exactly its size, `head -c`),
/// its sha256 is checked on the server and a mismatch refused, and their
/// fsync is started (commit waits for it). With OpenSSL's hasher (SHA-NI, ~1.8
/// GB/s) a temp is hashed back from the page cache once it has arrived:
/// cheaper than `tee | hash`, whose 8 KiB pipe copies cost more than the
/// hash. With only coreutils' slower sha256sum, a large file's hash overlaps
/// its transfer instead. Temps are private (umask 077) until commit gives
/// them their mode and owner; a failure removes them.
fn stage_script(files: &[(&DesiredFile, &str)]) -> String {
    let temps: Vec<String> = files.iter().map(|(_, t)| q(t)).collect();
    let mut s = format!(
        "set -e\n{hash_cmd}\numask 077\ntrap 'rm -f {all}' EXIT\n\
         recv() {{\n\
           if [ \"$2\" -lt {SMALL_FILE} ] || [ \"${{H%% *}}\" = openssl ]; then head -c \"$2\" > \"$1\"; h=$($H < \"$1\" | cut -d' ' -f1)\n\
           else h=$(head -c \"$2\" | tee \"$1\" | $H | cut -d' ' -f1); fi\n\
           [ \"$(stat -c %s \"$1\")\" = \"$2\" ] && [ \"$h\" = \"$3\" ] || {{ echo \"$4: checksum mismatch after upload\" >&2; exit 1; }}\n\
         }}\n",
        hash_cmd = crate::facts::HASH_CMD,
        all = temps.join(" "),
    );
    for (f, t) in files {
        s.push_str(&format!("recv {} {} {} {}\n", q(t), f.size, f.sha256, q(f.spec.dest)));
    }
    // Start the fsync and let the session end: the next file streams while
    // this one is written back, and commit's fsync waits for what is left.
    s.push_str(&format!("trap - EXIT\n(sync {} </dev/null >/dev/null 2>&1 &)\n", temps.join(" ")));
    s
}

/// Streams `files` to the server in one session, back to back (see
/// [`stage_script`]). One large file per session keeps a couple of streams
/// busy; all the small ones share one session, so they cost one round trip.
///
/// A single file from disk is handed to the SSH master as the session's
/// stdin, so the master reads it straight from the page cache and this
/// process stays out of the data path (as `ssh host cmd < file` does); the
/// progress bar follows the file offset the two share. Anything else is
/// written through a pipe.
pub async fn stage(host: &Host, files: &[(usize, &DesiredFile)], bar: Option<indicatif::ProgressBar>) -> Result<Vec<Staged>, Error> {
    let t0 = Instant::now();
    let temps: Vec<String> = files
        .iter()
        .map(|(_, f)| {
            let dest = f.spec.dest;
            let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            format!("{dir}/.{name}{TEMP_MARKER}{:08x}", rand::random::<u32>())
        })
        .collect();
    let pairs: Vec<(&DesiredFile, &str)> = files.iter().zip(&temps).map(|((_, f), t)| (*f, t.as_str())).collect();
    let names = || files.iter().map(|(_, f)| f.spec.dest).collect::<Vec<_>>().join(", ");
    let mut cmd = host.command(&stage_script(&pairs));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let out = if let [(_, DesiredFile { content: Content::Path(p), .. })] = files {
        let file = std::fs::File::open(p).map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
        let offset = file.try_clone().map_err(|e| Error::Input(format!("{}: {e}", p.display())))?;
        let child = cmd.stdin(Stdio::from(file)).spawn().await.map_err(|e| host.lost(e))?;
        let wait = child.wait_with_output();
        tokio::pin!(wait);
        loop {
            tokio::select! {
                r = &mut wait => break r.map_err(|e| host.lost(e))?,
                _ = tokio::time::sleep(Duration::from_millis(100)), if bar.is_some() => {
                    use std::io::Seek;
                    if let (Some(b), Ok(pos)) = (&bar, (&offset).stream_position()) {
                        b.set_position(pos);
                    }
                }
            }
        }
    } else {
        let mut child = cmd.stdin(Stdio::piped()).spawn().await.map_err(|e| host.lost(e))?;
        let mut stdin = child.stdin().take().expect("piped stdin");
        let write = async {
            for (_, f) in files {
                match &f.content {
                    Content::Text(t) => stdin.write_all(t.as_bytes()).await?,
                    // Exactly the size that was hashed: a file that changed
                    // since fails the server's check instead of shifting the
                    // files after it.
                    Content::Path(p) => drop(tokio::io::copy(&mut tokio::fs::File::open(p).await?.take(f.size), &mut stdin).await?),
                }
            }
            stdin.shutdown().await?;
            drop(stdin);
            Ok::<(), std::io::Error>(())
        };
        let written = write.await;
        let out = child.wait_with_output().await.map_err(|e| host.lost(e))?;
        written.map_err(|e| host.lost(format!("while sending {}: {e}", names())))?;
        out
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !out.status.success() {
        return Err(Error::Server(format!("{}: upload of {} failed: {}", host.destination, names(), String::from_utf8_lossy(&out.stderr).trim())));
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(files.iter().zip(temps).map(|((index, f), tmp)| Staged { tmp, index: *index, sent: f.size, secs }).collect())
}

/// Puts staged files in place in one round trip: fsync the temps, give each
/// its owner and mode, rename it over its destination, then fsync the
/// directories so the renames survive a crash.
pub async fn commit(host: &Host, desired: &Desired, staged: &[Staged]) -> Result<(), Error> {
    if staged.is_empty() {
        return Ok(());
    }
    // The data first (staging started each temp's fsync; this waits for
    // whatever is still being written back), then the renames, then the
    // directories that hold them.
    let temps: Vec<String> = staged.iter().map(|s| q(&s.tmp)).collect();
    let mut script = format!("set -e\nsync {}\n", temps.join(" "));
    let mut dirs = std::collections::BTreeSet::new();
    for s in staged {
        let f = &desired.files[s.index].spec;
        script.push_str(&format!("chown {}:{} {t} && chmod {:o} {t} && mv -f {t} {}\n", f.owner, f.group, f.mode, q(f.dest), t = q(&s.tmp)));
        dirs.insert(f.dest.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d }));
    }
    script.push_str(&format!("sync {}\n", dirs.iter().map(|d| q(d)).collect::<Vec<_>>().join(" ")));
    host.sh_ok(&script).await.map(drop)
}

/// Files at least this big stream PARALLEL_LARGE at a time, one per session;
/// smaller ones share one session. Three sessions at most, well under sshd's
/// default MaxSessions (10 per connection).
const SMALL_FILE: u64 = 1 << 20;
const PARALLEL_LARGE: usize = 2;

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
pub async fn execute(
    host: &Host,
    desired: &Desired,
    plan: &Plan,
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
                // Big files are bandwidth-bound: a couple at a time keep the
                // link full, largest first so the streams end together. The
                // small ones are latency-bound: all in one session beside them.
                let mut files: Vec<(usize, &DesiredFile)> = uploads
                    .iter()
                    .map(|a| {
                        let Action::Upload { index, .. } = a else { unreachable!() };
                        (*index, &desired.files[*index])
                    })
                    .collect();
                files.sort_by_key(|(_, f)| std::cmp::Reverse(f.size));
                let (large, small): (Vec<_>, Vec<_>) = files.into_iter().partition(|(_, f)| f.size >= SMALL_FILE);
                let line = |index: usize| {
                    uploads.iter().find(|a| matches!(a, Action::Upload { index: i, .. } if *i == index)).map(|a| a.line()).unwrap_or_default()
                };
                let large = futures::stream::iter(large.into_iter().map(|(index, f)| {
                    let bar = multi.as_ref().and_then(|m| ui.bar(f.size, f.spec.dest).map(|b| m.add(b)));
                    let line = &line;
                    async move {
                        let r = stage(host, &[(index, f)], bar).await;
                        if let Ok(s) = &r {
                            ui.step(&format!("{} in {:.1}s ({}/s)", line(index), s[0].secs, human_bytes((s[0].sent as f64 / s[0].secs.max(1e-3)) as u64)));
                        }
                        r
                    }
                }))
                .buffer_unordered(PARALLEL_LARGE)
                .collect::<Vec<Result<Vec<Staged>, Error>>>();
                let small = async {
                    if small.is_empty() {
                        return Ok(Vec::new());
                    }
                    let r = stage(host, &small, None).await;
                    if let Ok(s) = &r {
                        for st in s {
                            ui.step(&format!("{} in one session with {} other small file(s), {:.1}s", line(st.index), s.len() - 1, st.secs));
                        }
                    }
                    r
                };
                let (l, m) = futures::join!(large, small);
                let l: Vec<Vec<Staged>> = l.into_iter().collect::<Result<_, _>>()?;
                let mut staged: Vec<Staged> = l.into_iter().flatten().chain(m?).collect();
                staged.sort_by_key(|s| s.index);
                let tc = Instant::now();
                commit(host, desired, &staged).await?;
                let commit_secs = tc.elapsed().as_secs_f64();
                for s in &staged {
                    o.bytes_sent += s.sent;
                    o.uploaded.push(desired.files[s.index].spec.dest.to_string());
                }
                ui.step(&format!("commit   {} file(s) in place (chown, chmod, rename, fsync) in {commit_secs:.1}s", staged.len()));
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
