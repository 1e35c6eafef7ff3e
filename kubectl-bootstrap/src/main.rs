//! `kubectl bootstrap`: parse the command line, call the library, print its
//! report (text or JSON), exit with its code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cli::{parse_duration, KubeArgs, OverrideArgs, SshArgs};
use controlplane::bootstrap::{self, ResetOptions, ServerOptions};
use controlplane::local::compress::{Codec, Compress};
use controlplane::local::interrupt::{self, Signal};
use controlplane::model::overrides::Overrides;
use controlplane::model::Version;
use controlplane::output::Ui;
use controlplane::{errln, out, outln, Error};

/// Bootstrap a Kubernetes control plane (kube-apiserver, kube-controller-manager,
/// kube-scheduler) on a server over SSH, the way Kubernetes The Hard Way does by hand.
///
/// Exit codes: 0 success, 1 failed on the server, 2 bad input or failed
/// preflight (nothing on the server changed), 3 cannot connect or host-key
/// problem, 130/143 stopped by SIGINT/SIGTERM.
#[derive(Parser)]
#[command(name = "kubectl bootstrap", bin_name = "kubectl bootstrap", version = controlplane::version_line())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressArg {
    Auto,
    Zstd,
    Gzip,
    None,
}

impl From<CompressArg> for Compress {
    fn from(c: CompressArg) -> Compress {
        match c {
            CompressArg::Auto => Compress::Auto,
            CompressArg::Zstd => Compress::Use(Codec::Zstd),
            CompressArg::Gzip => Compress::Use(Codec::Gzip),
            CompressArg::None => Compress::Use(Codec::None),
        }
    }
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Deploy, start and prove the control plane on DESTINATION, or on every server of a highly available plane (idempotent).
    ///
    /// With several servers: nothing changes anywhere unless every server passes preflight; files are staged on
    /// all at once; a first deploy starts all at once; a change to a running plane rolls one server at a time,
    /// each healthy again (and every other server ready) before the next, apiservers before their clients.
    #[command(mut_arg("kubeconfig", |a| a.help(format!("Admin kubeconfig for the RBAC step (default: $KUBECONFIG, else ASSETS/{})", controlplane::model::ADMIN_KUBECONFIG))))]
    Server {
        /// user@host, ssh://user@host:port, or a Host alias from ~/.ssh/config; several for an HA plane.
        #[arg(required = true, num_args = 1.., value_name = "DESTINATION")]
        destinations: Vec<String>,
        /// The address clients use for the plane (load balancer or virtual IP), https://HOST[:PORT]: must be a name of the serving certificate.
        #[arg(long, value_name = "URL", value_parser = cli::parse_endpoint)]
        endpoint: Option<controlplane::model::Endpoint>,
        /// How many servers to connect to, read and stage at once (default: all).
        #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
        concurrency: usize,
        /// How large files travel: auto compresses (zstd, else gzip, as the server has) where the measured link makes it pay.
        #[arg(long, value_enum, default_value = "auto")]
        compress: CompressArg,
        #[command(flatten)]
        ssh: SshArgs,
        /// The jumpbox directory: certs, kubeconfigs, encryption-config.yaml; binaries in downloads/controller and downloads/client, or directly here.
        #[arg(long, default_value = ".", value_name = "DIR")]
        assets: PathBuf,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Print the plan (and diffs of changed text files, secrets redacted) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
        /// How long any wait may take: connecting, another run's lock, each remote step, the health wait.
        #[arg(long, default_value = "3m", value_name = "DURATION", value_parser = parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        kube: KubeArgs,
        /// The binaries' Kubernetes version, when they cannot run here to say it (another architecture).
        #[arg(long, value_name = "vX.Y")]
        kubernetes_version: Option<String>,
        /// Preflight checks whose problems become warnings (`all`: every ignorable one); `kubectl bootstrap preflight-checks` lists them.
        #[arg(long, value_name = "ID,...", value_delimiter = ',')]
        ignore_preflight_errors: Vec<String>,
        /// More detail.
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// List the preflight checks: id, whether --ignore-preflight-errors may name it, what it finds.
    PreflightChecks,
    /// The jumpbox's certificates: check their expiry, renew the leaves from the jumpbox's CA.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Stop and disable the control-plane units and remove what bootstrap placed (etcd stays).
    Reset {
        /// The server(s) to reset.
        #[arg(required = true, num_args = 1.., value_name = "DESTINATION")]
        destinations: Vec<String>,
        #[command(flatten)]
        ssh: SshArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// How long to wait for the server (and for another run's lock).
        #[arg(long, default_value = "3m", value_name = "DURATION", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print a completion script for the kubectl-bootstrap executable.
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: String,
    },
    /// Print what bootstrap installs: the layout, or one compiled-in file with overrides applied.
    Manifests {
        /// A unit (kube-apiserver.service) or config (kube-scheduler.yaml) to print; the layout when absent.
        name: Option<String>,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Render the scheduler config for binaries of this release (as bootstrap does for the ones it ships).
        #[arg(long, value_name = "vX.Y")]
        kubernetes_version: Option<String>,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Every certificate the layout ships or a kubeconfig embeds, and the CA: expiry, residual time, authority; with --ssh, what each server has and serves.
    ///
    /// Exit codes: 0 listed, 2 bad input (an asset missing or unreadable), 3 a server could not be read.
    Check {
        /// The jumpbox directory holding the certificates and kubeconfigs.
        #[arg(long, default_value = ".", value_name = "DIR")]
        assets: PathBuf,
        /// Also list each server's certificates and what each component's port serves (repeat, or separate with commas).
        #[arg(long = "ssh", value_name = "DESTINATION", value_delimiter = ',')]
        servers: Vec<String>,
        #[command(flatten)]
        ssh: SshArgs,
        /// How long to wait for each server.
        #[arg(long, default_value = "1m", value_name = "DURATION", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
    },
    /// Re-issue the leaf certificates from ASSETS/ca.crt and ca.key (never the CA); then `kubectl bootstrap server` rolls them out.
    ///
    /// Subject, names and usages are copied from each current certificate; new keys of the same type and size
    /// unless --reuse-keys (the service-account key is always kept); kubeconfigs that embed them rewritten;
    /// the old files kept in ASSETS/.backup/TIME/; each file replaced atomically.
    Renew {
        /// The jumpbox directory holding the CA, certificates and kubeconfigs.
        #[arg(long, default_value = ".", value_name = "DIR")]
        assets: PathBuf,
        /// Lifetime of the new certificates in days (default: each current certificate's own).
        #[arg(long, value_name = "N")]
        days: Option<u32>,
        /// Only these certificates (kube-api-server, service-accounts, kube-controller-manager, kube-scheduler, admin).
        #[arg(long, value_name = "NAME", num_args = 1..)]
        only: Vec<String>,
        /// Keep each certificate's key.
        #[arg(long)]
        reuse_keys: bool,
        /// List what would be re-issued, with old and new expiry; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Format,
    },
}

/// Prints a report as text or JSON: exit 0; an error: its line and code.
fn print<R: std::fmt::Display + serde::Serialize>(r: Result<R, Error>, output: Format) -> ExitCode {
    match r {
        Ok(r) => {
            match output {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&r).expect("a report serializes")),
                Format::Text => outln!("{r}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// A signal stopped the run: the SSH master, its tunnels and the control
/// directory are gone already; say so and exit without waiting for work
/// that was abandoned.
fn interrupted(sig: Signal) -> ! {
    errln!("error: stopped by {}: the SSH connection is closed; the server keeps no half-written file, and the next run finishes what this one started", sig.name());
    std::process::exit(sig.exit_code().into())
}

fn fail(e: &Error) -> ExitCode {
    errln!("error: {e}");
    ExitCode::from(e.exit_code())
}

/// Asks before a reset unless `--yes`; refuses without a terminal to ask on.
fn confirm(destination: &str) -> Result<(), Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Input("reset removes the control plane: pass --yes (standard input is not a terminal to ask)".into()));
    }
    controlplane::err!("This stops the control plane on {destination} and removes what bootstrap placed (etcd stays). Continue? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| Error::local("cannot read the answer from standard input", e))?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        return Err(Error::Input("reset cancelled".into()));
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Some(code) = cli::plugin::early(<Cli as clap::CommandFactory>::command()) {
        return code;
    }
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match cli.command {
        // Handled by plugin::early before parsing; here only for --help and errors.
        Command::Completion { shell } => {
            fail(&Error::Input(format!("completion {}: unknown shell; use bash, zsh, fish, elvish or powershell", controlplane::output::redact::line(&shell))))
        }
        Command::Manifests { name, overrides, kubernetes_version } => {
            let version = match kubernetes_version.as_deref().map(|v| Version::parse(v).ok_or(v)) {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(v)) => Err(Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", controlplane::output::redact::line(v)))),
            };
            match version.and_then(|v| Overrides::from_sources(&(&overrides).into()).and_then(|o| bootstrap::manifests(name.as_deref(), &o, v))) {
                Ok(s) => {
                    out!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Reset { destinations, ssh, yes, timeout } => {
            if !yes {
                if let Err(e) = confirm(&destinations.join(", ")) {
                    return fail(&e);
                }
            }
            let multi = destinations.len() > 1;
            let o = ResetOptions { destinations, ssh: (&ssh).into(), timeout };
            match rt.block_on(interrupt::guard(bootstrap::reset(&o, &Ui::new(false)))) {
                Ok(results) => {
                    let mut code = 0u8;
                    for (dest, r) in results {
                        let prefix = if multi { format!("{dest}: ") } else { String::new() };
                        match r {
                            Ok(done) if done.is_empty() => outln!("nothing to reset on {dest}"),
                            Ok(done) => {
                                for l in done {
                                    outln!("{prefix}{}", controlplane::output::redact::line(&l));
                                }
                            }
                            Err(e) => {
                                errln!("error: {prefix}{e}");
                                code = code.max(e.exit_code());
                            }
                        }
                    }
                    ExitCode::from(code)
                }
                Err(sig) => interrupted(sig),
            }
        }
        Command::Certs { command: CertsCommand::Check { assets, servers, ssh, timeout, output } } => {
            let ran = rt.block_on(interrupt::guard(controlplane::bootstrap::certs::check_servers(&assets, &servers, &(&ssh).into(), timeout)));
            match ran {
                Ok(Ok(r)) => {
                    let code = r.exit_code();
                    print(Ok(r), output);
                    ExitCode::from(code)
                }
                Ok(Err(e)) => fail(&e),
                Err(sig) => interrupted(sig),
            }
        }
        Command::Certs { command: CertsCommand::Renew { assets, days, only, reuse_keys, dry_run, output } } => {
            let o = controlplane::bootstrap::certs::RenewOptions { assets, days, only, reuse_keys, dry_run };
            print(controlplane::bootstrap::certs::renew(&o), output)
        }
        Command::PreflightChecks => {
            for c in bootstrap::preflight::CHECKS {
                outln!("{:<24} {:<13} {}", c.id, if c.ignorable { "ignorable" } else { "not ignorable" }, c.what);
            }
            ExitCode::SUCCESS
        }
        Command::Server {
            destinations,
            endpoint,
            concurrency,
            compress,
            ssh,
            assets,
            overrides,
            dry_run,
            output,
            timeout,
            kube,
            kubernetes_version,
            ignore_preflight_errors,
            verbose,
        } => {
            let ignore = match bootstrap::preflight::Ignore::parse(&ignore_preflight_errors) {
                Ok(i) => i,
                Err(e) => return fail(&e),
            };
            let o = ServerOptions {
                ignore,
                destinations,
                ssh: (&ssh).into(),
                assets,
                overrides: (&overrides).into(),
                dry_run,
                timeout,
                kube: (&kube).into(),
                kubernetes_version,
                endpoint,
                concurrency,
                compress: compress.into(),
            };
            let ui = Ui::new(verbose);
            let ran = rt.block_on(interrupt::guard(bootstrap::server(&o, &ui)));
            if verbose {
                errln!("{}", controlplane::local::process::stats_line(controlplane::remote::sessions()));
            }
            match ran {
                Ok(Ok(report)) => {
                    match output {
                        Format::Json => outln!("{}", serde_json::to_string_pretty(&report).expect("a report serializes")),
                        Format::Text => outln!("{report}"),
                    }
                    ExitCode::SUCCESS
                }
                Ok(Err(failure)) => {
                    errln!("{failure}");
                    if output == Format::Json {
                        outln!("{}", serde_json::to_string_pretty(&failure.report()).expect("a report serializes"));
                    }
                    ExitCode::from(failure.exit_code())
                }
                Err(sig) => interrupted(sig),
            }
        }
    }
}
