//! Typed systemd on a server: the unit properties both plugins read (one
//! `systemctl show` per unit, parsed into [`UnitStatus`]) and the operations
//! bootstrap runs, each rendered to its shell line in one place.

use serde::Serialize;

use super::shell_quote as q;
use crate::model::{ActiveState, Component};

/// The properties read for every control-plane unit.
pub const PROPERTIES: &[&str] =
    &["UnitFileState", "ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "NRestarts", "InvocationID", "MainPID", "NeedDaemonReload", "DropInPaths", "FragmentPath"];

/// What systemd says of one unit, plus what the probe read beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    pub active: ActiveState,
    pub sub: String,
    /// UnitFileState: `enabled`, `disabled`, … (empty when not installed).
    pub enabled: String,
    pub restarts: u32,
    /// systemd's InvocationID: new on every start of the unit, by anyone.
    pub invocation: String,
    pub main_pid: u32,
    /// systemd has read an older version of the unit file than is on disk.
    pub need_daemon_reload: bool,
    /// Every drop-in that changes the unit (/etc, /run, /usr/lib).
    pub drop_ins: Vec<String>,
    /// The unit file systemd loaded.
    pub fragment: String,
    /// When it last became active, µs since boot (0: never).
    pub active_enter_monotonic: u64,
    /// The same in seconds since the epoch by the server's clock (0: never),
    /// from the uptime and clock read with it.
    pub active_enter_unix: u64,
    /// Inodes of the sockets its main process holds.
    pub sockets: Vec<u64>,
    /// The installed unit file (at the layout's destination), if any.
    #[serde(skip)]
    pub text: Option<String>,
    /// The running main process's argv.
    pub cmdline: Vec<String>,
    /// The binfmt interpreter that runs the process (an emulated server):
    /// `cmdline` is then the program's own argv, without it.
    pub interpreter: Option<String>,
    /// First line of `BINARY --version` of the installed binary (cpcheck).
    pub binary_version: Option<String>,
    /// When systemd restarted it by itself: the journal lines that say
    /// why its process ended (escaped), or why they could not be read.
    #[serde(skip)]
    pub crashes: Result<Vec<String>, String>,
    /// Journal lines (escaped, within the window asked) that may show a
    /// known failure (`crate::diagnose`), or why they could not be read.
    #[serde(skip)]
    pub signature_lines: Result<Vec<String>, String>,
}

impl Default for UnitStatus {
    fn default() -> Self {
        UnitStatus {
            active: ActiveState::default(),
            sub: String::new(),
            enabled: String::new(),
            restarts: 0,
            invocation: String::new(),
            main_pid: 0,
            need_daemon_reload: false,
            drop_ins: Vec::new(),
            fragment: String::new(),
            active_enter_monotonic: 0,
            active_enter_unix: 0,
            sockets: Vec::new(),
            text: None,
            cmdline: Vec::new(),
            interpreter: None,
            binary_version: None,
            crashes: Ok(Vec::new()),
            signature_lines: Ok(Vec::new()),
        }
    }
}

impl UnitStatus {
    /// Takes one `Key=Value` line of `systemctl show`; a number that is
    /// not one is an error (never read as 0).
    pub fn set(&mut self, key: &str, v: &str) -> Result<(), crate::remote::BadReply> {
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{key}= is not a number"));
        match key {
            "UnitFileState" => self.enabled = v.to_string(),
            "ActiveState" => self.active = ActiveState::parse(v),
            "SubState" => self.sub = v.to_string(),
            "ActiveEnterTimestampMonotonic" => self.active_enter_monotonic = num(v)?,
            "NRestarts" => self.restarts = num(v)? as u32,
            "InvocationID" => self.invocation = v.to_string(),
            "MainPID" => self.main_pid = num(v)? as u32,
            "NeedDaemonReload" => self.need_daemon_reload = v == "yes",
            "DropInPaths" => self.drop_ins = v.split_whitespace().map(str::to_string).collect(),
            "FragmentPath" => self.fragment = v.to_string(),
            _ => {}
        }
        Ok(())
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled == "enabled"
    }

    /// Which run of its process the unit is in.
    pub fn generation(&self) -> Generation {
        Generation { invocation: self.invocation.clone(), restarts: self.restarts, main_pid: self.main_pid }
    }
}

/// Which run of its process a unit is in: its InvocationID (new on every
/// start, whoever asks for it), NRestarts (the starts systemd made by
/// itself, after the process exited, because of `Restart=`) and MainPID
/// (0, or another, once the process exited: before systemd's `RestartSec=`
/// has passed, only this has moved).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub invocation: String,
    pub restarts: u32,
    pub main_pid: u32,
}

/// Shell printing the [`Generation`] of each of `units` (`systemctl show`
/// blocks, a blank line apart, in the order given).
pub fn generations(units: &[Component]) -> String {
    format!("systemctl show -p NRestarts -p InvocationID -p MainPID {}", units.iter().map(|u| q(u.unit())).collect::<Vec<_>>().join(" "))
}

/// Parses [`generations`]' output for `n` units; anything else is an error
/// (a failed or garbled answer is never read as "no restart").
pub fn parse_generations(out: &str, n: usize) -> Result<Vec<Generation>, crate::remote::BadReply> {
    let blocks: Vec<&str> = out.trim_end().split("\n\n").collect();
    if blocks.len() != n {
        return Err(format!("systemctl show answered {} unit(s), {n} asked", blocks.len()).into());
    }
    blocks
        .iter()
        .map(|b| {
            let (mut invocation, mut restarts, mut main_pid) = (String::new(), None, None);
            for l in b.lines() {
                match l.split_once('=') {
                    Some(("NRestarts", v)) => restarts = v.parse::<u32>().ok(),
                    Some(("MainPID", v)) => main_pid = v.parse::<u32>().ok(),
                    Some(("InvocationID", v)) => invocation = v.to_string(),
                    _ => {}
                }
            }
            let restarts = restarts.ok_or_else(|| "systemctl show gave no NRestarts".to_string())?;
            let main_pid = main_pid.ok_or_else(|| "systemctl show gave no MainPID".to_string())?;
            Ok(Generation { invocation, restarts, main_pid })
        })
        .collect()
}

/// `systemctl show` of every property in [`PROPERTIES`] for `units`: one
/// block per unit, in the order given, a blank line apart.
pub fn show_all(units: &[Component]) -> String {
    let props: Vec<String> = PROPERTIES.iter().map(|p| format!("-p {p}")).collect();
    format!("systemctl show {} {}", props.join(" "), units.iter().map(|u| q(u.unit())).collect::<Vec<_>>().join(" "))
}

/// Every `systemctl` and `journalctl` option and unit property the plugins
/// use, with the systemd version that introduced it (from systemd's NEWS).
/// Nothing here may be younger than the floor the plugins require
/// ([`crate::remote::probe::host::SYSTEMD_FLOOR`], 239: RHEL 8).
/// `--timestamp=unix` (251) is not used: times come from
/// `ActiveEnterTimestampMonotonic` and the uptime.
pub const SINCE: &[(&str, u32)] = &[
    // Properties.
    ("UnitFileState", 187),
    ("ActiveState", 1),
    ("SubState", 1),
    ("ActiveEnterTimestampMonotonic", 1),
    ("NRestarts", 235),
    ("InvocationID", 232),
    ("MainPID", 1),
    ("NeedDaemonReload", 189),
    ("DropInPaths", 205),
    ("FragmentPath", 1),
    // systemctl.
    ("systemctl show -p", 1),
    ("systemctl --version", 1),
    ("systemctl daemon-reload", 1),
    ("systemctl enable --quiet", 1),
    ("systemctl start", 1),
    ("systemctl stop", 1),
    ("systemctl restart", 1),
    ("systemctl cat", 209),
    ("systemctl disable --now", 220),
    ("systemctl status --no-pager -n", 186),
    // journalctl.
    ("journalctl -u", 185),
    ("journalctl -o short-iso", 206),
    ("journalctl --since @EPOCH", 209),
    ("journalctl -n", 185),
    ("journalctl -q", 195),
    ("journalctl --no-pager", 185),
];

/// What bootstrap asks of systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    DaemonReload,
    Enable(Vec<Component>),
    Stop(Vec<Component>),
    Start(Component),
    Restart(Component),
    /// `reset`: stop and disable, if installed.
    DisableNow(Vec<Component>),
}

impl Op {
    /// The shell line that performs it.
    pub fn command(&self) -> String {
        let list = |v: &[Component]| v.iter().map(|c| q(c.unit())).collect::<Vec<_>>().join(" ");
        match self {
            Op::DaemonReload => "systemctl daemon-reload".into(),
            Op::Enable(u) => format!("systemctl enable --quiet {}", list(u)),
            Op::Stop(u) => format!("systemctl stop {}", list(u)),
            Op::Start(u) => format!("systemctl start {}", q(u.unit())),
            Op::Restart(u) => format!("systemctl restart {}", q(u.unit())),
            Op::DisableNow(u) => format!(
                "for u in {}; do if systemctl cat \"$u\" >/dev/null 2>&1; then systemctl disable --now --quiet \"$u\" && echo \"stopped and disabled $u\"; fi; done",
                list(u)
            ),
        }
    }
}

/// The `Active:` line of `systemctl status` and the journal's last lines of `unit`.
pub fn diagnose(unit: Component) -> String {
    format!(
        "systemctl status {u} --no-pager -n0 2>&1 | grep -m1 'Active:' ; echo '--- journalctl -u {f} (last 20 lines)'; journalctl -u {u} -n 20 --no-pager -o short-iso 2>&1",
        u = q(unit.unit()),
        f = unit.unit()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_into_a_status() {
        let mut s = UnitStatus::default();
        for l in
            ["ActiveState=active", "UnitFileState=enabled", "NRestarts=2", "NeedDaemonReload=yes", "DropInPaths=/a.conf /b.conf", "ActiveEnterTimestampMonotonic=5000", "Unknown=x"]
        {
            let (k, v) = l.split_once('=').unwrap();
            s.set(k, v).unwrap();
        }
        assert_eq!(s.active, ActiveState::Active);
        assert!(s.is_enabled() && s.need_daemon_reload);
        assert_eq!((s.restarts, s.drop_ins.len(), s.active_enter_monotonic), (2, 2, 5000));
        assert!(s.set("MainPID", "").is_err() && s.set("NRestarts", "-1").is_err());
    }

    #[test]
    fn operations_are_quoted_shell_lines() {
        let (a, b) = (Component::ALL[0], Component::ALL[1]);
        assert_eq!(Op::Restart(a).command(), format!("systemctl restart '{}'", a.unit()));
        assert_eq!(Op::Stop(vec![a, b]).command(), format!("systemctl stop '{}' '{}'", a.unit(), b.unit()));
        assert!(show_all(&[a]).contains(&format!("-p NeedDaemonReload -p DropInPaths -p FragmentPath '{}'", a.unit())));
    }

    /// Every systemctl and journalctl option and property the plugins use
    /// is in [`SINCE`], none younger than the floor.
    #[test]
    fn every_systemd_option_and_property_used_exists_from_the_floor_on() {
        let floor = crate::remote::probe::host::SYSTEMD_FLOOR;
        for (what, v) in SINCE {
            assert!(*v <= floor, "{what} needs systemd {v}, above the floor {floor}");
        }
        for p in PROPERTIES {
            assert!(SINCE.iter().any(|(w, _)| w == p), "property {p} is used but not in SINCE");
        }
        // Every option the remote scripts pass to systemctl or journalctl.
        let mut scripts = vec![
            show_all(Component::ALL),
            generations(Component::ALL),
            diagnose(Component::ALL[0]),
            crate::remote::journal::crash_script_for("u", Some(1.0), "t"),
            crate::remote::probe::script(&crate::remote::probe::Request::bootstrap()),
            crate::remote::probe::script(&crate::remote::probe::Request::cpcheck()),
            crate::bootstrap::reset::script(),
        ];
        scripts.extend(
            {
                let u = Component::ALL[0];
                [Op::DaemonReload, Op::Enable(vec![u]), Op::Stop(vec![u]), Op::Start(u), Op::Restart(u), Op::DisableNow(vec![u])]
            }
            .map(|o| o.command()),
        );
        for s in &scripts {
            for tool in ["systemctl", "journalctl"] {
                for (i, _) in s.match_indices(&format!("{tool} ")) {
                    let rest = &s[i + tool.len()..];
                    for opt in
                        rest.split_whitespace().take_while(|w| !w.contains('|') && !w.contains(';') && !w.starts_with("2>") && !w.starts_with('&')).filter(|w| w.starts_with('-'))
                    {
                        let opt = opt.split('=').next().unwrap_or(opt).trim_end_matches(')');
                        // A short option with its value attached (`-n0`).
                        let opt = if !opt.starts_with("--") && opt.len() > 2 { &opt[..2] } else { opt };
                        assert!(
                            SINCE.iter().any(|(w, _)| w.starts_with(tool) && w.split_whitespace().any(|x| x == opt)),
                            "`{tool} {opt}` is used but not in SINCE (in: {})",
                            &rest[..rest.len().min(80)]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn generations_parse_per_unit_and_a_garbled_answer_is_an_error() {
        let out = "MainPID=10\nNRestarts=0\nInvocationID=aa11\n\nInvocationID=bb22\nNRestarts=3\nMainPID=0\n";
        let g = parse_generations(out, 2).unwrap();
        assert_eq!(g[0], Generation { invocation: "aa11".into(), restarts: 0, main_pid: 10 });
        assert_eq!(g[1], Generation { invocation: "bb22".into(), restarts: 3, main_pid: 0 });
        assert!(parse_generations(out, 3).is_err());
        assert!(parse_generations("", 1).unwrap_err().to_string().contains("no NRestarts"));
        assert!(parse_generations("NRestarts=x\nInvocationID=a\nMainPID=1\n", 1).is_err());
        assert!(parse_generations("NRestarts=0\nInvocationID=a\n", 1).unwrap_err().to_string().contains("no MainPID"));
        assert_eq!(generations(&[Component::ALL[0]]), format!("systemctl show -p NRestarts -p InvocationID -p MainPID '{}'", Component::ALL[0].unit()));
    }
}
