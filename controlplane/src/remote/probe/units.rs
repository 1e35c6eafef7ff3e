//! systemd's view of each control-plane unit (one `systemctl show` for all,
//! blocks in the layout's order), its running process's argv, and for a
//! unit systemd restarted by itself the journal lines that say why its
//! process ended. Start times are systemd's monotonic timestamps, turned
//! into times with the uptime and clock read in the same probe (never a
//! human-readable timestamp, whose format depends on the version and
//! locale). Where systemd does not run, nothing is asked of it; a
//! `systemctl show` that fails fails the read, with its words.

use super::{b64, malformed, Journals, Probe, ProbeError, Request, Tag};
use crate::model::{Component, UNITS};
use crate::remote::systemd;

pub(crate) const TAGS: &[Tag] = &[Tag::Props, Tag::Cmdline, Tag::Journal];

/// The line a failing journalctl leaves in the (base64) journal blocks: no
/// journal line can forge it.
const JOURNAL_FAILED: &str = "kcp-journal-failed";

pub(crate) fn script(req: &Request) -> String {
    let names = crate::remote::shell_quote(&Component::ALL.iter().map(|c| c.unit()).collect::<Vec<_>>().join(" "));
    let show = systemd::show_all(Component::ALL);
    let mut s = format!(
        "mains=\n\
         if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then\n\
           if props=$({show} 2>/dev/null); then\n\
             echo \"props${{T}}$(printf '%s' \"$props\" | base64 -w0)\"\n\
             mains=$(printf '%s\\n' \"$props\" | awk -v u={names} 'BEGIN {{ split(u, U, \" \"); i = 1 }} /^$/ {{ i++; next }} /^MainPID=/ {{ p = substr($0, 9); if (p != \"0\") print U[i], p }}')\n\
             printf '%s\\n' \"$mains\" | while read -r u p; do [ -n \"$p\" ] && [ -r \"/proc/$p/cmdline\" ] && echo \"cmdline${{T}}$u${{T}}$(base64 -w0 < \"/proc/$p/cmdline\")\"; done\n\
           else\n\
             echo \"error${{T}}systemctl show${{T}}$({show} 2>&1 >/dev/null | base64 -w0)\"\n\
           fi\n\
         fi\n"
    );
    // The lines of journals that may say why a process ended, base64 (server
    // text, any bytes) after the unit's name.
    let each = |units: &str, since: Option<f64>| {
        format!("for u in {units}; do echo \"journal${{T}}$u${{T}}$({} | base64 -w0)\"; done\n", crate::remote::journal::crash_script("\"$u\"", since, JOURNAL_FAILED))
    };
    match &req.journals {
        Journals::None => {}
        Journals::Restarted => s.push_str(&each(
            &format!("$([ -n \"$props\" ] && printf '%s\\n' \"$props\" | awk -v u={names} 'BEGIN {{ split(u, U, \" \"); i = 1 }} /^$/ {{ i++; next }} /^NRestarts=/ && $0 != \"NRestarts=0\" {{ print U[i] }}')"),
            None,
        )),
        Journals::Since(units, since) => s.push_str(&each(&super::list(&units.iter().map(|c| c.unit()).collect::<Vec<_>>()), Some(*since))),
    }
    s
}

fn unit(tag: Tag, name: &str) -> Result<&'static str, ProbeError> {
    UNITS.iter().find(|u| u.file_name == name).map(|u| u.file_name).ok_or_else(|| malformed(tag, "not a unit of the layout"))
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Props, [b]) => {
            let text = String::from_utf8_lossy(&b64(tag, b)?).into_owned();
            let blocks: Vec<&str> = text.trim_end_matches('\n').split("\n\n").collect();
            if blocks.len() != UNITS.len() {
                return Err(malformed(tag, format!("{} units described, {} asked", blocks.len(), UNITS.len())));
            }
            for (u, block) in UNITS.iter().zip(blocks) {
                let st = p.units.entry(u.file_name.to_string()).or_default();
                for l in block.lines() {
                    if let Some((k, v)) = l.split_once('=') {
                        st.set(k, v).map_err(|e| malformed(tag, format!("{}: {e}", u.file_name)))?;
                    }
                }
            }
        }
        (Tag::Cmdline, [name, b]) => {
            let u = unit(tag, name)?;
            let bytes = b64(tag, b)?;
            p.units.entry(u.to_string()).or_default().cmdline = bytes.split(|c| *c == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        }
        (Tag::Journal, [name, b]) => {
            let u = unit(tag, name)?;
            let crashes = crate::remote::journal::crash_lines(&b64(tag, b)?, JOURNAL_FAILED);
            p.units.entry(u.to_string()).or_default().crashes = crashes.map_err(|e| e.0);
        }
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}

/// Start times from the monotonic timestamps; the installed unit texts
/// where the checks look for them.
pub(crate) fn finish(p: &mut Probe) {
    let at: Vec<(String, u64)> = p.units.iter().map(|(u, s)| (u.clone(), p.at_monotonic(s.active_enter_monotonic))).collect();
    for (u, t) in at {
        if let Some(s) = p.units.get_mut(&u) {
            s.active_enter_unix = t;
        }
    }
    for u in UNITS {
        if let Some(dest) = crate::model::placed(u.manifest).map(|f| f.dest) {
            if let Some(t) = p.texts.get(dest) {
                p.units.entry(u.file_name.to_string()).or_default().text = Some(t.clone());
            }
        }
    }
}
