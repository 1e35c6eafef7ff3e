//! Host access over one multiplexed SSH connection (openssh, native-mux).
//! Both plugins connect through here; strict host-key checking by default.

use std::path::PathBuf;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

use crate::Error;

pub mod journal;
pub mod lock;
pub mod probe;
pub mod systemd;

/// Quotes `s` as one word for the remote POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How to reach a server besides its destination (per-host settings come
/// from ssh_config as usual).
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Private key file (ssh -i).
    pub identity: Option<PathBuf>,
    /// SSH port (ssh -p).
    pub port: Option<u16>,
    /// Jump host (ssh -J).
    pub jump: Option<String>,
    /// known_hosts file to check the server's (and the jump host's) key against.
    pub known_hosts: Option<PathBuf>,
    /// Trust and record an unknown host key (never a changed one).
    pub accept_new_host_key: bool,
    /// The user's ssh_config to follow this run's (default: ~/.ssh/config).
    pub config: Option<PathBuf>,
}

/// SSH sessions (remote commands) this process has opened: each costs a
/// round trip at least. Shown with `-v`, counted by the benchmark.
static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many SSH sessions this process has opened (all servers).
pub fn sessions() -> usize {
    SESSIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A connected server: one SSH master, commands as root or through `sudo -n`.
pub struct Host {
    pub session: Session,
    pub destination: String,
    pub sudo: bool,
    /// How ssh reaches it when not directly: `ProxyJump HOST` or
    /// `ProxyCommand …` (from -J or ssh_config), for `-v`.
    pub route: Option<String>,
    /// How long one remote script may run (`--timeout`); the server's
    /// `timeout` stops it there too.
    pub timeout: Duration,
    _control_dir: tempfile_dir::TempDir,
}

/// Every remote command runs in the C locale: sshd and sudo load the
/// server's `/etc/default/locale`, and Debian's ssh_config sends the
/// jumpbox's `LANG`/`LC_*`; what the scripts read (`stat`, tools' words)
/// must not change with either.
const C_LOCALE: &str = "LC_ALL=C";

/// A master idle this long exits by itself: the last safety net should this
/// process die by SIGKILL, which nothing can catch.
const MASTER_IDLE_EXIT: usize = 120;

/// A short-lived private directory for the control socket: socket paths are
/// limited to 108 bytes, so it lives directly under /tmp. It is registered
/// with [`crate::interrupt`] while it exists, so a signal closes its master
/// and removes it.
mod tempfile_dir {
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        /// `/tmp/kcp-PID-RANDOM`: nobody can make it first (a name another
        /// user could guess and take would stop every run).
        pub fn new() -> std::io::Result<Self> {
            use std::os::unix::fs::DirBuilderExt;
            for _ in 0..100u32 {
                let p = std::path::PathBuf::from(format!("/tmp/kcp-{}-{:012x}", std::process::id(), rand::random::<u64>() >> 16));
                match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                    Ok(()) => {
                        crate::local::interrupt::register_dir(&p);
                        return Ok(Self(p));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(std::io::Error::other("no free control directory under /tmp"))
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
            crate::local::interrupt::unregister_dir(&self.0);
        }
    }
}

/// A server's reply that does not read as the command promises: what is
/// wrong with it (server text in it is escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadReply(pub String);

impl From<String> for BadReply {
    fn from(s: String) -> Self {
        BadReply(s)
    }
}

impl From<&str> for BadReply {
    fn from(s: &str) -> Self {
        BadReply(s.to_string())
    }
}

/// This run's ssh_config, always passed (`-F`): a jump host, from `-J` or
/// from a `ProxyJump` in the user's ssh_config, is reached by a separate
/// `ssh -F FILE … -W` process that sees none of the command line's `-o`
/// options, only this file, so its key is checked against the same
/// known_hosts, as strictly, as the server's. The user's own configuration
/// follows (first value wins in ssh_config).
fn run_config(args: &SshOptions) -> String {
    let mut c = String::from("# kubectl plugins: this run's SSH settings, then the user's own\n");
    if let Some(kh) = &args.known_hosts {
        c.push_str(&format!("UserKnownHostsFile \"{}\"\nGlobalKnownHostsFile /dev/null\n", kh.display()));
    }
    c.push_str(if args.accept_new_host_key { "StrictHostKeyChecking accept-new\n" } else { "StrictHostKeyChecking yes\n" });
    c.push_str("BatchMode yes\nServerAliveInterval 10\nConnectTimeout 15\n");
    if let Some(k) = &args.identity {
        c.push_str(&format!("IdentityFile \"{}\"\n", k.display()));
    }
    match &args.config {
        Some(f) => c.push_str(&format!("Include \"{}\"\n", f.display())),
        None => c.push_str("Include ~/.ssh/config\n"),
    }
    c.push_str("Include /etc/ssh/ssh_config\n");
    c
}

/// A path that can be written into ssh_config between double quotes.
fn config_safe(p: &std::path::Path) -> bool {
    p.to_str().is_some_and(|s| !s.contains('"') && unitfile::control_char(s).is_none())
}

/// How ssh resolves `destination` (`ssh -G`: the configuration as ssh
/// reads it, ssh_config included): the login user, and the route when it
/// is not direct. None if it cannot say.
fn resolved(destination: &str, args: &SshOptions, config: &std::path::Path) -> Option<(String, Option<String>)> {
    let mut c = std::process::Command::new("ssh");
    c.arg("-G").arg("-F").arg(config);
    if let Some(p) = args.port {
        c.arg("-p").arg(p.to_string());
    }
    if let Some(j) = &args.jump {
        c.arg("-J").arg(j);
    }
    c.arg("--").arg(destination);
    let out = crate::local::process::output_within(&mut c, Duration::from_secs(5)).ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty() && v != "none");
    let user = get("user ")?;
    let route = get("proxyjump ").map(|j| format!("ProxyJump {j}")).or_else(|| get("proxycommand ").map(|c| format!("ProxyCommand {c}")));
    Some((user, route.map(|r| crate::output::redact::line(&r))))
}

/// Turns ssh's own words into one line that says what to do.
fn connect_error(dest: &str, e: &openssh::Error) -> Error {
    let msg = format!("{e}");
    let detail = match e {
        openssh::Error::Connect(io) => io.to_string(),
        _ => msg.clone(),
    };
    let hint = if detail.contains("Host key verification failed") || detail.contains("HOST IDENTIFICATION HAS CHANGED") {
        "the server's host key is unknown or changed: check it, then add it to known_hosts (or pass --known-hosts / --accept-new-host-key for a new server)"
    } else if detail.contains("Permission denied") {
        "authentication failed: pass the right key with -i, or load it into ssh-agent"
    } else {
        "check the address, port (-p) and that sshd runs"
    };
    let last = detail.trim().lines().last().unwrap_or("").trim().trim_end_matches('.');
    Error::Connect(format!("cannot connect to {dest}: {last}: {hint}"))
}

impl Host {
    /// Connects to `destination`; `timeout` bounds the connection and every
    /// remote script run through [`Host::sh`].
    pub async fn connect(destination: &str, args: &SshOptions, timeout: Duration) -> Result<Host, Error> {
        if destination.starts_with('-') || unitfile::control_char(destination).is_some() {
            return Err(Error::Input(format!("destination `{}`: not a host (user@host, ssh://user@host:port or a Host alias)", crate::output::redact::line(destination))));
        }
        let dir = tempfile_dir::TempDir::new().map_err(|e| Error::local("cannot create an SSH control directory in /tmp", e))?;
        let mut b = SessionBuilder::default();
        b.control_directory(&dir.0)
            .connect_timeout(timeout.clamp(Duration::from_secs(1), Duration::from_secs(15)))
            .server_alive_interval(Duration::from_secs(10))
            .control_persist(ControlPersist::IdleFor(std::num::NonZeroUsize::new(MASTER_IDLE_EXIT).expect("non-zero")))
            .known_hosts_check(if args.accept_new_host_key { KnownHosts::Add } else { KnownHosts::Strict });
        if let Some(k) = &args.identity {
            if !k.is_file() {
                return Err(Error::Input(format!("-i {}: no such key file", crate::output::redact::line(&k.display().to_string()))));
            }
            b.keyfile(k);
        }
        if let Some(p) = args.port {
            b.port(p);
        }
        // ssh reads a relative Include against ~/.ssh: the user's -F is made absolute.
        let mut args = args.clone();
        if let Some(f) = &args.config {
            if !f.is_file() {
                return Err(Error::Input(format!("-F {}: no such ssh_config file", crate::output::redact::line(&f.display().to_string()))));
            }
            args.config = Some(std::fs::canonicalize(f).map_err(|e| Error::Input(format!("-F {}: {e}", crate::output::redact::line(&f.display().to_string()))))?);
        }
        let args = &args;
        for p in args.known_hosts.iter().chain(args.identity.iter()).chain(args.config.iter()) {
            if !config_safe(p) {
                return Err(Error::Input(format!(
                    "{}: a path with a double quote or control character cannot be written into ssh_config: rename it",
                    crate::output::redact::line(&p.display().to_string())
                )));
            }
        }
        let cfg = dir.0.join("ssh_config");
        std::fs::write(&cfg, run_config(args)).map_err(|e| Error::local(format!("cannot write {}", cfg.display()), e))?;
        b.config_file(&cfg);
        if let Some(j) = &args.jump {
            if j.starts_with('-') || unitfile::control_char(j).is_some() {
                return Err(Error::Input(format!("-J `{}`: not a host", crate::output::redact::line(j))));
            }
            b.jump_hosts([j]);
        }
        if let Some(kh) = &args.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let session = match tokio::time::timeout(timeout.max(Duration::from_secs(1)) + Duration::from_secs(5), b.connect_mux(destination)).await {
            Ok(r) => r.map_err(|e| connect_error(destination, &e))?,
            Err(_) => {
                return Err(Error::Connect(format!("cannot connect to {destination}: no answer within {}s: check the address, port (-p) and that sshd runs", timeout.as_secs())))
            }
        };
        // Who we log in as, from ssh's own resolution of its configuration
        // (local, no round trip); asked of the server only if that fails.
        let (root, route) = match resolved(destination, args, &cfg) {
            Some((u, route)) => (u == "root", route),
            None => {
                let uid = tokio::time::timeout(timeout.max(Duration::from_secs(1)), session.command("id").arg("-u").output())
                    .await
                    .map_err(|_| Error::Connect(format!("{destination}: `id -u` did not answer within {}s", timeout.as_secs())))?
                    .map_err(|e| Error::ssh(format!("{destination}: cannot run a command"), e))?;
                (String::from_utf8_lossy(&uid.stdout).trim() == "0", None)
            }
        };
        Ok(Host { session, destination: destination.to_string(), sudo: !root, route, timeout, _control_dir: dir })
    }

    /// `sh -c script` as root (through `sudo -n` for a non-root login), to
    /// spawn with piped stdin for streaming. Not bounded in time: the
    /// caller bounds it (uploads watch their progress instead).
    pub fn command(&self, script: &str) -> openssh::Command<'_> {
        SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut c = if self.sudo {
            let mut c = self.session.command("sudo");
            c.arg("-n").arg("env");
            c
        } else {
            self.session.command("env")
        };
        c.arg(C_LOCALE).arg("sh").arg("-c").arg(script);
        c
    }

    /// Fails with one clear line unless commands can run as root here
    /// (root login, or passwordless `sudo -n`).
    pub async fn require_root(&self) -> Result<(), Error> {
        if !self.sudo {
            return Ok(());
        }
        let out = self.sh_within("true", Duration::from_secs(30)).await?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(Error::Input(format!(
                "{}: the login user is not root and `sudo -n` is refused ({}): log in as root, or allow passwordless sudo",
                self.destination,
                crate::output::redact::line(err.trim().lines().next().unwrap_or(""))
            )));
        }
        Ok(())
    }

    /// Fails with a connection error once the SSH master is gone (waits
    /// that only use its tunnels would otherwise not notice).
    pub async fn alive(&self) -> Result<(), Error> {
        match tokio::time::timeout(Duration::from_secs(10), self.session.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(e)),
            Err(_) => Err(self.lost_because("the SSH master does not answer")),
        }
    }

    /// The connection failed under a command, with ssh's own error.
    pub fn lost(&self, e: openssh::Error) -> Error {
        Error::ssh(format!("{}: lost the SSH connection", self.destination), e)
    }

    /// The connection is gone, as this side saw it (`why`).
    pub fn lost_because(&self, why: &str) -> Error {
        Error::Connect(format!("{}: lost the SSH connection: {why}", self.destination))
    }

    /// Runs `script` with `sh -c` as root (through `sudo -n` for a non-root
    /// login), for at most the host's timeout: the server's `timeout`
    /// stops the script, and this side stops waiting a little later.
    pub async fn sh(&self, script: &str) -> Result<std::process::Output, Error> {
        self.sh_within(script, self.timeout).await
    }

    pub async fn sh_within(&self, script: &str, limit: Duration) -> Result<std::process::Output, Error> {
        self.sh_fed(script, None, limit).await
    }

    /// [`Host::sh`] with `input` on the script's stdin: what must not be in
    /// its command line (which every user of the server can read in /proc).
    pub async fn sh_input(&self, script: &str, input: &[u8]) -> Result<std::process::Output, Error> {
        self.sh_fed(script, Some(input), self.timeout).await
    }

    async fn sh_fed(&self, script: &str, input: Option<&[u8]>, limit: Duration) -> Result<std::process::Output, Error> {
        SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let secs = limit.as_secs().max(1);
        let mut c = if self.sudo {
            let mut c = self.session.command("sudo");
            c.arg("-n").arg("env");
            c
        } else {
            self.session.command("env")
        };
        c.arg(C_LOCALE).arg("timeout").arg("-k").arg("5").arg(secs.to_string()).arg("sh").arg("-c").arg(script);
        let run = async {
            let Some(input) = input else { return c.output().await };
            use tokio::io::AsyncWriteExt;
            let mut child = c.stdin(openssh::Stdio::piped()).stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped()).spawn().await?;
            if let Some(mut w) = child.stdin().take() {
                // A script that exits without reading is its own answer.
                let _ = w.write_all(input).await;
                let _ = w.shutdown().await;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(Duration::from_secs(secs + 10), run).await {
            Ok(r) => {
                let out = r.map_err(|e| self.lost(e))?;
                if out.status.code() == Some(124) || out.status.code() == Some(137) {
                    return Err(Error::Server(format!("{}: `{}` did not finish within {secs}s (--timeout)", self.destination, first_line(script))));
                }
                Ok(out)
            }
            Err(_) => Err(Error::Connect(format!("{}: no answer within {}s (--timeout): the connection is stuck", self.destination, secs + 10))),
        }
    }

    /// Runs `script` and returns its stdout; a non-zero exit is a server error
    /// carrying stderr (control characters escaped).
    pub async fn sh_ok(&self, script: &str) -> Result<String, Error> {
        let out = self.sh(script).await?;
        if !out.status.success() {
            return Err(Error::Server(format!(
                "{}: `{}` failed: {}",
                self.destination,
                first_line(script),
                crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim())
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Forwards a free local port to `remote_host:remote_port` as seen from
    /// the server, over this connection; returns the local port.
    ///
    /// The port is one the kernel just gave out and took back: between that
    /// and ssh's own bind, any process (another tunnel, any outgoing
    /// connection) may take it, and the master refuses the forward. A
    /// refused forward is asked again on another port, three times at most.
    pub async fn forward(&self, remote_host: std::net::IpAddr, remote_port: u16) -> Result<u16, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let local =
                std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map_err(|e| Error::local("cannot pick a local port for the SSH tunnel", e))?.port();
            match self.session.request_port_forward(openssh::ForwardType::Local, (std::net::Ipv4Addr::LOCALHOST, local), (remote_host, remote_port)).await {
                Ok(()) => return Ok(local),
                Err(openssh::Error::SshMux(_)) if attempt < 3 => continue,
                Err(e) => {
                    // What the master said (its refusal), not only that it refused.
                    let why = std::error::Error::source(&e).map(|s| format!(" ({})", crate::output::redact::line(&s.to_string()))).unwrap_or_default();
                    return Err(Error::ssh(format!("{}: cannot open an SSH tunnel to {remote_host}:{remote_port}{why}", self.destination), e));
                }
            }
        }
    }

    /// The link's throughput to the server (bytes/s), measured as uploads
    /// use it: a session's own cost, then 1 MiB of random bytes to
    /// `cat > /dev/null`; on a middling link 4 MiB more (the rate is the
    /// difference), on a fast one 2 × 16 MiB at once (as uploads go).
    pub async fn measure_link(&self) -> Result<f64, Error> {
        let timed = |n: usize, streams: usize| async move {
            let mut data = vec![0u8; n];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut data);
            let t = std::time::Instant::now();
            let outs = futures::future::join_all((0..streams).map(|_| self.sh_input("cat > /dev/null", &data))).await;
            for out in outs {
                if !out?.status.success() {
                    return Err(Error::Server(format!("{}: measuring the link failed", self.destination)));
                }
            }
            Ok::<f64, Error>(t.elapsed().as_secs_f64())
        };
        let base = timed(0, 1).await?;
        let one = timed(1 << 20, 1).await?;
        let secs = one - base;
        if secs >= 0.4 {
            // Slow enough that compressing obviously pays: no more probing.
            return Ok((1 << 20) as f64 / secs);
        }
        if secs >= 0.05 {
            // A shaper's burst (or a window opening) flatters the first
            // bytes: the rate is the difference of 4 MiB against 1 MiB,
            // where both paid the session and the burst alike.
            let four = timed(4 << 20, 1).await?;
            return Ok((3 << 20) as f64 / (four - one).max(1e-3));
        }
        let secs = timed(16 << 20, 2).await? - base;
        Ok((32 << 20) as f64 / secs.max(1e-3))
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

fn first_line(script: &str) -> &str {
    script.lines().find(|l| !l.trim().is_empty() && !l.starts_with("set -")).unwrap_or(script)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_quote_survives_the_remote_shell() {
        for s in ["plain", "with space", "it's", "$(rm -rf /)", "a'b'c"] {
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", super::shell_quote(s))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
