//! One bed: a Debian bookworm server booted with systemd as PID 1 by
//! systemd-nspawn, on an overlay of the cached root file system, in its own
//! network namespace (10.240.K.2, host side 10.240.K.1), reached over its own
//! sshd with a throwaway key and a recorded host key.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The bed's parts, built once per machine: (the root file system of the
/// bed's Debian release, the directory of the Kubernetes binaries).
pub(crate) fn prerequisites(options: &BedOptions) -> Result<(PathBuf, PathBuf)> {
    phase("host prerequisites", || script("install-prereqs.sh", &[]).map(drop))?;
    let arch = options.arch.debian();
    let root = phase("root file system", || script("build-rootfs.sh", &[options.os.suite(), arch]))?;
    let k8s_bin = phase("kubernetes binaries", || script("build-kubernetes.sh", &[arch]))?;
    Ok((root, k8s_bin))
}

/// The directory of the Kubernetes binaries built for `arch` (built once per
/// machine, cached; another architecture's cross-built).
pub fn kubernetes_bin(arch: Arch) -> Result<PathBuf> {
    script("build-kubernetes.sh", &[arch.debian()])
}

/// Where beds keep their state: outside any checkout, on the same file system
/// as the cache.
pub fn base_dir() -> PathBuf {
    std::env::var_os("KCP_BED_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp/kubectl-plugins-bed"))
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// Runs a command; on failure the error carries the command and its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs one of the repo's scripts, its progress going to our stderr, and
/// returns the last line it prints (a path).
fn script(name: &str, args: &[&str]) -> Result<PathBuf> {
    let out = Command::new("bash")
        .arg(scripts_dir().join(name))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run scripts/{name}"))?;
    if !out.status.success() {
        bail!("scripts/{name} failed ({})", out.status);
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(s.lines().last().unwrap_or_default().trim()))
}

pub(crate) fn phase<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f().with_context(|| format!("bed: {what}"));
    eprintln!("[bed] {what}: {:.1}s", t.elapsed().as_secs_f64());
    r
}

/// Everything a bed is, persisted as `state.json` so `bed down` and `bed ssh`
/// find it from another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bed {
    pub name: String,
    pub slot: u8,
    pub address: Ipv4Addr,
    pub host_address: Ipv4Addr,
    pub dir: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub assets: PathBuf,
    pub kubeconfig: PathBuf,
    /// systemd-nspawn's pid.
    pub pid: i32,
    /// Where the real Kubernetes binaries are cached.
    pub k8s_bin: PathBuf,
    /// Tear down on drop (tests); `bed up` keeps the bed running.
    #[serde(skip)]
    pub teardown_on_drop: bool,
    /// Set when this bed is one server of a cluster (see `Cluster`).
    #[serde(default)]
    pub member: Option<Member>,
    #[serde(default)]
    pub options: BedOptions,
}

/// How a bed is made besides its name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BedOptions {
    /// Shape the link from the jumpbox to the server to this rate (tc tbf on
    /// the host side of the veth: `100mbit`, `20mbit`…). Bandwidth only:
    /// netem is not in every kernel, so latency is not simulated.
    pub link: Option<String>,
    /// Keep zstd on the server. A minimal Debian server has gzip only, and
    /// so does a bed unless asked.
    pub zstd: bool,
    /// The server's Debian release.
    #[serde(default)]
    pub os: Os,
    /// The server's system locale (`/etc/default/locale`, which sshd and
    /// sudo load), e.g. `de_DE.UTF-8`; the root file system has it generated.
    #[serde(default)]
    pub locale: Option<String>,
    /// The server's architecture: another than this machine's boots under
    /// qemu-user emulation (binfmt_misc), its binaries cross-built.
    #[serde(default)]
    pub arch: Arch,
}

/// A bed server's architecture.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    /// Emulated on an amd64 machine (qemu-user-static in binfmt_misc).
    Arm64,
}

impl Arch {
    /// Debian's (and Kubernetes') name.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
    /// Is it this machine's own (no emulation)?
    pub fn native(self) -> bool {
        controlplane::model::arch::Arch::this_machine().is_some_and(|a| a.goarch() == self.debian())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => Err(format!("{other}: amd64 or arm64")),
        }
    }
}

/// A Debian release a bed's server runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Debian 12: systemd 252, OpenSSH 9.2, etcd 3.4.
    #[default]
    Bookworm,
    /// Debian 11: systemd 247, OpenSSH 8.4, etcd 3.3.
    Bullseye,
}

impl Os {
    pub fn suite(self) -> &'static str {
        match self {
            Os::Bookworm => "bookworm",
            Os::Bullseye => "bullseye",
        }
    }
}

impl std::str::FromStr for Os {
    type Err = String;
    fn from_str(s: &str) -> Result<Os, String> {
        match s {
            "bookworm" => Ok(Os::Bookworm),
            "bullseye" => Ok(Os::Bullseye),
            other => Err(format!("{other}: bookworm or bullseye")),
        }
    }
}

/// The locales the root file system has generated besides C.
pub const LOCALES: &[&str] = &["de_DE.UTF-8"];

impl BedOptions {
    pub fn check(&self) -> Result<()> {
        if let Some(l) = &self.link {
            let digits = l.trim_end_matches("bit").trim_end_matches(['k', 'm', 'g']);
            if !l.ends_with("bit") || digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                bail!("--link {l}: a rate like 100mbit, 20mbit or 500kbit");
            }
        }
        if let Some(l) = &self.locale {
            if !LOCALES.contains(&l.as_str()) {
                bail!("--locale {}: the bed's root file system has {}", l.escape_debug(), LOCALES.join(", "));
            }
        }
        Ok(())
    }
}

/// A bed's place in a cluster: its number, the bridge it hangs on, and every
/// server of the cluster (for etcd's peers and /etc/hosts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// 1-based.
    pub index: u8,
    pub bridge: String,
    /// (hostname, address) of every server, this one included.
    pub servers: Vec<(String, Ipv4Addr)>,
    /// The cluster's client key and known_hosts are shared; not this bed's to remove.
    pub shared_dir: PathBuf,
}

impl Bed {
    pub fn netns(&self) -> String {
        match &self.member {
            Some(m) => format!("kcpbed-{}-{}", self.slot, m.index),
            None => format!("kcpbed-{}", self.slot),
        }
    }
    /// The server's hostname (`server`, or `server-N` in a cluster).
    pub fn hostname(&self) -> String {
        match &self.member {
            Some(m) => format!("server-{}", m.index),
            None => "server".into(),
        }
    }
    fn veth_server(&self) -> String {
        match &self.member {
            Some(m) => format!("kcpb{}m{}s", self.slot, m.index),
            None => format!("kcpbed{}s", self.slot),
        }
    }
    /// The host side of the bed's link (tests take it down to cut the link).
    pub fn veth_host(&self) -> String {
        match &self.member {
            Some(m) => format!("kcpb{}m{}h", self.slot, m.index),
            None => format!("kcpbed{}h", self.slot),
        }
    }
    fn merged(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn dest(&self) -> String {
        format!("root@{}", self.address)
    }

    /// Options for the plain `ssh` client, strict host-key checking included.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// The plugins' SSH options for this bed: its key and its known_hosts.
    pub fn plugin_ssh_args(&self) -> Vec<String> {
        vec!["-i".into(), self.key.display().to_string(), "--known-hosts".into(), self.known_hosts.display().to_string()]
    }

    /// `kubectl bootstrap server` arguments for this bed as `user`.
    pub fn bootstrap_args(&self, user: &str) -> Vec<String> {
        let mut v = vec!["server".to_string(), format!("{user}@{}", self.address)];
        v.extend(self.plugin_ssh_args());
        v.extend(["--assets".into(), self.assets.display().to_string()]);
        v
    }

    /// `kubectl cpcheck` arguments for this bed (over SSH, admin kubeconfig).
    pub fn cpcheck_args(&self) -> Vec<String> {
        let mut v = vec!["--ssh".to_string(), self.dest()];
        v.extend(self.plugin_ssh_args());
        v.extend(["--kubeconfig".into(), self.kubeconfig.display().to_string()]);
        v
    }

    /// Takes the bed's link down (`up` false) or up again: a cut the SSH
    /// client only notices by its keepalives.
    pub fn link(&self, up: bool) -> Result<()> {
        run(Command::new("ip").args(["link", "set", &self.veth_host(), if up { "up" } else { "down" }])).map(drop)
    }

    /// Runs `script` on the server as `user` with the plain ssh client.
    pub fn ssh_as(&self, user: &str, script: &str) -> Result<String> {
        run(Command::new("ssh").args(self.ssh_options()).arg(format!("{user}@{}", self.address)).arg(script))
    }

    pub fn ssh(&self, script: &str) -> Result<String> {
        self.ssh_as("root", script)
    }

    /// The lines `bed up` prints, for `eval "$(cargo xtask bed up)"`.
    pub fn env_lines(&self) -> String {
        let q = controlplane::remote::shell_quote;
        [
            ("BED_NAME", self.name.clone()),
            ("BED_DEST", self.dest()),
            ("BED_PORT", "22".into()),
            ("BED_KEY", self.key.display().to_string()),
            ("BED_KNOWN_HOSTS", self.known_hosts.display().to_string()),
            ("BED_ASSETS", self.assets.display().to_string()),
            ("BED_KUBECONFIG", self.kubeconfig.display().to_string()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}\n", q(v)))
        .collect()
    }

    fn state_path(name: &str) -> PathBuf {
        base_dir().join("beds").join(name).join("state.json")
    }

    /// The bed `name`, if it is up.
    pub fn load(name: &str) -> Result<Option<Bed>> {
        let p = Self::state_path(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{}", p.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}", p.display())),
        }
    }

    /// Brings up a new bed called `name` (fails if one of that name is up).
    pub fn up(name: &str) -> Result<Bed> {
        Self::up_with(name, &BedOptions::default())
    }

    /// [`Bed::up`] with a shaped link or zstd.
    pub fn up_with(name: &str, options: &BedOptions) -> Result<Bed> {
        options.check()?;
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || name.is_empty() {
            bail!("bed name `{name}`: use letters, digits and '-'");
        }
        if let Some(b) = Self::load(name)? {
            bail!("bed `{name}` is already up at {} (cargo xtask bed down --name {name})", b.address);
        }
        if unsafe { libc::geteuid() } != 0 {
            bail!("the bed needs root (network namespaces, mounts, systemd-nspawn)");
        }
        let (root, k8s_bin) = prerequisites(options)?;
        let dir = base_dir().join("beds").join(name);
        std::fs::create_dir_all(&dir)?;
        let slot = claim_slot(name)?;
        let mut bed = Bed {
            name: name.into(),
            slot,
            address: Ipv4Addr::new(10, 240, slot, 2),
            host_address: Ipv4Addr::new(10, 240, slot, 1),
            key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            assets: dir.join("assets"),
            kubeconfig: dir.join("assets/admin.kubeconfig"),
            dir,
            pid: 0,
            k8s_bin,
            teardown_on_drop: true,
            member: None,
            options: options.clone(),
        };
        match bed.boot(&root) {
            Ok(()) => Ok(bed),
            Err(e) => {
                let e = bed.with_console(e);
                bed.teardown();
                bed.teardown_on_drop = false;
                Err(e)
            }
        }
    }

    /// `e` with the failed units and the last lines of the container's console.
    pub(crate) fn with_console(&self, e: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read_to_string(self.dir.join("nspawn.log")).unwrap_or_default();
        // Units that failed anywhere in the boot, then the last lines.
        let failed = log.lines().filter(|l| l.contains("FAILED") || l.contains("Failed to")).take(10);
        let last = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev();
        let tail: Vec<_> = failed.chain(std::iter::once("…").filter(|_| !log.is_empty())).chain(last).collect();
        if tail.is_empty() {
            e
        } else {
            e.context(format!("{}: last lines of the container's console:\n{}", self.hostname(), tail.join("\n")))
        }
    }

    fn boot(&mut self, root: &Path) -> Result<()> {
        self.prepare(root)?;
        phase("boot systemd", || self.start())?;
        phase("wait for etcd", || self.wait_etcd(Duration::from_secs(60)).map(drop))?;
        phase("PKI, kubeconfigs, encryption config", || {
            crate::pki::generate(&self.assets, &[(self.hostname(), self.address.into())])?;
            self.link_binaries()
        })?;
        Ok(())
    }

    /// Network, overlay, keys and configuration: everything before boot.
    pub(crate) fn prepare(&mut self, root: &Path) -> Result<()> {
        phase("network namespace", || self.make_network())?;
        phase("overlay and per-run keys", || self.make_root(root))?;
        self.save()
    }

    fn save(&self) -> Result<()> {
        std::fs::write(self.dir.join("state.json"), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    fn make_network(&self) -> Result<()> {
        let (ns, h, s) = (self.netns(), self.veth_host(), self.veth_server());
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        run(Command::new("ip").args(["link", "add", &h, "type", "veth", "peer", "name", &s, "netns", &ns]))?;
        match &self.member {
            // One segment for the cluster: the host side hangs on its bridge,
            // which holds the host's address.
            Some(m) => run(Command::new("ip").args(["link", "set", &h, "master", &m.bridge]))?,
            None => run(Command::new("ip").args(["addr", "add", &format!("{}/24", self.host_address), "dev", &h]))?,
        };
        run(Command::new("ip").args(["link", "set", &h, "up"]))?;
        if let Some(rate) = &self.options.link {
            // Shapes what the jumpbox sends (uploads): tbf, as netem is absent.
            run(Command::new("tc").args(["qdisc", "add", "dev", &h, "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"]))?;
        }
        let inns = |args: &[&str]| run(Command::new("ip").args(["-n", &ns]).args(args));
        inns(&["addr", "add", &format!("{}/24", self.address), "dev", &s])?;
        inns(&["link", "set", &s, "up"])?;
        inns(&["link", "set", "lo", "up"])?;
        // A default route lets the apiserver pick this address to advertise;
        // with ip_forward off on the host nothing leaves the machine.
        inns(&["route", "add", "default", "via", &self.host_address.to_string()])?;
        Ok(())
    }

    fn make_root(&self, lower: &Path) -> Result<()> {
        let (upper, work, merged) = (self.dir.join("upper"), self.dir.join("work"), self.merged());
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&merged))?;
        if !self.options.zstd {
            // As on a minimal Debian server (the root file system has it for beds that ask).
            for z in ["usr/bin/zstd", "usr/bin/unzstd", "usr/bin/zstdcat", "usr/bin/zstdmt"] {
                let _ = std::fs::remove_file(merged.join(z));
            }
        }

        // Host key, fresh per bed, recorded for strict checking.
        let hk = merged.join("etc/ssh/ssh_host_ed25519_key");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "bed-host", "-f"]).arg(&hk))?;
        let pubkey = std::fs::read_to_string(hk.with_extension("pub"))?;
        let mut it = pubkey.split_whitespace();
        let (t, k) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
        let line = format!("{} {t} {k}\n", self.address);
        if self.member.is_some() {
            // The cluster's known_hosts names every server.
            std::fs::OpenOptions::new().create(true).append(true).open(&self.known_hosts)?.write_all(line.as_bytes())?;
        } else {
            std::fs::write(&self.known_hosts, line)?;
        }

        // Client key pair for root, deploy (sudo) and nosudo (one per cluster).
        if !self.key.exists() {
            run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "bed-client", "-f"]).arg(&self.key))?;
        }
        let client_pub = std::fs::read_to_string(self.key.with_extension("pub"))?;
        let passwd = std::fs::read_to_string(merged.join("etc/passwd"))?;
        for user in ["root", "deploy", "nosudo"] {
            let fields: Vec<&str> = passwd.lines().find(|l| l.starts_with(&format!("{user}:"))).context(user)?.split(':').collect();
            let (uid, gid, home) = (fields[2].parse::<u32>()?, fields[3].parse::<u32>()?, fields[5]);
            let ssh_dir = merged.join(home.trim_start_matches('/')).join(".ssh");
            std::fs::create_dir_all(&ssh_dir)?;
            let ak = ssh_dir.join("authorized_keys");
            crate::pki::write_file(&ak, client_pub.as_bytes(), 0o600)?;
            std::os::unix::fs::chown(&ssh_dir, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&ak, Some(uid), Some(gid))?;
            std::fs::set_permissions(&ssh_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        // The guide's /etc/hosts step: the server knows its own name (and
        // server.kubernetes.local is its own apiserver); in a cluster it
        // knows its peers too.
        let name = self.hostname();
        std::fs::write(merged.join("etc/hostname"), format!("{name}\n"))?;
        let mut hosts = format!("127.0.0.1 localhost\n{} server.kubernetes.local {name}\n", self.address);
        if let Some(m) = &self.member {
            for (peer, addr) in m.servers.iter().filter(|(p, _)| *p != name) {
                hosts.push_str(&format!("{addr} {peer}\n"));
            }
            std::fs::write(merged.join("etc/default/etcd"), crate::cluster::etcd_config(&name, self.address, &m.servers, &self.slot.to_string()))?;
        }
        std::fs::write(merged.join("etc/hosts"), hosts)?;
        // The system locale sshd and sudo load for every session.
        if let Some(l) = &self.options.locale {
            std::fs::write(merged.join("etc/default/locale"), format!("LANG={l}\n"))?;
        }
        Ok(())
    }

    fn start(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_booted()
    }

    /// Starts systemd-nspawn (not waiting for the boot).
    pub(crate) fn spawn(&mut self) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("nspawn.log"))?;
        let child = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(self.merged())
            .args(["-b", "--register=no", "--keep-unit", "-M", &self.netns()])
            .arg(format!("--hostname={}", self.hostname()))
            .arg(format!("--network-namespace-path=/run/netns/{}", self.netns()))
            .args(["--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start systemd-nspawn (package systemd-container)")?;
        self.pid = child.id() as i32;
        self.save()
    }

    /// Waits until systemd reports the boot done and sshd answers.
    pub(crate) fn wait_booted(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last;
        loop {
            if !alive(self.pid) {
                bail!("systemd-nspawn exited during boot (see {})", self.dir.join("nspawn.log").display());
            }
            // is-system-running exits 1 when the state is not `running`:
            // read the state, not the exit status.
            match self.ssh("systemctl is-system-running --wait; true") {
                Ok(s) if s.trim() == "running" => return Ok(()),
                Ok(s) if !s.trim().is_empty() => {
                    let failed = self.failed_units();
                    let why = self
                        .ssh(&failed.iter().map(|u| format!("echo '== {u}'; journalctl -u '{u}' -n 8 --no-pager -o cat\n")).chain(["true".into()]).collect::<String>())
                        .unwrap_or_else(|e| e.to_string());
                    if degraded_but_usable(s.trim(), &failed) {
                        eprintln!("[bed] warning: the server booted degraded; failed units and their last lines:\n{}", why.trim_end());
                        return Ok(());
                    }
                    bail!("the server booted `{}`, not `running`; failed units and their last lines:\n{}", s.trim(), why.trim_end());
                }
                Ok(_) => last = "systemctl is-system-running printed nothing".into(),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                bail!("sshd on {} ({}) did not answer within 120s: {last}", self.address, self.hostname());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Units that are in the failed state on the server.
    pub fn failed_units(&self) -> Vec<String> {
        self.ssh("systemctl --failed --no-legend --plain | cut -d' ' -f1").unwrap_or_default().split_whitespace().map(str::to_string).collect()
    }

    /// etcd's /health over HTTP on the server's loopback (bash's /dev/tcp:
    /// the server has no HTTP client).
    pub fn etcd_health(&self) -> Result<String> {
        self.ssh("exec 3<>/dev/tcp/127.0.0.1/2379 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3 | tail -1")
    }

    /// Waits until etcd answers healthy and returns that answer. etcd 3.4's
    /// /health gives each probe one second to read through raft, so a loaded
    /// machine sees a passing `false`: one answer is not a verdict.
    pub fn wait_etcd(&self, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            match self.etcd_health() {
                Ok(s) if s.contains("\"health\":\"true\"") => return Ok(s),
                r if Instant::now() > deadline => bail!("etcd did not become healthy within {within:?}; last answer: {r:?}"),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// The guide's jumpbox layout: downloads/controller and downloads/client.
    pub(crate) fn link_binaries(&self) -> Result<()> {
        let ctl = self.assets.join("downloads/controller");
        let cli = self.assets.join("downloads/client");
        std::fs::create_dir_all(&ctl)?;
        std::fs::create_dir_all(&cli)?;
        for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            std::os::unix::fs::symlink(self.k8s_bin.join(b), ctl.join(b))?;
        }
        std::os::unix::fs::symlink(self.k8s_bin.join("kubectl"), cli.join("kubectl"))?;
        Ok(())
    }

    /// Stops the server and removes everything the bed made. Safe to call on a
    /// half-made bed and more than once.
    pub fn teardown(&mut self) {
        if self.pid > 0 && alive(self.pid) {
            // The container's init, read while nspawn runs: an emulated
            // (arm64) systemd does not power off within the wait below, and
            // killing nspawn does not end its PID namespace.
            let inits = namespace_inits(self.pid);
            // nspawn turns SIGTERM into a clean poweroff of the container.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            if alive(self.pid) {
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while alive(self.pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            // Killing a PID namespace's init ends every process in it.
            for init in inits.into_iter().filter(|p| namespace_init(*p)) {
                unsafe { libc::kill(init, libc::SIGKILL) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while namespace_init(init) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let merged = self.merged();
        for _ in 0..20 {
            if !mounted(&merged) {
                break;
            }
            let _ = run(Command::new("umount").arg(&merged));
            if mounted(&merged) {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        if mounted(&merged) {
            let _ = run(Command::new("umount").arg("-l").arg(&merged));
        }
        let _ = run(Command::new("ip").args(["link", "del", &self.veth_host()]));
        let _ = run(Command::new("ip").args(["netns", "del", &self.netns()]));
        if !mounted(&merged) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // A cluster's slot is the cluster's to release.
        if self.member.is_none() {
            let _ = std::fs::remove_dir_all(base_dir().join("slots").join(self.slot.to_string()));
        }
        self.pid = 0;
    }

    /// What of this bed still exists (empty after a clean teardown).
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.pid > 0 && alive(self.pid) {
            v.push(format!("systemd-nspawn pid {} still runs", self.pid));
        }
        let marker = format!("-M {}", self.netns());
        if let Ok(ps) = run(Command::new("ps").args(["-eo", "pid,args"])) {
            for l in ps.lines().filter(|l| l.contains("systemd-nspawn") && l.contains(&marker)) {
                v.push(format!("process: {}", l.trim()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for l in mounts.lines().filter(|l| l.contains(&self.dir.display().to_string())) {
            v.push(format!("mount: {l}"));
        }
        if self.dir.exists() {
            v.push(format!("directory {}", self.dir.display()));
        }
        if Path::new("/run/netns").join(self.netns()).exists() {
            v.push(format!("network namespace {}", self.netns()));
        }
        if Path::new("/sys/class/net").join(self.veth_host()).exists() {
            v.push(format!("interface {}", self.veth_host()));
        }
        v
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if self.teardown_on_drop {
            self.teardown();
        }
    }
}

/// Is `pid` a live (not zombie) process? Reaps it if it is our exited child.
/// The children of `parent` that are the first process of a PID namespace
/// of their own (nspawn's container init).
fn namespace_inits(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|v| v.parse::<i32>().ok());
            ppid == Some(parent) && namespace_init(*p)
        })
        .collect()
}

/// Is `pid` alive and PID 1 of a namespace below this one (`NSpid: N 1`)?
fn namespace_init(pid: i32) -> bool {
    alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|v| v.split_whitespace().skip(1).last() == Some("1"))
}

fn alive(pid: i32) -> bool {
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit(')').next().map(|r| !r.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

fn mounted(p: &Path) -> bool {
    let s = p.display().to_string();
    std::fs::read_to_string("/proc/mounts").unwrap_or_default().lines().any(|l| l.split(' ').nth(1) == Some(s.as_str()))
}

/// The server's units the bed stands on: a boot with any of them failed is
/// a failed boot.
const NEEDED_UNITS: &[&str] = &["ssh.service", "etcd.service", "dbus.service", "systemd-journald.service", "systemd-logind.service"];

/// A boot `degraded` only by units the bed does not stand on (a timer's job,
/// say) is worth a warning, not a lost run; one the bed stands on is not.
pub fn degraded_but_usable(state: &str, failed: &[String]) -> bool {
    state == "degraded" && !failed.is_empty() && !failed.iter().any(|u| NEEDED_UNITS.contains(&u.as_str()))
}

/// Claims the lowest free slot K (10.240.K.0/24) atomically.
pub(crate) fn claim_slot(name: &str) -> Result<u8> {
    let slots = base_dir().join("slots");
    std::fs::create_dir_all(&slots)?;
    for k in 1..=250u8 {
        let d = slots.join(k.to_string());
        if std::fs::create_dir(&d).is_err() {
            continue;
        }
        let taken = Path::new("/run/netns").join(format!("kcpbed-{k}")).exists()
            || !run(Command::new("ip").args(["-4", "route", "show", &format!("10.240.{k}.0/24")])).unwrap_or_default().trim().is_empty();
        if taken {
            let _ = std::fs::remove_dir(&d);
            continue;
        }
        std::fs::write(d.join("owner"), name)?;
        return Ok(k);
    }
    bail!("no free bed slot in 10.240.1-250.0/24 (cargo xtask bed down --all)")
}

/// Names of the beds that are up.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(base_dir().join("beds"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.path().join("state.json").exists() || e.path().join("cluster.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
