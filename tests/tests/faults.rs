//! Faults while a run changes the server: a disk that fills during the
//! upload, a commit step that fails, a second run while one holds the lock,
//! a holder that went silent; and the seeded fault trials (cut connections,
//! SIGINT) whose full-size campaign is `cargo xtask faults`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::faults::{self, Cut};
use e2e::{run_bootstrap, server_args, text};

fn with_set(bed: &e2e::Bed, set: &str) -> Vec<String> {
    let mut a = server_args(bed, "root");
    a.extend(["--set".into(), set.into()]);
    a
}

#[test]
fn a_disk_that_fills_during_the_upload_is_exit_1_no_space_and_leaves_no_temp() {
    let bed = e2e::bootstrapped("fulldisk");
    // A small file system of its own over /usr/local/bin: big enough for
    // preflight, then filled by another process as soon as the upload starts.
    bed.ssh("mount -t tmpfs -o size=340m,mode=0755 tmpfs /usr/local/bin").unwrap();
    let filler = std::thread::spawn({
        let (opts, dest) = (bed.ssh_options(), bed.dest());
        move || {
            Command::new("ssh")
                .args(opts)
                .arg(dest)
                .arg("for i in $(seq 3000); do ls /usr/local/bin/.*kcp-tmp* >/dev/null 2>&1 && break; sleep 0.01; done; dd if=/dev/zero of=/usr/local/bin/.filler bs=1M 2>/dev/null; true")
                .status()
                .unwrap()
        }
    });
    let out = run_bootstrap(&server_args(&bed, "root"));
    filler.join().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "a full disk is a failure on the server, not a lost connection:\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(line.contains("upload of /usr/local/bin/") && line.contains("No space left on device"), "{stderr}");
    assert_eq!(e2e::leftover_temps(&bed).trim(), "", "no temp left behind");
    bed.ssh("umount /usr/local/bin").unwrap();
    let out = run_bootstrap(&server_args(&bed, "root"));
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn a_failing_commit_step_fails_the_run_naming_the_file_and_reports_it_not_uploaded() {
    let bed = e2e::bootstrapped("commitfail");
    let unit = "/etc/systemd/system/kube-apiserver.service";
    let before = bed.ssh(&format!("sha256sum {unit}")).unwrap();
    for (tool, step) in [("chown", format!("chown root:root {unit} failed")), ("mv", format!("rename into {unit} failed"))] {
        // The server's own tool fails for that file (first on root's PATH).
        bed.ssh(&format!(
            "printf '#!/bin/sh\\ncase \"$*\" in *kube-apiserver.service*) echo \"{tool}: Operation not permitted\" >&2; exit 1;; esac\\nexec /bin/{tool} \"$@\"\\n' > /usr/local/sbin/{tool} && chmod 755 /usr/local/sbin/{tool}"
        ))
        .unwrap();
        let mut args = with_set(&bed, "kube-apiserver.v=3");
        args.extend(["-o".into(), "json".into()]);
        let out = run_bootstrap(&args);
        bed.ssh(&format!("rm /usr/local/sbin/{tool}")).unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{tool}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains(&step)), "{tool}: names the file and step:\n{stderr}");
        let v: e2e::report::Failure = e2e::report::parse(stdout.as_bytes());
        assert_eq!((v.kind.as_str(), v.exit_code), ("Error", 1));
        assert!(!stdout.contains("\"uploaded\""), "{stdout}");
        assert_eq!(bed.ssh(&format!("sha256sum {unit}")).unwrap(), before, "{tool}: the unit in place is untouched");
        assert_eq!(e2e::leftover_temps(&bed).trim(), "", "{tool}: the temp is removed");
    }
    let out = run_bootstrap(&with_set(&bed, "kube-apiserver.v=3"));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(bed.ssh("systemctl show -p ExecStart kube-apiserver").unwrap().contains("--v=3"));
}

/// Starts a run and returns once it holds the server's lock.
fn holding(bed: &e2e::Bed, args: &[String]) -> std::process::Child {
    let child = Command::new(e2e::plugin("kubectl-bootstrap")).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = format!("cat {} 2>/dev/null; true", controlplane::remote::lock::HOLDER_FILE);
    while bed.ssh(&holder).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[test]
fn a_second_run_waits_for_the_lock_then_names_the_holder_and_a_silent_holder_loses_it() {
    let bed = e2e::bootstrapped("lock");
    // A run that takes a while (the apiserver restarts, leaders are awaited).
    let mut first = holding(&bed, &with_set(&bed, "kube-apiserver.v=3"));
    let mut second = server_args(&bed, "root");
    second.extend(["--timeout".into(), "3s".into()]);
    let t = Instant::now();
    let out = run_bootstrap(&second);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(30), "bounded by --timeout: {:?}", t.elapsed());
    assert!(stderr.contains(&format!("wait     for the lock on {}: another run holds it, from ", bed.dest())), "{stderr}");
    let err = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(err.contains("another run holds the lock, from ") && err.contains(&format!("pid {}) since ", first.id())), "names where from and since when: {err}");
    // The first run is unharmed (its temps were not touched) and finishes.
    assert!(first.wait().unwrap().success(), "the first run completes");

    // A holder whose connection went silent (its process frozen: no
    // heartbeat, no FIN) loses the lock within 30 s; the next run gets it.
    let frozen = holding(&bed, &with_set(&bed, "kube-apiserver.v=4"));
    let pid = frozen.id();
    let master: Vec<i32> = faults::processes_mentioning(&format!("/tmp/kcp-{pid}-")).iter().filter_map(|p| p.split(' ').next()?.parse().ok()).collect();
    for p in std::iter::once(pid as i32).chain(master.iter().copied()) {
        unsafe { libc::kill(p, libc::SIGSTOP) };
    }
    let t = Instant::now();
    let out = run_bootstrap(&with_set(&bed, "kube-apiserver.v=4"));
    let waited = t.elapsed();
    for p in std::iter::once(pid as i32).chain(master.iter().copied()) {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "the lock of a silent holder expires: {stderr}");
    assert!(stderr.contains("wait     for the lock"), "{stderr}");
    assert!(waited < Duration::from_secs(120), "{waited:?}");
    let mut frozen = frozen;
    let _ = frozen.wait();
}

/// The seeded subset of the fault campaign (`cargo xtask faults` runs the
/// full one): cuts in every phase, two of them SIGINT.
#[test]
fn runs_cut_at_random_points_converge_on_the_next_run() {
    let seed = faults::seed();
    eprintln!("fault seed {seed} (replay: KCP_FAULT_SEED={seed})");
    let bed = e2e::bootstrapped("faults");
    let mut runner = faults::Runner::new(&bed);
    let mut failed = Vec::new();
    let trials: Vec<_> = faults::trials(seed, 4, 2).into_iter().filter(|t| t.cut != Cut::LinkDown).collect();
    for t in &trials {
        let o = runner.run(t);
        eprintln!("{}", faults::describe(&o));
        if !o.ok() {
            failed.push(faults::describe(&o));
        }
    }
    assert!(failed.is_empty(), "seed {seed}:\n{}", failed.join("\n"));
}

/// SIGINT while the health wait runs: exit 130 promptly, nothing left here.
#[test]
fn sigint_stops_promptly_and_leaves_nothing_on_the_jumpbox() {
    let bed = e2e::bootstrapped("sigint");
    let mut child = Command::new(e2e::plugin("kubectl-bootstrap")).args(with_set(&bed, "kube-apiserver.v=3")).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for l in lines.by_ref().map_while(Result::ok) {
        if l.starts_with("wait     until healthy") {
            break;
        }
    }
    // Keep reading, as a terminal would.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    assert!(!faults::local_leftovers(pid).is_empty(), "a master runs while the run does");
    let t = Instant::now();
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "prompt: {:?}", t.elapsed());
    let said = drain.join().unwrap();
    assert_eq!(st.code(), Some(130), "{said:?}");
    assert!(said.iter().any(|l| l.starts_with("error: stopped by SIGINT")), "{said:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(faults::local_leftovers(pid), Vec::<String>::new());
    let out = run_bootstrap(&with_set(&bed, "kube-apiserver.v=3"));
    assert!(out.status.success(), "{:?}", text(&out));
}
