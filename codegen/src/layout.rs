//! `manifests/layout.yaml`: which file lands where on the server, with which
//! mode, and where its bytes come from.

use std::path::Path;

use serde::Deserialize;

use crate::yaml::{line_of_item, yaml_err};
use crate::ManifestError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLayout {
    kubernetes_version: String,
    admin_kubeconfig: String,
    directories: Vec<RawDir>,
    files: Vec<RawFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    path: String,
    mode: String,
    /// Bootstrap made it and `reset` may remove it once empty.
    #[serde(default)]
    owned: bool,
    /// Bootstrap's own state on the server (the pending-work marker): exactly
    /// one directory, owned, 0700.
    #[serde(default)]
    state: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    dest: String,
    mode: String,
    #[serde(default)]
    kind: Option<FileKind>,
    from: RawSource,
    #[serde(default = "root")]
    owner: String,
    #[serde(default = "root")]
    group: String,
}

fn root() -> String {
    "root".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Binary,
    Certificate,
    Key,
    Kubeconfig,
    Secret,
    Config,
    Unit,
}

impl FileKind {
    /// Every kind, in declaration order.
    pub const ALL: &'static [FileKind] = &[FileKind::Binary, FileKind::Certificate, FileKind::Key, FileKind::Kubeconfig, FileKind::Secret, FileKind::Config, FileKind::Unit];

    /// Holds private key material or credentials (keys, kubeconfigs, the
    /// encryption config): never printed or diffed, mode must be 0600.
    pub fn is_secret(self) -> bool {
        matches!(self, FileKind::Key | FileKind::Kubeconfig | FileKind::Secret)
    }
    pub fn ident(self) -> &'static str {
        match self {
            FileKind::Binary => "Binary",
            FileKind::Certificate => "Certificate",
            FileKind::Key => "Key",
            FileKind::Kubeconfig => "Kubeconfig",
            FileKind::Secret => "Secret",
            FileKind::Config => "Config",
            FileKind::Unit => "Unit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    asset: Option<Vec<String>>,
    manifest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Candidate paths relative to the assets directory; the first present wins.
    Asset(Vec<String>),
    /// A path relative to manifests/.
    Manifest(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub path: String,
    pub mode: u32,
    pub owned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub dest: String,
    pub mode: u32,
    pub kind: FileKind,
    pub source: Source,
    pub owner: String,
    pub group: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub kubernetes_version: String,
    /// The admin kubeconfig in the assets directory (the RBAC step's
    /// default credential; it stays on the jumpbox).
    pub admin_kubeconfig: String,
    pub directories: Vec<Dir>,
    pub files: Vec<File>,
    /// The directory marked `state: true`.
    pub state_dir: String,
}

fn mode(path: &Path, line: usize, s: &str) -> Result<u32, ManifestError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777 && s.len() == 4)
        .ok_or_else(|| ManifestError::new(path, line, format!("mode `{s}` is not a four-digit octal mode such as \"0644\"")))
}

pub fn parse_layout(path: &Path, text: &str) -> Result<Layout, ManifestError> {
    let raw: RawLayout = serde_yaml::from_str(text).map_err(|e| yaml_err(path, 0, &e))?;
    let err = |line, m: String| ManifestError::new(path, line, m);
    let mut directories = Vec::new();
    let mut state_dir: Option<(String, usize)> = None;
    for (n, d) in raw.directories.iter().enumerate() {
        let line = line_of_item(text, 1, "directories", n);
        if !d.path.starts_with('/') {
            return Err(err(line, format!("directory `{}` is not an absolute path", d.path)));
        }
        let m = mode(path, line, &d.mode)?;
        if d.state {
            if let Some((_, first)) = &state_dir {
                return Err(err(line, format!("only one directory may be `state: true` (the first is at line {first})")));
            }
            if !d.owned || m != 0o700 {
                return Err(err(line, format!("{}: the state directory must be `owned: true` and mode \"0700\"", d.path)));
            }
            state_dir = Some((d.path.trim_end_matches('/').to_string(), line));
        }
        directories.push(Dir { path: d.path.trim_end_matches('/').to_string(), mode: m, owned: d.owned });
    }
    let Some((state_dir, _)) = state_dir else {
        return Err(err(1, "no directory is `state: true`: bootstrap needs one of its own (e.g. /var/lib/kubectl-bootstrap)".into()));
    };
    let mut files: Vec<File> = Vec::new();
    for (n, f) in raw.files.iter().enumerate() {
        let line = line_of_item(text, 1, "files", n);
        if !f.dest.starts_with('/') {
            return Err(err(line, format!("dest `{}` is not an absolute path", f.dest)));
        }
        if let Some(prev) = files.iter().find(|p| p.dest == f.dest) {
            return Err(err(line, format!("{} is placed twice (first at line {})", f.dest, prev.line)));
        }
        let parent = f.dest.rsplit_once('/').map(|x| x.0).unwrap_or("/");
        if !directories.iter().any(|d| d.path == parent) {
            return Err(err(line, format!("{} goes to {parent}, which is not listed under directories", f.dest)));
        }
        let m = mode(path, line, &f.mode)?;
        let kind = f.kind.unwrap_or(if m & 0o111 != 0 { FileKind::Binary } else { FileKind::Config });
        if kind.is_secret() && m != 0o600 {
            return Err(err(line, format!("{} holds secrets ({:?}) and must be mode \"0600\", not \"{}\"", f.dest, kind, f.mode)));
        }
        let source = match (&f.from.asset, &f.from.manifest) {
            (Some(c), None) => Source::Asset(c.clone()),
            (None, Some(m)) => Source::Manifest(m.clone()),
            _ => return Err(err(line, format!("{}: `from` needs exactly one of `asset: [paths]` or `manifest: path`", f.dest))),
        };
        match &source {
            Source::Asset(c) if c.is_empty() => return Err(err(line, format!("{}: `from: asset` lists no candidate path", f.dest))),
            Source::Asset(c) if c.iter().any(|p| p.starts_with('/') || p.split('/').any(|s| s == "..")) => {
                return Err(err(line, format!("{}: asset paths are relative to the assets directory and may not leave it", f.dest)))
            }
            _ => {}
        }
        files.push(File { dest: f.dest.clone(), mode: m, kind, source, owner: f.owner.clone(), group: f.group.clone(), line });
    }
    if !raw.kubernetes_version.starts_with('v') {
        return Err(err(1, format!("kubernetesVersion `{}` must look like v1.32.3", raw.kubernetes_version)));
    }
    let a = &raw.admin_kubeconfig;
    if a.is_empty() || a.starts_with('/') || a.split('/').any(|s| s == "..") {
        return Err(err(1, format!("adminKubeconfig `{a}`: a path relative to the assets directory that does not leave it")));
    }
    Ok(Layout { kubernetes_version: raw.kubernetes_version, admin_kubeconfig: raw.admin_kubeconfig, directories, files, state_dir })
}
