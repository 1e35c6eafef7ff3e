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
pub fn binary_version(path: &Path, timeout: std::time::Duration) -> Result<Version, String> {
    let shown = crate::output::redact::line(&path.display().to_string());
    let line = version_line(path, timeout)?;
    Version::parse(&line).ok_or_else(|| format!("`{shown} --version` printed no version: {}", crate::output::redact::line(&line)))
}

/// The first line a binary's `--version` prints (`Kubernetes v1.20.2`),
/// bounded like [`binary_version`].
pub fn version_line(path: &Path, timeout: std::time::Duration) -> Result<String, String> {
    let shown = crate::output::redact::line(&path.display().to_string());
    crate::local::files::open_regular(path).map_err(|e| format!("{shown} {e}"))?;
    let out = crate::local::process::output_within(std::process::Command::new(path).arg("--version"), timeout).map_err(|e| format!("cannot run `{shown} --version` here ({e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first: String = text.trim().lines().next().unwrap_or("").chars().take(80).collect();
    if Version::parse(&first).is_none() {
        return Err(format!("`{shown} --version` printed no version: {}", crate::output::redact::line(&first)));
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
    pub fn unit(&self, component: &str) -> Option<&DesiredUnit> {
        self.units.iter().find(|u| u.spec.component == component)
    }
}

/// Resolves every layout file against `assets` and the manifests.
/// `version` overrides the version learnt from the kube-scheduler binary,
/// whose `--version` probe may take at most `probe_timeout`.
pub fn build(assets: &Path, overrides: &Overrides, version: Option<Version>, probe_timeout: std::time::Duration, cache: &HashCache) -> (Desired, Vec<Problem>) {
    let units = desired_units(overrides);
    let mut problems = Vec::new();
    let mut files = Vec::new();
    // Hash the assets on every core (hundreds of MiB of binaries), or take
    // the hashes the cache has for files unchanged since.
    let found: Vec<(usize, PathBuf)> = FILES
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| match spec.source {
            Source::Asset(c) => c.iter().map(|c| assets.join(c)).find(|p| p.exists()).map(|p| (i, p)),
            _ => None,
        })
        .collect();
    // Each opened once (a regular file, checked on the handle); every later
    // read goes through that handle.
    let opened: BTreeMap<usize, Result<crate::local::files::Asset, String>> = found.iter().map(|(i, p)| (*i, crate::local::files::Asset::open(p))).collect();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Hashed = BTreeMap<usize, Result<(u64, String), String>>;
    let hashed: std::sync::Mutex<Hashed> = Default::default();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((i, _)) = found.get(k) else { break };
                let r = match &opened[i] {
                    Ok(a) => cache.hash(a, FILES[*i].kind.is_secret()),
                    Err(e) => Err(e.clone()),
                };
                hashed.lock().expect("hash results").insert(*i, r);
            });
        }
    });
    // The version decides how the scheduler config renders: the cache's for
    // this content, else the binary's own `--version`.
    // What each unit's binary says it is (`Kubernetes v1.20.2`): the cache's
    // line for this content, else the binary's own `--version`, all at once.
    // The scheduler's decides how the scheduler config renders.
    let binaries: Vec<(usize, PathBuf, Option<String>)> = found
        .iter()
        .filter(|(i, _)| FILES[*i].kind == FileKind::Binary && crate::model::UNITS.iter().any(|u| u.exec == FILES[*i].dest))
        .map(|(i, p)| (*i, p.clone(), hashed.lock().expect("hash results").get(i).and_then(|r| r.as_ref().ok()).map(|(_, s)| s.clone())))
        .collect();
    let lines: Vec<(usize, Option<String>, Result<String, String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = binaries
            .iter()
            .map(|(i, p, sha)| {
                let opened = &opened;
                s.spawn(move || {
                    let known = sha.as_deref().and_then(|s| cache.version(s));
                    // Run by its path (a program is run, not read): only while
                    // the path still holds the file that was hashed.
                    let run = || match &opened[i] {
                        Ok(a) if a.still_at_path() => version_line(p, probe_timeout.min(VERSION_PROBE_TIMEOUT)),
                        _ => Err(format!("{} changed while it was being read", crate::output::redact::line(&p.display().to_string()))),
                    };
                    (*i, sha.clone(), known.map(Ok).unwrap_or_else(run))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("a version probe does not panic")).collect()
    });
    let mut versions = BTreeMap::new();
    let mut scheduler_version = version;
    for (i, sha, line) in lines {
        let is_scheduler = FILES[i].dest.ends_with("/kube-scheduler");
        match line {
            Ok(l) => {
                if let Some(s) = &sha {
                    cache.set_version(s, &l);
                    versions.insert(s.clone(), l.clone());
                }
                if is_scheduler && scheduler_version.is_none() {
                    match Version::parse(&l) {
                        Some(v) => scheduler_version = Some(v),
                        None => problems.push(Problem::new(
                            format!("kube-scheduler version: `--version` printed no version: {}", crate::output::redact::line(&l)),
                            "pass --kubernetes-version vX.Y (the binaries' release) so the scheduler config renders for it",
                        )),
                    }
                }
            }
            Err(e) if is_scheduler && scheduler_version.is_none() => {
                problems.push(Problem::new(format!("kube-scheduler version: {e}"), "pass --kubernetes-version vX.Y (the binaries' release) so the scheduler config renders for it"))
            }
            // Another architecture's binaries say nothing here: cpcheck asks them on the server.
            Err(_) => {}
        }
    }
    let mut hashed = hashed.into_inner().expect("hash results");
    for (i, spec) in FILES.iter().enumerate() {
        match spec.source {
            Source::Asset(candidates) => {
                let Some((p, asset)) = found.iter().find(|(j, _)| *j == i).map(|x| (x.1.clone(), opened[&i].clone())) else {
                    problems.push(Problem::new(
                        format!("missing asset {} (for {})", crate::output::redact::line(&assets.join(candidates[0]).display().to_string()), spec.dest),
                        format!("put it at {} in the assets directory, or pass --assets DIR", candidates.join(" or ")),
                    ));
                    continue;
                };
                match hashed.remove(&i).expect("every found asset was hashed").and_then(|h| asset.map(|a| (h, a))) {
                    Ok(((size, sha256), a)) => files.push(DesiredFile { spec, content: Content::File(a), size, sha256 }),
                    Err(e) => problems.push(Problem::new(
                        format!("asset {} {e}", crate::output::redact::line(&p.display().to_string())),
                        format!("put the {} file there (for {})", if spec.kind == FileKind::Binary { "binary" } else { "regular" }, spec.dest),
                    )),
                }
            }
            Source::Manifest { path, text } => {
                let text = if let Some(u) = units.iter().find(|u| u.spec.manifest == path) {
                    u.text.clone()
                } else if path == SCHEDULER_CONFIG.manifest {
                    match scheduler_version {
                        Some(v) => match render_scheduler_config(v) {
                            Some(t) => t,
                            None => {
                                problems.push(Problem::new(format!("kube-scheduler {v} is older than v1.19"), "use control-plane binaries of v1.19 or newer"));
                                continue;
                            }
                        },
                        None => text.to_string(),
                    }
                } else {
                    text.to_string()
                };
                let sha256 = sha256_hex(text.as_bytes());
                files.push(DesiredFile { spec, size: text.len() as u64, sha256, content: Content::Text(text) });
            }
        }
    }
    (Desired { files, units, scheduler_version, versions }, problems)
}

/// The serving port each component listens on, from the desired flags.
pub fn serving_ports(d: &Desired) -> BTreeMap<&'static str, u16> {
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
