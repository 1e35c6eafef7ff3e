//! `host`: the units as installed and running (active, enabled, as the manifests install them, running their flags, read by systemd, no drop-ins), referenced paths, secret files, directories, etcd.

use super::*;

/// The checks of this group, in report order.
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        v.push(host_check(&format!("host.unit.{c}"), "host", &format!("{f} active and enabled"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::fail(format!("{f} is not installed"), "kubectl bootstrap server DEST") };
            let detail = format!("{}, {}, {} restart(s)", i.active, if i.enabled.is_empty() { "not installed" } else { &i.enabled }, i.restarts);
            // NRestarts: the starts systemd made by itself (Restart=) since
            // the unit was last started on request: each a process that exited.
            let crashes = match &i.crashes {
                Ok(lines) => lines.clone(),
                Err(e) => vec![format!("(its journal could not be read: {e})")],
            };
            if i.active == ActiveState::Active && i.is_enabled() && i.restarts == 0 {
                Finding::pass(detail)
            } else if i.active == ActiveState::Active && i.is_enabled() {
                Finding::warn(
                    format!("{detail}: its process exited and systemd started it again since it was last started on request"),
                    format!("journalctl -u {f}: the lines below say why it ended"),
                )
                .with_journal(&crashes)
            } else {
                Finding::fail(detail, format!("systemctl enable --now {f}; journalctl -u {f}")).with_journal(&crashes)
            }
        }));
    }
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        let dest = crate::model::placed(u.manifest).map(|x| x.dest).unwrap_or("");
        v.push(host_check(&format!("host.drift.{c}"), "host", &format!("{dest} as the manifests install it"), move |ctx, h| {
            let Some(want) = ctx.desired.iter().find(|d| d.spec.component == c) else { return Finding::skip("not in the manifests") };
            match h.units.get(f).and_then(|i| i.text.as_deref()) {
                None => Finding::fail(format!("{dest} is missing"), "kubectl bootstrap server DEST"),
                Some(t) if Flags::from_unit(t, f).is_err() => Finding::fail(
                    format!("{dest} does not parse by systemd's rules: {}", Flags::from_unit(t, f).err().unwrap_or_default()),
                    "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
                ),
                Some(t) => match first_difference(t, &want.text) {
                    None => Finding::pass(format!("{dest} matches")),
                    Some((line, got, exp)) => Finding::fail(
                        format!("{dest} drifted at line {line}: installed `{got}`, expected `{exp}`"),
                        "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
                    ),
                },
            }
        }));
    }
    let sc_dest = crate::model::placed(SCHEDULER_CONFIG.manifest).map(|x| x.dest).unwrap_or("");
    v.push(host_check("host.drift.kube-scheduler-config", "host", &format!("{sc_dest} as the manifests install it"), move |_, h| {
        let Some(t) = h.scheduler_config() else { return Finding::fail(format!("{sc_dest} is missing"), "kubectl bootstrap server DEST") };
        // Rendered for the installed scheduler's version, as bootstrap does.
        let version = h.units.get("kube-scheduler.service").and_then(|u| u.binary_version.as_deref()).and_then(crate::model::Version::parse);
        let want = version.and_then(crate::model::version::render_scheduler_config).unwrap_or_else(|| SCHEDULER_CONFIG.text.to_string());
        match first_difference(t, &want) {
            None => Finding::pass(format!("{sc_dest} matches")),
            Some((line, got, exp)) => Finding::fail(format!("{sc_dest} drifted at line {line}: installed `{got}`, expected `{exp}`"), "kubectl bootstrap server DEST"),
        }
    }));
    // New checks get new ids; these are the state an interrupted change leaves.
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        v.push(host_check(&format!("host.running.{c}"), "host", &format!("{c} runs the flags of its installed unit"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
            let Some(text) = i.text.as_deref() else { return Finding::skip(format!("{f} is not installed")) };
            let Some(want) = installed_argv(text, f) else {
                return Finding::fail(format!("{f} does not parse: {}", Flags::from_unit(text, f).err().unwrap_or_default()), "kubectl bootstrap server DEST");
            };
            if i.cmdline.is_empty() {
                return Finding::skip(format!("{c} is not running (see host.unit.{c})"));
            }
            match crate::bootstrap::plan::argv_difference(&i.cmdline, &want) {
                None => Finding::pass(format!("pid {}: {} flags as in {f}", i.main_pid, want.len() - 1)),
                Some(d) => Finding::fail(
                    format!("pid {} runs other flags than {f}: {d}", i.main_pid),
                    format!("systemctl daemon-reload && systemctl restart {f} (or kubectl bootstrap server DEST)"),
                ),
            }
        }));
        v.push(host_check(&format!("host.reload.{c}"), "host", &format!("systemd has read the current {f}"), move |_, h| match h.units.get(f) {
            Some(i) if i.need_daemon_reload => {
                Finding::fail(format!("{f} changed on disk since systemd read it (NeedDaemonReload=yes)"), format!("systemctl daemon-reload && systemctl restart {f}"))
            }
            Some(_) => Finding::pass("NeedDaemonReload=no"),
            None => Finding::skip(format!("{f} is not installed")),
        }));
        let dest = crate::model::placed(u.manifest).map(|x| x.dest).unwrap_or("");
        v.push(host_check(&format!("host.dropins.{c}"), "host", &format!("nothing but {dest} defines {f}"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
            let mut bad: Vec<String> = i.drop_ins.iter().map(|d| format!("drop-in {d}")).collect();
            if !i.fragment.is_empty() && i.fragment != dest {
                bad.push(format!("loaded from {} instead of {dest}", i.fragment));
            }
            if bad.is_empty() {
                Finding::pass(format!("{dest}, no drop-ins"))
            } else {
                Finding::fail(bad.join(", "), format!("remove them (then systemctl daemon-reload && systemctl restart {f}); put changes in the manifests or --set"))
            }
        }));
    }
    v.push(host_check("host.userland", "host", "systemd, coreutils and the commands the plugins run are there", |_, h| {
        let problems = crate::remote::probe::host::requirements(h);
        if problems.is_empty() {
            Finding::pass(format!(
                "systemd {}, GNU coreutils {}, {} commands",
                h.systemd_version.map(|v| v.to_string()).unwrap_or("?".into()),
                h.coreutils.as_deref().unwrap_or("?"),
                crate::remote::probe::host::USERLAND.len()
            ))
        } else {
            Finding::fail(problems.iter().map(|p| p.what.clone()).collect::<Vec<_>>().join("; "), problems.iter().map(|p| p.fix.clone()).collect::<Vec<_>>().join("; "))
        }
    }));
    v.push(host_check("host.directories", "host", "the layout's directories have their modes and owners", |_, h| {
        let mut bad = Vec::new();
        for d in crate::model::DIRECTORIES {
            let Some(p) = h.dirs.get(d.path) else {
                bad.push(format!("{} is missing", d.path));
                continue;
            };
            if p.kind != crate::remote::probe::FileType::Directory {
                bad.push(format!("{} is {}", d.path, p.kind));
            } else if d.owned && (p.mode != FileMode(d.mode) || p.owner != "root" || p.group != "root") {
                bad.push(format!("{} is {} {}:{}, expected {} root:root", d.path, p.mode, p.owner, p.group, FileMode(d.mode)));
            } else if !d.owned && (p.mode.0 & 0o002 != 0 || (p.mode.0 & 0o020 != 0 && p.group != "root") || p.owner != "root") {
                bad.push(format!("{} is {} {}:{}: writable by others", d.path, p.mode, p.owner, p.group));
            }
        }
        if bad.is_empty() {
            Finding::pass(format!("{} directories as the layout says", crate::model::DIRECTORIES.len()))
        } else {
            Finding::fail(bad.join(", "), "kubectl bootstrap server DEST fixes its own directories; chown root:root DIR && chmod go-w DIR for shared ones")
        }
    }));
    v.push(host_check("host.paths", "host", "every path a flag references exists", |_, h| {
        let mut missing = Vec::new();
        let mut n = 0;
        for u in UNITS {
            if let Some(e) = h.units.get(u.file_name).and_then(|i| i.text.as_deref()).and_then(|t| Flags::from_unit(t, u.file_name).err()) {
                missing.push(format!("{} does not parse ({e})", u.file_name));
                continue;
            }
            let Some(flags) = installed(h, u.component) else { continue };
            for (name, value) in flags.iter() {
                if crate::model::OUTPUT_FLAGS.contains(&name) {
                    continue;
                }
                for p in value.unwrap_or("").split(',').filter(|p| p.starts_with('/')) {
                    n += 1;
                    if !h.files.contains_key(p) {
                        missing.push(format!("{p} (--{name} of {})", u.component));
                    }
                }
            }
        }
        if missing.is_empty() {
            Finding::pass(format!("{n} referenced paths exist"))
        } else {
            Finding::fail(format!("missing: {}", missing.join(", ")), "kubectl bootstrap server DEST, or fix the flag")
        }
    }));
    v.push(host_check("host.permissions", "host", "keys, kubeconfigs and the encryption config are 0600 root:root", |_, h| {
        let mut bad = Vec::new();
        let mut n = 0;
        for f in FILES.iter().filter(|f| f.kind.is_secret()) {
            if let Some(p) = h.files.get(f.dest) {
                n += 1;
                if p.mode != FileMode(0o600) || p.owner != "root" || p.group != "root" {
                    bad.push(format!("{} is {} {}:{}", f.dest, p.mode, p.owner, p.group));
                }
            }
        }
        if bad.is_empty() {
            Finding::pass(format!("{n} secret files are 0600 root:root"))
        } else {
            Finding::fail(bad.join(", "), "chown root:root FILE && chmod 0600 FILE")
        }
    }));
    v.push(host_check("host.etcd", "host", "etcd answers /health", |_, h| {
        if h.etcd_health.contains("\"health\":\"true\"") {
            Finding::pass(format!("{}/health: {}", crate::model::etcd_endpoint(), h.etcd_health))
        } else {
            Finding::fail(
                format!("etcd does not answer healthy on {}: {}", crate::model::etcd_endpoint(), if h.etcd_health.is_empty() { "no answer" } else { &h.etcd_health }),
                "systemctl status etcd; journalctl -u etcd",
            )
        }
    }));

    v
}
