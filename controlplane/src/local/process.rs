//! Local child processes, bounded in time and killed on a signal.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` (stdin closed, output captured) for at most `timeout`; a
/// process still running then is killed and the call fails. While it runs it
/// is registered with [`crate::interrupt`], so a signal kills it too.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    crate::local::interrupt::register_pid(pid);
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(1 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            crate::local::interrupt::unregister_pid(pid);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no result within {}s; stopped it", timeout.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    crate::local::interrupt::unregister_pid(pid);
    Ok(Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// This process's own CPU time (user + system, seconds) and peak resident
/// memory (KiB) so far.
pub fn self_usage() -> (f64, u64) {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return (0.0, 0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), own_peak_kib().unwrap_or(u.ru_maxrss as u64))
}

/// The peak resident memory of this program since it started (`VmHWM`).
/// Not `ru_maxrss`: the kernel carries the parent's peak into it across
/// fork and exec, so a small program started by a large one reads large.
fn own_peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// One line for `-v`: SSH sessions opened (the caller counts them), own
/// CPU, peak memory.
pub fn stats_line(ssh_sessions: usize) -> String {
    let (cpu, rss) = self_usage();
    format!("stats: {ssh_sessions} SSH session(s), cpu {cpu:.3}s (user+system), peak rss {rss} KiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_hangs_is_stopped_at_the_timeout() {
        let t = Instant::now();
        let e = output_within(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(5));
        let o = output_within(Command::new("echo").arg("hi"), Duration::from_secs(5)).unwrap();
        assert_eq!(o.stdout, b"hi\n");
    }

    #[test]
    fn own_peak_memory_counts_what_this_program_touched() {
        let v = std::hint::black_box(vec![1u8; 48 << 20]);
        let peak = own_peak_kib().expect("VmHWM in /proc/self/status");
        assert!(peak >= 48 << 10, "peak {peak} KiB after touching 48 MiB");
        drop(v);
    }
}
