//! Helpers for the end-to-end tests: a bed per test, named uniquely so tests
//! run side by side, torn down when the test ends, passes or panics; the
//! plugin binaries; and snapshots of the server's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub use testbed::{Bed, BedOptions, Cluster, Os};

pub mod diagnose_bed;
pub mod faults;
pub mod probe_bed;
pub mod report;

/// The last lines of a plugin's stderr, for a failure message.
pub fn redact_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Brings up a fresh bed or fails the test saying why (never skips).
pub fn bed(label: &str) -> Bed {
    bed_with(label, &BedOptions::default())
}

/// [`bed`] with a shaped link or zstd on the server.
pub fn bed_with(label: &str, options: &BedOptions) -> Bed {
    // The plugins are built before any bed exists: a test's bounded waits
    // (for an upload to start, a lock to be taken) never include a build.
    plugin("kubectl-bootstrap");
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    match Bed::up_with(&name, options) {
        Ok(b) => b,
        Err(e) => panic!("the test bed could not start (needs root, systemd-nspawn, debootstrap; run scripts/install-prereqs.sh): {e:#}"),
    }
}

/// Brings up a fresh bed of `n` servers (one bridge, stacked etcd) or
/// fails the test saying why (never skips).
pub fn cluster(label: &str, n: u8) -> Cluster {
    plugin("kubectl-bootstrap");
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!("{label}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    match Cluster::up(&name, n) {
        Ok(c) => c,
        Err(e) => panic!("the test bed could not start (needs root, systemd-nspawn, debootstrap; run scripts/install-prereqs.sh): {e:#}"),
    }
}

/// scp a local file to the server as root.
pub fn scp(bed: &Bed, local: &Path, remote: &str) {
    testbed::run(Command::new("scp").args(["-q"]).args(bed.ssh_options()).arg(local).arg(format!("{}:{remote}", bed.dest())))
        .unwrap_or_else(|e| panic!("scp {} → {remote}: {e:#}", local.display()));
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The path of a plugin binary, built once per test process.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let st = Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args(["build", "--quiet", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck"])
            .status()
            .expect("cargo build");
        assert!(st.success(), "building the plugins failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    target.join("debug").join(name)
}

/// Runs `kubectl-bootstrap ARGS` as the plain binary (no TTY).
pub fn bootstrap(args: &[&str]) -> Output {
    Command::new(plugin("kubectl-bootstrap")).args(args).output().expect("run kubectl-bootstrap")
}

/// The usual `server` arguments for a bed, as `user`.
pub fn server_args(bed: &Bed, user: &str) -> Vec<String> {
    bed.bootstrap_args(user)
}

pub fn run_bootstrap(args: &[String]) -> Output {
    bootstrap(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Every file under the paths bootstrap touches, with sha256, mode and owner:
/// equal snapshots mean the server is byte-for-byte unchanged there.
pub fn snapshot(bed: &Bed) -> String {
    bed.ssh(
        "for d in /usr/local/bin /var/lib/kubernetes /etc/kubernetes /etc/systemd/system; do \
           if [ -d \"$d\" ]; then \
             find \"$d\" -xdev \\( -type f -o -type d -o -type l \\) -printf '%p %m %u:%g %y\\n'; \
             find \"$d\" -xdev -type f -exec sha256sum {} +; \
           else echo \"absent $d\"; fi; \
         done | sort; systemctl list-unit-files 'kube-*' --no-legend 2>/dev/null; \
         for u in kube-apiserver kube-controller-manager kube-scheduler; do \
           systemctl show -p ActiveState -p ActiveEnterTimestampMonotonic -p NeedDaemonReload \"$u\"; done; true",
    )
    .expect("snapshot")
}

/// Where some part (any 12 consecutive characters) of a private key body
/// from `secrets` ([`testbed::pki::secret_bodies`]) appears in `text`.
pub fn leak(text: &str, secrets: &[String]) -> Option<String> {
    for body in secrets {
        let b: Vec<char> = body.chars().collect();
        for w in b.windows(12) {
            let w: String = w.iter().collect();
            if text.contains(&w) {
                return Some(w);
            }
        }
    }
    None
}

/// (ActiveEnterTimestampMonotonic, NRestarts) of a unit: a restart someone
/// asked for moves the first without raising the second; systemd's own
/// Restart=on-failure raises the second.
pub fn active_since(bed: &Bed, unit: &str) -> (u64, u64) {
    let out = bed.ssh(&format!("systemctl show -p ActiveEnterTimestampMonotonic -p NRestarts {unit}")).unwrap();
    let get = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (get("ActiveEnterTimestampMonotonic="), get("NRestarts="))
}

/// For a unit assertion's failure message: each unit's state, NRestarts
/// and InvocationID, and its journal's last lines on the server.
pub fn journals(bed: &Bed, units: &[&str]) -> String {
    let script: String = units
        .iter()
        .map(|u| {
            format!(
                "echo '=== {u}'; systemctl show -p ActiveState -p SubState -p NRestarts -p InvocationID -p ActiveEnterTimestampMonotonic {u} | tr '\\n' ' '; echo; \
                 journalctl -u {u} -n 40 -o short-precise --no-pager; "
            )
        })
        .collect();
    bed.ssh(&format!("{script}true")).unwrap_or_else(|e| format!("(cannot read the journals of {units:?}: {e:#})"))
}

/// [`journals`] of the control plane's units.
pub fn plane_journals(bed: &Bed) -> String {
    journals(bed, &controlplane::model::UNITS.iter().map(|u| u.file_name).collect::<Vec<_>>())
}

/// Was `unit` restarted on request (not by systemd's Restart=) between two readings?
pub fn restarted_on_request(before: (u64, u64), after: (u64, u64)) -> bool {
    after.0 != before.0 && after.1 == before.1
}

/// Runs `kubectl-cpcheck ARGS`.
pub fn cpcheck(args: &[String]) -> Output {
    Command::new(plugin("kubectl-cpcheck")).args(args).output().expect("run kubectl-cpcheck")
}

/// The usual cpcheck arguments for a bed (over SSH, admin kubeconfig).
pub fn cpcheck_args(bed: &Bed) -> Vec<String> {
    bed.cpcheck_args()
}

/// Bootstraps a bed, failing the test with the plugin's output if it fails.
pub fn bootstrapped(label: &str) -> Bed {
    let bed = bed(label);
    let out = run_bootstrap(&server_args(&bed, "root"));
    assert!(out.status.success(), "bootstrap failed: {:?}", text(&out));
    bed
}

/// What one probe of an apiserver's anonymous /readyz said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// HTTP 200 `ok`.
    Yes,
    /// It answered, not ready (the HTTP status).
    No(u16),
    /// No answer: curl's exit code (7 refused, 28 no answer within the timeout).
    Silent(i32),
}

/// /readyz of several apiservers, probed together every 100 ms (all at
/// once, each with a 2 s timeout, as a load balancer's health check asks)
/// until stopped: every sample's answers, to count how many were ready and
/// to say, when too few were, how each that was not answered.
pub struct ReadyPoller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<Ready>>>,
}

/// One /readyz probe (blocking).
pub fn readyz(address: std::net::Ipv4Addr) -> std::process::Child {
    Command::new("curl")
        .args(["-sk", "-m", "2", "-w", "\\n%{http_code}", &format!("https://{address}:6443/readyz")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("curl")
}

fn verdict(c: std::process::Child) -> Ready {
    let o = c.wait_with_output().expect("curl");
    let text = String::from_utf8_lossy(&o.stdout);
    match (o.status.code(), text.rsplit_once('\n')) {
        (Some(0), Some(("ok", "200"))) => Ready::Yes,
        (Some(0), Some((_, code))) => Ready::No(code.trim().parse().unwrap_or(0)),
        (code, _) => Ready::Silent(code.unwrap_or(-1)),
    }
}

impl ReadyPoller {
    pub fn start(addresses: Vec<std::net::Ipv4Addr>) -> ReadyPoller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut samples = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let t = std::time::Instant::now();
                    let kids: Vec<_> = addresses.iter().map(|a| readyz(*a)).collect();
                    samples.push(kids.into_iter().map(verdict).collect());
                    std::thread::sleep(std::time::Duration::from_millis(100).saturating_sub(t.elapsed()));
                }
                samples
            }
        });
        ReadyPoller { stop, thread }
    }

    /// Stops and returns every sample.
    pub fn stop(self) -> Vec<Vec<Ready>> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the poller")
    }
}

/// How many answered ready in each sample.
pub fn ready_counts(samples: &[Vec<Ready>]) -> Vec<usize> {
    samples.iter().map(|s| s.iter().filter(|r| **r == Ready::Yes).count()).collect()
}

/// Every temp a run may leave (the layout's directories, the state
/// directory included), one `DIR/NAME` per line: empty when none is left.
pub fn leftover_temps(bed: &Bed) -> String {
    let marker = controlplane::remote::probe::upload::TEMP_MARKER;
    let dirs: Vec<&str> = controlplane::model::DIRECTORIES.iter().map(|d| d.path).collect();
    bed.ssh(&format!("find {} -maxdepth 1 -name '*{marker}*' 2>/dev/null; true", dirs.join(" "))).unwrap()
}

/// `server_args` with another assets directory.
pub fn with_assets(bed: &Bed, user: &str, assets: &Path) -> Vec<String> {
    let mut a = server_args(bed, user);
    let i = a.iter().position(|x| x == "--assets").unwrap();
    a[i + 1] = assets.display().to_string();
    a
}

/// A copy of the bed's assets at `root/name`, damaged by `damage`.
pub fn damaged(bed: &Bed, root: &Path, name: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let dir = root.join(name);
    testbed::pki::copy_assets(&bed.assets, &dir).unwrap();
    damage(&dir);
    dir
}

/// The plugins built for `target` (a Rust target, e.g.
/// `aarch64-unknown-linux-musl`) as release builds are (static, through
/// the cross toolchain of scripts/install-cross.sh): their directory. The
/// same artifacts `cargo xtask dist` packs, built once.
pub fn release_plugins(target: &str) -> PathBuf {
    let cross = Command::new("bash").arg(workspace().join("scripts/install-cross.sh")).output().expect("scripts/install-cross.sh");
    assert!(cross.status.success(), "the cross toolchain: {}", String::from_utf8_lossy(&cross.stderr));
    let zb = String::from_utf8_lossy(&cross.stdout).lines().last().unwrap_or_default().trim().to_string();
    let st = Command::new(zb)
        .current_dir(workspace())
        .args(["build", "--release", "--locked", "--quiet", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck", "--target", target])
        .status()
        .expect("cargo zigbuild");
    assert!(st.success(), "building the plugins for {target} failed");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
    target_dir.join(target).join("release")
}

/// The first needle of the failure signature `id` (what the server's
/// prefilter keeps its lines by).
pub fn diagnose_needle(id: &str) -> &'static str {
    controlplane::diagnose::signature(id).and_then(|s| s.needles.first().copied()).unwrap_or("")
}
