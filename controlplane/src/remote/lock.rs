//! One run per server at a time: an exclusive `flock` on the server, held by
//! a small process in its own SSH session for as long as the run lasts.
//!
//! - The lock lives in a directory of its own in /run (tmpfs): root's alone
//!   (0700, owner and mode checked, never a link), so no other user can
//!   open, and so `flock`, the lock file: nobody without root can block a
//!   run. Taking it changes nothing that survives a reboot.
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
//! - Several servers are locked all or nothing ([`acquire_all`]): when any
//!   is busy, every lock taken is released and the run tries again after a
//!   random pause, so two runs naming the same servers in other orders (or
//!   by other names) never hold one each and wait for the other.
//! - The session's output is read as bytes; what runs under the lock is
//!   bounded by `--timeout` on the server too.

use std::time::{Duration, Instant};

use base64::Engine;
use openssh::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::output::ui::Ui;
use crate::remote::{shell_quote as q, Host};
use crate::Error;

/// The lock's directory: root's alone.
pub const LOCK_DIR: &str = "/run/kubectl-bootstrap";
pub const LOCK_FILE: &str = "/run/kubectl-bootstrap/lock";
pub const HOLDER_FILE: &str = "/run/kubectl-bootstrap/holder";
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

/// What the script run under the lock printed, and its exit status.
pub type Then = (Vec<u8>, i32);

/// The holder script: make and check the lock's directory, take the lock or
/// report who holds it (base64); once it is held, run `then` bounded by
/// `secs` (its output, then an `END STATUS` line with this attempt's own
/// random `end` marker).
fn script(info: &str, then: Option<&str>, secs: u64, end: &str) -> String {
    let then = then.map(|t| format!("( timeout -k 5 {secs} sh -c {} ) </dev/null 9>&-; echo \"{end} $?\"\n", q(t))).unwrap_or_default();
    format!(
        "d={dir}\n\
         [ -e \"$d\" ] || [ -L \"$d\" ] || mkdir -m 0700 \"$d\" 2>/dev/null\n\
         if [ -L \"$d\" ] || [ ! -d \"$d\" ] || [ \"$(stat -c %u:%a \"$d\")\" != 0:700 ]; then echo \"unsafe $(stat -c '%U:%G %a' \"$d\" 2>&1 | base64 -w0)\"; exit 3; fi\n\
         exec 9>>{lock} || exit 3\n\
         if ! flock -n 9; then echo busy; base64 -w0 {holder} 2>/dev/null; echo; exit 75; fi\n\
         printf '%s\\n' {info} > {holder}.tmp && mv -f {holder}.tmp {holder}\n\
         echo locked\n\
         {then}\
         while l=$(timeout {stale} head -n 1) && [ -n \"$l\" ]; do :; done\n\
         rm -f {holder}\n",
        dir = q(LOCK_DIR),
        lock = q(LOCK_FILE),
        holder = q(HOLDER_FILE),
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

/// One attempt's outcome.
pub enum Attempt<'h> {
    /// Held, with what `then` printed.
    Held(Box<Lock<'h>>, Option<Then>),
    /// Another run holds it: who (escaped).
    Busy(String),
}

/// Reads one line as bytes (no UTF-8 is assumed), without its `\n`.
async fn line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(buf))
}

impl<'h> Lock<'h> {
    /// Takes the lock on `host`, waiting up to `timeout` for a run that holds it.
    pub async fn acquire(host: &'h Host, timeout: Duration, ui: &Ui) -> Result<Lock<'h>, Error> {
        let (lock, _) = acquire_all(&[(host, ui)], timeout, None).await.remove(0)?;
        Ok(lock)
    }

    /// One try, not waiting: the lock and what `then` printed under it, or
    /// who holds it.
    pub async fn try_acquire_then(host: &'h Host, then: Option<&str>) -> Result<Attempt<'h>, Error> {
        let token: String = format!("{:016x}", rand::random::<u64>());
        let end = format!("kcp-then-end-{:016x}", rand::random::<u64>());
        let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
        let info = format!("from {} (user {user}, pid {}) since {since} token {token}", local_host(), std::process::id());
        let info: String = crate::output::redact::line(&info);
        let secs = host.timeout.as_secs().max(1);
        let mut child =
            host.command(&script(&info, then, secs, &end)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().await.map_err(|e| host.lost(e))?;
        let stdout = child.stdout().take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout);
        let first = tokio::time::timeout(Duration::from_secs(30), line(&mut lines)).await;
        match first {
            Ok(Ok(Some(l))) if l == b"locked" => {
                let mut stdin = child.stdin().take().expect("piped stdin");
                let mut answer = None;
                if then.is_some() {
                    let read = async {
                        let mut out = Vec::new();
                        while let Some(l) = line(&mut lines).await? {
                            if let Some(code) = l.strip_prefix(end.as_bytes()) {
                                return Ok::<_, std::io::Error>(Some((out, String::from_utf8_lossy(code).trim().parse().unwrap_or(1))));
                            }
                            out.extend_from_slice(&l);
                            out.push(b'\n');
                        }
                        Ok(None)
                    };
                    match tokio::time::timeout(Duration::from_secs(secs + 10), read).await {
                        Ok(Ok(Some((out, 124 | 137)))) => {
                            drop(out);
                            return Err(Error::Server(format!("{}: reading the server under the lock did not finish within {secs}s (--timeout)", host.destination)));
                        }
                        Ok(Ok(Some(r))) => answer = Some(r),
                        Ok(_) => return Err(host.lost_because("the session holding the lock ended")),
                        Err(_) => return Err(Error::Server(format!("{}: reading the server under the lock did not finish within {}s (--timeout)", host.destination, secs + 10))),
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
                Ok(Attempt::Held(Box::new(Lock { child: Some(child), heartbeat, token }), answer))
            }
            Ok(Ok(Some(l))) if l == b"busy" => {
                let holder = tokio::time::timeout(Duration::from_secs(10), line(&mut lines)).await.ok().and_then(|r| r.ok()).flatten().unwrap_or_default();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                let holder = base64::engine::general_purpose::STANDARD.decode(holder.trim_ascii()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let holder = crate::output::redact::line(holder.trim().split(" token ").next().unwrap_or(""));
                Ok(Attempt::Busy(if holder.is_empty() { "another run (it did not say who)".to_string() } else { holder }))
            }
            Ok(Ok(Some(l))) if l.starts_with(b"unsafe ") => {
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                let what = base64::engine::general_purpose::STANDARD.decode(l[7..].trim_ascii()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                Err(Error::Input(format!(
                    "{}: the lock's directory {LOCK_DIR} is not root's alone ({}): bootstrap keeps its lock only in a directory nobody else can open; remove it (rm -rf {LOCK_DIR}) and run again",
                    host.destination,
                    crate::output::redact::line(what.trim())
                )))
            }
            Ok(Ok(_)) | Ok(Err(_)) => {
                let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
                    .await
                    .map_err(|_| host.lost_because("the lock's session did not end"))?
                    .map_err(|e| host.lost(e))?;
                let err = crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim());
                Err(Error::Server(format!("{}: cannot take the lock {LOCK_FILE} (needs flock from util-linux): {err}", host.destination)))
            }
            Err(_) => Err(Error::Connect(format!("{}: taking the lock got no answer within 30s", host.destination))),
        }
    }

    /// A shell line that fails the script unless this run still holds the lock.
    pub fn fence(&self) -> String {
        format!("grep -q {} {} || {{ echo 'lost the lock {LOCK_FILE} (this run was cut off for over {}s)' >&2; exit 1; }}\n", q(&self.token), q(HOLDER_FILE), STALE.as_secs())
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

/// Locks every one of `hosts` (each with the UI that says what it waits
/// for), all or nothing, running `then` under each lock in its session:
/// when any host is busy, every lock this attempt took is released and,
/// after a random pause (so that two runs contending for the same servers
/// do not retry in step), all are tried again, until `timeout`. An error
/// on a host (not a busy lock) releases the others and ends the attempt.
/// One result per host, in order: every one held, or every one an error
/// (a host that was not at fault says so).
pub async fn acquire_all<'h>(hosts: &[(&'h Host, &Ui)], timeout: Duration, then: Option<&str>) -> Vec<Result<(Lock<'h>, Option<Then>), Error>> {
    let start = Instant::now();
    let mut said = vec![false; hosts.len()];
    loop {
        let tries = futures::future::join_all(hosts.iter().map(|(h, _)| Lock::try_acquire_then(h, then))).await;
        if tries.iter().all(|t| matches!(t, Ok(Attempt::Held(..)))) {
            return tries
                .into_iter()
                .map(|t| match t {
                    Ok(Attempt::Held(l, out)) => Ok((*l, out)),
                    _ => unreachable!("all held"),
                })
                .collect();
        }
        let mut outcomes = Vec::new();
        for t in tries {
            outcomes.push(match t {
                Ok(Attempt::Held(l, _)) => {
                    l.release().await;
                    None
                }
                Ok(Attempt::Busy(who)) => Some(Ok(who)),
                Err(e) => Some(Err(e)),
            });
        }
        let failed = outcomes.iter().any(|o| matches!(o, Some(Err(_))));
        if failed || start.elapsed() >= timeout {
            let not_at_fault = |h: &Host| Error::Server(format!("{}: not locked: every server is locked at once, and another could not be", h.destination));
            return outcomes
                .into_iter()
                .zip(hosts)
                .map(|(o, (h, _))| match o {
                    Some(Err(e)) => Err(e),
                    Some(Ok(who)) if !failed => Err(Error::Server(format!(
                        "{}: another run holds the lock, {who}; waited {}s (--timeout). It is freed when that run ends, or {}s after its connection is lost",
                        h.destination,
                        timeout.as_secs(),
                        STALE.as_secs()
                    ))),
                    _ => Err(not_at_fault(h)),
                })
                .collect();
        }
        for ((o, (h, ui)), said) in outcomes.iter().zip(hosts).zip(said.iter_mut()) {
            if let (Some(Ok(who)), false) = (o, *said) {
                ui.step(&format!("wait     for the lock on {}: another run holds it, {who}", h.destination));
                *said = true;
            }
        }
        let pause = Duration::from_millis(500 + rand::random::<u64>() % 1500);
        tokio::time::sleep(pause.min(timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(100)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The holder script, run here against a directory of its own: the lock
    /// directory is made root's 0700 or refused; a busy lock names its
    /// holder; what runs under the lock ends with the attempt's marker.
    #[test]
    fn the_holder_script_takes_the_lock_or_says_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("lockdir");
        let s = |then: Option<&str>| {
            script("me", then, 5, "END-x")
                .replace(&q(LOCK_DIR), &q(&dir.display().to_string()))
                .replace(&q(LOCK_FILE), &q(&dir.join("lock").display().to_string()))
                .replace(&q(HOLDER_FILE), &q(&dir.join("holder").display().to_string()))
        };
        let root = unsafe { libc::geteuid() } == 0;
        let out = std::process::Command::new("sh").arg("-c").arg(s(Some("echo probed"))).stdin(std::process::Stdio::null()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if root {
            assert_eq!(text, "locked\nprobed\nEND-x 0\n", "{}", String::from_utf8_lossy(&out.stderr));
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777, 0o700);
            // Made loose by someone: refused, never used.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let out = std::process::Command::new("sh").arg("-c").arg(s(None)).stdin(std::process::Stdio::null()).output().unwrap();
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("unsafe "), "{:?}", out);
            assert_eq!(out.status.code(), Some(3));
        } else {
            // Not root: the directory this user made is not root's.
            assert!(text.starts_with("unsafe "), "{text}");
        }
    }
}
