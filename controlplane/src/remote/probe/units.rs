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

pub(crate) const TAGS: &[Tag] = &[Tag::Props, Tag::Cmdline, Tag::Journal, Tag::Signatures];

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
             printf '%s\\n' \"$mains\" | while read -r u p; do [ -n \"$p\" ] && [ -r \"/proc/$p/cmdline\" ] && echo \"cmdline${{T}}$u${{T}}$(base64 -w0 < \"/proc/$p/cmdline\")${{T}}$(readlink \"/proc/$p/exe\" | base64 -w0)\"; done\n\
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
    // Journal lines that may show a known failure (diagnose), base64.
    // Each unit's in the background (journalctl reads thousands of lines).
    if let Some(window) = req.signatures {
        for c in Component::ALL {
            let u = crate::remote::shell_quote(c.unit());
            s.push_str(&super::background(
                &format!("sig-{}", c.name()),
                &format!("echo \"sig${{T}}\"{u}\"${{T}}$({} | base64 -w0)\"", crate::remote::journal::signature_script(&u, window, JOURNAL_FAILED)),
            ));
        }
    }
    s
}

/// A process's argv as its program sees it. Under binfmt emulation the
/// kernel runs the registered interpreter: `/proc/PID/exe` is the
/// interpreter, not the unit's program, and the command line starts with the
/// interpreter, then the program's path (then, with qemu's preserve-argv0
/// flag, argv0 again). Then the interpreter is split off and the argv taken
/// from the last word equal to the program's path among the first three;
/// a real process (its exe the program, its argv0 the program) is taken as
/// it is.
pub fn program_argv(words: Vec<String>, exe: Option<&str>, program: &str) -> (Option<String>, Vec<String>) {
    let exe = exe.map(|e| e.trim_end_matches(" (deleted)"));
    // Not the program running (or not said), and not the program's own argv0.
    let emulated = !program.is_empty() && exe != Some(program) && words.first().is_some_and(|w| w != program);
    match (emulated, words.iter().take(3).rposition(|w| w == program)) {
        (true, Some(i)) if i > 0 => (words.first().cloned(), words[i..].to_vec()),
        _ => (None, words),
    }
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
        (Tag::Cmdline, [name, b, rest @ ..]) if rest.len() <= 1 => {
            let u = unit(tag, name)?;
            let bytes = b64(tag, b)?;
            let words: Vec<String> = bytes.split(|c| *c == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
            let exe = rest.first().map(|e| b64(tag, e)).transpose()?.map(|e| String::from_utf8_lossy(&e).trim_end_matches('\n').to_string());
            let st = p.units.entry(u.to_string()).or_default();
            let program = Component::of_unit(u).map(|c| c.exec()).unwrap_or_default();
            (st.interpreter, st.cmdline) = program_argv(words, exe.as_deref(), program);
        }
        (Tag::Journal, [name, b]) => {
            let u = unit(tag, name)?;
            let crashes = crate::remote::journal::crash_lines(&b64(tag, b)?, JOURNAL_FAILED);
            p.units.entry(u.to_string()).or_default().crashes = crashes.map_err(|e| e.0);
        }
        (Tag::Signatures, [name, b]) => {
            let u = unit(tag, name)?;
            let lines = crate::remote::journal::signature_lines(&b64(tag, b)?, JOURNAL_FAILED);
            p.units.entry(u.to_string()).or_default().signature_lines = lines.map_err(|e| e.0);
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

#[cfg(test)]
mod tests {
    use super::program_argv;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn an_emulated_process_is_read_as_its_program_sees_it() {
        let p = "/usr/local/bin/kube-scheduler";
        // As an arm64 server under qemu-user (binfmt, flags PF) shows it.
        let emulated = w(&["/usr/libexec/qemu-binfmt/aarch64-binfmt-P", p, p, "--config=/etc/kubernetes/config/kube-scheduler.yaml", "--v=2"]);
        let (interp, argv) = program_argv(emulated, Some("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"), p);
        assert_eq!(interp.as_deref(), Some("/usr/libexec/qemu-binfmt/aarch64-binfmt-P"));
        assert_eq!(argv, w(&[p, "--config=/etc/kubernetes/config/kube-scheduler.yaml", "--v=2"]));
        // Without preserve-argv0.
        let (_, argv) = program_argv(w(&["/usr/bin/qemu-aarch64-static", p, "--v=2"]), None, p);
        assert_eq!(argv, w(&[p, "--v=2"]));
        // A real process, and one whose binary was replaced since it started.
        for exe in [Some(p), Some("/usr/local/bin/kube-scheduler (deleted)"), None] {
            assert_eq!(program_argv(w(&[p, "--v=2"]), exe, p), (None, w(&[p, "--v=2"])));
        }
        // Something else entirely is left as it is (the check then says so).
        assert_eq!(program_argv(w(&["/usr/bin/python3", "x.py"]), Some("/usr/bin/python3.11"), p).1, w(&["/usr/bin/python3", "x.py"]));
    }
}
