//! Desired state: every file bootstrap places, with its bytes' size and
//! sha256, from the assets directory or rendered from the compiled-in
//! manifests (overrides applied, scheduler config rendered for the binary's
//! version). Problems with local assets are collected, not thrown, so
//! preflight can list them all.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::local::files::sha256_hex;

use crate::error::Problem;
use crate::local::cache::HashCache;
use crate::model::overrides::{desired_units, DesiredUnit, Overrides};
use crate::model::version::{render_scheduler_config, Version};
use crate::model::{FileKind, FileSpec, Source, FILES, SCHEDULER_CONFIG};

#[derive(Debug, Clone)]
pub enum Content {
    /// A local asset, opened once: every read (hash, checks, upload) goes
    /// through that handle.
    File(crate::local::files::Asset),
    /// Rendered from a compiled-in manifest.
    Text(String),
}

#[derive(Debug, Clone)]
pub struct DesiredFile {
    pub spec: &'static FileSpec,
    pub content: Content,
    pub size: u64,
    pub sha256: String,
}

impl DesiredFile {
    /// The first bytes, for ELF checks.
    pub fn head(&self, n: usize) -> Vec<u8> {
        match &self.content {
            Content::Text(t) => t.as_bytes().iter().take(n).copied().collect(),
            Content::File(a) => {
                let mut buf = vec![0; n];
                let got = a.reopen().and_then(|mut f| f.read(&mut buf)).unwrap_or(0);
                buf.truncate(got);
                buf
            }
        }
    }

    /// The whole content, for the small files that are parsed (certificates,
    /// keys, kubeconfigs, configs): never more than
    /// [`crate::local::files::SMALL_FILE_LIMIT`] (binaries are streamed).
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match &self.content {
            Content::Text(t) => Ok(t.as_bytes().to_vec()),
            Content::File(a) => a.read_all(crate::local::files::SMALL_FILE_LIMIT).map_err(std::io::Error::other),
        }
    }
}

/// How long a binary's `--version` may take before it is given up on.
pub const VERSION_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Learns a binary's version by running it with `--version` here, for at
/// most `timeout` (then it is killed). Only a regular file is run.
pub fn binary_version(path: &Path, timeout: std::time::Duration) -> Result<Version, crate::error::Unusable> {
    let shown = crate::output::redact::line(&path.display().to_string());
    let line = version_line(path, timeout)?;
    Version::parse(&line).ok_or_else(|| format!("`{shown} --version` printed no version: {}", crate::output::redact::line(&line)).into())
}

/// The first line a binary's `--version` prints (`Kubernetes v1.20.2`),
/// bounded like [`binary_version`].
pub fn version_line(path: &Path, timeout: std::time::Duration) -> Result<String, crate::error::Unusable> {
    let shown = crate::output::redact::line(&path.display().to_string());
    crate::local::files::open_regular(path).map_err(|e| format!("{shown} {e}"))?;
    let out = crate::local::process::output_within(std::process::Command::new(path).arg("--version"), timeout).map_err(|e| format!("cannot run `{shown} --version` here ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first: String = text.trim().lines().next().unwrap_or("").chars().take(80).collect();
    if Version::parse(&first).is_none() {
        return Err(format!("`{shown} --version` printed no version: {}", crate::output::redact::line(&first)).into());
    }
    Ok(crate::output::redact::line(&first))
}

#[derive(Debug, Clone)]
pub struct Desired {
    pub files: Vec<DesiredFile>,
    pub units: Vec<DesiredUnit>,
    /// The kube-scheduler version the scheduler config was rendered for.
    pub scheduler_version: Option<Version>,
    /// sha256 of a unit's binary → its `--version` line, where it could run here.
    pub versions: BTreeMap<String, String>,
}

impl Desired {
    pub fn file(&self, dest: &str) -> Option<&DesiredFile> {
        self.files.iter().find(|f| f.spec.dest == dest)
    }
    pub fn unit(&self, component: crate::model::Component) -> Option<&DesiredUnit> {
        self.units.iter().find(|u| u.spec.component == component)
    }
}

/// A layout file's asset found in the assets directory: opened once (a
/// regular file, checked on the handle; every later read goes through
/// it), then hashed.
struct Found {
    spec: &'static FileSpec,
    path: PathBuf,
    asset: Result<crate::local::files::Asset, String>,
    hash: std::sync::OnceLock<Result<(u64, String), String>>,
}

impl Found {
    fn hashed(&self) -> Option<&(u64, String)> {
        self.hash.get().and_then(|r| r.as_ref().ok())
    }
}

/// Every asset of the layout that is in `assets`, opened.
fn find_assets(assets: &Path) -> Vec<Found> {
    FILES
        .iter()
        .filter_map(|spec| match spec.source {
            Source::Asset(c) => c.iter().map(|c| assets.join(c)).find(|p| p.exists()).map(|path| (spec, path)),
            _ => None,
        })
        .map(|(spec, path)| Found { spec, asset: crate::local::files::Asset::open(&path).map_err(|e| e.to_string()), path, hash: Default::default() })
        .collect()
}

/// Hashes every found asset on up to four cores (hundreds of MiB of
/// binaries), or takes the hash the cache has for a file unchanged since.
fn hash_all(found: &[Found], cache: &HashCache) {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while let Some(f) = found.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
                    let r = match &f.asset {
                        Ok(a) => cache.hash(a, f.spec.kind.is_secret()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = f.hash.set(r);
                }
            });
        }
    });
}

/// What each unit's binary says it is (`Kubernetes v1.20.2`), all at
/// once: the cache's line for this content, else the version its build
/// recorded in it, else the binary's own `--version` (run by its path, only
/// while the path still holds the file that was hashed). With each binary.
fn version_lines<'f>(found: &'f [Found], cache: &HashCache, timeout: std::time::Duration) -> Vec<(&'f Found, Result<String, crate::error::Unusable>)> {
    let binaries = found.iter().filter(|f| f.spec.kind == FileKind::Binary && crate::model::UNITS.iter().any(|u| u.exec == f.spec.dest));
    std::thread::scope(|s| {
        let hs: Vec<_> = binaries
            .map(|f| {
                s.spawn(move || {
                    let known = f.hashed().and_then(|(_, sha)| cache.version(sha));
                    // Read from its bytes (any architecture), else asked of
                    // the binary itself, which runs only if it is built for
                    // this machine (or emulated here).
                    let read = || f.asset.as_ref().ok().and_then(crate::local::files::git_version);
                    let run = || match &f.asset {
                        Ok(a) if a.still_at_path() => version_line(&f.path, timeout.min(VERSION_PROBE_TIMEOUT)),
                        _ => Err(format!("{} changed while it was being read", crate::output::redact::line(&f.path.display().to_string())).into()),
                    };
                    (f, known.or_else(read).map(Ok).unwrap_or_else(run))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("a version probe does not panic")).collect()
    })
}

/// The release the scheduler config is rendered for: `version` when given,
/// else what its reader's binary says. Every binary's line is remembered
/// (`versions`, the cache); a reader that says nothing usable is a problem.
fn scheduler_version(
    lines: Vec<(&Found, Result<String, crate::error::Unusable>)>,
    version: Option<Version>,
    cache: &HashCache,
    versions: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> Option<Version> {
    let reader = crate::model::placed(SCHEDULER_CONFIG.manifest).and_then(|f| f.restarts.first().copied());
    let fix = "pass --kubernetes-version vX.Y (the binaries' release) so the scheduler config renders for it";
    let mut chosen = version;
    for (f, line) in lines {
        let is_reader = reader.is_some_and(|r| f.spec.dest == r.exec()) && chosen.is_none();
        match line {
            Ok(l) => {
                if let Some((_, sha)) = f.hashed() {
                    cache.set_version(sha, &l);
                    versions.insert(sha.clone(), l.clone());
                }
                if is_reader {
                    match Version::parse(&l) {
                        Some(v) => chosen = Some(v),
                        None => problems.push(Problem::check(
                            "scheduler-version",
                            format!("{} version: `--version` printed no version: {}", f.spec.dest, crate::output::redact::line(&l)),
                            fix,
                        )),
                    }
                }
            }
            Err(e) if is_reader => problems.push(Problem::check("scheduler-version", format!("{} version: {e}", f.spec.dest), fix)),
            // Only the scheduler's version decides anything here; the others'
            // are for the report (cpcheck reads them on the server).
            Err(_) => {}
        }
    }
    chosen
}

/// A layout file rendered from the compiled-in manifests: a unit with its
/// overrides, the scheduler config for `version`.
fn rendered(path: &str, text: &str, units: &[DesiredUnit], version: Option<Version>) -> Result<String, Problem> {
    if let Some(u) = units.iter().find(|u| u.spec.manifest == path) {
        return Ok(u.text.clone());
    }
    match version {
        Some(v) if path == SCHEDULER_CONFIG.manifest => render_scheduler_config(v).ok_or_else(|| {
            let reader = crate::model::placed(SCHEDULER_CONFIG.manifest).and_then(|f| f.restarts.first().copied());
            Problem::check("scheduler-version", format!("{} {v} is older than v1.19", reader.map(|r| r.name()).unwrap_or_default()), "use control-plane binaries of v1.19 or newer")
        }),
        _ => Ok(text.to_string()),
    }
}

/// One layout file as desired, or why it cannot be.
fn desired_file(spec: &'static FileSpec, assets: &Path, found: &[Found], units: &[DesiredUnit], version: Option<Version>) -> Result<DesiredFile, Problem> {
    match spec.source {
        Source::Asset(candidates) => {
            let Some(f) = found.iter().find(|f| std::ptr::eq(f.spec, spec)) else {
                return Err(Problem::check(
                    "asset-missing",
                    format!("missing asset {} (for {})", crate::output::redact::line(&assets.join(candidates[0]).display().to_string()), spec.dest),
                    format!("put it at {} in the assets directory, or pass --assets DIR", candidates.join(" or ")),
                ));
            };
            let hashed = f.hash.get().cloned().expect("every found asset was hashed");
            match hashed.and_then(|h| f.asset.clone().map(|a| (h, a))) {
                Ok(((size, sha256), a)) => Ok(DesiredFile { spec, content: Content::File(a), size, sha256 }),
                Err(e) => Err(Problem::check(
                    "asset-unreadable",
                    format!("asset {} {e}", crate::output::redact::line(&f.path.display().to_string())),
                    format!("put the {} file there (for {})", if spec.kind == FileKind::Binary { "binary" } else { "regular" }, spec.dest),
                )),
            }
        }
        Source::Manifest { path, text } => {
            let text = rendered(path, text, units, version)?;
            Ok(DesiredFile { spec, size: text.len() as u64, sha256: sha256_hex(text.as_bytes()), content: Content::Text(text) })
        }
    }
}

/// Resolves every layout file against `assets` and the manifests.
/// `version` overrides the version learnt from the kube-scheduler binary,
/// whose `--version` probe may take at most `probe_timeout`.
pub fn build(assets: &Path, overrides: &Overrides, version: Option<Version>, probe_timeout: std::time::Duration, cache: &HashCache) -> (Desired, Vec<Problem>) {
    let units = desired_units(overrides);
    let mut problems = Vec::new();
    let found = find_assets(assets);
    hash_all(&found, cache);
    let mut versions = BTreeMap::new();
    let scheduler_version = scheduler_version(version_lines(&found, cache, probe_timeout), version, cache, &mut versions, &mut problems);
    let mut files = Vec::new();
    for spec in FILES {
        match desired_file(spec, assets, &found, &units, scheduler_version) {
            Ok(f) => files.push(f),
            Err(p) => problems.push(p),
        }
    }
    (Desired { files, units, scheduler_version, versions }, problems)
}

/// The serving port each component listens on, from the desired flags.
pub fn serving_ports(d: &Desired) -> BTreeMap<crate::model::Component, u16> {
    d.units.iter().map(|u| (u.spec.component, u.serving_port())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_assets_are_each_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (d, problems) =
            build(dir.path(), &Overrides::default(), Some(Version { major: 1, minor: 32 }), std::time::Duration::from_secs(5), &crate::local::cache::HashCache::disabled());
        let assets = FILES.iter().filter(|f| matches!(f.source, Source::Asset(_))).count();
        assert_eq!(problems.len(), assets, "{problems:#?}");
        assert!(problems.iter().all(|p| p.what.starts_with("missing asset")));
        // Compiled-in files are still desired.
        assert!(d.file("/etc/systemd/system/kube-apiserver.service").is_some());
    }
}
