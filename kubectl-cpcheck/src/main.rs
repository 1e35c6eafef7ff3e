//! `kubectl cpcheck`: a thin command line over the `controlplane` library.

use std::process::ExitCode;

use clap::Parser;

/// Verify a Kubernetes control plane: units, ports, health endpoints, API
/// objects, RBAC, certificates and configuration consistency.
#[derive(Parser)]
#[command(name = "kubectl cpcheck", bin_name = "kubectl cpcheck", version = controlplane::version_line())]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("error: kubectl cpcheck has no checks in this build yet (tracked as issue 5)");
    ExitCode::from(controlplane::exit::INPUT)
}
