//! `kubectl bootstrap`: a thin command line over the `controlplane` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use controlplane::model::{Source, DIRECTORIES, FILES, SCHEDULER_CONFIG};
use controlplane::overrides::{desired_units, OverrideArgs, Overrides};
use controlplane::Error;

/// Bootstrap a Kubernetes control plane (kube-apiserver, kube-controller-manager,
/// kube-scheduler) on a server over SSH, the way Kubernetes The Hard Way does by hand.
#[derive(Parser)]
#[command(name = "kubectl bootstrap", bin_name = "kubectl bootstrap", version = controlplane::version_line())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what bootstrap installs: the layout, or one compiled-in file with overrides applied.
    Manifests {
        /// A unit (kube-apiserver.service) or config (kube-scheduler.yaml) to print; the layout when absent.
        name: Option<String>,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
}

fn manifests(name: Option<&str>, o: &Overrides) -> Result<String, Error> {
    let units = desired_units(o);
    let Some(name) = name else {
        let mut out = String::new();
        for d in DIRECTORIES {
            out.push_str(&format!("{:04o}  {}/\n", d.mode, d.path));
        }
        for f in FILES {
            let from = match f.source {
                Source::Asset(c) => format!("asset {}", c.join(" | ")),
                Source::Manifest { path, .. } => format!("manifest {path}"),
            };
            let restarts = if f.restarts.is_empty() { String::new() } else { format!("  (restarts {})", f.restarts.join(", ")) };
            out.push_str(&format!("{:04o}  {}:{}  {}  <- {from}{restarts}\n", f.mode, f.owner, f.group, f.dest));
        }
        return Ok(out);
    };
    if let Some(d) = units.iter().find(|d| d.spec.file_name == name || d.spec.component == name) {
        return Ok(d.text.clone());
    }
    if SCHEDULER_CONFIG.manifest.ends_with(name) {
        return Ok(SCHEDULER_CONFIG.text.to_string());
    }
    let known: Vec<_> = units.iter().map(|d| d.spec.file_name).chain([SCHEDULER_CONFIG.manifest.rsplit('/').next().unwrap_or_default()]).collect();
    Err(Error::Input(format!("no compiled-in manifest named `{name}`; known: {}", known.join(", "))))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Manifests { name, overrides } => {
            Overrides::from_args(overrides).and_then(|o| manifests(name.as_deref(), &o)).map(|s| print!("{s}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
