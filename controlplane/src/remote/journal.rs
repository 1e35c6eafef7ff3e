//! A unit's journal as evidence: the lines that say why its process ended
//! (klog's fatal lines, Go panics and fatal signals, systemd's own words
//! about the exit and the restart it scheduled). Journal text is server
//! text: it is read as bytes, every control character escaped, and a line
//! that could hold a secret (a PEM private key, a JWT, a bearer token, a
//! long base64 run) is dropped, never shown.
//!
//! The journal of a crash can be long (a Go traceback of a busy process is
//! tens of thousands of lines), so the server keeps only the lines that
//! could match ([`GREP`]) and sends the last [`SENT`] of them; the matching
//! proper ([`is_crash`]) happens here.

use super::shell_quote as q;

/// At most this many pre-matched lines of one unit's journal are sent.
pub const SENT: usize = 200;

/// At most this many matched lines are kept per unit (the last ones).
pub const KEEP: usize = 10;

/// What says a process ended, as messages start or hold it: a loose
/// extended regular expression for the server's `grep -E` (each alternative
/// follows the `IDENT[PID]: ` of a `short-iso` line); [`is_crash`] decides.
pub const GREP: &str = ": F[0-9]{4} |: panic: |: fatal error: |: SIG[A-Z]+: |Main process exited|Failed with result|Scheduled restart job|Start request repeated too quickly";

/// Shell printing the lines of the journal of the unit named by the shell
/// word `unit` (`'x.service'`, `"$u"`) since `since` (seconds since the
/// epoch by the server's clock; the whole journal when None) that may say
/// why its process ended: the last [`SENT`]. A journalctl that fails prints
/// `FAILED_MARK STATUS`, never an empty answer: the caller passes a random
/// `token` no journal line can forge.
pub fn crash_script(unit: &str, since: Option<f64>, token: &str) -> String {
    let since = since.map(|s| format!(" --since @{}", s.floor() as i64)).unwrap_or_default();
    format!(
        "{{ LC_ALL=C journalctl -u {unit}{since} -o short-iso --no-pager -q || echo \"{token} $?\"; }} | LC_ALL=C grep -a -E {} | tail -n {SENT}",
        q(&format!("{GREP}|^{token} "))
    )
}

/// At most this many of a unit's last message lines (tracebacks and the
/// flag dump left out: [`NOT_MESSAGES`]) are searched for failure
/// signatures (an unknown flag prints its error, then hundreds of lines of
/// usage)…
pub const SEARCHED: usize = 5000;
/// …of at most this many journal lines read.
pub const READ: usize = 50_000;

/// Lines that are never a failure's message, left out on the server so
/// they do not crowd the messages out: klog's flag dump at -v=1 and
/// above (`FLAG: --…`), and the Go traceback of every goroutine that
/// follows a fatal line (headers, `pkg.func(0x…)` frames, indented file
/// lines, `created by`; thousands of lines per crash), and indented usage.
pub const NOT_MESSAGES: &str = "\\] FLAG: --|\\]: goroutine [0-9]+ \\[|\\]: [[:space:]]|\\]: [^ ]+\\(|\\]: created by ";

/// Shell printing the lines of the last [`SEARCHED`] of the journal of the
/// unit named by the shell word `unit`, within the last `window` seconds
/// (server clock), that hold a failure signature's needle
/// ([`crate::diagnose::needles`]): the last [`SENT`]. A failing journalctl
/// prints `token STATUS`.
pub fn signature_script(unit: &str, window: u64, token: &str) -> String {
    let needles: String = crate::diagnose::needles().iter().map(|n| format!(" -e {}", q(n))).collect();
    format!(
        "{{ LC_ALL=C journalctl -u {unit} --since @$(( $(date +%s) - {window} )) -n {READ} -o short-iso --no-pager -q || echo \"{token} $?\"; }} | LC_ALL=C grep -a -v -E {} | tail -n {SEARCHED} | LC_ALL=C grep -a -F{needles} -e {} | tail -n {SENT}",
        q(NOT_MESSAGES),
        q(&format!("{token} "))
    )
}

/// The lines [`signature_script`] sent, escaped, those that may hold a
/// secret dropped. Err when the script says journalctl failed.
pub fn signature_lines(journal: &[u8], token: &str) -> Result<Vec<String>, crate::remote::BadReply> {
    let text = String::from_utf8_lossy(journal);
    if let Some(status) = text.lines().find_map(|l| l.strip_prefix(token).and_then(|r| r.strip_prefix(' '))) {
        return Err(format!("journalctl failed (exit {})", crate::output::redact::line(status.trim())).into());
    }
    Ok(text.lines().filter(|l| !may_hold_secret(l)).map(crate::output::redact::line).collect())
}

/// [`crash_script`] for the unit `unit`.
pub fn crash_script_for(unit: &str, since: Option<f64>, token: &str) -> String {
    crash_script(&q(unit), since, token)
}

/// The message of a `short-iso` journal line (`TIME HOST IDENT[PID]: MSG`),
/// or the whole line when it has no such prefix.
fn message(line: &str) -> &str {
    let mut it = line.splitn(3, ' ');
    match (it.next(), it.next(), it.next()) {
        (Some(t), Some(_host), Some(rest)) if t.len() >= 19 && t.as_bytes()[4] == b'-' => rest.split_once(": ").map(|(_, m)| m).unwrap_or(rest),
        _ => line,
    }
}

/// Does `msg` say why a process ended? klog's fatal level (`F1201 …`), a Go
/// panic, a Go runtime's fatal error or signal, or systemd about the exit
/// and the restart it scheduled.
pub fn is_crash(msg: &str) -> bool {
    let b = msg.as_bytes();
    let klog_fatal = b.len() > 6 && b[0] == b'F' && b[1..5].iter().all(u8::is_ascii_digit) && b[5] == b' ';
    let go_signal = msg.starts_with("SIG") && msg.split_once(": ").is_some_and(|(s, _)| s.len() > 3 && s[3..].bytes().all(|c| c.is_ascii_uppercase()));
    klog_fatal
        || go_signal
        || msg.starts_with("panic: ")
        || msg.starts_with("fatal error: ")
        || msg.contains("Main process exited")
        || msg.contains("Failed with result")
        || msg.contains("Scheduled restart job")
        || msg.contains("Start request repeated too quickly")
}

/// Could `line` hold a secret? A PEM private key, a JWT (`eyJ…`), a bearer
/// token, or a base64 run of 40 characters or more: such a line is never
/// printed. A run counts as base64 when it mixes upper and lower case with
/// digits or `+` (random bytes do, with odds of a miss below 1 in 1,000
/// at 40 characters); a Go package path
/// (`k8s.io/kubernetes/pkg/scheduler/apis/config/scheme`) does not.
pub fn may_hold_secret(line: &str) -> bool {
    if line.contains("PRIVATE KEY") || line.to_ascii_lowercase().contains("bearer ") || line.contains("eyJ") {
        return true;
    }
    let (mut run, mut upper, mut lower, mut digit) = (0usize, false, false, false);
    for c in line.bytes() {
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
            run += 1;
            upper |= c.is_ascii_uppercase();
            lower |= c.is_ascii_lowercase();
            digit |= c.is_ascii_digit() || c == b'+';
            if run >= 40 && upper && lower && digit {
                return true;
            }
        } else {
            (run, upper, lower, digit) = (0, false, false, false);
        }
    }
    false
}

/// The lines of `journal` (server bytes, as [`crash_script`] sent them)
/// that say why a process ended, the last [`KEEP`], escaped; lines that may
/// hold a secret dropped. Err when the script says journalctl failed.
pub fn crash_lines(journal: &[u8], token: &str) -> Result<Vec<String>, crate::remote::BadReply> {
    let text = String::from_utf8_lossy(journal);
    if let Some(status) = text.lines().find_map(|l| l.strip_prefix(token).and_then(|r| r.strip_prefix(' '))) {
        return Err(format!("journalctl failed (exit {})", crate::output::redact::line(status.trim())).into());
    }
    let mut out: Vec<String> = text.lines().filter(|l| is_crash(message(l)) && !may_hold_secret(l)).map(crate::output::redact::line).collect();
    let skip = out.len().saturating_sub(KEEP);
    out.drain(..skip);
    Ok(out)
}

/// A random token for [`crash_script`]'s failure line.
pub fn token() -> String {
    format!("kcp-journal-{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from a bed: an apiserver that could not reach etcd, and systemd restarting it.
    const JOURNAL: &str = "2026-12-01T21:50:01+0000 server kube-apiserver[311]: I1201 21:50:01.100000     311 server.go:632] external host was not specified\n\
2026-12-01T21:50:21+0000 server kube-apiserver[311]: F1201 21:50:21.200000     311 storage_decorator.go:57] Unable to create storage backend: config (&{etcd3 /registry}), err (context deadline exceeded)\n\
2026-12-01T21:50:21+0000 server kube-apiserver[311]: goroutine 1 [running]:\n\
2026-12-01T21:50:21+0000 server systemd[1]: kube-apiserver.service: Main process exited, code=exited, status=255/EXCEPTION\n\
2026-12-01T21:50:21+0000 server systemd[1]: kube-apiserver.service: Failed with result 'exit-code'.\n\
2026-12-01T21:50:26+0000 server systemd[1]: kube-apiserver.service: Scheduled restart job, restart counter is at 1.\n\
2026-12-01T21:50:26+0000 server kube-apiserver[400]: E1201 21:50:26.000000     400 token: Bearer abc\n\
2026-12-01T21:50:26+0000 server kube-apiserver[400]: SIGSEGV: segmentation violation\n\
2026-12-01T21:50:26+0000 server kube-apiserver[400]: panic: oops\x1b[2J\n";

    #[test]
    fn the_lines_that_say_why_a_process_ended_are_kept_escaped() {
        let got = crash_lines(JOURNAL.as_bytes(), "tok").unwrap();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].contains("F1201 21:50:21.200000") && got[0].contains("context deadline exceeded"));
        assert!(got[1].ends_with("Main process exited, code=exited, status=255/EXCEPTION"));
        assert!(got[3].contains("Scheduled restart job"));
        assert!(got[4].ends_with("SIGSEGV: segmentation violation"));
        assert!(got[5].ends_with("panic: oops\\u{1b}[2J"), "{}", got[5]);
        assert!(!got.iter().any(|l| l.contains("Bearer") || l.contains("I1201") || l.contains("goroutine")));
        assert_eq!(crash_lines(b"x\ntok 1\n", "tok").unwrap_err().to_string(), "journalctl failed (exit 1)");
    }

    /// The server sends a signature's candidate lines, never the flag dump
    /// or a traceback's lines (which would crowd them out), and a failing
    /// journalctl is reported (this machine's sh and grep, a stand-in
    /// journalctl first on PATH).
    #[test]
    fn the_signature_prefilter_keeps_messages_and_drops_flag_dumps_and_tracebacks() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("journalctl");
        let journal = "2026-12-02T05:49:01+0000 server kube-controller-manager[614]: I1202 05:49:01.1 614 flags.go:59] FLAG: --cloud-provider=\"\"\n\
2026-12-02T05:49:02+0000 server kube-controller-manager[614]: F1202 05:49:02.091325 614 controllermanager.go:250] error starting controllers: open /var/lib/kubernetes/ca.key: no such file or directory\n\
2026-12-02T05:49:02+0000 server kube-controller-manager[614]: goroutine 401 [select]:\n\
2026-12-02T05:49:02+0000 server kube-controller-manager[614]: k8s.io/kubernetes/vendor/k8s.io/cloudprovider.(*T).f(0xc000010001, 0x9e)\n\
2026-12-02T05:49:02+0000 server kube-controller-manager[614]: created by k8s.io/kubernetes/vendor/k8s.io/cloudprovider.New\n\
2026-12-02T05:49:02+0000 server kube-controller-manager[614]:         /src/k8s.io/cloudprovider/x.go:1 +0x40\n";
        std::fs::write(&fake, format!("#!/bin/sh\ncat <<'EOF'\n{journal}EOF\n[ -z \"$FAIL\" ] || exit 4\n")).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let run = |fail: bool| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(signature_script("'x.service'", 600, "tok9")).env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()));
            if fail {
                c.env("FAIL", "1");
            }
            c.output().unwrap()
        };
        let got = signature_lines(&run(false).stdout, "tok9").unwrap();
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("ca.key: no such file or directory"));
        assert_eq!(signature_lines(&run(true).stdout, "tok9").unwrap_err().to_string(), "journalctl failed (exit 4)");
    }

    #[test]
    fn lines_that_may_hold_a_secret_never_pass() {
        for l in [
            "x -----BEGIN RSA PRIVATE KEY----- y",
            "Authorization: Bearer abc",
            "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig",
            "F1201 data QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg==",
        ] {
            assert!(may_hold_secret(l), "{l}");
            assert!(crash_lines(format!("2026-12-01T21:50:26+0000 server x[1]: F1201 {l}\n").as_bytes(), "tok").unwrap().is_empty());
        }
        assert!(!may_hold_secret("F1201 21:50:21.200000     311 storage_decorator.go:57] Unable to create storage backend"));
        assert!(!may_hold_secret("kube-apiserver.service: Main process exited, code=exited, status=255/EXCEPTION"));
        // A Go package path is not base64 (a real line, scheduler config of another release).
        assert!(!may_hold_secret("no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1\" in scheme \"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme/scheme.go:30\""));
        // 30 random bytes in base64 (a Secret's data, a token) are.
        assert!(may_hold_secret("token=3q2+7wAAAAEAAgADAAQABQAGAAcACAAJAAoACwAMAA0ADgAP"));
    }

    #[test]
    fn at_most_the_last_few_are_kept_and_bytes_need_not_be_utf8() {
        let mut j = Vec::new();
        for i in 0..30 {
            j.extend_from_slice(format!("2026-12-01T21:50:{i:02}+0000 server kube-scheduler[9]: F1201 line {i}\n").as_bytes());
        }
        j.extend_from_slice(b"2026-12-01T21:51:00+0000 server kube-scheduler[9]: F1201 \xff\xfe bytes\n");
        let got = crash_lines(&j, "tok").unwrap();
        assert_eq!(got.len(), KEEP);
        assert!(got[0].contains("line 21") && got[KEEP - 1].contains("\u{fffd}"), "{got:#?}");
    }

    /// The server's prefilter keeps every line the matching here keeps, and a
    /// failing journalctl is reported (run with this machine's sh and grep,
    /// a stand-in journalctl first on PATH).
    #[test]
    fn the_servers_prefilter_keeps_what_matches_and_a_failure_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("journalctl");
        std::fs::write(&fake, format!("#!/bin/sh\ncat <<'EOF'\n{JOURNAL}EOF\n[ -z \"$FAIL\" ] || exit 4\n")).unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&fake).unwrap().permissions(), 0o755);
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let run = |fail: bool| {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(crash_script_for("x.service", Some(1796050104.7), "tok123")).env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()));
            if fail {
                c.env("FAIL", "1");
            }
            c.output().unwrap()
        };
        let out = run(false);
        assert_eq!(crash_lines(&out.stdout, "tok123").unwrap(), crash_lines(JOURNAL.as_bytes(), "tok123").unwrap());
        assert!(!String::from_utf8_lossy(&out.stdout).contains("I1201"), "only candidate lines are sent");
        assert_eq!(crash_lines(&run(true).stdout, "tok123").unwrap_err().to_string(), "journalctl failed (exit 4)");
        assert!(crash_script_for("x.service", Some(1796050104.7), "t").contains("journalctl -u 'x.service' --since @1796050104 -o short-iso"));
    }
}
