//! Runtime overrides of unit flags, on top of the compiled-in manifests:
//! `--set kube-apiserver.service-cluster-ip-range=10.96.0.0/24`, or a YAML file
//! (`--config FILE`) mapping component → flag → value. Validated against the
//! same model: an unknown component or flag is refused with the known ones.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::{Flags, UnitSpec, UNITS};
use crate::Error;

/// Validated overrides: component → flag → (value, where it came from).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    by_component: BTreeMap<String, BTreeMap<String, (String, String)>>,
}

/// Where overrides come from: `--config FILE`, then each `--set` on top.
#[derive(Debug, Clone, Default)]
pub struct OverrideSources {
    /// `COMPONENT.FLAG=VALUE`, e.g. `kube-apiserver.v=3`; wins over the file.
    pub set: Vec<String>,
    /// A YAML file of `COMPONENT: {FLAG: VALUE}`.
    pub config: Option<std::path::PathBuf>,
}

fn known_components() -> String {
    UNITS.iter().map(|u| u.name).collect::<Vec<_>>().join(", ")
}

fn check(component: &str, flag: &str, origin: &str) -> Result<&'static UnitSpec, Error> {
    let unit = UNITS
        .iter()
        .find(|u| u.name == component)
        .ok_or_else(|| Error::Input(format!("{origin}: unknown component `{}`; known: {}", crate::output::redact::line(component), known_components())))?;
    let flag = flag.trim_start_matches("--");
    if unit.flag(flag).is_none() {
        let known: Vec<_> = unit.flags.iter().map(|f| f.name).collect();
        return Err(Error::Input(format!(
            "{origin}: {component} has no flag --{flag} in manifests/{}; known: {} (to add a flag, edit the manifest and rebuild)",
            unit.manifest,
            known.join(", ")
        )));
    }
    Ok(unit)
}

impl Overrides {
    pub fn from_sources(args: &OverrideSources) -> Result<Self, Error> {
        let mut o = match &args.config {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        for s in &args.set {
            o.set(s)?;
        }
        o.check_rendering()?;
        Ok(o)
    }

    /// Renders every unit with these overrides and checks that each reads
    /// back, by systemd's rules, as the manifest's directives with only flag
    /// values changed ([`unitfile::render_with_flags`]); otherwise nothing may
    /// be uploaded.
    pub fn check_rendering(&self) -> Result<(), Error> {
        for spec in UNITS {
            render(spec, self).map_err(|e| Error::Input(format!("overrides of {}: {e}; nothing was changed", spec.file_name)))?;
        }
        Ok(())
    }

    /// Adds one `COMPONENT.FLAG=VALUE`.
    pub fn set(&mut self, s: &str) -> Result<(), Error> {
        let origin = format!("--set {}", crate::output::redact::line(s));
        let want = || Error::Input(format!("{origin}: expected COMPONENT.FLAG=VALUE, e.g. {}.v=3", crate::model::APISERVER));
        let (key, value) = s.split_once('=').ok_or_else(want)?;
        let (component, flag) = key.split_once('.').ok_or_else(want)?;
        self.insert(component, flag, value, &origin)
    }

    fn insert(&mut self, component: &str, flag: &str, value: &str, origin: &str) -> Result<(), Error> {
        // A control character can only be an attack or an accident: systemd
        // ends a unit's line at `\n`, `\r` and `\0`, so a value holding one
        // would start directives of its own.
        for (what, text) in [("component", component), ("flag", flag), ("value", value)] {
            if let Some((at, c)) = unitfile::control_char(text) {
                return Err(Error::Input(format!(
                    "{origin}: {}.{}: the {what} holds the control character {} at byte {at}; a unit flag value cannot contain control characters",
                    crate::output::redact::line(component),
                    crate::output::redact::line(flag.trim_start_matches("--")),
                    c.escape_unicode()
                )));
            }
        }
        check(component, flag, origin)?;
        self.by_component.entry(component.to_string()).or_default().insert(flag.trim_start_matches("--").to_string(), (value.to_string(), origin.to_string()));
        Ok(())
    }

    /// Reads `COMPONENT: {FLAG: VALUE}` from `path`. The file may be a key
    /// picked by mistake: errors name its position, never its content.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let shown = crate::output::redact::line(&path.display().to_string());
        let bytes = crate::local::files::read_regular(path, crate::local::files::SMALL_FILE_LIMIT).map_err(|e| Error::Input(format!("--config {shown}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| Error::Input(format!("--config {shown}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))?;
        let doc: BTreeMap<String, BTreeMap<String, serde_yaml::Value>> = serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("--config {shown}: {} (expected `COMPONENT: {{FLAG: VALUE}}`)", crate::output::redact::yaml_error(&e))))?;
        let mut o = Self::default();
        for (component, flags) in doc {
            for (flag, v) in flags {
                let value = match v {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(Error::Input(format!(
                            "--config {shown}: {}.{}: value must be a string, number or boolean",
                            crate::output::redact::line(&component),
                            crate::output::redact::line(&flag)
                        )))
                    }
                };
                o.insert(&component, &flag, &value, &format!("--config {shown}"))?;
            }
        }
        Ok(o)
    }

    pub fn is_empty(&self) -> bool {
        self.by_component.is_empty()
    }

    pub fn get(&self, component: &str, flag: &str) -> Option<&str> {
        self.by_component.get(component)?.get(flag).map(|(v, _)| v.as_str())
    }
}

/// A unit as it should be installed: the manifest plus overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUnit {
    pub spec: &'static UnitSpec,
    pub flags: Flags,
    /// The unit file's bytes: the manifest itself when nothing is overridden.
    pub text: String,
}

impl DesiredUnit {
    /// The value of `--name=value` (none for a bare `--name`).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.0.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    /// --secure-port as overridden, else the manifest's derived port.
    pub fn serving_port(&self) -> u16 {
        self.flag("secure-port").and_then(|p| p.parse().ok()).unwrap_or(self.spec.serving_port)
    }

    /// --bind-address as overridden, else the manifest's.
    pub fn bind_address(&self) -> &str {
        self.flag("bind-address").unwrap_or(self.spec.bind_address)
    }
}

/// One unit with the overrides applied: its flags and its verified text.
fn render(spec: &'static UnitSpec, o: &Overrides) -> Result<DesiredUnit, String> {
    let flags: Vec<(String, Option<String>)> = spec
        .flags
        .iter()
        .map(|f| {
            let v = o.get(spec.name, f.name).map(str::to_string).or(f.value.map(str::to_string));
            (f.name.to_string(), v)
        })
        .collect();
    let parsed = unitfile::parse_unit(Path::new(spec.file_name), spec.text).expect("compiled-in units were validated at build time");
    let text = unitfile::render_with_flags(&parsed, &flags)?;
    Ok(DesiredUnit { spec, flags: Flags(flags), text })
}

/// Every unit with the overrides applied, in manifest order. Overrides made
/// by [`Overrides::from_sources`] were checked to render ([`Overrides::check_rendering`]).
pub fn desired_units(o: &Overrides) -> Vec<DesiredUnit> {
    UNITS.iter().map(|spec| render(spec, o).expect("overrides are checked to render when they are made")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KUBE_APISERVER;

    #[test]
    fn no_overrides_keeps_every_unit_byte_exact() {
        for d in desired_units(&Overrides::default()) {
            assert_eq!(d.text, d.spec.text);
        }
    }

    #[test]
    fn set_changes_one_flag_line_only() {
        let mut o = Overrides::default();
        o.set("kube-apiserver.v=3").unwrap();
        let d = desired_units(&o).into_iter().find(|d| d.spec.component == crate::model::APISERVER).unwrap();
        assert_eq!(d.flag("v"), Some("3"));
        let old: Vec<_> = KUBE_APISERVER.text.lines().collect();
        let new: Vec<_> = d.text.lines().collect();
        assert_eq!(old.len(), new.len());
        let diff: Vec<_> = old.iter().zip(&new).filter(|(a, b)| a != b).collect();
        assert_eq!(diff, vec![(&"  --v=2", &"  --v=3")]);
    }

    #[test]
    fn unknown_component_and_flag_are_refused_with_what_is_known() {
        let mut o = Overrides::default();
        let e = o.set("kube-proxy.v=3").unwrap_err().to_string();
        assert!(e.contains("unknown component `kube-proxy`") && e.contains("kube-apiserver"), "{e}");
        let e = o.set("kube-scheduler.nope=1").unwrap_err().to_string();
        assert!(e.contains("kube-scheduler has no flag --nope") && e.contains("known: config, v"), "{e}");
        let e = o.set("kube-scheduler").unwrap_err().to_string();
        assert!(e.contains("expected COMPONENT.FLAG=VALUE"), "{e}");
    }

    #[test]
    fn control_characters_are_refused_naming_component_and_flag() {
        for evil in ["2\0StandardInput=data\0ExecStartPre=/bin/sh", "2\nX", "2\rX", "\u{1b}[31m"] {
            let mut o = Overrides::default();
            let e = o.set(&format!("kube-apiserver.v={evil}")).unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INPUT);
            let e = e.to_string();
            assert!(e.contains("kube-apiserver.v: the value holds the control character"), "{e}");
            assert!(!e.chars().any(|c| c.is_control()), "the message itself is one clean line: {e:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.yaml");
        std::fs::write(&p, "kube-scheduler:\n  v: \"2\\0StandardInput=data\\0ExecStartPre=/bin/sh\"\n").unwrap();
        let e = Overrides::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("kube-scheduler.v: the value holds the control character \\u{0}"), "{e}");
    }

    #[test]
    fn a_key_given_as_config_is_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.key");
        std::fs::write(&p, "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n").unwrap();
        let e = Overrides::from_file(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--config {}: line 1, column 1:", p.display())), "{e}");
        assert!(!e.contains("MIGH") && !e.contains("BEGIN"), "{e}");
    }

    #[test]
    fn config_file_then_set_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.yaml");
        std::fs::write(&p, "kube-apiserver:\n  v: 4\n  service-cluster-ip-range: 10.96.0.0/24\n").unwrap();
        let o = Overrides::from_sources(&OverrideSources { set: vec!["kube-apiserver.v=5".into()], config: Some(p.clone()) }).unwrap();
        assert_eq!(o.get("kube-apiserver", "v"), Some("5"));
        assert_eq!(o.get("kube-apiserver", "service-cluster-ip-range"), Some("10.96.0.0/24"));
        std::fs::write(&p, "kube-apiserver: [1]\n").unwrap();
        let e = Overrides::from_file(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--config {}:", p.display())), "{e}");
    }
}
