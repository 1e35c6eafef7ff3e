//! The constants really are generated at build time from manifests/: in a copy
//! of the workspace, editing a flag in a unit changes what the next build of
//! kubectl-bootstrap carries, and a malformed manifest fails that build with
//! the manifest's path and line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Copies the workspace sources (not target/, not .git) into `to`.
fn copy_sources(to: &Path) {
    let ws = workspace();
    let files = Command::new("git").arg("-C").arg(&ws).args(["ls-files", "-co", "--exclude-standard"]).output().unwrap();
    assert!(files.status.success());
    for rel in String::from_utf8(files.stdout).unwrap().lines() {
        let src = ws.join(rel);
        if !src.is_file() {
            continue;
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
}

fn build(copy: &Path) -> std::process::Output {
    // A target dir of its own that persists between runs, so only the
    // workspace crates rebuild after the first time.
    let target = workspace().join("target/codegen-rebuild");
    Command::new(env!("CARGO")).args(["build", "--quiet", "--offline", "-p", "kubectl-bootstrap"]).current_dir(copy).env("CARGO_TARGET_DIR", &target).output().unwrap()
}

fn printed(copy_target: &Path, name: &str) -> String {
    let out = Command::new(copy_target.join("debug/kubectl-bootstrap")).args(["manifests", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn editing_a_manifest_changes_the_next_build_and_a_broken_one_fails_it() {
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let tmp = std::env::temp_dir().join(format!("kcp-rebuild-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let _cleanup = Cleanup(tmp.clone());
    copy_sources(&tmp);
    let target = workspace().join("target/codegen-rebuild");
    let unit = tmp.join("manifests/units/kube-scheduler.service");

    let out = build(&tmp);
    assert!(out.status.success(), "pristine copy must build: {}", String::from_utf8_lossy(&out.stderr));
    assert!(printed(&target, "kube-scheduler.service").contains("  --v=2\n"));

    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("  --v=2\n", "  --v=7\n")).unwrap();
    let out = build(&tmp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let now = printed(&target, "kube-scheduler.service");
    assert!(now.contains("  --v=7\n") && !now.contains("--v=2"), "the edit must reach the binary:\n{now}");

    // A flag given twice: the build fails and names file and line.
    std::fs::write(&unit, text.replace("  --v=2\n", "  --v=2 \\\n  --v=3\n")).unwrap();
    let out = build(&tmp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a malformed manifest must fail the build");
    let line = text.lines().position(|l| l == "  --v=2").unwrap() + 2;
    let want = format!("{}:{line}: flag --v given twice", unit.display());
    assert!(stderr.contains(&want), "build output must contain `{want}`:\n{stderr}");
}
