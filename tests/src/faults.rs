//! The fault suite: runs of `kubectl bootstrap server` cut at random points
//! (a printed seed makes every point replayable) during the upload, the
//! commit, daemon-reload/restart and the health wait, by killing the SSH
//! master, taking the bed's link down, or SIGINT; then a plain run, which
//! must converge: exit 0, cpcheck without a failure (running flags equal the
//! units', nothing waits for daemon-reload), every placed file's sha256 the
//! desired one, no temp file left, and nothing of the cut run left on this
//! machine. The tests run a seeded subset; `cargo xtask faults` the full
//! counts, and writes RELIABILITY.md.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::Bed;
use controlplane::model::{Source, FILES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// SIGKILL the run's SSH master: the connection is gone at once.
    KillMaster,
    /// Take the bed's link down: nothing answers, until keepalives give up.
    LinkDown,
    /// SIGINT to the plugin, as Ctrl-C does.
    Sigint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Upload,
    Commit,
    Restart,
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `reset`, then a deploy from nothing: ~280 MiB to upload.
    FirstDeploy,
    /// A flag of the apiserver (restart framed by stop/start of its clients).
    ApiFlag,
    /// A flag of the scheduler (its restart alone).
    SchedulerFlag,
}

#[derive(Debug, Clone)]
pub struct Trial {
    pub n: usize,
    pub cut: Cut,
    pub phase: Phase,
    pub delay: Duration,
    pub change: Change,
}

/// `cuts` connection cuts spread evenly over the four phases (every fifth
/// by link down), then `sigints` SIGINTs at random phases; delays after the
/// phase begins drawn from `seed`.
pub fn trials(seed: u64, cuts: usize, sigints: usize) -> Vec<Trial> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let phases = [Phase::Upload, Phase::Commit, Phase::Restart, Phase::Wait];
    let mut v = Vec::new();
    for i in 0..cuts + sigints {
        let (cut, phase) = if i < cuts { (if i % 5 == 4 { Cut::LinkDown } else { Cut::KillMaster }, phases[i % 4]) } else { (Cut::Sigint, phases[rng.random_range(0..4)]) };
        let max_ms = match phase {
            Phase::Upload => 900,
            Phase::Commit => 80,
            Phase::Restart => 1500,
            Phase::Wait => 3000,
        };
        let change = match phase {
            Phase::Upload => Change::FirstDeploy,
            _ if rng.random_bool(0.5) => Change::ApiFlag,
            _ => Change::SchedulerFlag,
        };
        v.push(Trial { n: i + 1, cut, phase, delay: Duration::from_millis(rng.random_range(0..=max_ms)), change });
    }
    v
}

/// The seed: `KCP_FAULT_SEED` to replay a run, else a fresh one.
pub fn seed() -> u64 {
    std::env::var("KCP_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub trial: Trial,
    /// The cut happened (the run had not finished before its point).
    pub cut_applied: bool,
    /// The last progress line before the cut.
    pub cut_after: String,
    pub cut_exit: Option<i32>,
    pub converged: bool,
    /// Placed files whose sha256 is not the desired one.
    pub corrupt: Vec<String>,
    /// Temp files left on the server.
    pub temps: usize,
    /// What of the cut run was left on this machine.
    pub local_leftovers: Vec<String>,
    pub problems: Vec<String>,
    pub seconds: f64,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs trials on one bed, keeping track of the flags it deploys.
pub struct Runner<'b> {
    pub bed: &'b Bed,
    api_v: u32,
    sched_v: u32,
    /// Expected sha256 of every asset-sourced file, by destination.
    assets: Vec<(String, String)>,
}

fn sha256_file(p: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap_or_default()))
}

/// Processes whose command line mentions `needle`, as `pid args`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                v.push(format!("{pid} {}", c.trim()));
            }
        }
    }
    v
}

/// What a run of the plugin with pid `pid` left on this machine.
pub fn local_leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("kcp-{pid}-");
    let mut v: Vec<String> = std::fs::read_dir("/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| format!("directory {}", e.path().display()))
        .collect();
    v.extend(processes_mentioning(&format!("/tmp/{prefix}")).into_iter().map(|p| format!("process {p}")));
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        v.push(format!("the plugin itself (pid {pid})"));
    }
    v
}

impl<'b> Runner<'b> {
    pub fn new(bed: &'b Bed) -> Runner<'b> {
        let assets = FILES
            .iter()
            .filter_map(|f| match f.source {
                Source::Asset(c) => c.iter().map(|c| bed.assets.join(c)).find(|p| p.exists()).map(|p| (f.dest.to_string(), sha256_file(&p))),
                _ => None,
            })
            .collect();
        Runner { bed, api_v: 2, sched_v: 2, assets }
    }

    fn overrides(&self) -> Vec<String> {
        vec!["--set".into(), format!("kube-apiserver.v={}", self.api_v), "--set".into(), format!("kube-scheduler.v={}", self.sched_v)]
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = self.bed.bootstrap_args("root");
        a.extend(self.overrides());
        a
    }

    /// What the server should hold: (dest, sha256) for every placed file.
    fn desired(&self) -> Vec<(String, String)> {
        let mut v = self.assets.clone();
        for f in FILES {
            if let Source::Manifest { path, .. } = f.source {
                let name = path.rsplit('/').next().unwrap_or(path);
                let mut c = Command::new(crate::plugin("kubectl-bootstrap"));
                c.args(["manifests", name, "--kubernetes-version", "v1.20"]).args(self.overrides());
                let out = c.output().expect("kubectl-bootstrap manifests");
                assert!(out.status.success(), "manifests {name}: {}", String::from_utf8_lossy(&out.stderr));
                v.push((f.dest.to_string(), hex::encode(Sha256::digest(&out.stdout))));
            }
        }
        v
    }

    /// One trial: prepare, run with a cut, run again, verify.
    pub fn run(&mut self, t: &Trial) -> Outcome {
        let start = Instant::now();
        let mut o = Outcome {
            trial: t.clone(),
            cut_applied: false,
            cut_after: String::new(),
            cut_exit: None,
            converged: false,
            corrupt: Vec::new(),
            temps: 0,
            local_leftovers: Vec::new(),
            problems: Vec::new(),
            seconds: 0.0,
        };
        match t.change {
            Change::FirstDeploy => {
                let mut a = vec!["reset".to_string(), self.bed.dest()];
                a.extend(self.bed.plugin_ssh_args());
                a.push("--yes".into());
                let out = crate::run_bootstrap(&a);
                if !out.status.success() {
                    o.problems.push(format!("reset before the trial failed: {}", String::from_utf8_lossy(&out.stderr)));
                    return o;
                }
            }
            Change::ApiFlag => self.api_v = if self.api_v == 3 { 4 } else { 3 },
            Change::SchedulerFlag => self.sched_v = if self.sched_v == 3 { 4 } else { 3 },
        }
        // The run to cut.
        let mut child = Command::new(crate::plugin("kubectl-bootstrap"))
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl-bootstrap");
        let pid = child.id();
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(l.clone());
                all.push(l);
            }
            all
        });
        let trigger = |l: &str| match t.phase {
            Phase::Upload | Phase::Commit => l.starts_with("upload "),
            Phase::Restart => l.starts_with("systemctl "),
            Phase::Wait => l.starts_with("wait     until healthy"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        let mut hit = false;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    last = l.clone();
                    if trigger(&l) {
                        hit = true;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if hit {
            std::thread::sleep(t.delay);
            while let Ok(l) = rx.try_recv() {
                last = l;
            }
            if matches!(child.try_wait(), Ok(None)) {
                o.cut_applied = true;
                o.cut_after = last.clone();
                match t.cut {
                    Cut::KillMaster => {
                        let _ = Command::new("pkill").args(["-KILL", "-f", &format!("/tmp/kcp-{pid}-")]).status();
                    }
                    Cut::LinkDown => {
                        let _ = self.bed.link(false);
                    }
                    Cut::Sigint => unsafe {
                        libc::kill(pid as i32, libc::SIGINT);
                    },
                }
            }
        }
        // The cut run ends by itself (a lost link within ~30 s of keepalives).
        let end = Instant::now() + Duration::from_secs(150);
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            if Instant::now() > end {
                let _ = child.kill();
                o.problems.push("the cut run did not end within 150s".into());
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if t.cut == Cut::LinkDown {
            let _ = self.bed.link(true);
        }
        let lines = reader.join().unwrap_or_default();
        o.cut_exit = status.and_then(|s| s.code());
        if o.cut_applied {
            let want: &[i32] = match t.cut {
                Cut::Sigint => &[130],
                // Cut while only local work or a wait remained, the run may
                // still report the server's failure (1) rather than the link (3).
                _ => &[1, 3],
            };
            if !o.cut_exit.is_some_and(|c| want.contains(&c)) {
                o.problems.push(format!(
                    "the cut run exited {:?}, expected one of {want:?}; its last lines: {}",
                    o.cut_exit,
                    lines.iter().rev().take(3).cloned().collect::<Vec<_>>().join(" | ")
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        o.local_leftovers = local_leftovers(pid);
        // Nothing of a cut run may stay on this machine (an ssh master
        // killed by the test leaves nothing either: its directory goes with
        // the run).
        if !o.local_leftovers.is_empty() {
            o.problems.push(format!("left on the jumpbox: {}", o.local_leftovers.join("; ")));
        }
        // The next run converges.
        let out = crate::run_bootstrap(&self.args());
        if !out.status.success() {
            o.problems.push(format!("the next run failed ({:?}): {}", out.status.code(), crate::redact_tail(&String::from_utf8_lossy(&out.stderr))));
        }
        let mut c = self.bed.cpcheck_args();
        c.extend(["-o".into(), "json".into(), "--only".into(), "host".into(), "--only".into(), "health".into(), "--only".into(), "leader".into()]);
        c.extend(self.overrides());
        let check = crate::cpcheck(&c);
        let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap_or_default();
        let failed: Vec<String> = v["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "FAIL")
            .map(|c| format!("{}: {}", c["id"].as_str().unwrap_or(""), c["detail"].as_str().unwrap_or("")))
            .collect();
        let running_ok = v["checks"].as_array().into_iter().flatten().filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("host.running."))).all(|c| c["status"] == "PASS");
        if check.status.code() != Some(0) || !failed.is_empty() || !running_ok {
            o.problems.push(format!("cpcheck after the next run: exit {:?}, failed: {}", check.status.code(), failed.join("; ")));
        }
        // Every placed file as desired, no temp anywhere.
        let desired = self.desired();
        let sums = self.bed.ssh(&format!("sha256sum {} 2>&1; true", desired.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(" "))).unwrap_or_default();
        for (dest, want) in &desired {
            if !sums.lines().any(|l| l.starts_with(want.as_str()) && l.ends_with(dest.as_str())) {
                o.corrupt.push(dest.clone());
            }
        }
        if !o.corrupt.is_empty() {
            o.problems.push(format!("not as desired: {}", o.corrupt.join(", ")));
        }
        let dirs: Vec<&str> = controlplane::model::DIRECTORIES.iter().map(|d| d.path).collect();
        o.temps = self.bed.ssh(&format!("ls -a {} 2>/dev/null | grep -c kcp-tmp; true", dirs.join(" "))).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(usize::MAX);
        if o.temps != 0 {
            o.problems.push(format!("{} temp file(s) left on the server", o.temps));
        }
        o.converged = out.status.success() && check.status.code() == Some(0) && o.corrupt.is_empty();
        o.seconds = start.elapsed().as_secs_f64();
        o
    }
}

/// One line per trial for a report.
pub fn describe(o: &Outcome) -> String {
    let t = &o.trial;
    format!(
        "#{:<2} {:<11} {:<7} +{:>4}ms {:<13} cut={} exit={:<4} converged={} corrupt={} temps={} leftovers={} {:>5.1}s  after `{}`{}",
        t.n,
        format!("{:?}", t.cut),
        format!("{:?}", t.phase),
        t.delay.as_millis(),
        format!("{:?}", t.change),
        if o.cut_applied { "yes" } else { "no" },
        o.cut_exit.map(|c| c.to_string()).unwrap_or("-".into()),
        o.converged,
        o.corrupt.len(),
        o.temps,
        o.local_leftovers.len(),
        o.seconds,
        o.cut_after.chars().take(60).collect::<String>(),
        if o.ok() { String::new() } else { format!("\n    PROBLEMS: {}", o.problems.join("\n    ")) }
    )
}
