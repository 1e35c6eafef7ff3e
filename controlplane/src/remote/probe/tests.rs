//! The probe's script and parsers: run here under this machine's sh, and on
//! replies as servers give them (well-formed and hostile).

use super::*;
use crate::model::{FileMode, FILES, UNITS};

#[test]
fn the_servers_hmac_is_hmac_sha256_and_its_key_is_on_no_command_line() {
    let key = HmacKey::random();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret");
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    let script = format!("{}hm {}", files::HMAC_SH, crate::remote::shell_quote(&f.display().to_string()));
    assert!(!script.contains(&key.pads()[..20]));
    let mut c = std::process::Command::new("sh").arg("-c").arg(&script).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(key.pads().as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key.hmac(&data));
    // Another key, another answer: nothing to compare across runs.
    assert_ne!(HmacKey::random().hmac(&data), key.hmac(&data));
    assert_eq!(format!("{key:?}"), "HmacKey(..)");
}

fn b(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A reply with the odd shapes a bed does not make on its own (systemd
/// 247, drop-ins, NeedDaemonReload, a missing command, temps with hostile
/// names, a line a login shell printed), written to exercise them.
fn odd_reply() -> String {
    let props: String = UNITS
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if i == 0 {
                "UnitFileState=enabled\nActiveState=active\nSubState=running\nActiveEnterTimestampMonotonic=3000000\nNRestarts=2\nInvocationID=aa\nMainPID=3016\nNeedDaemonReload=yes\nDropInPaths=/etc/systemd/system/kube-apiserver.service.d/x.conf /run/systemd/system/kube-apiserver.service.d/y.conf\nFragmentPath=/etc/systemd/system/kube-apiserver.service\n".to_string()
            } else {
                "ActiveState=failed\nNRestarts=4\nMainPID=0\n".to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let journal = b(b"2026-12-01T21:50:21+0000 server kube-apiserver[311]: F1201 21:50:21.2 311 x.go:1] boom\n");
    format!(
        "uptime\t100.50\nnow\t1796049323.105266432\narch\tx86_64\nhostname\t{host}\nsystemd\tyes\nsystemd-version\t247\nmissing\tflock\ncoreutils\t8.32\ncodec\tgzip\nadvertise\t10.240.1.2\naddr\t10.240.1.2/24\n\
stat\t/usr/local/bin/kube-apiserver\t81ed\t755\troot\troot\t7\t39:7:7:1.0:2.0\n\
stat\t/usr/local/bin/kubectl\t81ed\t755\troot\troot\t42\t39:8:42:1.0:2.0\n\
stat\t/var/lib/kubernetes/ca.crt\ta1ff\t777\troot\troot\t9\t39:9:9:1.0:2.0\n\
sum\t{sha1}  /usr/local/bin/kubectl\nhit\t39:7:7:1.0:2.0\t{sha2}\t/usr/local/bin/kube-apiserver\n\
text\t/etc/systemd/system/kube-scheduler.service\t{unit}\n\
dir\t/var/lib/kubernetes\t41e8\t750\troot\tadm\n\
disk\t/var/lib/kubernetes\t1a2b\t250\t4096\n\
stale\t/var/lib/kubernetes\t{stale}\n\
pending\t{pending}\n\
props\t{props}\n\
cmdline\tkube-apiserver.service\t{cmd}\n\
version\tkube-apiserver.service\t{version}\n\
journal\tkube-apiserver.service\t{journal}\n\
listen\t00000000000000000000000000000000:192B\t777\n\
listen\t0100007F:094B\t30\n\
usock\tkube-apiserver.service\t777 778 \n\
holder\t30\t30\t{etcd}\n\
etcd\t{health}\n\
kcserver\t/var/lib/kubernetes/x.kubeconfig\t{server}\n\
provider\taescbc\nprovider\tidentity\n\
some line a login shell printed\n",
        host = b(b"server\n"),
        sha1 = "a".repeat(64),
        sha2 = "b".repeat(64),
        unit = b(b"[Unit]\n"),
        stale = b(b"/var/lib/kubernetes/.ca.key.kcp-tmp-1f\0/var/lib/kubernetes/.x.kcp-tmp-zz\0/var/lib/kubernetes/.x.kcp-tmp-1\nrm\0"),
        pending = b(b"restart kube-apiserver.service\n"),
        props = b(props.as_bytes()),
        cmd = b(b"/x\0--v=2\0"),
        version = b(b"Kubernetes v1.20.2\n"),
        etcd = b(b"etcd\n"),
        health = b(b"{\"health\":\"true\"}"),
        server = b(b"https://server.kubernetes.local:6443"),
    )
}

/// The replies `cargo xtask probe-reply` recorded from a real server
/// prepared so that every fact fires (see tests/src/probe_bed.rs: a stale
/// temp, a pending marker for the scheduler, a killed scheduler restarted
/// by systemd, cache hits and a miss, a failing `systemctl show`, flock
/// taken away). Regenerate them with that command; never edit them.
const RECORDED_BOOTSTRAP: &[u8] = include_bytes!("recorded/bootstrap.reply");
const RECORDED_CPCHECK: &[u8] = include_bytes!("recorded/cpcheck.reply");
const RECORDED_FAILING: &[u8] = include_bytes!("recorded/failing.reply");

#[test]
fn replies_recorded_from_a_server_parse_into_every_field() {
    let mut p = Probe::default();
    parse(RECORDED_BOOTSTRAP, &mut p).unwrap();
    assert_eq!((p.hostname.as_str(), p.systemd, p.arch.is_empty()), ("server", true, false));
    assert!(p.systemd_version.is_some_and(|v| v >= 239) && p.coreutils.is_some() && p.missing.is_empty());
    assert!(p.now > 1.7e9 && p.uptime > 0.0);
    for f in FILES {
        let r = &p.files[f.dest];
        assert!(r.is_regular() && r.sha256.len() == 64, "{}: {r:?}", f.dest);
    }
    for d in crate::model::DIRECTORIES {
        assert_eq!(p.dirs[d.path].kind, FileType::Directory, "{}", d.path);
        assert!(p.disk.contains_key(d.path), "{}", d.path);
    }
    let scheduler = UNITS.iter().find(|u| u.component != crate::model::APISERVER).unwrap();
    assert_eq!(p.pending, [crate::model::Owed::Restart(scheduler.component)]);
    assert_eq!(p.stale.len(), 1, "{:?}", p.stale);
    for u in UNITS {
        let s = &p.units[u.file_name];
        assert!(s.active.is_up() && s.main_pid > 0 && !s.cmdline.is_empty() && s.text.is_some(), "{}: {s:?}", u.file_name);
        assert!(s.active_enter_unix > 1_700_000_000, "{}", u.file_name);
        assert!(p.listeners.iter().any(|l| l.unit.as_deref() == Some(u.file_name) && l.port == u.serving_port), "{} listens on {}", u.file_name, u.serving_port);
    }
    assert_eq!(p.units[scheduler.file_name].restarts, 1, "killed once, started again by systemd");
    assert!(p.listeners.iter().any(|l| l.holder.as_ref().is_some_and(|h| h.name == "etcd")), "etcd holds its port");

    let mut c = Probe::default();
    parse(RECORDED_CPCHECK, &mut c).unwrap();
    assert!(c.etcd_health.contains("\"health\":\"true\""), "{}", c.etcd_health);
    assert!(c.etcd_members.contains("members"), "{}", c.etcd_members);
    assert!(!c.addresses.is_empty() && c.default_address.is_some());
    assert_eq!(c.fingerprints.len(), FILES.len(), "every file fingerprinted");
    assert!(!c.certs.is_empty() && c.kubeconfigs.values().all(|(server, cert)| server.starts_with("https://") && cert.is_some()));
    assert_eq!(c.encryption_providers.first().map(String::as_str), Some("aescbc"));
    assert!(!c.pairs.is_empty() && c.pairs.values().all(|(k, st)| k.ends_with(".key") && *st == super::pki::PairState::Match), "{:?}", c.pairs);
    assert!(c.units.values().all(|u| u.binary_version.as_deref().is_some_and(|v| v.starts_with("Kubernetes v"))));
    // Every component's journal was searched for failure signatures (the
    // killed scheduler's lines: none is a signature's, all are read fine).
    assert!(UNITS.iter().all(|u| c.units[u.file_name].signature_lines.is_ok()), "{:?}", c.units.values().map(|u| &u.signature_lines).collect::<Vec<_>>());
    let crashes = c.units[scheduler.file_name].crashes.as_ref().unwrap();
    assert!(crashes.iter().any(|l| l.contains("status=9/KILL")), "{crashes:?}");

    let mut f = Probe::default();
    let e = parse(RECORDED_FAILING, &mut f).unwrap_err();
    assert!(matches!(&e, ProbeError::Failed { command, .. } if command == "systemctl show"), "{e}");
    assert_eq!(f.missing, ["flock"]);
}

#[test]
fn a_reply_with_odd_shapes_parses_into_every_field() {
    let mut p = Probe::default();
    parse(odd_reply().as_bytes(), &mut p).unwrap();
    assert_eq!((p.arch.as_str(), p.hostname.as_str(), p.systemd, p.systemd_version), ("x86_64", "server", true, Some(247)));
    assert_eq!((p.missing.as_slice(), p.coreutils.as_deref(), p.codecs.as_slice()), (["flock".to_string()].as_slice(), Some("8.32"), ["gzip".to_string()].as_slice()));
    assert!((p.now - 1796049323.105).abs() < 0.01 && (p.uptime - 100.5).abs() < 0.001);
    assert_eq!(p.files["/usr/local/bin/kubectl"].mode, FileMode(0o755));
    assert_eq!(p.files["/usr/local/bin/kubectl"].sha256, "a".repeat(64));
    assert_eq!(p.files["/usr/local/bin/kube-apiserver"].sha256, "b".repeat(64));
    assert!(p.files["/usr/local/bin/kubectl"].is_regular() && p.files["/var/lib/kubernetes/ca.crt"].kind == FileType::Symlink);
    assert_eq!(p.dirs["/var/lib/kubernetes"], RemoteDir { mode: FileMode(0o750), owner: "root".into(), group: "adm".into(), kind: FileType::Directory });
    assert_eq!(p.disk["/var/lib/kubernetes"], ("1a2b".to_string(), 250 * 4096));
    // Only names of the temp shape are stale: not `zz`, not one with a newline.
    assert_eq!(p.stale, ["/var/lib/kubernetes/.ca.key.kcp-tmp-1f"]);
    assert_eq!(p.pending, [crate::model::Owed::Restart(crate::model::APISERVER)]);
    let u = &p.units["kube-apiserver.service"];
    assert!(u.need_daemon_reload && u.active.is_up());
    assert_eq!((u.restarts, u.drop_ins.len(), u.invocation.as_str(), u.main_pid), (2, 2, "aa", 3016));
    // Started 3 s after boot; read at uptime 100.5.
    assert_eq!(u.active_enter_unix, (1_796_049_323.105_266_4_f64 - 100.5 + 3.0) as u64);
    assert_eq!(u.cmdline, ["/x", "--v=2"]);
    assert_eq!(u.binary_version.as_deref(), Some("Kubernetes v1.20.2"));
    assert_eq!(u.crashes.as_ref().unwrap().len(), 1);
    assert_eq!(p.units["kube-scheduler.service"].text.as_deref(), Some("[Unit]\n"));
    assert_eq!((p.units[UNITS[1].file_name].restarts, p.units[UNITS[1].file_name].active.clone()), (4, crate::model::ActiveState::Failed));
    let api = p.listeners.iter().find(|l| l.port == 6443).unwrap();
    assert_eq!((api.addr.to_string().as_str(), api.unit.as_deref()), ("::", Some("kube-apiserver.service")));
    let etcd = p.listeners.iter().find(|l| l.port == 2379).unwrap();
    assert_eq!((etcd.addr.to_string().as_str(), etcd.unit.as_deref(), etcd.holder.as_ref().map(|h| (h.pid, h.name.as_str()))), ("127.0.0.1", None, Some((30, "etcd"))));
    assert_eq!(p.etcd_health, "{\"health\":\"true\"}");
    assert_eq!(p.addresses, ["10.240.1.2"]);
    assert_eq!(p.default_address.as_deref(), Some("10.240.1.2"));
    assert_eq!(p.kubeconfigs["/var/lib/kubernetes/x.kubeconfig"].0, "https://server.kubernetes.local:6443");
    assert_eq!(p.encryption_providers, ["aescbc", "identity"]);
}

#[test]
fn a_failed_command_is_an_error_never_an_empty_answer() {
    let mut p = Probe::default();
    let r = format!("now\t1\nerror\tsystemctl show\t{}\n", b(b"Invalid value: unix\x1b[2J"));
    let e = parse(r.as_bytes(), &mut p).unwrap_err();
    assert_eq!(e.to_string(), "`systemctl show` failed on the server: Invalid value: unix\\u{1b}[2J");
    // Units described for fewer than asked: not read as "inactive".
    let props = b(b"ActiveState=active\n");
    let e = parse(format!("props\t{props}\n").as_bytes(), &mut p).unwrap_err();
    assert!(e.to_string().contains("1 units described"), "{e}");
}

#[test]
fn malformed_fields_are_refused_not_guessed() {
    for line in [
        "stat\t/x\tzz\t755\troot\troot\t1\ts\n",
        "stat\trelative\t81a4\t755\troot\troot\t1\ts\n",
        "stat\t/x\t81a4\t99999\troot\troot\t1\ts\n",
        "stat\t/x\t81a4\t755\tro ot\troot\t1\ts\n",
        "sum\tnothex  /x\n",
        "hit\ts\tabc\t/x\n",
        "listen\tGGGG:1\t1\n",
        "listen\t00000000:10000\t1\n",
        "arch\tx86_64; rm -rf /\n",
        "advertise\t10.0.0.1\nadvertise\tnot-an-ip\n",
        "cmdline\tsshd.service\tAA==\n",
        "hostname\t!!!\n",
        "codec\tbrotli\n",
        "provider\trot13\n",
        "disk\t/etc\t1\t1\t1\n",
        "now\t-1\n",
    ] {
        let mut p = Probe::default();
        assert!(parse(line.as_bytes(), &mut p).is_err(), "{line:?} was accepted");
    }
}

#[test]
fn the_script_reads_only_what_is_asked_and_names_every_layout_path() {
    let b = script(&Request::bootstrap());
    for f in FILES {
        assert!(b.contains(f.dest), "{}", f.dest);
    }
    assert!(b.contains("xargs -d '\\n' -r -P 4 -n 1 $H") && b.contains("stat -f") && !b.contains("--version\"") && !b.contains("/dev/tcp"));
    let c = script(&Request::cpcheck());
    assert!(!c.contains("xargs -d") && c.contains("--version") && c.contains("/dev/tcp/127.0.0.1/2379"));
    // Secrets are never read whole: no base64 of a key, kubeconfig or the encryption config.
    for f in FILES.iter().filter(|f| f.kind.is_secret()) {
        assert!(!b.contains(&format!("base64 -w0 '{}'", f.dest)));
    }
    // No option younger than the systemd floor, no localized words.
    for s in [&b, &c] {
        assert!(!s.contains("--timestamp") && !s.contains("%F") && !s.contains("stat -L") && !s.contains("basenc") && !s.contains("ss -"), "{s}");
    }
}

#[test]
fn the_script_runs_under_sh_and_its_output_parses() {
    // Run it here, against this machine: it must be valid POSIX sh and
    // end well whatever exists.
    for req in [Request::bootstrap(), Request { certs: vec!["/etc/ssl/certs/ca-certificates.crt".into()], ..Request::cpcheck() }] {
        let out = std::process::Command::new("sh").arg("-c").arg(script(&req)).env("LC_ALL", "C").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut p = Probe::default();
        parse(&out.stdout, &mut p).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&out.stdout)));
        assert!(!p.arch.is_empty() && p.now > 0.0 && p.uptime > 0.0);
    }
    // A background job's answer comes whole and is waited for: a binary
    // asked for its version after a certificate of 200 KiB went out.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("kube-apiserver");
    std::fs::write(&bin, "#!/bin/sh\nsleep 0.3; echo 'Kubernetes v1.20.2'\n").unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let big: String = (0..4000).map(|i| format!("-----BEGIN CERTIFICATE-----\nMIIB{i:060}\n-----END CERTIFICATE-----\n")).collect();
    let crt = dir.path().join("big.crt");
    std::fs::write(&crt, big).unwrap();
    let script = script(&Request { certs: vec![crt.display().to_string()], ..Request::cpcheck() })
        .replace(&crate::remote::shell_quote(crate::model::UNITS[0].exec), &crate::remote::shell_quote(&bin.display().to_string()))
        .replace(&format!("{} {}", crate::model::UNITS[0].exec, crate::model::UNITS[0].file_name), &format!("{} {}", bin.display(), crate::model::UNITS[0].file_name));
    let out = std::process::Command::new("sh").arg("-c").arg(&script).env("LC_ALL", "C").output().unwrap();
    let mut p = Probe::default();
    parse(&out.stdout, &mut p).unwrap();
    assert_eq!(p.units[crate::model::UNITS[0].file_name].binary_version.as_deref(), Some("Kubernetes v1.20.2"));
    assert_eq!(p.certs[&crt.display().to_string()].lines().count(), 3 * 4000);
}

/// No reply, however malformed or hostile, makes the parser panic: random
/// bytes, and lines with every real tag and random fields (plain, base64 of
/// random bytes, numbers, paths), under a fixed seed.
#[test]
fn no_reply_makes_the_parser_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config { cases: 2000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7u8; 32]));
    let field = prop_oneof![
        any::<Vec<u8>>().prop_map(|b| b64_field(&b)),
        "[ -~]{0,40}",
        any::<u64>().prop_map(|n| n.to_string()),
        "/[a-z/.]{0,30}",
        "[0-9A-F]{8}:[0-9A-F]{4}",
        Just(String::new()),
    ];
    let line = (proptest::sample::select(Tag::ALL.to_vec()), proptest::collection::vec(field, 0..9)).prop_map(|(t, f)| format!("{}\t{}", t.as_str(), f.join("\t")));
    let reply = prop_oneof![proptest::collection::vec(line, 0..24).prop_map(|l| l.join("\n").into_bytes()), any::<Vec<u8>>(),];
    runner
        .run(&reply, |bytes| {
            let mut p = Probe::default();
            let _ = parse(&bytes, &mut p);
            Ok(())
        })
        .unwrap();
}

fn b64_field(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}
