//! Build-time code generation: `manifests/` → typed Rust constants.
//!
//! Pure text in, tokens out. The shared `controlplane` crate calls
//! [`generate_into_out_dir`] from its build script; the parsers are public so
//! the plugins can read the same formats from a live server at run time.

mod config;
mod emit;
mod error;
mod layout;
mod model;
mod rbac;
mod yaml;

pub use config::{parse_scheduler_config, SchedulerConfig};
pub use emit::render;
pub use error::ManifestError;
pub use layout::{parse_layout, FileKind, Layout, Source};
pub use model::{default_secure_port, first_address, load, Manifests, APISERVER_DEFAULT_SERVICE_CIDR, OUTPUT_FLAGS};
pub use rbac::{parse_rbac, Rbac};
pub use unitfile::{parse_unit, ParsedUnit, UnitFlag};

use std::path::Path;

/// Loads `manifests_dir`, renders the constants, and returns (source, inputs).
pub fn generate(manifests_dir: &Path) -> Result<(String, Vec<std::path::PathBuf>), ManifestError> {
    let m = load(manifests_dir)?;
    Ok((render(&m), m.inputs.clone()))
}

/// For a build script: writes `$OUT_DIR/<file_name>` and prints the
/// rerun-if-changed lines. On a manifest error prints `error: path:line: …`
/// and exits 1 so the build fails pointing at the line.
pub fn generate_into_out_dir(manifests_dir: &Path, file_name: &str) {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    println!("cargo::rerun-if-changed={}", manifests_dir.display());
    match generate(manifests_dir) {
        Ok((src, inputs)) => {
            for p in inputs {
                println!("cargo::rerun-if-changed={}", p.display());
            }
            let path = out.join(file_name);
            // Write only when changed, so dependents do not rebuild for nothing.
            if std::fs::read_to_string(&path).ok().as_deref() != Some(src.as_str()) {
                std::fs::write(&path, src).expect("write generated constants");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            println!("cargo::error={e}");
            std::process::exit(1);
        }
    }
}
