//! `cargo xtask …`: developer automation (rust-analyzer style).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use testbed::Bed;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The test bed: a real systemd server over SSH with etcd and Kubernetes binaries.
    Bed {
        #[command(subcommand)]
        command: BedCmd,
    },
    /// The local demo: bed up, build the plugins, bootstrap the bed, check it.
    Demo {
        /// Leave the bed running afterwards.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum BedCmd {
    /// Bring a bed up and print its BED_* variables (eval "$(cargo xtask bed up)").
    Up {
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Print the BED_* variables of a bed that is up.
    Env {
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Stop a bed and remove everything it made.
    Down {
        #[arg(long, default_value = "default")]
        name: String,
        /// Every bed that is up.
        #[arg(long)]
        all: bool,
    },
    /// Open a shell (or run a command) on a bed as root.
    Ssh {
        #[arg(long, default_value = "default")]
        name: String,
        /// Command to run instead of a shell.
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
}

fn loaded(name: &str) -> Result<Bed> {
    Bed::load(name)?.with_context(|| format!("no bed `{name}` is up (cargo xtask bed up --name {name})"))
}

fn demo(keep: bool) -> Result<()> {
    let mut bed = Bed::up("demo")?;
    bed.teardown_on_drop = !keep;
    eprintln!("\nThe bed is up:\n{}", bed.env_lines());
    eprintln!("kubectl bootstrap server is not implemented yet (issue 4): the demo stops after bed up.");
    if keep {
        eprintln!("left running: cargo xtask bed down --name demo");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Bed { command } => match command {
            BedCmd::Up { name } => Bed::up(&name).map(|mut b| {
                b.teardown_on_drop = false;
                print!("{}", b.env_lines());
            }),
            BedCmd::Env { name } => loaded(&name).map(|mut b| {
                b.teardown_on_drop = false;
                print!("{}", b.env_lines())
            }),
            BedCmd::Down { name, all } => {
                let names = if all { testbed::list() } else { vec![name] };
                names.iter().try_for_each(|n| {
                    let mut b = loaded(n)?;
                    b.teardown();
                    b.teardown_on_drop = false;
                    let left = b.leftovers();
                    if !left.is_empty() {
                        bail!("bed `{n}`: left behind: {}", left.join("; "));
                    }
                    eprintln!("bed `{n}` is down");
                    Ok(())
                })
            }
            BedCmd::Ssh { name, command } => loaded(&name).and_then(|mut b| {
                b.teardown_on_drop = false;
                let err = Command::new("ssh").args(b.ssh_options()).arg("-t").arg(b.dest()).args(&command).exec();
                Err(err).context("cannot run ssh")
            }),
        },
        Cmd::Demo { keep } => demo(keep),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
