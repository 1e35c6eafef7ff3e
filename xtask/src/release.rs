//! `cargo xtask install` (drop the plugins on PATH) and `cargo xtask dist`
//! (release archives with man pages and completion helpers, and krew manifests).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const PLUGINS: &[(&str, &str, &str)] = &[
    (
        "bootstrap",
        "Bootstrap a Kubernetes control plane on a server over SSH",
        "Deploys kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, the certificates, kubeconfigs,\nencryption config, scheduler config and systemd units to a server over one SSH connection, the way\nKubernetes The Hard Way's control-plane step does by hand: preflight (nothing changes until it passes),\na plan (--dry-run prints it), atomic verified uploads of only what changed, restarts of only what\nchanged, a health wait, and server-side apply of the RBAC that lets the apiserver reach kubelets.\n",
    ),
    (
        "cpcheck",
        "Verify a Kubernetes control plane end to end",
        "Checks a control plane's units, ports, health endpoints, API objects, RBAC, certificates and\nconfiguration consistency over SSH and the API, with stable check ids, remediation for every\nwarning and failure, and table, JSON or JUnit output.\n",
    ),
];

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The platforms the plugins ship for: krew's `arch`, and the Rust target
/// that builds for it fully static (musl: no C library is needed on the
/// jumpbox, whatever its glibc).
pub const PLATFORMS: &[(&str, &str)] = &[("amd64", "x86_64-unknown-linux-musl"), ("arm64", "aarch64-unknown-linux-musl")];

/// This machine's platform (krew's `arch`).
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

/// The cross toolchain (scripts/install-cross.sh): cargo-zigbuild's path.
fn zigbuild() -> Result<PathBuf> {
    let out = Command::new("bash").arg(root().join("scripts/install-cross.sh")).stderr(std::process::Stdio::inherit()).output().context("scripts/install-cross.sh")?;
    if !out.status.success() {
        bail!("scripts/install-cross.sh failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim()))
}

/// Builds both plugins in release mode, fully static, for each of `arches`
/// (krew's names) in one cargo run; returns each arch's directory of binaries.
pub fn build_release(arches: &[&str]) -> Result<Vec<(String, PathBuf)>> {
    let zb = zigbuild()?;
    let targets: Vec<&str> = arches.iter().map(|a| PLATFORMS.iter().find(|(p, _)| p == a).map(|(_, t)| *t).with_context(|| format!("no platform {a}"))).collect::<Result<_>>()?;
    let mut c = Command::new(&zb);
    c.current_dir(root()).args(["build", "--release", "--locked", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck"]);
    for t in &targets {
        c.args(["--target", t]);
    }
    // cargo-zigbuild runs cargo: the same one that runs xtask.
    c.env("CARGO", cargo());
    let st = c.status().context("cargo zigbuild --release")?;
    if !st.success() {
        bail!("cargo zigbuild --release failed");
    }
    Ok(arches.iter().zip(targets).map(|(a, t)| (a.to_string(), crate::target_dir().join(t).join("release"))).collect())
}

/// Copies `from` to `to` through a temp file and a rename.
fn install_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_extension("tmp-install");
    std::fs::copy(from, &tmp).with_context(|| format!("copy {} → {}", from.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

pub fn install(prefix: Option<PathBuf>) -> Result<()> {
    let prefix = match prefix {
        Some(p) => p,
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: pass --prefix")?).join(".local"),
    };
    let release = build_release(&[native_arch()])?.remove(0).1;
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin)?;
    for (name, ..) in PLUGINS {
        let exe = format!("kubectl-{name}");
        install_file(&release.join(&exe), &bin.join(&exe), 0o755)?;
        // kubectl (1.26+) asks kubectl_complete-NAME for completions: the same
        // binary answers when called by that name.
        let helper = bin.join(format!("kubectl_complete-{name}"));
        let _ = std::fs::remove_file(&helper);
        std::os::unix::fs::symlink(&exe, &helper)?;
        println!("installed {} and {}", bin.join(&exe).display(), helper.display());
    }
    let on_path = std::env::var("PATH").unwrap_or_default().split(':').any(|p| Path::new(p) == bin);
    if !on_path {
        println!("add {} to PATH, then: kubectl plugin list", bin.display());
    }
    Ok(())
}

fn sha256_file(p: &Path) -> Result<String> {
    Ok(controlplane::local::files::sha256_hex(&std::fs::read(p)?))
}

pub fn dist(out: Option<PathBuf>) -> Result<()> {
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let (archives, manifests) = match out {
        Some(o) => (o.clone(), o.join("plugins")),
        None => (root().join("dist"), root().join("plugins")),
    };
    std::fs::create_dir_all(&archives)?;
    std::fs::create_dir_all(&manifests)?;
    let arches: Vec<&str> = PLATFORMS.iter().map(|(a, _)| *a).collect();
    let built = build_release(&arches)?;
    // Man pages and completion scripts are the same for every platform: the
    // binary built for this machine writes them.
    let native = built.iter().find(|(a, _)| a == native_arch()).map(|(_, d)| d.clone()).context("no build for this machine")?;
    let repo = "https://github.com/kubectl-plugins/kubectl-controlplane";
    for (name, short, description) in PLUGINS {
        let exe = format!("kubectl-{name}");
        let helper = format!("kubectl_complete-{name}");
        let man = Command::new(native.join(&exe)).arg("__man").output()?;
        if !man.status.success() || man.stdout.is_empty() {
            bail!("{exe} __man produced no man page");
        }
        let mut platforms = String::new();
        for (arch, dir) in &built {
            let stage = archives.join(format!("stage-{name}-{arch}"));
            let _ = std::fs::remove_dir_all(&stage);
            std::fs::create_dir_all(&stage)?;
            install_file(&dir.join(&exe), &stage.join(&exe), 0o755)?;
            std::fs::write(stage.join(&helper), format!("#!/bin/sh\n# kubectl (1.26+) runs this for `kubectl {name} <TAB>`.\nexec {exe} __complete \"$@\"\n"))?;
            std::fs::set_permissions(stage.join(&helper), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            std::fs::write(stage.join(format!("{exe}.1")), &man.stdout)?;
            std::fs::copy(root().join("LICENSE"), stage.join("LICENSE"))?;
            let archive = archives.join(format!("{exe}_{version}_linux_{arch}.tar.gz"));
            // Reproducible: sorted, owned by 0:0, a fixed mtime.
            let st = Command::new("tar")
                .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "--use-compress-program=gzip -n", "-cf"])
                .arg(&archive)
                .arg("-C")
                .arg(&stage)
                .args([exe.as_str(), helper.as_str(), &format!("{exe}.1"), "LICENSE"])
                .status()?;
            if !st.success() {
                bail!("tar failed for {}", archive.display());
            }
            std::fs::remove_dir_all(&stage)?;
            let sha = sha256_file(&archive)?;
            let file = archive.file_name().unwrap().to_string_lossy();
            platforms.push_str(&format!(
                "  - selector:\n      matchLabels:\n        os: linux\n        arch: {arch}\n    uri: {repo}/releases/download/{version}/{file}\n    sha256: {sha}\n    bin: {exe}\n    files:\n    - from: {exe}\n      to: .\n    - from: {helper}\n      to: .\n    - from: {exe}.1\n      to: .\n    - from: LICENSE\n      to: .\n"
            ));
            println!("{}  {sha}", archive.display());
        }
        let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let manifest = format!(
            "apiVersion: krew.googlecontainertools.github.com/v1alpha2\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  version: {version}\n  homepage: {repo}\n  shortDescription: {short}\n  description: |\n{desc}  caveats: |\n{caveats}  platforms:\n{platforms}",
            desc = indent(description),
            caveats = indent(&format!(
                "Shell completion for `kubectl {name}` (kubectl 1.26+) needs the helper on PATH:\n  ln -s ~/.krew/store/{name}/{version}/{helper} ~/.krew/bin/{helper}\nThe man page is ~/.krew/store/{name}/{version}/{exe}.1."
            )),
        );
        std::fs::write(manifests.join(format!("{name}.yaml")), manifest)?;
    }
    println!("krew manifests in {}", manifests.display());
    Ok(())
}
