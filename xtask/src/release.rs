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

/// Builds both plugins in release mode; returns target/release.
pub fn build_release() -> Result<PathBuf> {
    let st = Command::new(cargo())
        .current_dir(root())
        .args(["build", "--release", "--locked", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck"])
        .status()
        .context("cargo build --release")?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    Ok(crate::target_dir().join("release"))
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
    let release = build_release()?;
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
    let release = build_release()?;
    let repo = "https://github.com/kubectl-plugins/kubectl-controlplane";
    for (name, short, description) in PLUGINS {
        let exe = format!("kubectl-{name}");
        let stage = archives.join(format!("stage-{name}"));
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&stage)?;
        install_file(&release.join(&exe), &stage.join(&exe), 0o755)?;
        let helper = format!("kubectl_complete-{name}");
        std::fs::write(stage.join(&helper), format!("#!/bin/sh\n# kubectl (1.26+) runs this for `kubectl {name} <TAB>`.\nexec {exe} __complete \"$@\"\n"))?;
        std::fs::set_permissions(stage.join(&helper), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let man = Command::new(release.join(&exe)).arg("__man").output()?;
        if !man.status.success() || man.stdout.is_empty() {
            bail!("{exe} __man produced no man page");
        }
        std::fs::write(stage.join(format!("{exe}.1")), &man.stdout)?;
        std::fs::copy(root().join("LICENSE"), stage.join("LICENSE"))?;
        let archive = archives.join(format!("{exe}_{version}_linux_amd64.tar.gz"));
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
        let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
        let manifest = format!(
            "apiVersion: krew.googlecontainertools.github.com/v1alpha2\nkind: Plugin\nmetadata:\n  name: {name}\nspec:\n  version: {version}\n  homepage: {repo}\n  shortDescription: {short}\n  description: |\n{desc}  caveats: |\n{caveats}  platforms:\n  - selector:\n      matchLabels:\n        os: linux\n        arch: amd64\n    uri: {repo}/releases/download/{version}/{file}\n    sha256: {sha}\n    bin: {exe}\n    files:\n    - from: {exe}\n      to: .\n    - from: {helper}\n      to: .\n    - from: {exe}.1\n      to: .\n    - from: LICENSE\n      to: .\n",
            desc = indent(description),
            caveats = indent(&format!(
                "Shell completion for `kubectl {name}` (kubectl 1.26+) needs the helper on PATH:\n  ln -s ~/.krew/store/{name}/{version}/{helper} ~/.krew/bin/{helper}\nThe man page is ~/.krew/store/{name}/{version}/{exe}.1."
            )),
        );
        std::fs::write(manifests.join(format!("{name}.yaml")), manifest)?;
        println!("{}  {sha}", archive.display());
    }
    println!("krew manifests in {}", manifests.display());
    Ok(())
}
