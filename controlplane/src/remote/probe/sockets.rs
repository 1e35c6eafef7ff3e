//! Listening TCP sockets, from the kernel's own tables (`/proc/net/tcp`,
//! `/proc/net/tcp6`: hex numbers, nothing any user named), each attributed
//! to a unit by socket inode: a socket belongs to a unit when the unit's
//! MainPID holds it. Process names never decide anything (any user names
//! their processes, and `comm` is cut at 15 bytes): a socket on a port of
//! the plane that no unit holds is traced to its process by inode, and that
//! process's name is read as bytes, base64, only to be shown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::{b64_text, malformed, Probe, ProbeError, Tag};
use crate::model::UNITS;

pub(crate) const TAGS: &[Tag] = &[Tag::Listen, Tag::UnitSockets, Tag::Holder];

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// The unit whose main process holds it.
    pub unit: Option<String>,
    /// Who holds it when no unit does and it is on a port of the plane.
    pub holder: Option<Holder>,
}

/// A process holding a socket, as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    /// Its `comm`, escaped: only ever shown.
    pub name: String,
}

impl Listener {
    /// Who holds it, in words: the unit, else the process, else "someone".
    pub fn who(&self) -> String {
        match (&self.unit, &self.holder) {
            (Some(u), _) => u.clone(),
            (None, Some(h)) => format!("{} (pid {})", h.name, h.pid),
            (None, None) => "a process this run cannot see".into(),
        }
    }
    /// Is it held by `unit`?
    pub fn held_by(&self, unit: &str) -> bool {
        self.unit.as_deref() == Some(unit)
    }
}

/// The ports whose holders are traced when no unit holds them: every
/// component's serving and plain-HTTP port, and etcd's client port.
pub fn watched_ports() -> Vec<u16> {
    let mut v: Vec<u16> = UNITS.iter().flat_map(|u| std::iter::once(u.serving_port).chain(u.insecure_port)).collect();
    v.push(crate::model::etcd_endpoint().port);
    v.sort();
    v.dedup();
    v
}

pub(crate) fn script() -> String {
    let ports: Vec<String> = watched_ports().iter().map(|p| format!("{p:04X}")).collect();
    format!(
        "ls=$(awk -v T=\"$T\" '$4 == \"0A\" {{ print \"listen\" T $2 T $10 }}' /proc/net/tcp /proc/net/tcp6 2>/dev/null)\n\
         printf '%s\\n' \"$ls\"\n\
         owned=\n\
         while read -r u p; do [ -n \"$p\" ] || continue\n\
           i=$(ls -l \"/proc/$p/fd\" 2>/dev/null | awk '{{ t = $NF; if (t ~ /^socket:\\[[0-9]+\\]$/) printf \"%s \", substr(t, 9, length(t) - 9) }}')\n\
           echo \"usock${{T}}$u${{T}}$i\"; owned=\"$owned $i\"\n\
         done <<EOF\n$mains\nEOF\n\
         for ino in $(printf '%s\\n' \"$ls\" | awk -F\"$T\" -v w={ports} -v o=\"$owned\" 'BEGIN {{ n = split(w, W, \" \"); for (i = 1; i <= n; i++) P[W[i]] = 1; m = split(o, O, \" \"); for (i = 1; i <= m; i++) H[O[i]] = 1 }} {{ k = split($2, a, \":\"); if ((a[k] in P) && !($3 in H)) print $3 }}'); do\n\
           for fd in $(find /proc/[0-9]*/fd -maxdepth 1 -lname \"socket:\\[$ino\\]\" 2>/dev/null | head -n 1); do\n\
             pid=${{fd#/proc/}}; pid=${{pid%%/*}}; echo \"holder${{T}}$ino${{T}}$pid${{T}}$(base64 -w0 < \"/proc/$pid/comm\" 2>/dev/null)\"\n\
           done\n\
         done\n",
        ports = crate::remote::shell_quote(&ports.join(" ")),
    )
}

/// `0100007F:0CEA` (IPv4, as the kernel prints it: host-order words) or the
/// 32-digit IPv6 form.
fn address(tag: Tag, s: &str) -> Result<(IpAddr, u16), ProbeError> {
    let (a, p) = s.split_once(':').ok_or_else(|| malformed(tag, "not ADDR:PORT"))?;
    let port = u16::from_str_radix(p, 16).map_err(|_| malformed(tag, "not a port"))?;
    let word = |h: &str| u32::from_str_radix(h, 16).map_err(|_| malformed(tag, "not an address"));
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(a)?.swap_bytes().to_be_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                // Each 32-bit word is in the host's order (little-endian on
                // amd64 and arm64).
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&a[i * 8..i * 8 + 8])?.to_le_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return Err(malformed(tag, "not an address")),
    };
    Ok((ip, port))
}

fn inode(tag: Tag, s: &str) -> Result<u64, ProbeError> {
    s.trim().parse().map_err(|_| malformed(tag, "not an inode"))
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Listen, [local, ino]) => {
            let (addr, port) = address(tag, local)?;
            p.listeners.push(Listener { addr, port, inode: inode(tag, ino)?, unit: None, holder: None });
        }
        (Tag::UnitSockets, [unit, inodes]) => {
            let u = UNITS.iter().find(|u| u.file_name == *unit).ok_or_else(|| malformed(tag, "not a unit of the layout"))?;
            let inodes: Vec<u64> = inodes.split_whitespace().map(|i| inode(tag, i)).collect::<Result<_, _>>()?;
            p.units.entry(u.file_name.to_string()).or_default().sockets = inodes;
        }
        (Tag::Holder, [ino, pid, b]) => {
            let ino = inode(tag, ino)?;
            let pid: u32 = pid.parse().map_err(|_| malformed(tag, "not a pid"))?;
            let name = crate::output::redact::line(b64_text(tag, b)?.trim_end_matches('\n'));
            for l in p.listeners.iter_mut().filter(|l| l.inode == ino) {
                l.holder = Some(Holder { pid, name: name.clone() });
            }
        }
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}

/// Each socket to the unit whose main process holds it.
pub(crate) fn finish(p: &mut Probe) {
    for l in p.listeners.iter_mut() {
        l.unit = p.units.iter().find(|(_, s)| s.sockets.contains(&l.inode)).map(|(u, _)| u.clone());
    }
}
