//! The executor: runs a plan on a host. Each upload streams to a temp file
//! beside its destination, is sha256-verified on the server, gets its mode and
//! owner, and only then is renamed into place, so a cut connection never leaves
//! a half-written file at a final path (the next run removes the temp).
//!
//! The commit first records, durably, what it makes necessary (daemon-reload,
//! restarts: the plan's marker); each systemctl step then clears its line.
//! A run cut anywhere after the commit is finished by the next one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openssh::Stdio;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bootstrap::desired::{Content, Desired, DesiredFile};
use crate::remote::probe::{pending_marker, TEMP_MARKER};
use crate::remote::lock::Lock;
use crate::kube::health;
use crate::model::{DIRECTORIES, FILES, UNITS};
use crate::output::ui::Ui;
use crate::bootstrap::plan::{human_bytes, Action, Plan};
use crate::kube::rbac::Applied;
use crate::remote::Host;
use crate::Error;

use crate::remote::shell_quote as q;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcome {
    pub bytes_sent: u64,
    pub uploaded: Vec<String>,
    pub restarted: Vec<String>,
    pub started: Vec<String>,
    pub rbac: Vec<Applied>,
    /// Seconds per phase, in order.
    pub phases: Vec<(String, f64)>,
    /// Seconds from the first systemctl step of the apiserver's restart
    /// (stopping its clients, or the restart itself) to its /readyz ok.
    pub api_restart_to_ready: Option<f64>,
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
        hash_cmd = crate::remote::probe::HASH_CMD,
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
///
/// Bounded by progress, not by size: a transfer that moves no byte for the
/// host's timeout is given up (a slow link may take long, a dead one not).
/// When the server refuses (a full disk, a checksum mismatch) its words are
/// the error, not the broken pipe this side sees as a consequence.
pub async fn stage(host: &Host, files: &[(usize, &DesiredFile)], bar: Option<indicatif::ProgressBar>) -> Result<Vec<Staged>, Error> {
    let t0 = Instant::now();
    let stall = host.timeout.max(Duration::from_secs(5));
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
        let (mut last_pos, mut last_move) = (0u64, Instant::now());
        loop {
            tokio::select! {
                r = &mut wait => break r.map_err(|e| host.lost(e))?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    use std::io::Seek;
                    let pos = (&offset).stream_position().unwrap_or(0);
                    if let Some(b) = &bar {
                        b.set_position(pos);
                    }
                    if pos != last_pos {
                        (last_pos, last_move) = (pos, Instant::now());
                    } else if last_move.elapsed() > stall {
                        return Err(Error::Connect(format!("{}: upload of {} made no progress for {}s (--timeout)", host.destination, names(), stall.as_secs())));
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
        let written = match tokio::time::timeout(stall * 4, write).await {
            Ok(w) => w,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no progress")),
        };
        let out = match tokio::time::timeout(stall, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| host.lost(e))?,
            Err(_) => return Err(Error::Connect(format!("{}: upload of {} got no answer for {}s (--timeout)", host.destination, names(), stall.as_secs()))),
        };
        // A server that refused (full disk, checksum) ended the stream
        // early: its stderr says why, the broken pipe here does not.
        if !out.status.success() {
            return Err(Error::Server(format!("{}: upload of {} failed: {}", host.destination, names(), crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim()))));
        }
        written.map_err(|e| host.lost(format!("while sending {}: {e}", names())))?;
        out
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !out.status.success() {
        return Err(Error::Server(format!("{}: upload of {} failed: {}", host.destination, names(), crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim()))));
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(files.iter().zip(temps).map(|((index, f), tmp)| Staged { tmp, index: *index, sent: f.size, secs }).collect())
}

/// Puts staged files in place in one round trip: check this run still holds
/// the lock, record what the commit makes necessary (the plan's marker,
/// written and fsynced before any rename), fsync the temps, then for each
/// file chown, chmod and rename it over its destination (`mv -T`: never
/// into a directory), each step checked, then fsync the directories so the
/// renames survive a crash. Returns the destinations placed, in order; on a
/// failure the error names the file and the step, and the temps not placed
/// are removed.
pub async fn commit(host: &Host, desired: &Desired, staged: &[Staged], marker: &[String], lock: Option<&Lock<'_>>) -> Result<Vec<String>, Error> {
    if staged.is_empty() {
        return Ok(Vec::new());
    }
    let temps: Vec<String> = staged.iter().map(|s| q(&s.tmp)).collect();
    // Each step's own words are kept and reported on the one line that says
    // which file and which step failed.
    let mut script = format!(
        "set -e\nfail() {{ echo \"$1${{o:+: $o}}\" | tr '\\n' ' ' >&2; exit 1; }}\nrun() {{ o=$(\"$@\" 2>&1); }}\ntrap 'rm -f {}' EXIT\n",
        temps.join(" ")
    );
    if let Some(l) = lock {
        script.push_str(&l.fence());
    }
    if !marker.is_empty() {
        let m = pending_marker();
        let lines: Vec<String> = marker.iter().map(|l| q(l)).collect();
        script.push_str(&format!(
            "o=; printf '%s\\n' {lines} > {t} || fail 'cannot write {m}'\nrun sync {t} || fail 'cannot write {m}'\nrun mv -fT {t} {mq} || fail 'cannot write {m}'\n",
            lines = lines.join(" "),
            t = q(&format!("{m}.tmp")),
            mq = q(&m),
        ));
    }
    // The data first (staging started each temp's fsync; this waits for
    // whatever is still being written back), then the renames, then the
    // directories that hold them.
    script.push_str(&format!("run sync {} || fail 'fsync of the uploaded files failed'\n", temps.join(" ")));
    let mut dirs = std::collections::BTreeSet::new();
    for s in staged {
        let f = &desired.files[s.index].spec;
        let (t, d) = (q(&s.tmp), q(f.dest));
        script.push_str(&format!(
            "run chown {o}:{g} {t} || fail 'chown {o}:{g} {dest} failed'\n\
             run chmod {m:o} {t} || fail 'chmod {m:04o} {dest} failed'\n\
             if [ -L {d} ] || {{ [ -e {d} ] && [ ! -f {d} ]; }}; then o=; fail '{dest} is not a regular file'; fi\n\
             run mv -fT {t} {d} || fail 'rename into {dest} failed'\n\
             echo placed {d}\n",
            o = f.owner,
            g = f.group,
            m = f.mode,
            dest = f.dest,
        ));
        dirs.insert(f.dest.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d }));
    }
    script.push_str(&format!("run sync {} || fail 'fsync of the directories failed'\ntrap - EXIT\n", dirs.iter().map(|d| q(d)).collect::<Vec<_>>().join(" ")));
    let out = host.sh(&script).await?;
    let placed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_prefix("placed ")).map(str::to_string).collect();
    if !out.status.success() {
        let why = crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim());
        let before = if placed.is_empty() { String::new() } else { format!(" (placed before it: {})", placed.join(", ")) };
        return Err(Error::Server(format!("{}: commit failed: {why}{before}", host.destination)));
    }
    Ok(placed)
}

/// Removes staged temps that will not be committed (another upload failed).
async fn discard(host: &Host, staged: &[Staged]) {
    if staged.is_empty() {
        return;
    }
    let temps: Vec<String> = staged.iter().map(|s| q(&s.tmp)).collect();
    let _ = host.sh(&format!("rm -f {}", temps.join(" "))).await;
}

/// A shell line removing `lines` from the pending marker once done.
fn clear_marker(lines: &[String]) -> String {
    let m = q(&pending_marker());
    let exprs: Vec<String> = lines.iter().map(|l| format!("-e {}", q(&format!("/^{}$/d", l.replace('.', "\\."))))).collect();
    format!("if [ -f {m} ]; then sed -i {} {m} && {{ [ -s {m} ] || rm -f {m}; }}; fi", exprs.join(" "))
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
                    format!("{} → {}", path.split('?').next().unwrap_or(path), if status == 0 { crate::output::redact::line(body.lines().next().unwrap_or("")) } else { format!("HTTP {status}") })
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
                let why = if status == 0 { crate::output::redact::line(body.lines().next().unwrap_or("")) } else { format!("HTTP {status}") };
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
        Ok(o) => crate::output::redact::block(String::from_utf8_lossy(&o.stdout).trim_end()),
        Err(e) => e.to_string(),
    }
}

/// Waits until every component answers healthy; returns when the
/// apiserver first answered ready.
async fn wait_healthy(host: &Host, clients: &HealthClients, timeout: Duration, ui: &Ui) -> Result<Instant, Error> {
    let start = Instant::now();
    let mut api_ready: Option<Instant> = None;
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
        if api_ready.is_none() && !bad.iter().any(|b| b.component == crate::model::APISERVER) {
            api_ready = Some(Instant::now());
        }
        if bad.is_empty() {
            return Ok(api_ready.unwrap_or_else(Instant::now));
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

/// Waits until every component that elects a leader (all but the
/// apiserver) has its kube-system Lease held by a live holder: renewed after
/// the component last (re)started here, and within the Lease's own
/// `leaseDurationSeconds`. A Lease still naming a holder that died with the
/// old process (after a reset, a restart) does not count.
async fn wait_leaders(host: &Host, api: &kube::Client, desired: &Desired, timeout: Duration, ui: &Ui) -> Result<(), Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let start = Instant::now();
    let electing: Vec<&crate::model::overrides::DesiredUnit> = desired.units.iter().filter(|u| u.spec.component != crate::model::APISERVER).collect();
    // The server's name and clock, and when each component started there.
    let script = format!("hostname; date +%s.%N; systemctl show --timestamp=unix -p ActiveEnterTimestamp {}", electing.iter().map(|u| q(u.spec.file_name)).collect::<Vec<_>>().join(" "));
    let asked = std::time::SystemTime::now();
    let out = host.sh_ok(&script).await?;
    let mut lines = out.lines();
    let hostname = lines.next().unwrap_or("").trim().to_string();
    let server_now: f64 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0.0);
    let local_at = asked.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let skew = if server_now > 0.0 { server_now - local_at } else { 0.0 };
    let started: Vec<u64> = lines.filter_map(|l| l.strip_prefix("ActiveEnterTimestamp=")).map(|v| v.trim_start_matches('@').parse().unwrap_or(0)).collect();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    let mut last = Vec::new();
    let mut released: Vec<&str> = Vec::new();
    loop {
        host.alive().await?;
        let mut waiting = Vec::new();
        for (i, u) in electing.iter().enumerate() {
            let c = u.spec.component;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
            let since = started.get(i).copied().unwrap_or(0);
            let verdict = match tokio::time::timeout(Duration::from_secs(5), leases.get_opt(c)).await {
                Ok(Ok(Some(l))) => {
                    let verdict = health::lease_verdict(&l.spec.clone().unwrap_or_default(), now, since);
                    // Held by this server's previous process, which is gone
                    // (it renewed last before the component restarted here):
                    // release it as that process would have on a clean exit,
                    // so the new one need not wait the Lease out.
                    if verdict.is_err() && !released.contains(&c) && health::held_by_previous_local_process(&l, &hostname, since) {
                        match tokio::time::timeout(Duration::from_secs(5), leases.replace(c, &kube::api::PostParams::default(), &health::released(l))).await {
                            Ok(Ok(_)) => ui.step(&format!("  released {c}'s Lease: its holder stopped with the process this run replaced")),
                            _ => ui.detail(&format!("could not release {c}'s Lease (someone else changed it); waiting it out")),
                        }
                        released.push(c);
                    }
                    verdict
                }
                Ok(Ok(None)) => Err("no Lease yet".into()),
                Ok(Err(e)) => Err(format!("cannot read its Lease: {}", crate::output::redact::line(&e.to_string()))),
                Err(_) => Err("reading its Lease got no answer within 5s".into()),
            };
            if let Err(why) = verdict {
                waiting.push(format!("{c}: {why}"));
            }
        }
        if waiting.is_empty() {
            ui.step(&format!("  leaders elected: {}", electing.iter().map(|u| u.spec.component).collect::<Vec<_>>().join(", ")));
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Server(format!("no live leader in kube-system after {}s: {}", timeout.as_secs(), waiting.join("; "))));
        }
        if waiting != last && start.elapsed() > Duration::from_secs(5) {
            ui.step(&format!("  waiting for leaders ({}s): {}", start.elapsed().as_secs(), waiting.join("; ")));
            last = waiting;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs every action of `plan` in order. `lock` is this run's lock on the
/// server (the commit checks it still holds it).
pub async fn execute(
    host: &Host,
    desired: &Desired,
    plan: &Plan,
    api_config: kube::Config,
    timeout: Duration,
    ui: &Ui,
    lock: Option<&Lock<'_>>,
) -> Result<Outcome, Error> {
    let mut o = Outcome::default();
    let mut t = Instant::now();
    let phase = |o: &mut Outcome, name: &str, t: &mut Instant| {
        o.phases.push((name.to_string(), t.elapsed().as_secs_f64()));
        *t = Instant::now();
    };
    let mut uploads_done = false;
    let mut clients: Option<HealthClients> = None;
    let mut api_restart: Option<Instant> = None;
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
            Action::FixDir { path, mode, owner, group, .. } => {
                ui.step(&a.line());
                host.sh_ok(&format!("chown {owner}:{group} {p} && chmod {mode} {p}", p = q(path))).await?;
            }
            Action::Upload { .. } => {
                if uploads_done {
                    continue;
                }
                uploads_done = true;
                phase(&mut o, "prepare", &mut t);
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
                        let bytes: u64 = s.iter().map(|x| x.sent).sum();
                        ui.step(&format!("upload   {} small file(s), {}, in one session in {:.1}s", s.len(), human_bytes(bytes), s.first().map(|x| x.secs).unwrap_or(0.0)));
                        for st in s {
                            ui.detail(&line(st.index));
                        }
                    }
                    r
                };
                let (l, m) = futures::join!(large, small);
                // Any failure: the temps the other sessions staged go too.
                let mut staged: Vec<Staged> = Vec::new();
                let mut failed: Option<Error> = None;
                for r in l.into_iter().chain(std::iter::once(m)) {
                    match r {
                        Ok(v) => staged.extend(v),
                        Err(e) => failed = failed.or(Some(e)),
                    }
                }
                if let Some(e) = failed {
                    discard(host, &staged).await;
                    return Err(e);
                }
                staged.sort_by_key(|s| s.index);
                let tc = Instant::now();
                let placed = commit(host, desired, &staged, &plan.marker, lock).await?;
                let commit_secs = tc.elapsed().as_secs_f64();
                for s in staged.iter().filter(|s| placed.iter().any(|p| p == desired.files[s.index].spec.dest)) {
                    o.bytes_sent += s.sent;
                    o.uploaded.push(desired.files[s.index].spec.dest.to_string());
                }
                ui.step(&format!("commit   {} file(s) in place (chown, chmod, rename, fsync) in {commit_secs:.1}s", placed.len()));
                phase(&mut o, "upload", &mut t);
            }
            Action::SetMode { dest, mode, owner, group } => {
                ui.step(&a.line());
                host.sh_ok(&format!("chown {owner}:{group} {d} && chmod {mode} {d}", d = q(dest))).await?;
            }
            Action::DaemonReload { .. } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl daemon-reload\n{}", clear_marker(&["daemon-reload".into()]))).await?;
            }
            Action::Enable { units } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl enable --quiet {}", units.join(" "))).await?;
            }
            Action::Stop { units, .. } => {
                api_restart.get_or_insert_with(Instant::now);
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl stop {}", units.iter().map(|u| q(u)).collect::<Vec<_>>().join(" "))).await?;
            }
            Action::Start { unit, .. } => {
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl start {u}\n{}", clear_marker(&[format!("restart {unit}")]), u = q(unit))).await?;
                o.started.push(unit.clone());
            }
            Action::Restart { unit, .. } => {
                if crate::model::unit(crate::model::APISERVER).is_some_and(|u| u.file_name == unit) {
                    api_restart.get_or_insert_with(Instant::now);
                }
                ui.step(&a.line());
                host.sh_ok(&format!("systemctl restart {u}\n{}", clear_marker(&[format!("restart {unit}")]), u = q(unit))).await?;
                o.restarted.push(unit.clone());
            }
            Action::WaitHealthy { .. } => {
                phase(&mut o, "install and start", &mut t);
                ui.step(&a.line());
                let c = HealthClients::open(host, desired, api_config.clone()).await?;
                let ready = wait_healthy(host, &c, timeout, ui).await?;
                o.api_restart_to_ready = api_restart.map(|t| ready.duration_since(t).as_secs_f64());
                ui.step("  healthy: kube-apiserver /livez /readyz, kube-controller-manager /healthz, kube-scheduler /healthz");
                wait_leaders(host, &c.api, desired, timeout, ui).await?;
                phase(&mut o, "wait healthy", &mut t);
                clients = Some(c);
            }
            Action::ApplyRbac { .. } => {
                let c = match &clients {
                    Some(c) => c,
                    None => clients.insert(HealthClients::open(host, desired, api_config.clone()).await?),
                };
                o.rbac = match tokio::time::timeout(timeout, crate::kube::rbac::apply(&c.api)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(Error::Server(format!("applying the RBAC got no answer within {}s (--timeout)", timeout.as_secs()))),
                };
                for r in &o.rbac {
                    ui.step(&format!("apply    {} {} {}", r.kind, r.name, r.result));
                }
                phase(&mut o, "rbac", &mut t);
            }
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
         rm -f {marker}\n\
         systemctl daemon-reload\nsystemctl reset-failed {u} 2>/dev/null || true\n\
         for d in {d}; do [ -d \"$d\" ] && rmdir \"$d\" 2>/dev/null && echo \"removed $d/\"; done\ntrue\n",
        u = units.join(" "),
        f = files.join(" "),
        d = dirs.join(" "),
        m = TEMP_MARKER,
        marker = q(&pending_marker()),
    );
    Ok(host.sh_ok(&script).await?.lines().map(str::to_string).collect())
}
