//! Reads a whole manifests/ directory, checks that its parts agree with each
//! other, and derives the facts the plugins need (serving ports, referenced
//! paths, which component restarts when a file changes, the service CIDR).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::{parse_scheduler_config, SchedulerConfig};
use crate::layout::{parse_layout, FileKind, Layout, Source};
use crate::rbac::{check_refs, parse_rbac, Rbac};
use crate::ManifestError;
use unitfile::{parse_unit, ParsedUnit};

/// The component that serves the API (its clients are the others).
pub const APISERVER: &str = "kube-apiserver";

/// Flags whose path the component writes rather than reads: they need not
/// exist before start, and nothing uploads them.
pub const OUTPUT_FLAGS: &[&str] = &["audit-log-path", "log-file", "log-dir", "cert-dir"];

/// The apiserver's built-in --service-cluster-ip-range when the flag is absent.
pub const APISERVER_DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/24";

/// The plain-HTTP port a component of releases before 1.23 opens when
/// --port is absent (the controller-manager's 10252, the scheduler's 10251;
/// the apiserver's insecure port is bound to loopback and gone in 1.20+).
pub fn default_insecure_port(component: &str) -> Option<u16> {
    match component {
        "kube-controller-manager" => Some(10252),
        "kube-scheduler" => Some(10251),
        _ => None,
    }
}

/// Each control-plane component's secure port when --secure-port is absent.
pub fn default_secure_port(component: &str) -> Option<u16> {
    match component {
        "kube-apiserver" => Some(6443),
        "kube-controller-manager" => Some(10257),
        "kube-scheduler" => Some(10259),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRef {
    pub path: String,
    /// What references it: `--client-ca-file`, or `kube-scheduler.yaml clientConnection.kubeconfig`.
    pub by: String,
    pub output: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub unit: ParsedUnit,
    /// Path of the unit relative to manifests/.
    pub manifest: String,
    pub serving_port: u16,
    /// Its plain-HTTP port in older releases, unless `--port=0` closes it.
    pub insecure_port: Option<u16>,
    pub bind_address: String,
    pub paths: Vec<PathRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifests {
    pub components: Vec<Component>,
    pub scheduler_config: SchedulerConfig,
    pub scheduler_config_manifest: String,
    pub rbac: Rbac,
    pub layout: Layout,
    /// For each layout file (same order), the components to restart when it changes.
    pub restarts: Vec<Vec<String>>,
    /// Manifest texts by path relative to manifests/.
    pub sources: Vec<(String, String)>,
    pub service_cidr: String,
    pub service_ip: String,
    pub etcd_servers: Vec<String>,
    /// Every file read, for `cargo::rerun-if-changed`.
    pub inputs: Vec<PathBuf>,
}

fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|e| ManifestError::new(path, 1, format!("cannot read: {e}")))
}

fn list(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, ManifestError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ManifestError::new(dir, 1, format!("cannot list directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some(ext))
        .collect();
    v.sort();
    Ok(v)
}

/// Parses `a.b.c.d/n` (or IPv6) and returns the network's first usable address.
pub fn first_address(cidr: &str) -> Option<IpAddr> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    match ip {
        IpAddr::V4(a) if len < 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(IpAddr::V4(((u32::from(a) & mask) + 1).into()))
        }
        IpAddr::V6(a) if len < 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            Some(IpAddr::V6(((u128::from(a) & mask) + 1).into()))
        }
        _ => None,
    }
}

pub fn load(dir: &Path) -> Result<Manifests, ManifestError> {
    let mut inputs = vec![dir.join("units"), dir.join("configs"), dir.join("rbac")];
    let mut sources = Vec::new();
    let rel = |p: &Path| p.strip_prefix(dir).unwrap_or(p).to_string_lossy().into_owned();

    let layout_path = dir.join("layout.yaml");
    let layout_text = read(&layout_path)?;
    let layout = parse_layout(&layout_path, &layout_text)?;
    inputs.push(layout_path.clone());

    let mut units = Vec::new();
    for p in list(&dir.join("units"), "service")? {
        let text = read(&p)?;
        let unit = parse_unit(&p, &text)?;
        // systemd's grammar, then this project's rules for units it ships.
        unitfile::validate(&unit)?;
        units.push((rel(&p), unit, p.clone()));
        sources.push((rel(&p), text));
        inputs.push(p);
    }
    if units.is_empty() {
        return Err(ManifestError::new(dir.join("units"), 1, "no *.service files"));
    }

    let sc_rel = "configs/kube-scheduler.yaml".to_string();
    let sc_path = dir.join(&sc_rel);
    let sc_text = read(&sc_path)?;
    let scheduler_config = parse_scheduler_config(&sc_path, &sc_text)?;
    sources.push((sc_rel.clone(), sc_text));
    inputs.push(sc_path);

    let mut rbac = Rbac::default();
    for p in list(&dir.join("rbac"), "yaml")? {
        let text = read(&p)?;
        parse_rbac(&p, &text, &mut rbac)?;
        sources.push((rel(&p), text));
        inputs.push(p);
    }
    check_refs(&rbac)?;

    // Layout ↔ manifests: every manifest source exists, every unit is placed.
    let lerr = |line: usize, m: String| ManifestError::new(&layout_path, line, m);
    for f in &layout.files {
        if let Source::Manifest(m) = &f.source {
            if !sources.iter().any(|(r, _)| r == m) {
                return Err(lerr(f.line, format!("{}: `from: manifest` names {m}, which is not a manifest (units/*.service, {sc_rel})", f.dest)));
            }
        }
    }
    let placed = |m: &str| layout.files.iter().find(|f| matches!(&f.source, Source::Manifest(x) if x == m));
    let by_dest = |d: &str| layout.files.iter().find(|f| f.dest == d);

    let mut components = Vec::new();
    for (manifest, unit, path) in units {
        let uerr = |line: usize, m: String| ManifestError::new(&path, line, m);
        match placed(&manifest) {
            Some(f) if f.kind == FileKind::Unit => {}
            Some(f) => return Err(lerr(f.line, format!("{}: a unit must have kind unit", f.dest))),
            None => return Err(uerr(1, format!("layout.yaml does not place {manifest}: add it under files"))),
        }
        match by_dest(&unit.exec) {
            Some(f) if f.kind == FileKind::Binary => {}
            _ => return Err(uerr(unit.exec_lines.0, format!("ExecStart runs {}, which layout.yaml does not place as a binary", unit.exec))),
        }
        let port = match unit.flag("secure-port") {
            Some(f) => f.value.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| uerr(f.line, "--secure-port is not a port number".into()))?,
            None => default_secure_port(&unit.component).ok_or_else(|| uerr(unit.exec_lines.0, format!("cannot tell {}'s serving port: add --secure-port", unit.component)))?,
        };
        let bind_address = match unit.flag("bind-address") {
            Some(f) => {
                let v = f.value.clone().unwrap_or_default();
                v.parse::<IpAddr>().map_err(|_| uerr(f.line, format!("--bind-address={v} is not an IP address")))?;
                v
            }
            None => "0.0.0.0".to_string(),
        };
        let mut paths = Vec::new();
        for f in &unit.flags {
            let Some(v) = &f.value else { continue };
            for part in v.split(',').filter(|p| p.starts_with('/')) {
                let output = OUTPUT_FLAGS.contains(&f.name.as_str());
                if !output && by_dest(part).is_none() {
                    return Err(uerr(f.line, format!("--{} references {part}, which layout.yaml does not place", f.name)));
                }
                paths.push(PathRef { path: part.to_string(), by: format!("--{}", f.name), output });
                // A config the unit reads brings the paths it references.
                if by_dest(part).is_some_and(|d| d.source == Source::Manifest(sc_rel.clone())) {
                    let k = &scheduler_config.kubeconfig;
                    if by_dest(k).is_none() {
                        let l = crate::yaml::line_of_key(&scheduler_config.text, 1, "kubeconfig");
                        return Err(ManifestError::new(dir.join(&sc_rel), l, format!("clientConnection.kubeconfig {k} is not placed by layout.yaml")));
                    }
                    paths.push(PathRef { path: k.clone(), by: "kube-scheduler.yaml clientConnection.kubeconfig".into(), output: false });
                }
            }
        }
        let insecure_port = match unit.flag("port") {
            Some(f) => f.value.as_deref().and_then(|v| v.parse::<u16>().ok()).filter(|p| *p != 0),
            None => default_insecure_port(&unit.component),
        };
        components.push(Component { unit, manifest, serving_port: port, insecure_port, bind_address, paths });
    }
    let Some(sc_file) = placed(&sc_rel) else {
        return Err(lerr(1, format!("layout.yaml does not place {sc_rel}")));
    };
    if !components.iter().any(|c| c.paths.iter().any(|p| p.path == sc_file.dest)) {
        return Err(lerr(sc_file.line, format!("no unit references {} (e.g. kube-scheduler --config)", sc_file.dest)));
    }

    // Which components restart when a layout file changes.
    let restarts = layout
        .files
        .iter()
        .map(|f| {
            components
                .iter()
                .filter(|c| c.unit.exec == f.dest || f.source == Source::Manifest(c.manifest.clone()) || c.paths.iter().any(|p| p.path == f.dest && !p.output))
                .map(|c| c.unit.component.clone())
                .collect()
        })
        .collect();

    // Service CIDR: the apiserver's, and the controller-manager must agree.
    let api = components.iter().find(|c| c.unit.component == APISERVER);
    if api.is_none() {
        return Err(ManifestError::new(dir.join("units"), 1, format!("no {APISERVER}.service: the plane has no API server")));
    }
    let api_cidr = api.and_then(|c| c.unit.flag("service-cluster-ip-range"));
    let service_cidr = api_cidr.and_then(|f| f.value.clone()).unwrap_or_else(|| APISERVER_DEFAULT_SERVICE_CIDR.into());
    let service_ip = first_address(&service_cidr)
        .ok_or_else(|| {
            let (p, l) = api.map(|c| (dir.join(&c.manifest), api_cidr.map(|f| f.line).unwrap_or(1))).unwrap_or((dir.to_path_buf(), 1));
            ManifestError::new(p, l, format!("--service-cluster-ip-range={service_cidr} is not a CIDR such as 10.32.0.0/24"))
        })?
        .to_string();
    for c in &components {
        if c.unit.component == APISERVER {
            continue;
        }
        if let Some(f) = c.unit.flag("service-cluster-ip-range") {
            if f.value.as_deref() != Some(service_cidr.as_str()) {
                return Err(ManifestError::new(
                    dir.join(&c.manifest),
                    f.line,
                    format!(
                        "{} --service-cluster-ip-range={} disagrees with kube-apiserver's {service_cidr}{}",
                        c.unit.component,
                        f.value.as_deref().unwrap_or(""),
                        if api_cidr.is_none() { " (its default: the flag is absent)" } else { "" }
                    ),
                ));
            }
        }
    }
    let etcd_servers = api.and_then(|c| c.unit.flag("etcd-servers")).and_then(|f| f.value.clone()).map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default();

    Ok(Manifests { components, scheduler_config, scheduler_config_manifest: sc_rel, rbac, layout, restarts, sources, service_cidr, service_ip, etcd_servers, inputs })
}
