//! SIGINT and SIGTERM: stop the run promptly and leave nothing of it behind
//! on the jumpbox. Everything that would outlive the process registers here
//! while it exists: SSH masters (daemonized by ssh, so a signal to our process
//! group does not reach them) with their control directories, and local
//! child processes. [`guard`] races the run against the signals; on a signal
//! it closes every master (which closes every tunnel and remote session),
//! kills what is left, removes the directories and reports which signal it
//! was, for exit code 128 + N (130, 143).
//!
//! On the server a cut session ends its scripts: a staging script sees its
//! input end and removes its temp files; a commit is resumed by the next run
//! (see `exec`'s pending marker).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Registry {
    dirs: BTreeSet<PathBuf>,
    pids: BTreeSet<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { dirs: BTreeSet::new(), pids: BTreeSet::new() });

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A control directory (and the SSH master whose socket is in it) to close on a signal.
pub fn register_dir(dir: &Path) {
    registry().dirs.insert(dir.to_path_buf());
}

pub fn unregister_dir(dir: &Path) {
    registry().dirs.remove(dir);
}

/// A local child process to kill on a signal.
pub fn register_pid(pid: u32) {
    registry().pids.insert(pid);
}

pub fn unregister_pid(pid: u32) {
    registry().pids.remove(&pid);
}

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// 128 + the signal's number, as shells report it.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

/// Runs `work` until it finishes or SIGINT/SIGTERM arrives. On a signal the
/// work is abandoned (dropped), [`cleanup`] runs, and the signal is returned.
pub async fn guard<F: std::future::Future>(work: F) -> Result<F::Output, Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return Ok(work.await);
    };
    let sig = tokio::select! {
        out = work => return Ok(out),
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    };
    cleanup();
    Err(sig)
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(needle)).unwrap_or(false))
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z'))).unwrap_or(false)
}

fn kill(pid: u32, sig: i32) {
    unsafe { libc::kill(pid as i32, sig) };
}

/// Closes every registered SSH master, kills registered children and
/// anything still using a registered control directory, and removes the
/// directories. Bounded: a few seconds at most.
pub fn cleanup() {
    let (dirs, pids) = {
        let mut r = registry();
        (std::mem::take(&mut r.dirs), std::mem::take(&mut r.pids))
    };
    for pid in &pids {
        kill(*pid, libc::SIGKILL);
    }
    for dir in &dirs {
        // Ask each master to exit (it closes its tunnels and sessions)…
        for sock in sockets_under(dir) {
            let _ = crate::local::process::output_within(
                std::process::Command::new("ssh").arg("-S").arg(&sock).args(["-O", "exit", "-o", "BatchMode=yes", "kcp-master"]),
                Duration::from_secs(3),
            );
        }
        // …then make sure: SIGTERM, and SIGKILL for whatever does not go.
        let needle = dir.display().to_string();
        let left = processes_mentioning(&needle);
        for pid in &left {
            kill(*pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while left.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in left.iter().filter(|p| alive(**p)) {
            kill(*pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn sockets_under(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_socket() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}
