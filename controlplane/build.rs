//! Turns ../manifests into typed constants (see codegen). A malformed manifest
//! fails the build with `path:line: what is wrong`.
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let dir = dir.canonicalize().unwrap_or(dir);
    codegen::generate_into_out_dir(&dir, "manifests.rs");
}
