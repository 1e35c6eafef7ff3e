//! `kubectl cpcheck`: a thin command line over the `controlplane` library.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use controlplane::kube::config::KubeArgs;
use controlplane::cpcheck::{self, checks, gather, report, Ctx, Status};
use controlplane::model::overrides::{desired_units, OverrideArgs, Overrides};
use controlplane::remote::{Host, SshArgs};
use controlplane::kube::health;
use controlplane::{exit, Error};

/// Verify a Kubernetes control plane: units, ports, health endpoints, API
/// objects, RBAC, certificates and configuration consistency.
///
/// Exit codes: 0 nothing failed, 1 a check failed, 2 bad input, 3 cannot connect.
#[derive(Parser)]
#[command(
    name = "kubectl cpcheck",
    bin_name = "kubectl cpcheck",
    version = controlplane::version_line(),
    after_help = "`kubectl cpcheck completion bash|zsh|fish` prints a completion script for the kubectl-cpcheck executable."
)]
struct Cli {
    /// Check the host too, over SSH: user@host, ssh://user@host:port or a Host alias.
    #[arg(long = "ssh", value_name = "DESTINATION")]
    ssh_destination: Option<String>,
    #[command(flatten)]
    ssh: SshArgs,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    overrides: OverrideArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Format,
    /// Only run the checks of this group (repeatable).
    #[arg(long = "only", value_name = "GROUP")]
    only: Vec<String>,
    /// Skip the check with this id (repeatable).
    #[arg(long = "skip", value_name = "ID")]
    skip: Vec<String>,
    /// CIS checks fail instead of warn.
    #[arg(long)]
    strict: bool,
    /// List the checks (id, group, title) and exit.
    #[arg(long)]
    list: bool,
    /// How long to wait for the server and the API; no check waits longer (each at most 10s).
    #[arg(long, default_value = "1m", value_name = "DURATION", value_parser = controlplane::output::parse_duration)]
    timeout: std::time::Duration,
    /// More detail.
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Junit,
}

fn is_loopback(config: &kube::Config) -> bool {
    config.cluster_url.host().map(|h| h.trim_matches(['[', ']'])).is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

async fn run(cli: &Cli) -> Result<u8, Error> {
    let overrides = Overrides::from_args(&cli.overrides)?;
    let mut registry = checks::registry();
    for g in &cli.only {
        if !cpcheck::GROUPS.contains(&g.as_str()) {
            return Err(Error::Input(format!("--only {g}: unknown group; groups: {}", cpcheck::GROUPS.join(", "))));
        }
    }
    for s in &cli.skip {
        if !registry.iter().any(|c| &c.id == s) {
            return Err(Error::Input(format!("--skip {s}: no check has that id (kubectl cpcheck --list shows them)")));
        }
    }
    if !cli.only.is_empty() {
        registry.retain(|c| cli.only.iter().any(|g| g == c.group));
    }
    if cli.list {
        for c in &registry {
            controlplane::outln!("{:<48} {:<12} {}", c.id, c.group, c.title);
        }
        return Ok(exit::OK);
    }

    // Credentials: an explicit --kubeconfig or --context that cannot be used is bad input;
    // no kubeconfig at all means the API checks are skipped.
    let explicit = cli.kube.kubeconfig.is_some() || cli.kube.context.is_some() || std::env::var_os("KUBECONFIG").is_some();
    let config = match controlplane::kube::config::config(&cli.kube, None, cli.timeout).await {
        Ok(c) => Ok(c),
        Err(e) if explicit => return Err(e),
        Err(e) => Err(format!("no API credentials ({e})")),
    };

    let host = match &cli.ssh_destination {
        Some(d) => Some(Host::connect(d, &cli.ssh, cli.timeout).await?),
        None => None,
    };
    // Host data, the API client and the health tunnels come up concurrently.
    let gather_host = async {
        match &host {
            Some(h) => gather::gather(h).await.map_err(|e| e.to_string()),
            None => Err("no --ssh DESTINATION: host checks need the server".to_string()),
        }
    };
    let api_url = config.as_ref().map(|c| c.cluster_url.to_string()).unwrap_or_default();
    let connect_api = async {
        match (config, &host) {
            (Ok(c), Some(h)) if is_loopback(&c) => {
                let port = c.cluster_url.port_u16().unwrap_or(443);
                health::api_client(h, c, port).await.map_err(|e| e.to_string())
            }
            (Ok(c), _) => kube::Client::try_from(c).map_err(|e| format!("cannot build an API client: {e}")),
            (Err(e), _) => Err(e),
        }
    };
    // The controller-manager and scheduler are reached at their compiled-in
    // (plus overrides) port and bind address.
    let desired = desired_units(&overrides);
    let open_health = async {
        let mut m = BTreeMap::new();
        if let Some(h) = &host {
            for u in desired.iter().filter(|u| u.spec.component != "kube-apiserver") {
                let addr = health::reach_address(u.bind_address());
                m.insert(u.spec.component, health::anonymous_client(h, addr, u.serving_port()).await.map_err(|e| e.to_string()));
            }
        }
        m
    };
    let (host_data, api, health_clients) = tokio::join!(gather_host, connect_api, open_health);
    let ctx = Ctx { strict: cli.strict, desired, host: host_data, api, api_url, health: health_clients, timeout: cli.timeout };
    let results = cpcheck::run(&ctx, &registry, &cli.skip).await;
    if let Some(h) = host {
        h.close().await;
    }
    let summary = cpcheck::summarize(&results);
    match cli.output {
        Format::Table => controlplane::out!("{}", report::table(&results, &summary, std::io::stdout().is_terminal())),
        Format::Json => controlplane::outln!("{}", serde_json::to_string_pretty(&report::json(&results, &summary)).expect("json")),
        Format::Junit => controlplane::out!("{}", report::junit(&results, &summary)),
    }
    Ok(if results.iter().any(|r| r.finding.status == Status::Fail) { exit::FAILED } else { exit::OK })
}

fn main() -> ExitCode {
    if let Some(code) = controlplane::plugin::early(<Cli as clap::CommandFactory>::command()) {
        return code;
    }
    let cli = Cli::parse();
    let _ = cli.verbose;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match rt.block_on(controlplane::local::interrupt::guard(run(&cli))) {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            controlplane::errln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(sig) => {
            controlplane::errln!("error: stopped by {}", sig.name());
            std::process::exit(sig.exit_code().into())
        }
    }
}
