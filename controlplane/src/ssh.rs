//! Host access over one multiplexed SSH connection (openssh, native-mux).
//! Both plugins connect through here; strict host-key checking by default.

use std::path::PathBuf;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};

use crate::Error;

/// Quotes `s` as one word for the remote POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// SSH options shared by both plugins (the destination is positional in
/// bootstrap and `--ssh` in cpcheck).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SshArgs {
    /// Private key file (ssh -i).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// SSH port (ssh -p).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Jump host (ssh -J).
    #[arg(short = 'J', long = "jump", value_name = "HOST")]
    pub jump: Option<String>,
    /// known_hosts file to check the server's host key against.
    #[arg(long = "known-hosts", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record an unknown host key (never a changed one).
    #[arg(long = "accept-new-host-key")]
    pub accept_new_host_key: bool,
}

/// A connected server: one SSH master, commands as root or through `sudo -n`.
pub struct Host {
    pub session: Session,
    pub destination: String,
    pub sudo: bool,
    _control_dir: tempfile_dir::TempDir,
}

/// A short-lived private directory for the control socket: socket paths are
/// limited to 108 bytes, so it lives directly under /tmp.
mod tempfile_dir {
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            use std::os::unix::fs::DirBuilderExt;
            for n in 0..100u32 {
                let p = std::path::PathBuf::from(format!("/tmp/kcp-{}-{n}", std::process::id()));
                match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                    Ok(()) => return Ok(Self(p)),
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
        }
    }
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
    pub async fn connect(destination: &str, args: &SshArgs) -> Result<Host, Error> {
        let dir = tempfile_dir::TempDir::new().map_err(|e| Error::Input(format!("cannot create an SSH control directory in /tmp: {e}")))?;
        let mut b = SessionBuilder::default();
        b.control_directory(&dir.0)
            .connect_timeout(Duration::from_secs(15))
            .server_alive_interval(Duration::from_secs(10))
            .known_hosts_check(if args.accept_new_host_key { KnownHosts::Add } else { KnownHosts::Strict });
        if let Some(k) = &args.identity {
            if !k.is_file() {
                return Err(Error::Input(format!("-i {}: no such key file", k.display())));
            }
            b.keyfile(k);
        }
        if let Some(p) = args.port {
            b.port(p);
        }
        if let Some(j) = &args.jump {
            b.jump_hosts([j]);
        }
        if let Some(kh) = &args.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let session = b.connect_mux(destination).await.map_err(|e| connect_error(destination, &e))?;
        let uid = session
            .command("id")
            .arg("-u")
            .output()
            .await
            .map_err(|e| Error::Connect(format!("{destination}: cannot run a command: {e}")))?;
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        Ok(Host { session, destination: destination.to_string(), sudo: !root, _control_dir: dir })
    }

    /// `sh -c script` as root (through `sudo -n` for a non-root login), to
    /// spawn with piped stdin for streaming.
    pub fn command(&self, script: &str) -> openssh::Command<'_> {
        if self.sudo {
            let mut c = self.session.command("sudo");
            c.arg("-n").arg("sh").arg("-c").arg(script);
            c
        } else {
            let mut c = self.session.command("sh");
            c.arg("-c").arg(script);
            c
        }
    }

    pub fn lost(&self, e: impl std::fmt::Display) -> Error {
        Error::Connect(format!("{}: lost the SSH connection: {e}", self.destination))
    }

    /// Runs `script` with `sh -c` as root (through `sudo -n` for a non-root login).
    pub async fn sh(&self, script: &str) -> Result<std::process::Output, Error> {
        self.command(script).output().await.map_err(|e| self.lost(e))
    }

    /// Runs `script` and returns its stdout; a non-zero exit is a server error
    /// carrying stderr.
    pub async fn sh_ok(&self, script: &str) -> Result<String, Error> {
        let out = self.sh(script).await?;
        if !out.status.success() {
            return Err(Error::Server(format!(
                "{}: `{}` failed: {}",
                self.destination,
                script.lines().next().unwrap_or(script),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Forwards a free local port to `remote_host:remote_port` as seen from
    /// the server, over this connection; returns the local port.
    pub async fn forward(&self, remote_host: std::net::IpAddr, remote_port: u16) -> Result<u16, Error> {
        let local = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Input(format!("cannot pick a local port for the SSH tunnel: {e}")))?
            .port();
        self.session
            .request_port_forward(
                openssh::ForwardType::Local,
                (std::net::Ipv4Addr::LOCALHOST, local),
                (remote_host, remote_port),
            )
            .await
            .map_err(|e| Error::Connect(format!("{}: cannot open an SSH tunnel to {remote_host}:{remote_port}: {e}", self.destination)))?;
        Ok(local)
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
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
