//! One run per server at a time: an exclusive `flock` on the server, held by
//! a small process in its own SSH session for as long as the run lasts.
//!
//! - The lock lives in /run (tmpfs): taking it changes nothing that survives
//!   a reboot, and nothing under the paths bootstrap manages.
//! - The holder writes who it is (jumpbox, user, pid, since, a random token)
//!   next to the lock; a second run prints that while it waits (up to
//!   `--timeout`) and when it gives up (exit 1).
//! - The holder's process reads a heartbeat line from this run every
//!   [`HEARTBEAT`]; after [`STALE`] without one (the jumpbox died or its link
//!   was cut without sshd noticing) it exits and the lock is free. So a lock
//!   never outlives its run by more than [`STALE`], and nothing ever needs
//!   to be broken by hand.
//! - The commit step checks the token ([`Lock::fence`]): a run that lost its
//!   lock while cut off does not place files over another run's.

use std::time::{Duration, Instant};

use openssh::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::output::ui::Ui;
use crate::remote::{shell_quote as q, Host};
use crate::Error;

pub const LOCK_FILE: &str = "/run/kubectl-bootstrap.lock";
pub const HOLDER_FILE: &str = "/run/kubectl-bootstrap.holder";
/// How often this run proves it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Silence after which the server drops the lock.
pub const STALE: Duration = Duration::from_secs(30);

/// The lock, held until dropped (or [`Lock::release`]).
pub struct Lock<'h> {
    child: Option<openssh::Child<&'h openssh::Session>>,
    heartbeat: tokio::task::JoinHandle<()>,
    token: String,
}

/// Ends the output of the script run under the lock, with its exit status.
const THEN_END: &str = "kcp-then-end";

/// The holder script: take the lock or report who holds it; once it is
/// held, run `then` (its output, then a `kcp-then-end STATUS` line).
fn script(info: &str, then: Option<&str>) -> String {
    let then = then.map(|t| format!("( {t}\n) </dev/null 9>&-; echo \"{THEN_END} $?\"\n")).unwrap_or_default();
    format!(
        "exec 9>>{lock} || exit 3\n\
         if ! flock -n 9; then echo busy; cat {holder} 2>/dev/null; exit 75; fi\n\
         printf '%s\\n' {info} > {holder}.tmp && mv -f {holder}.tmp {holder}\n\
         echo locked\n\
         {then}\
         while l=$(timeout {stale} head -n 1) && [ -n \"$l\" ]; do :; done\n\
         rm -f {holder}\n",
        lock = LOCK_FILE,
        holder = HOLDER_FILE,
        info = q(info),
        stale = STALE.as_secs(),
    )
}

fn local_host() -> String {
    let mut buf = [0u8; 256];
    let n = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if n != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl<'h> Lock<'h> {
    /// Takes the lock on `host`, waiting up to `timeout` for a run that holds it.
    pub async fn acquire(host: &'h Host, timeout: Duration, ui: &Ui) -> Result<Lock<'h>, Error> {
        Ok(Self::acquire_then(host, timeout, ui, None).await?.0)
    }

    /// [`Lock::acquire`], then runs `then` under the lock in the same
    /// session (one round trip less): its stdout and exit status.
    pub async fn acquire_then(host: &'h Host, timeout: Duration, ui: &Ui, then: Option<&str>) -> Result<(Lock<'h>, Option<(String, i32)>), Error> {
        let token: String = format!("{:016x}", rand::random::<u64>());
        let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
        let info = format!("from {} (user {user}, pid {}) since {since} token {token}", local_host(), std::process::id());
        let info: String = crate::output::redact::line(&info);
        let start = Instant::now();
        let mut said = false;
        loop {
            let mut child = host.command(&script(&info, then)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().await.map_err(|e| host.lost(e))?;
            let stdout = child.stdout().take().expect("piped stdout");
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            match first {
                Ok(Ok(Some(l))) if l == "locked" => {
                    let mut stdin = child.stdin().take().expect("piped stdin");
                    let mut answer = None;
                    if then.is_some() {
                        let read = async {
                            let mut out = String::new();
                            while let Some(l) = lines.next_line().await? {
                                if let Some(code) = l.strip_prefix(THEN_END) {
                                    return Ok::<_, std::io::Error>(Some((out, code.trim().parse().unwrap_or(1))));
                                }
                                out.push_str(&l);
                                out.push('\n');
                            }
                            Ok(None)
                        };
                        match tokio::time::timeout(host.timeout.max(Duration::from_secs(1)), read).await {
                            Ok(Ok(Some(r))) => answer = Some(r),
                            Ok(_) => return Err(host.lost("the session holding the lock ended")),
                            Err(_) => {
                                return Err(Error::Server(format!(
                                    "{}: reading the server under the lock did not finish within {}s (--timeout)",
                                    host.destination,
                                    host.timeout.as_secs()
                                )))
                            }
                        }
                    }
                    let heartbeat = tokio::spawn(async move {
                        loop {
                            if stdin.write_all(b"h\n").await.is_err() || stdin.flush().await.is_err() {
                                return;
                            }
                            tokio::time::sleep(HEARTBEAT).await;
                        }
                    });
                    return Ok((Lock { child: Some(child), heartbeat, token }, answer));
                }
                Ok(Ok(Some(l))) if l == "busy" => {
                    let holder = lines.next_line().await.ok().flatten().unwrap_or_default();
                    let _ = child.wait().await;
                    let holder = crate::output::redact::line(holder.split(" token ").next().unwrap_or(""));
                    let holder = if holder.is_empty() { "another run (it did not say who)".to_string() } else { holder };
                    if start.elapsed() >= timeout {
                        return Err(Error::Server(format!(
                            "{}: another run holds the lock, {holder}; waited {}s (--timeout). It is freed when that run ends, or {}s after its connection is lost",
                            host.destination,
                            timeout.as_secs(),
                            STALE.as_secs()
                        )));
                    }
                    if !said {
                        ui.step(&format!("wait     for the lock on {}: another run holds it, {holder}", host.destination));
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(Ok(_)) | Ok(Err(_)) => {
                    let out = child.wait_with_output().await.map_err(|e| host.lost(e))?;
                    let err = crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim());
                    return Err(Error::Server(format!("{}: cannot take the lock {LOCK_FILE} (needs flock from util-linux): {err}", host.destination)));
                }
                Err(_) => return Err(Error::Connect(format!("{}: taking the lock got no answer within 30s", host.destination))),
            }
        }
    }

    /// A shell line that fails the script unless this run still holds the lock.
    pub fn fence(&self) -> String {
        format!("grep -q {} {HOLDER_FILE} || {{ echo 'lost the lock {LOCK_FILE} (this run was cut off for over {}s)' >&2; exit 1; }}\n", q(&self.token), STALE.as_secs())
    }

    /// Releases the lock: the holder sees its input end and exits.
    pub async fn release(mut self) {
        self.heartbeat.abort();
        if let Some(child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}
