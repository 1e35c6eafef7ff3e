//! `kubectl cpcheck`: parse the command line, call the library, print its
//! report (table, JSON or JUnit), exit with its code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cli::{parse_duration, KubeArgs, OverrideArgs, SshArgs};
use controlplane::cpcheck::{self, CheckOptions};
use controlplane::local::interrupt;
use controlplane::{errln, out, outln};

/// Verify a Kubernetes control plane: units, ports, health endpoints, API
/// objects, RBAC, certificates, configuration consistency, drift and the
/// CIS benchmark kube-bench picks for the server's version.
///
/// Exit codes: 0 nothing failed, 1 a check failed, 2 bad input, 3 cannot
/// connect, 130/143 stopped by SIGINT/SIGTERM.
#[derive(Parser)]
#[command(
    name = "kubectl cpcheck",
    bin_name = "kubectl cpcheck",
    version = controlplane::version_line(),
    after_help = "`kubectl cpcheck completion bash|zsh|fish` prints a completion script for the kubectl-cpcheck executable.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Check the host too, over SSH: user@host, ssh://user@host:port or a Host alias. Repeat it (or separate with commas)
    /// for every server of an HA plane: host checks then run on each, cluster checks across them.
    #[arg(long = "ssh", value_name = "DESTINATION", value_delimiter = ',')]
    ssh_destinations: Vec<String>,
    /// The plane's load-balanced address (https://HOST[:PORT]): checked to reach a ready apiserver.
    #[arg(long, value_name = "URL", value_parser = cli::parse_endpoint)]
    endpoint: Option<controlplane::model::Endpoint>,
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    overrides: OverrideArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    /// Only run this group or check id (repeatable); --list shows them.
    #[arg(long = "only", value_name = "GROUP|ID")]
    only: Vec<String>,
    /// Skip the check with this id (repeatable).
    #[arg(long = "skip", value_name = "ID")]
    skip: Vec<String>,
    /// CIS checks fail instead of warn (manual controls still warn, as kube-bench reports them).
    #[arg(long)]
    strict: bool,
    /// List every check (id, group, title), every CIS benchmark's too, and exit.
    #[arg(long)]
    list: bool,
    /// How long to wait for the server and the API; no check waits longer (each at most 10s).
    #[arg(long, default_value = "1m", value_name = "DURATION", value_parser = parse_duration)]
    timeout: std::time::Duration,
    /// A certificate (on the servers, or in the kubeconfig) expiring sooner than this is a warning (certs.expiry); expired fails.
    #[arg(long, default_value = "30d", value_name = "DURATION", value_parser = parse_duration)]
    warn_within: std::time::Duration,
    /// How far back the components' journals are searched for known failures (diagnose.*, and the cause of a failing unit); never before a running unit's current start.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    journal_since: std::time::Duration,
    /// Also write a support bundle here (FILE.tar.gz, 0600): every server's units, configs, file list, status, journals, certificates' metadata, the plane's health, Leases, Endpoints, events, and this report; no secret. The exit code stays cpcheck's (2 when it cannot be written).
    #[arg(long, value_name = "FILE.tar.gz")]
    bundle: Option<std::path::PathBuf>,
    /// More detail: the run's SSH sessions, CPU and peak memory at the end.
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Sub {
    /// What a check (or a failure signature) checks, why it matters, how to fix it, where it comes from.
    ///
    /// Exit codes: 0 explained, 2 no such id.
    Explain {
        /// A check id (`kubectl cpcheck --list`) or a failure signature's (`explain --list`).
        #[arg(required_unless_present = "list")]
        id: Option<String>,
        /// List the failure signatures looked for in the components' journals (diagnose.*).
        #[arg(long)]
        list: bool,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: ExplainFormat,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExplainFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Junit,
}

/// `kubectl cpcheck explain`.
fn explain(id: Option<&str>, list: bool, output: ExplainFormat) -> ExitCode {
    use controlplane::cpcheck::explain;
    if list {
        let rows = explain::signatures();
        match output {
            ExplainFormat::Json => outln!("{}", explain::signatures_json()),
            ExplainFormat::Text => {
                for (id, c, t) in rows {
                    outln!("{:<26} {:<54} {t}", id, c);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let id = id.unwrap_or_default();
    match explain::explain(id) {
        Some(e) => {
            match output {
                ExplainFormat::Json => outln!("{}", e.json()),
                ExplainFormat::Text => outln!("{e}"),
            }
            ExitCode::SUCCESS
        }
        None => {
            errln!("error: {}: no check or failure signature has that id (kubectl cpcheck --list, kubectl cpcheck explain --list)", controlplane::output::redact::line(id));
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = cli::plugin::early(<Cli as clap::CommandFactory>::command()) {
        return code;
    }
    let cli = Cli::parse();
    if let Some(Sub::Explain { id, list, output }) = &cli.command {
        return explain(id.as_deref(), *list, *output);
    }

    if cli.list {
        return match cpcheck::select(&cli.only, &cli.skip) {
            Ok(checks) => {
                for c in checks {
                    outln!("{:<48} {:<12} {}", c.id, c.group, c.title);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let o = CheckOptions {
        ssh_destinations: cli.ssh_destinations.clone(),
        endpoint: cli.endpoint.clone(),
        ssh: (&cli.ssh).into(),
        kube: (&cli.kube).into(),
        overrides: (&cli.overrides).into(),
        only: cli.only.clone(),
        skip: cli.skip.clone(),
        strict: cli.strict,
        timeout: cli.timeout,
        warn_within: cli.warn_within,
        journal_since: cli.journal_since,
        bundle: cli.bundle.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let ran = rt.block_on(interrupt::guard(cpcheck::check(&o)));
    if cli.verbose {
        errln!("{}", controlplane::local::process::stats_line(controlplane::remote::sessions()));
    }
    match ran {
        Ok(Ok(mut report)) => {
            match cli.output {
                Format::Table => {
                    report.color = std::io::stdout().is_terminal();
                    out!("{report}");
                }
                Format::Json => outln!("{}", report.json()),
                Format::Junit => out!("{}", report.junit()),
            }
            ExitCode::from(report.exit_code())
        }
        Ok(Err(e)) => {
            errln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(sig) => {
            errln!("error: stopped by {}", sig.name());
            std::process::exit(sig.exit_code().into())
        }
    }
}
