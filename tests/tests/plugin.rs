//! The plugins as users install them: on PATH for kubectl, with completion,
//! and as release archives with krew manifests.

use std::path::Path;
use std::process::Command;

fn xtask(args: &[&str]) {
    let st = Command::new(env!("CARGO")).current_dir(e2e::workspace()).args(["run", "--quiet", "-p", "xtask", "--"]).args(args).status().unwrap();
    assert!(st.success(), "cargo xtask {args:?} failed");
}

fn kubectl(path: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl").env("PATH", path).args(args).output().expect("kubectl is on this machine");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn installed_on_path_kubectl_finds_runs_and_completes_them() {
    let prefix = tempfile_dir("install");
    xtask(&["install", "--prefix", prefix.to_str().unwrap()]);
    let bin = prefix.join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    let (ok, out, err) = kubectl(&path, &["plugin", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{}/kubectl-bootstrap", bin.display())), "{out}");
    assert!(out.contains(&format!("{}/kubectl-cpcheck", bin.display())), "{out}");

    let (ok, out, _) = kubectl(&path, &["bootstrap", "--help"]);
    assert!(ok);
    assert!(out.contains("Usage: kubectl bootstrap <COMMAND>") && out.contains("server") && out.contains("reset"), "{out}");
    let (ok, out, _) = kubectl(&path, &["cpcheck", "--help"]);
    assert!(ok);
    assert!(out.contains("Usage: kubectl cpcheck") && out.contains("--ssh <DESTINATION>") && out.contains("--kubeconfig <FILE>"), "{out}");
    let (ok, out, _) = kubectl(&path, &["bootstrap", "--version"]);
    assert!(ok);
    assert_eq!(out.trim(), format!("kubectl bootstrap {} (manifests for Kubernetes {})", env!("CARGO_PKG_VERSION"), controlplane::model::KUBERNETES_VERSION));

    // kubectl's plugin completion: candidates one per line, then a directive.
    let (ok, out, err) = kubectl(&path, &["__complete", "bootstrap", ""]);
    assert!(ok, "{err}");
    let values: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    for want in ["server", "reset", "manifests", "completion"] {
        assert!(values.contains(&want), "{want} missing from {out}");
    }
    assert_eq!(values.last(), Some(&":4"), "{out}");
    let (ok, out, _) = kubectl(&path, &["__complete", "cpcheck", "--o"]);
    assert!(ok);
    let values: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(values, ["--output", "--only", ":4"], "{out}");

    // Direct completion scripts.
    let (ok, out, _) = kubectl(&path, &["bootstrap", "completion", "bash"]);
    assert!(ok && out.contains("complete -F"), "{out}");
    let out = Command::new(bin.join("kubectl-bootstrap")).args(["completion", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn tempfile_dir(label: &str) -> std::path::PathBuf {
    let d = e2e::workspace().join("target/e2e-tmp").join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn yaml(p: &Path) -> serde_json::Value {
    let v: serde_yaml_value::Value = serde_yaml_value::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    serde_json::to_value(v).unwrap()
}

mod serde_yaml_value {
    pub use serde_yaml::{from_str, Value};
}

/// The highest `GLIBC_x.y` symbol version a binary asks for (None for a
/// static binary, which asks for none).
fn highest_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    let mark = b"GLIBC_";
    bytes
        .windows(mark.len())
        .enumerate()
        .filter(|(_, w)| *w == mark)
        .filter_map(|(i, _)| {
            let rest = &bytes[i + mark.len()..(i + mark.len() + 8).min(bytes.len())];
            let s: String = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b'.').map(|b| *b as char).collect();
            let mut it = s.split('.');
            Some((it.next()?.parse().ok()?, it.next().unwrap_or("0").parse().ok()?))
        })
        .max()
}

#[test]
fn dist_archives_and_krew_manifests_agree() {
    let out = tempfile_dir("dist");
    xtask(&["dist", "--out", out.to_str().unwrap()]);
    // The arm64 binaries run here under qemu-user (binfmt_misc).
    assert!(Command::new("bash").arg(e2e::workspace().join("scripts/binfmt.sh")).arg("arm64").status().unwrap().success());
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    for name in ["bootstrap", "cpcheck"] {
        let exe = format!("kubectl-{name}");
        let m = yaml(&out.join("plugins").join(format!("{name}.yaml")));
        assert_eq!(m["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
        assert_eq!(m["kind"], "Plugin");
        assert_eq!(m["metadata"]["name"], name);
        let spec = &m["spec"];
        assert_eq!(spec["version"], version.as_str());
        assert!(spec["homepage"].as_str().unwrap().starts_with("https://"));
        assert!(!spec["shortDescription"].as_str().unwrap().is_empty());
        assert!(spec["description"].as_str().unwrap().len() > 50);
        assert!(spec["caveats"].as_str().unwrap().contains(&format!("kubectl_complete-{name}")));
        // krew's rules: selectors unique; each sha256 its archive's; every
        // `bin` and `files.from` inside the archive.
        let platforms = spec["platforms"].as_array().unwrap();
        let selectors: std::collections::BTreeSet<String> = platforms.iter().map(|p| p["selector"].to_string()).collect();
        assert_eq!(selectors.len(), platforms.len(), "selectors are unique: {selectors:?}");
        let arches: Vec<&str> = platforms.iter().map(|p| p["selector"]["matchLabels"]["arch"].as_str().unwrap()).collect();
        assert_eq!(arches, ["amd64", "arm64"]);
        let mut version_lines = Vec::new();
        for p in platforms {
            let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
            assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
            assert_eq!(p["bin"], exe.as_str());
            let file = format!("{exe}_{version}_linux_{arch}.tar.gz");
            assert!(p["uri"].as_str().unwrap().ends_with(&format!("/{version}/{file}")));
            let archive = out.join(&file);
            let sha = controlplane::local::files::sha256_hex(&std::fs::read(&archive).unwrap());
            assert_eq!(p["sha256"], sha.as_str(), "sha256 of {file}");
            let listing = String::from_utf8(Command::new("tar").arg("tzf").arg(&archive).output().unwrap().stdout).unwrap();
            let entries: Vec<&str> = listing.lines().collect();
            let mut named: Vec<&str> = p["files"].as_array().unwrap().iter().map(|f| f["from"].as_str().unwrap()).collect();
            named.push(p["bin"].as_str().unwrap());
            for want in named {
                assert!(entries.contains(&want), "{want} not in {file}: {entries:?}");
            }
            let unpack = out.join(format!("unpack-{name}-{arch}"));
            std::fs::create_dir_all(&unpack).unwrap();
            assert!(Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&unpack).status().unwrap().success());
            let bin = std::fs::read(unpack.join(&exe)).unwrap();
            // Built for its platform, and runnable on any glibc: static.
            let want = controlplane::model::arch::Arch::from_uname(arch).unwrap();
            assert_eq!(controlplane::model::arch::Elf::of(&bin[..20]), controlplane::model::arch::Elf::Executable(want), "{file}");
            assert_eq!(highest_glibc(&bin), None, "{file} asks for a glibc version");
            let headers = String::from_utf8(Command::new("readelf").arg("-lW").arg(unpack.join(&exe)).output().unwrap().stdout).unwrap();
            assert!(!headers.contains("Requesting program interpreter"), "{file} is dynamically linked:\n{headers}");
            let run = Command::new(unpack.join(&exe)).arg("--version").output().unwrap();
            assert!(run.status.success(), "{file}: {run:?}");
            version_lines.push(String::from_utf8(run.stdout).unwrap());
            let man = std::fs::read_to_string(unpack.join(format!("{exe}.1"))).unwrap();
            assert!(man.contains(".TH") && man.contains(".SH NAME"), "a man page");
        }
        assert_eq!(version_lines[0], version_lines[1], "both platforms' binaries say the same");
    }
}

#[test]
fn the_glibc_reader_reads_what_a_dynamic_binary_asks_for() {
    // This test binary is linked against this machine's glibc.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let (major, minor) = highest_glibc(&me).expect("a glibc-linked binary names versions");
    assert!(major == 2 && minor >= 17, "{major}.{minor}");
    assert_eq!(highest_glibc(b"static: no version"), None);
}
