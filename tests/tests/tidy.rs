//! Tidy: rules the repository keeps by itself (rust-analyzer's tidy tests):
//! rustfmt is clean, every module says what it is and is named in
//! ARCHITECTURE.md, and no package registry's or archive's address is
//! written anywhere (the machine's own configuration says where they are).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    e2e::workspace()
}

/// Every Rust file of the workspace's crates (not target/).
fn rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | "manifests" | "docs") {
                    stack.push(p);
                }
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rustfmt_is_clean() {
    let out = Command::new(env!("CARGO")).current_dir(root()).args(["fmt", "--all", "--", "--check"]).output().unwrap();
    assert!(out.status.success(), "cargo fmt --all would change:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn every_module_says_what_it_is() {
    let undocumented: Vec<String> =
        rust_files().into_iter().filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!")).map(|p| p.strip_prefix(root()).unwrap().display().to_string()).collect();
    assert!(undocumented.is_empty(), "no `//!` module doc: {undocumented:?}");
}

#[test]
fn every_library_module_is_named_in_architecture_md() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let src = root().join("controlplane/src");
    let mut missing = Vec::new();
    for p in rust_files().into_iter().filter(|p| p.starts_with(&src)) {
        let rel = p.strip_prefix(&src).unwrap().with_extension("");
        let rel = rel.display().to_string();
        let name = match rel.as_str() {
            "lib" => continue,
            r if r.ends_with("/mod") => format!("{}/", r.trim_end_matches("/mod")),
            r => r.to_string(),
        };
        if !arch.contains(&format!("`{name}`")) {
            missing.push(name);
        }
    }
    for krate in ["unitfile", "codegen", "controlplane", "cli", "kubectl-bootstrap", "kubectl-cpcheck", "testbed", "xtask", "tests"] {
        if !arch.contains(&format!("`{krate}/`")) {
            missing.push(format!("{krate}/"));
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name (in backquotes): {missing:?}");
}

#[test]
fn no_package_registry_or_archive_address_is_written_down() {
    let files = Command::new("git").current_dir(root()).args(["ls-files", "-z"]).output().unwrap();
    assert!(files.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&files.stdout).split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect();
    assert!(names.len() > 50, "git ls-files listed {} files", names.len());
    let addresses = [
        "deb.debian.org",
        "security.debian.org",
        "snapshot.debian.org",
        "ftp.debian.org",
        "crates.io",
        "static.rust-lang.org",
        "pypi.org",
        "registry.npmjs.org",
        "proxy.golang.org",
        "dl.k8s.io",
    ];
    let mut found = Vec::new();
    for n in names.iter().filter(|n| n.as_str() != "Cargo.lock") {
        let Ok(text) = std::fs::read_to_string(Path::new(&root()).join(n)) else { continue };
        for a in addresses {
            // This file names them to look for them.
            if text.contains(a) && n != "tests/tests/tidy.rs" {
                found.push(format!("{n}: {a}"));
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
}
