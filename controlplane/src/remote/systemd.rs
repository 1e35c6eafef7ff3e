//! Typed systemd on a server: the unit properties both plugins read (one
//! `systemctl show` per unit, parsed into [`UnitStatus`]) and the operations
//! bootstrap runs, each rendered to its shell line in one place.

use serde::Serialize;

use super::shell_quote as q;
use crate::model::ActiveState;

/// The properties read for every control-plane unit.
pub const PROPERTIES: &[&str] =
    &["UnitFileState", "ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "NRestarts", "MainPID", "NeedDaemonReload", "DropInPaths", "FragmentPath"];

/// What systemd says of one unit, plus what the probe read beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    pub active: ActiveState,
    pub sub: String,
    /// UnitFileState: `enabled`, `disabled`, … (empty when not installed).
    pub enabled: String,
    pub restarts: u32,
    pub main_pid: u32,
    /// systemd has read an older version of the unit file than is on disk.
    pub need_daemon_reload: bool,
    /// Every drop-in that changes the unit (/etc, /run, /usr/lib).
    pub drop_ins: Vec<String>,
    /// The unit file systemd loaded.
    pub fragment: String,
    pub active_enter_monotonic: u64,
    /// ActiveEnterTimestamp, seconds since the epoch by the server's clock (0: never).
    pub active_enter_unix: u64,
    /// The installed unit file (at the layout's destination), if any.
    #[serde(skip)]
    pub text: Option<String>,
    /// The running main process's argv.
    pub cmdline: Vec<String>,
    /// First line of `BINARY --version` of the installed binary (cpcheck).
    pub binary_version: Option<String>,
}

impl UnitStatus {
    /// Takes one `Key=Value` line of `systemctl show`.
    pub fn set(&mut self, key: &str, v: &str) {
        match key {
            "UnitFileState" => self.enabled = v.to_string(),
            "ActiveState" => self.active = ActiveState::parse(v),
            "SubState" => self.sub = v.to_string(),
            "ActiveEnterTimestampMonotonic" => self.active_enter_monotonic = v.parse().unwrap_or(0),
            "ActiveEnterTimestamp" => self.active_enter_unix = v.trim_start_matches('@').parse().unwrap_or(0),
            "NRestarts" => self.restarts = v.parse().unwrap_or(0),
            "MainPID" => self.main_pid = v.parse().unwrap_or(0),
            "NeedDaemonReload" => self.need_daemon_reload = v == "yes",
            "DropInPaths" => self.drop_ins = v.split_whitespace().map(str::to_string).collect(),
            "FragmentPath" => self.fragment = v.to_string(),
            _ => {}
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled == "enabled"
    }
}

/// Shell lines printing `TAG<TAB>UNIT<TAB>Key=Value` for every property of
/// `unit` (and its start time as seconds since the epoch).
pub fn show(unit: &str, tag: &str) -> String {
    let props: Vec<String> = PROPERTIES.iter().map(|p| format!("-p {p}")).collect();
    format!(
        "systemctl show {props} {u} 2>/dev/null | sed \"s|^|{tag}${{T}}{f}${{T}}|\"\n\
         systemctl show --timestamp=unix -p ActiveEnterTimestamp {u} 2>/dev/null | sed \"s|^|{tag}${{T}}{f}${{T}}|\"\n",
        props = props.join(" "),
        u = q(unit),
        f = unit,
    )
}

/// What bootstrap asks of systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    DaemonReload,
    Enable(Vec<String>),
    Stop(Vec<String>),
    Start(String),
    Restart(String),
    /// `reset`: stop and disable, if installed.
    DisableNow(Vec<String>),
}

impl Op {
    /// The shell line that performs it.
    pub fn command(&self) -> String {
        let list = |v: &[String]| v.iter().map(|u| q(u)).collect::<Vec<_>>().join(" ");
        match self {
            Op::DaemonReload => "systemctl daemon-reload".into(),
            Op::Enable(u) => format!("systemctl enable --quiet {}", list(u)),
            Op::Stop(u) => format!("systemctl stop {}", list(u)),
            Op::Start(u) => format!("systemctl start {}", q(u)),
            Op::Restart(u) => format!("systemctl restart {}", q(u)),
            Op::DisableNow(u) => format!(
                "for u in {}; do if systemctl cat \"$u\" >/dev/null 2>&1; then systemctl disable --now --quiet \"$u\" && echo \"stopped and disabled $u\"; fi; done",
                list(u)
            ),
        }
    }
}

/// The `Active:` line of `systemctl status` and the journal's last lines of `unit`.
pub fn diagnose(unit: &str) -> String {
    format!(
        "systemctl status {u} --no-pager -n0 2>&1 | grep -m1 'Active:' ; echo '--- journalctl -u {f} (last 20 lines)'; journalctl -u {u} -n 20 --no-pager -o short-iso 2>&1",
        u = q(unit),
        f = unit
    )
}

/// `NRestarts` of each of `units`, in order.
pub fn restarts(units: &[&str]) -> String {
    format!("for u in {}; do systemctl show -p NRestarts --value \"$u\"; done", units.iter().map(|u| q(u)).collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_into_a_status() {
        let mut s = UnitStatus::default();
        for l in
            ["ActiveState=active", "UnitFileState=enabled", "NRestarts=2", "NeedDaemonReload=yes", "DropInPaths=/a.conf /b.conf", "ActiveEnterTimestamp=@1796050104", "Unknown=x"]
        {
            let (k, v) = l.split_once('=').unwrap();
            s.set(k, v);
        }
        assert_eq!(s.active, ActiveState::Active);
        assert!(s.is_enabled() && s.need_daemon_reload);
        assert_eq!((s.restarts, s.drop_ins.len(), s.active_enter_unix), (2, 2, 1796050104));
    }

    #[test]
    fn operations_are_quoted_shell_lines() {
        assert_eq!(Op::Restart("kube-apiserver.service".into()).command(), "systemctl restart 'kube-apiserver.service'");
        assert_eq!(Op::Stop(vec!["a.service".into(), "b.service".into()]).command(), "systemctl stop 'a.service' 'b.service'");
        assert!(show("x.service", "prop").contains("-p NeedDaemonReload -p DropInPaths -p FragmentPath 'x.service'"));
    }
}
