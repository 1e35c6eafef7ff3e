//! The server itself: its clock and uptime (read together, so that systemd's
//! monotonic timestamps become times), architecture, hostname, whether
//! systemd runs and which version, the commands the scripts need, the
//! decompressors it has, its addresses.

use super::{b64_text, malformed, Probe, ProbeError, Request, Tag};
use crate::error::Problem;

pub(crate) const TAGS: &[Tag] =
    &[Tag::Now, Tag::Uptime, Tag::Arch, Tag::Hostname, Tag::Systemd, Tag::SystemdVersion, Tag::Missing, Tag::Coreutils, Tag::Codec, Tag::Advertise, Tag::Addr];

/// The oldest systemd both plugins support: every option and property they
/// use exists from this version on (see `remote::systemd::SINCE`). RHEL 8
/// has it; Debian 11 has 247, Ubuntu 20.04 245.
pub const SYSTEMD_FLOOR: u32 = 239;

/// The oldest GNU coreutils the scripts need: `stat`'s `%.9Y` precision and
/// `sync FILE…` (Ubuntu 20.04 and RHEL 8 have 8.30, Debian 11 8.32).
pub const COREUTILS_FLOOR: (u32, u32) = (8, 30);

/// Every command the scripts run, with the package that brings it on
/// Debian and Ubuntu: preflight refuses a server that lacks one. (bash is
/// cpcheck's alone, for etcd's health without an HTTP client: see `etcd`.)
pub const USERLAND: &[(&str, &str)] = &[
    ("awk", "mawk or gawk"),
    ("base64", "coreutils"),
    ("cut", "coreutils"),
    ("date", "coreutils"),
    ("find", "findutils"),
    ("flock", "util-linux"),
    ("head", "coreutils"),
    ("ip", "iproute2"),
    ("journalctl", "systemd"),
    ("mktemp", "coreutils"),
    ("sed", "sed"),
    ("sha256sum", "coreutils"),
    ("stat", "coreutils"),
    ("sync", "coreutils"),
    ("systemctl", "systemd"),
    ("tee", "coreutils"),
    ("timeout", "coreutils"),
    ("tr", "coreutils"),
    ("xargs", "findutils"),
];

pub(crate) fn script(req: &Request) -> String {
    let tools: Vec<&str> = USERLAND.iter().map(|(c, _)| *c).collect();
    let addresses = if req.etcd_and_addresses { "ip -o addr show scope global 2>/dev/null | while read -r n i fam a rest; do echo \"addr${T}$a\"; done\n" } else { "" };
    let s = format!(
        "read -r up _ < /proc/uptime && echo \"uptime${{T}}$up\"\n\
         echo \"now${{T}}$(date +%s.%N)\"\n\
         echo \"arch${{T}}$(uname -m)\"\n\
         echo \"hostname${{T}}$(base64 -w0 < /proc/sys/kernel/hostname)\"\n\
         if [ -d /run/systemd/system ]; then echo \"systemd${{T}}yes\"; else echo \"systemd${{T}}no\"; fi\n\
         if command -v systemctl >/dev/null 2>&1; then set -- $(systemctl --version 2>/dev/null | head -n 1); echo \"systemd-version${{T}}${{2:-?}}\"; fi\n\
         for c in {tools}; do command -v \"$c\" >/dev/null 2>&1 || echo \"missing${{T}}$c\"; done\n\
         set -- $(stat --version 2>/dev/null | head -n 1); [ \"$2\" = '(GNU' ] && for w; do :; done && echo \"coreutils${{T}}$w\"\n\
         for c in zstd gzip; do command -v $c >/dev/null 2>&1 && echo \"codec${{T}}$c\"; done\n\
         set -- $(ip -o -4 route show default 2>/dev/null); dev=; while [ $# -gt 1 ]; do [ \"$1\" = dev ] && dev=$2; shift; done\n\
         if [ -n \"$dev\" ]; then set -- $(ip -o -4 addr show dev \"$dev\" scope global 2>/dev/null); [ $# -ge 4 ] && echo \"advertise${{T}}${{4%/*}}\"; fi\n",
        tools = tools.join(" "),
    );
    s + addresses
}

fn one<'a>(tag: Tag, f: &[&'a str]) -> Result<&'a str, ProbeError> {
    match f {
        [v] => Ok(v.trim()),
        _ => Err(malformed(tag, format!("{} fields, 1 expected", f.len()))),
    }
}

fn number(tag: Tag, s: &str) -> Result<f64, ProbeError> {
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| malformed(tag, "not a number"))
}

/// A machine name as `uname -m` gives it: letters, digits, `_`.
fn machine(tag: Tag, s: &str) -> Result<String, ProbeError> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(malformed(tag, "not a machine name"));
    }
    Ok(s.to_string())
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match tag {
        Tag::Now => p.now = number(tag, one(tag, f)?)?,
        Tag::Uptime => p.uptime = number(tag, one(tag, f)?)?,
        Tag::Arch => p.arch = machine(tag, one(tag, f)?)?,
        Tag::Hostname => p.hostname = b64_text(tag, one(tag, f)?)?.trim_end_matches('\n').to_string(),
        Tag::Systemd => p.systemd = one(tag, f)? == "yes",
        Tag::SystemdVersion => {
            let v = one(tag, f)?;
            // Distributions append to it (`252.39-1`): the leading number.
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            p.systemd_version = digits.parse().ok();
        }
        Tag::Missing => {
            let c = one(tag, f)?;
            if !super::host::USERLAND.iter().any(|(n, _)| *n == c) {
                return Err(malformed(tag, "not a command the scripts use"));
            }
            p.missing.push(c.to_string());
        }
        Tag::Coreutils => {
            let v = one(tag, f)?;
            if v.is_empty() || v.len() > 16 || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(malformed(tag, "not a version"));
            }
            p.coreutils = Some(v.to_string());
        }
        Tag::Codec => {
            let c = one(tag, f)?;
            if !matches!(c, "zstd" | "gzip") {
                return Err(malformed(tag, "not a codec"));
            }
            p.codecs.push(c.to_string());
        }
        Tag::Advertise => {
            let a = one(tag, f)?;
            a.parse::<std::net::Ipv4Addr>().map_err(|_| malformed(tag, "not an IPv4 address"))?;
            p.default_address = Some(a.to_string());
        }
        Tag::Addr => {
            let a = one(tag, f)?;
            let ip = a.split('/').next().unwrap_or(a);
            ip.parse::<std::net::IpAddr>().map_err(|_| malformed(tag, "not an address"))?;
            p.addresses.push(ip.to_string());
        }
        _ => unreachable!("not a host tag"),
    }
    Ok(())
}

/// (major, minor) of a coreutils version (`8.32`).
pub fn coreutils_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next().unwrap_or("0").parse().ok()?))
}

/// What the server must have for both plugins: systemd at or above the
/// floor, the commands the scripts run, GNU coreutils new enough (each
/// problem names what was found): bootstrap's preflight refuses a server
/// that lacks any, cpcheck's `host.userland` reports it.
pub fn requirements(facts: &Probe) -> Vec<Problem> {
    let mut p = Vec::new();
    if !facts.systemd {
        p.push(Problem::check("systemd", "the server does not run systemd (no /run/systemd/system)", "use a systemd-based server"));
    } else {
        match facts.systemd_version {
            Some(v) if v >= SYSTEMD_FLOOR => {}
            Some(v) => p.push(Problem::check(
                "systemd",
                format!("the server runs systemd {v}; the plugins need {SYSTEMD_FLOOR} or later (RHEL 8, Debian 11, Ubuntu 20.04 and later have it)"),
                "upgrade the server's operating system",
            )),
            None => p.push(Problem::check("systemd", "systemctl --version did not say which systemd the server runs", "check that systemctl works on the server")),
        }
    }
    if !facts.missing.is_empty() {
        let named: Vec<String> = facts.missing.iter().map(|c| format!("{c} ({})", USERLAND.iter().find(|(n, _)| n == c).map(|x| x.1).unwrap_or("?"))).collect();
        let packages: std::collections::BTreeSet<&str> = facts.missing.iter().filter_map(|c| USERLAND.iter().find(|(n, _)| n == c).map(|x| x.1)).collect();
        p.push(Problem::check(
            "userland",
            format!("the server lacks commands the plugins run: {}", named.join(", ")),
            format!("install {} on the server", packages.into_iter().collect::<Vec<_>>().join(", ")),
        ));
    }
    let (major, minor) = COREUTILS_FLOOR;
    match facts.coreutils.as_deref().and_then(coreutils_version) {
        Some(v) if v >= COREUTILS_FLOOR => {}
        Some(_) => p.push(Problem::check(
            "coreutils",
            format!("the server has GNU coreutils {}; the plugins need {major}.{minor} or later", facts.coreutils.as_deref().unwrap_or("?")),
            "upgrade the server's operating system (Debian 11, Ubuntu 20.04 and RHEL 8 have it)",
        )),
        None if facts.missing.iter().any(|c| c == "stat") => {}
        None => p.push(Problem::check(
            "coreutils",
            format!("the server's stat is not GNU coreutils'; the plugins need GNU coreutils {major}.{minor} or later"),
            "install GNU coreutils on the server",
        )),
    }
    p
}
