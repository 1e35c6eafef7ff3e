//! `host`: the units as installed and running (active, enabled, as the manifests install them, running their flags, read by systemd, no drop-ins), the server's systemd, coreutils and commands, referenced paths, secret files, directories, etcd.

use super::*;
use crate::remote::probe::FileType;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "host.unit", title: |i| format!("{} active and enabled", i.component().unit()), each: Each::Component, run: Run::Host(unit_active) },
    Def { id: "host.drift", title: |i| format!("{} as the manifests install it", unit_dest(i.component())), each: Each::Component, run: Run::Host(unit_drift) },
    Def { id: "host.drift", title: |i| format!("{} as the manifests install it", config_dest(i)), each: Each::Config, run: Run::Host(config_drift) },
    Def { id: "host.running", title: |i| format!("{} runs the flags of its installed unit", i.component()), each: Each::Component, run: Run::Host(running) },
    Def { id: "host.reload", title: |i| format!("systemd has read the current {}", i.component().unit()), each: Each::Component, run: Run::Host(reload) },
    Def { id: "host.dropins", title: |i| format!("nothing but {} defines {}", unit_dest(i.component()), i.component().unit()), each: Each::Component, run: Run::Host(dropins) },
    Def { id: "host.userland", title: |_| "systemd, coreutils and the commands the plugins run are there".into(), each: Each::One, run: Run::Host(userland) },
    Def { id: "host.arch", title: |_| "the installed binaries are built for the server's architecture".into(), each: Each::One, run: Run::Host(arch) },
    Def { id: "host.directories", title: |_| "the layout's directories have their modes and owners".into(), each: Each::One, run: Run::Host(directories) },
    Def { id: "host.paths", title: |_| "every path a flag references exists".into(), each: Each::One, run: Run::Host(paths) },
    Def { id: "host.permissions", title: |_| "keys, kubeconfigs and the encryption config are 0600 root:root".into(), each: Each::One, run: Run::Host(permissions) },
    Def { id: "host.etcd", title: |_| "etcd answers /health".into(), each: Each::One, run: Run::Host(etcd) },
];

/// Where the scheduler config is installed.
fn config_dest(_: Item) -> &'static str {
    crate::model::placed(SCHEDULER_CONFIG.manifest).map(|x| x.dest).unwrap_or_default()
}

fn unit_active(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let f = i.component().unit();
    let Some(s) = h.units.get(f) else { return Finding::fail(format!("{f} is not installed"), "kubectl bootstrap server DEST") };
    let detail = format!("{}, {}, {} restart(s)", s.active, if s.enabled.is_empty() { "not installed" } else { &s.enabled }, s.restarts);
    // NRestarts: the starts systemd made by itself (Restart=) since the
    // unit was last started on request: each a process that exited.
    let crashes = match &s.crashes {
        Ok(lines) => lines.clone(),
        Err(e) => vec![format!("(its journal could not be read: {e})")],
    };
    if s.active == ActiveState::Active && s.is_enabled() && s.restarts == 0 {
        Finding::pass(detail)
    } else if s.active == ActiveState::Active && s.is_enabled() {
        Finding::warn(
            format!("{detail}: its process exited and systemd started it again since it was last started on request"),
            format!("journalctl -u {f}: the lines below say why it ended"),
        )
        .with_journal(&crashes)
    } else {
        with_cause(Finding::fail(detail, format!("systemctl enable --now {f}; journalctl -u {f}")).with_journal(&crashes), Some(h), i.component())
    }
}

fn unit_drift(ctx: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let (f, dest) = (c.unit(), unit_dest(c));
    let Some(want) = ctx.desired.iter().find(|d| d.spec.component == c) else { return Finding::skip("not in the manifests") };
    match h.units.get(f).and_then(|i| i.text.as_deref()) {
        None => Finding::fail(format!("{dest} is missing"), "kubectl bootstrap server DEST"),
        Some(t) => match unitfile::parse_unit(std::path::Path::new(f), t) {
            Err(e) => Finding::fail(
                format!("{dest} does not parse by systemd's rules: {}", crate::model::unit_error(&e)),
                "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
            ),
            Ok(_) => match first_difference(t, &want.text) {
                None => Finding::pass(format!("{dest} matches")),
                Some((line, got, exp)) => Finding::fail(
                    format!("{dest} drifted at line {line}: installed `{got}`, expected `{exp}`"),
                    "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
                ),
            },
        },
    }
}

fn config_drift(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let dest = config_dest(i);
    let Some(t) = h.scheduler_config() else { return Finding::fail(format!("{dest} is missing"), "kubectl bootstrap server DEST") };
    // Rendered for the installed reader's version, as bootstrap does.
    let reader = crate::model::placed(SCHEDULER_CONFIG.manifest).and_then(|f| f.restarts.first().copied());
    let version = reader.and_then(|c| h.units.get(c.unit())).and_then(|u| u.binary_version.as_deref()).and_then(crate::model::Version::parse);
    let want = version.and_then(crate::model::version::render_scheduler_config).unwrap_or_else(|| SCHEDULER_CONFIG.text.to_string());
    match first_difference(t, &want) {
        None => Finding::pass(format!("{dest} matches")),
        Some((line, got, exp)) => Finding::fail(format!("{dest} drifted at line {line}: installed `{got}`, expected `{exp}`"), "kubectl bootstrap server DEST"),
    }
}

// New checks get new ids; these are the state an interrupted change leaves.
fn running(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let f = c.unit();
    let Some(s) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
    let Some(text) = s.text.as_deref() else { return Finding::skip(format!("{f} is not installed")) };
    let Some(want) = installed_argv(text, f) else {
        return Finding::fail(
            format!("{f} does not parse: {}", Flags::from_unit(text, f).err().map(|e| crate::model::unit_error(&e)).unwrap_or_default()),
            "kubectl bootstrap server DEST",
        );
    };
    if s.cmdline.is_empty() {
        return Finding::skip(format!("{c} is not running (see host.unit.{c})"));
    }
    match crate::model::argv_difference(&s.cmdline, &want) {
        None => Finding::pass(format!("pid {}: {} flags as in {f}", s.main_pid, want.len() - 1)),
        Some(d) => Finding::fail(
            format!("pid {} runs other flags than {f}: {d}", s.main_pid),
            format!("systemctl daemon-reload && systemctl restart {f} (or kubectl bootstrap server DEST)"),
        ),
    }
}

fn reload(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let f = i.component().unit();
    match h.units.get(f) {
        Some(s) if s.need_daemon_reload => {
            Finding::fail(format!("{f} changed on disk since systemd read it (NeedDaemonReload=yes)"), format!("systemctl daemon-reload && systemctl restart {f}"))
        }
        Some(_) => Finding::pass("NeedDaemonReload=no"),
        None => Finding::skip(format!("{f} is not installed")),
    }
}

fn dropins(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let (f, dest) = (c.unit(), unit_dest(c));
    let Some(s) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
    let mut bad: Vec<String> = s.drop_ins.iter().map(|d| format!("drop-in {d}")).collect();
    if !s.fragment.is_empty() && s.fragment != dest {
        bad.push(format!("loaded from {} instead of {dest}", s.fragment));
    }
    if bad.is_empty() {
        Finding::pass(format!("{dest}, no drop-ins"))
    } else {
        Finding::fail(bad.join(", "), format!("remove them (then systemctl daemon-reload && systemctl restart {f}); put changes in the manifests or --set"))
    }
}

fn userland(_: &Ctx, h: &Probe, _: Item) -> Finding {
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
}

fn directories(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let mut bad = Vec::new();
    for d in crate::model::DIRECTORIES {
        let Some(p) = h.dirs.get(d.path) else {
            bad.push(format!("{} is missing", d.path));
            continue;
        };
        if p.kind != FileType::Directory {
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
}

fn paths(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let mut missing = Vec::new();
    let mut n = 0;
    for c in Component::ALL.iter().copied() {
        if let Some(e) = h.units.get(c.unit()).and_then(|i| i.text.as_deref()).and_then(|t| Flags::from_unit(t, c.unit()).err()) {
            missing.push(format!("{} does not parse ({})", c.unit(), crate::model::unit_error(&e)));
            continue;
        }
        let Some(flags) = installed(h, c) else { continue };
        for (name, value) in flags.iter() {
            if crate::model::OUTPUT_FLAGS.contains(&name) {
                continue;
            }
            for p in value.unwrap_or("").split(',').filter(|p| p.starts_with('/')) {
                n += 1;
                if !h.files.contains_key(p) {
                    missing.push(format!("{p} (--{name} of {c})"));
                }
            }
        }
    }
    if missing.is_empty() {
        Finding::pass(format!("{n} referenced paths exist"))
    } else {
        Finding::fail(format!("missing: {}", missing.join(", ")), "kubectl bootstrap server DEST, or fix the flag")
    }
}

fn permissions(_: &Ctx, h: &Probe, _: Item) -> Finding {
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
}

fn etcd(_: &Ctx, h: &Probe, _: Item) -> Finding {
    if h.etcd_health.contains("\"health\":\"true\"") {
        Finding::pass(format!("{}/health: {}", crate::model::etcd_endpoint(), h.etcd_health))
    } else {
        Finding::fail(
            format!("etcd does not answer healthy on {}: {}", crate::model::etcd_endpoint(), if h.etcd_health.is_empty() { "no answer" } else { &h.etcd_health }),
            "systemctl status etcd; journalctl -u etcd",
        )
    }
}

/// Each installed binary's ELF machine is the server's (`uname -m`).
fn arch(_: &Ctx, h: &Probe, _: Item) -> Finding {
    use crate::model::arch::{Arch, Elf};
    let Some(server) = Arch::from_uname(&h.arch) else {
        return Finding::warn(format!("the server's architecture `{}` is not one this tool knows", crate::output::redact::line(&h.arch)), "");
    };
    let mut wrong = Vec::new();
    let mut n = 0;
    for f in FILES.iter().filter(|f| f.kind == crate::model::FileKind::Binary) {
        let Some(head) = h.heads.get(f.dest) else { continue };
        n += 1;
        match Elf::of(head) {
            Elf::Executable(a) if a == server => {}
            Elf::Executable(a) => wrong.push(format!("{} is built for {a}", f.dest)),
            Elf::OtherMachine(m) => wrong.push(format!("{} is built for ELF machine {m}", f.dest)),
            Elf::NotExecutable | Elf::NotElf => wrong.push(format!("{} is not an ELF executable", f.dest)),
        }
    }
    match (n, wrong.is_empty()) {
        (0, _) => Finding::skip("no binary of the layout is installed"),
        (_, true) => Finding::pass(format!("{n} binaries built for {server}, as the server is")),
        (_, false) => Finding::fail(format!("{}; the server is {server}", wrong.join(", ")), format!("kubectl bootstrap server DEST with the {} binaries", server.platform())),
    }
}
