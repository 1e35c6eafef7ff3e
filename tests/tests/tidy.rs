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

/// Non-test Rust source of `dir` (relative to the workspace): each file's
/// path and its text up to its `#[cfg(test)]` module (the tests sit last
/// in every file here); test-only files left out.
fn library_code(dirs: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in rust_files() {
        let rel = p.strip_prefix(root()).unwrap().display().to_string();
        if !dirs.iter().any(|d| rel.starts_with(d)) || rel.ends_with("/tests.rs") || rel.ends_with("/testing.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
        out.push((rel, code));
    }
    out
}

/// The string literals of Rust source, with their line: comments, char
/// literals and raw strings are read as rustc reads them.
fn string_literals(code: &str) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < b.len() {
        match b[i] {
            b'\n' => line += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    line += usize::from(b[i] == b'\n');
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || (b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'')) => {
                i += if b[i + 1] == b'\\' { 4 } else { 3 };
                continue;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) => {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) == Some(&b'"') {
                    let start = i + 2 + hashes;
                    let end_mark = format!("\"{}", "#".repeat(hashes));
                    let end = code[start..].find(&end_mark).map(|e| start + e).unwrap_or(b.len());
                    out.push((line, code[start..end].to_string()));
                    line += code[start..end].matches('\n').count();
                    i = end + end_mark.len();
                    continue;
                }
            }
            b'"' => {
                let (start, at) = (i + 1, line);
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    line += usize::from(b.get(i) == Some(&b'\n'));
                    i += 1;
                }
                out.push((at, code[start..i.min(b.len())].to_string()));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Does `text` hold `name` as a whole name or path (not as part of a longer one)?
fn names(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (name.contains('/') && c == '.');
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(|c| part(c) && !name.starts_with('/')) && !after.is_some_and(part)
    })
}

/// Components, unit files, the layout's paths and the assets' names come
/// from the generated constants: non-test code spells none of them.
#[test]
fn no_component_unit_layout_path_or_asset_name_is_a_literal() {
    use controlplane::model::{Source, ADMIN_KUBECONFIG, DIRECTORIES, FILES, UNITS};
    let mut forbidden: Vec<String> = UNITS.iter().flat_map(|u| [u.name.to_string(), u.file_name.to_string()]).collect();
    forbidden.extend(DIRECTORIES.iter().map(|d| d.path.to_string()));
    forbidden.extend(FILES.iter().map(|f| f.dest.to_string()));
    for f in FILES {
        if let Source::Asset(c) = f.source {
            forbidden.extend(c.iter().filter(|a| a.contains('/') || a.contains('.')).map(|a| a.to_string()));
        }
    }
    forbidden.push(ADMIN_KUBECONFIG.into());
    assert!(forbidden.len() > 20, "{forbidden:?}");
    let mut found = Vec::new();
    for (file, code) in library_code(&["controlplane/src", "cli/src", "kubectl-bootstrap/src", "kubectl-cpcheck/src"]) {
        for (line, lit) in string_literals(&code) {
            if let Some(f) = forbidden.iter().find(|f| names(&lit, f)) {
                found.push(format!("{file}:{line}: `{f}` in \"{lit}\""));
            }
        }
    }
    assert!(found.is_empty(), "use the generated constants (controlplane::model) instead:\n{}", found.join("\n"));
}

#[test]
fn the_literal_scan_sees_what_it_must() {
    let lits = string_literals("let a = \"x\\\"y\"; // \"no\"\nlet c = '\"'; let r = r#\"raw \"q\"\"#; /* \"no\" */ f(\"z\");");
    assert_eq!(lits, vec![(1, "x\\\"y".into()), (2, "raw \"q\"".into()), (2, "z".into())]);
    assert!(names("restart kube-apiserver now", "kube-apiserver"));
    assert!(names("kube-apiserver.service", "kube-apiserver"));
    assert!(!names("system:kube-apiserver-to-kubelet", "kube-apiserver"));
    assert!(names("/etc/systemd/system/x", "/etc/systemd/system"));
    assert!(!names("/etc/systemd/system.control/", "/etc/systemd/system"));
}

/// A function a reader can hold in their head: none longer than 80 lines
/// in the library (tests and data tables aside).
#[test]
fn library_functions_are_short() {
    let mut long = Vec::new();
    for (file, code) in library_code(&["controlplane/src"]) {
        let lines: Vec<&str> = code.lines().collect();
        let mut k = 0;
        while k < lines.len() {
            let t = lines[k].trim_start();
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "async fn ", "pub async fn ", "pub(crate) async fn ", "pub(super) fn ", "const fn ", "pub const fn "]
                .iter()
                .any(|p| t.starts_with(p));
            if !is_fn {
                k += 1;
                continue;
            }
            let (mut depth, mut opened, mut j) = (0i32, false, k);
            while j < lines.len() {
                let code_part = lines[j].split("//").next().unwrap_or("");
                let mut in_str = false;
                for c in code_part.chars() {
                    match c {
                        '"' => in_str = !in_str,
                        '{' if !in_str => {
                            depth += 1;
                            opened = true
                        }
                        '}' if !in_str => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth == 0) || (!opened && code_part.trim_end().ends_with(';')) {
                    break;
                }
                j += 1;
            }
            if j + 1 - k > 80 {
                long.push(format!("{file}:{}: {} lines", k + 1, j + 1 - k));
            }
            k = j + 1;
        }
    }
    assert!(long.is_empty(), "split these into named steps:\n{}", long.join("\n"));
}

/// Layers: kube, remote and local know nothing of bootstrap or cpcheck;
/// cpcheck nothing of bootstrap; the model nothing of any of them.
#[test]
fn the_library_imports_only_downwards() {
    let rules: &[(&str, &[&str])] = &[
        ("controlplane/src/model", &["crate::bootstrap", "crate::cpcheck", "crate::remote", "crate::kube"]),
        ("controlplane/src/local", &["crate::bootstrap", "crate::cpcheck", "crate::remote", "crate::kube"]),
        ("controlplane/src/remote", &["crate::bootstrap", "crate::cpcheck"]),
        ("controlplane/src/kube", &["crate::bootstrap", "crate::cpcheck"]),
        ("controlplane/src/pki", &["crate::bootstrap", "crate::cpcheck", "crate::remote"]),
        ("controlplane/src/cpcheck", &["crate::bootstrap"]),
    ];
    let mut found = Vec::new();
    for (dir, banned) in rules {
        for (file, code) in library_code(&[dir]) {
            for b in *banned {
                if code.contains(b) {
                    found.push(format!("{file}: uses {b}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The library's public functions return typed errors, never a `String`.
#[test]
fn no_public_library_function_returns_a_string_error() {
    let mut found = Vec::new();
    for (file, code) in library_code(&["controlplane/src"]) {
        for (n, l) in code.lines().enumerate() {
            let t = l.trim_start();
            if (t.starts_with("pub fn ") || t.starts_with("pub async fn ")) && t.contains(", String>") && t.contains("Result<") {
                found.push(format!("{file}:{}: {}", n + 1, t.trim_end_matches('{').trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// ARCHITECTURE.md names only modules that exist (the other way is
/// `every_library_module_is_named_in_architecture_md`), and its CIS row
/// shape is the code's.
#[test]
fn architecture_md_names_no_module_that_is_gone() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let src = root().join("controlplane/src");
    let section = arch.split("## controlplane, by audience").nth(1).expect("the module table").split("\n## ").next().unwrap();
    let mut gone = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let name = row[3..].split('`').next().unwrap();
        let exists = match name.strip_suffix('/') {
            Some(dir) => src.join(dir).join("mod.rs").is_file(),
            None => src.join(format!("{name}.rs")).is_file(),
        };
        if !exists {
            gone.push(name.to_string());
        }
    }
    assert!(gone.is_empty(), "ARCHITECTURE.md names modules that do not exist: {gone:?}");
}

/// Every dependency a crate declares is used by its code (cargo-machete's
/// rule: the crate's name appears in its sources), except the ones that
/// only pin a feature, each listed here with why.
#[test]
fn no_crate_declares_a_dependency_it_does_not_use() {
    // (crate, dependency, why it is there unused by name)
    let pins: &[(&str, &str, &str)] =
        &[("kubectl-bootstrap", "k8s-openapi", "selects the Kubernetes API version feature"), ("kubectl-cpcheck", "k8s-openapi", "selects the Kubernetes API version feature")];
    let mut unused = Vec::new();
    for krate in ["unitfile", "codegen", "controlplane", "cli", "kubectl-bootstrap", "kubectl-cpcheck", "testbed", "xtask", "tests"] {
        let manifest = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
        let deps: Vec<String> = manifest
            .split("\n[")
            .filter(|s| s.starts_with("dependencies]") || s.starts_with("build-dependencies]"))
            .flat_map(|s| s.lines().skip(1).filter_map(|l| l.split('=').next()).map(|n| n.trim().to_string()).filter(|n| !n.is_empty() && !n.starts_with('#')).collect::<Vec<_>>())
            .collect();
        assert!(manifest.contains("[dependencies]") || deps.is_empty(), "{krate}");
        let mut code = String::new();
        for p in rust_files().into_iter().filter(|p| p.strip_prefix(root()).unwrap().starts_with(krate)) {
            code.push_str(&std::fs::read_to_string(p).unwrap());
        }
        for d in deps {
            let ident = d.replace('-', "_");
            let used = [format!("{ident}::"), format!("use {ident}"), format!("extern crate {ident}"), format!("{ident}!")].iter().any(|p| code.contains(p.as_str()));
            if !used && !pins.iter().any(|(k, n, _)| *k == krate && *n == d) {
                unused.push(format!("{krate}: {d}"));
            }
        }
    }
    assert!(unused.is_empty(), "declared but not used (remove them, or list a feature pin here with why): {unused:?}");
}

/// The plugins carry no code generator: prettyplease and codegen are build
/// dependencies only (syn and quote come in as derive macros' own).
#[test]
fn the_plugins_carry_no_code_generator() {
    for plugin in ["kubectl-bootstrap", "kubectl-cpcheck"] {
        let out = Command::new(env!("CARGO")).current_dir(root()).args(["tree", "--offline", "-p", plugin, "-e", "normal", "--prefix", "none"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.lines().any(|l| l.starts_with("controlplane ")), "{plugin}: {tree}");
        let generators: Vec<&str> = tree.lines().filter(|l| l.starts_with("prettyplease ") || l.starts_with("codegen ")).collect();
        assert!(generators.is_empty(), "{plugin} depends at run time on {generators:?}");
    }
}
