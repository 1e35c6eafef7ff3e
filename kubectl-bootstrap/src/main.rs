//! `kubectl bootstrap`: a thin command line over the `controlplane` library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use controlplane::kube::config::KubeArgs;
use controlplane::bootstrap::desired::{self, Content, Desired, Problem, Version};
use controlplane::remote::probe::{self, Facts};
use controlplane::model::{Source, DIRECTORIES, FILES, SCHEDULER_CONFIG};
use controlplane::output::{parse_duration, Ui};
use controlplane::model::overrides::{desired_units, OverrideArgs, Overrides};
use controlplane::bootstrap::plan::{self, human_bytes, Action, Change};
use controlplane::remote::{Host, SshArgs};
use controlplane::bootstrap::{exec, preflight};
use controlplane::Error;
use serde_json::json;

/// Bootstrap a Kubernetes control plane (kube-apiserver, kube-controller-manager,
/// kube-scheduler) on a server over SSH, the way Kubernetes The Hard Way does by hand.
///
/// Exit codes: 0 success, 1 failed on the server, 2 bad input or failed
/// preflight (nothing on the server changed), 3 cannot connect or host-key problem.
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

#[derive(Subcommand)]
enum Command {
    /// Deploy, start and prove the control plane on DESTINATION (idempotent).
    #[command(mut_arg("kubeconfig", |a| a.help("Admin kubeconfig for the RBAC step (default: $KUBECONFIG, else ASSETS/admin.kubeconfig)")))]
    Server {
        /// user@host, ssh://user@host:port, or a Host alias from ~/.ssh/config.
        destination: String,
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
        /// How long to wait for the components to become healthy.
        #[arg(long, default_value = "3m", value_name = "DURATION", value_parser = parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        kube: KubeArgs,
        /// The binaries' Kubernetes version, when they cannot run here to say it (another architecture).
        #[arg(long, value_name = "vX.Y")]
        kubernetes_version: Option<String>,
        /// More detail.
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// Stop and disable the control-plane units and remove what bootstrap placed (etcd stays).
    Reset {
        destination: String,
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

fn manifests(name: Option<&str>, o: &Overrides, version: Option<Version>) -> Result<String, Error> {
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
        return match version {
            None => Ok(SCHEDULER_CONFIG.text.to_string()),
            Some(v) => desired::render_scheduler_config(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {v}: older than v1.19, which no scheduler config here fits"))),
        };
    }
    let known: Vec<_> = units.iter().map(|d| d.spec.file_name).chain([SCHEDULER_CONFIG.manifest.rsplit('/').next().unwrap_or_default()]).collect();
    Err(Error::Input(format!("no compiled-in manifest named `{name}`; known: {}", known.join(", "))))
}

/// A unified diff of a changed text file; secrets and binaries are never shown.
fn diff(a: &Action, desired: &Desired, facts: &Facts) -> Option<String> {
    let Action::Upload { index, change: Change::Changed, .. } = a else { return None };
    let f = &desired.files[*index];
    if f.spec.kind.is_secret() {
        return Some("    (secret: contents not shown)\n".into());
    }
    match (&f.content, facts.texts.get(f.spec.dest)) {
        (Content::Text(new), Some(old)) => {
            let d = similar::TextDiff::from_lines(old.as_str(), new.as_str());
            // The server's side is the server's text: escaped.
            Some(controlplane::output::redact::block(&d.unified_diff().context_radius(2).header(&format!("{} (server)", f.spec.dest), &format!("{} (desired)", f.spec.dest)).to_string()))
        }
        _ => {
            let old = facts.files.get(f.spec.dest).map(|r| r.sha256.as_str()).unwrap_or("-");
            Some(format!("    sha256 {} → {}\n", &old[..old.len().min(12)], &f.sha256[..12]))
        }
    }
}

struct Failure {
    error: Error,
    problems: Vec<Problem>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, problems: vec![] }
    }
}

#[allow(clippy::too_many_arguments)]
async fn server(
    destination: &str,
    ssh: &SshArgs,
    assets: &std::path::Path,
    overrides: &OverrideArgs,
    dry_run: bool,
    timeout: std::time::Duration,
    kube: &KubeArgs,
    kubernetes_version: Option<&str>,
    ui: &Ui,
) -> Result<(serde_json::Value, String), Failure> {
    let started = Instant::now();
    let mut phases: Vec<(String, f64)> = Vec::new();
    let mut t = Instant::now();
    let mut phase = |name: &str, t: &mut Instant| {
        phases.push((name.to_string(), t.elapsed().as_secs_f64()));
        *t = Instant::now();
    };
    let o = Overrides::from_args(overrides)?;
    if !assets.is_dir() {
        return Err(Error::Input(format!("--assets {}: not a directory (the jumpbox directory with certs, kubeconfigs and downloads/)", controlplane::output::redact::line(&assets.display().to_string()))).into());
    }
    let version = match kubernetes_version {
        Some(v) => Some(Version::parse(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", controlplane::output::redact::line(v))))?),
        None => None,
    };
    // The API step's credential: --kubeconfig, else $KUBECONFIG, else
    // ASSETS/admin.kubeconfig. It is checked like the assets' kubeconfigs
    // before anything changes.
    let admin_default = assets.join("admin.kubeconfig");
    // Local work (hashing hundreds of MiB, certificate checks) runs while we
    // connect and gather facts.
    let local = tokio::task::spawn_blocking({
        let assets = assets.to_path_buf();
        let kube = kube.clone();
        let admin_default = admin_default.clone();
        move || {
            let (desired, mut problems) = desired::build(&assets, &o, version, timeout);
            let mut extra = Vec::new();
            let resolved = match controlplane::kube::config::resolve(&kube, Some(&admin_default)) {
                Ok(r) => {
                    let info = controlplane::pki::kubeconfig_context(&r.kubeconfig, r.context.as_deref());
                    extra.push((format!("the admin kubeconfig ({})", r.shown), info));
                    Some(r)
                }
                Err(e) => {
                    problems.push(Problem::new(format!("the admin kubeconfig: {e}"), "pass --kubeconfig FILE (admin credentials for the RBAC step)"));
                    None
                }
            };
            problems.extend(preflight::local(&desired, extra));
            (desired, problems, resolved)
        }
    });
    ui.step(&format!("connect  {destination}"));
    let remote = async {
        let host = Host::connect(destination, ssh, timeout).await?;
        host.require_root().await?;
        Ok::<_, Error>(host)
    };
    let (local, host) = tokio::join!(local, remote);
    let (desired, mut problems, resolved) = local.expect("local checks do not panic");
    let host = match host {
        Ok(h) => h,
        Err(e) => return Err(Failure { error: e, problems }),
    };
    // One run per server: wait for any other (a dry run changes nothing and
    // does not wait). The facts are read under the lock.
    let lock = if dry_run {
        None
    } else {
        match controlplane::remote::lock::Lock::acquire(&host, timeout, ui).await {
            Ok(l) => Some(l),
            Err(e) => return Err(Failure { error: e, problems }),
        }
    };
    let facts = match probe::gather(&host).await {
        Ok(f) => f,
        Err(e) => return Err(Failure { error: e, problems }),
    };
    phase("connect, gather facts, local checks", &mut t);
    ui.detail(&format!("server: {} ({}), login {}", facts.arch, if facts.systemd { "systemd" } else { "no systemd" }, if host.sudo { "via sudo -n" } else { "root" }));
    let plan = plan::build(&desired, &facts);
    problems.extend(preflight::remote(&desired, &facts, &plan));
    phase("preflight and plan", &mut t);
    if !problems.is_empty() {
        let n = problems.len();
        release(lock).await;
        host.close().await;
        return Err(Failure { error: Error::Input(format!("preflight found {n} problem{}; nothing on {destination} was changed", if n == 1 { "" } else { "s" })), problems });
    }
    if let Some(v) = desired.scheduler_version {
        ui.detail(&format!("binaries: Kubernetes {v}; scheduler config rendered as {}", desired::scheduler_api_version(v).unwrap_or("?")));
    }

    if dry_run {
        let mut text = format!("plan for {destination} (dry run: nothing changes):\n");
        let mut diffs = Vec::new();
        for a in &plan.actions {
            text.push_str(&format!("  {}\n", a.line()));
            if let Some(d) = diff(a, &desired, &facts) {
                for l in d.lines() {
                    text.push_str(&format!("    {l}\n"));
                }
                if let Action::Upload { dest, .. } = a {
                    diffs.push(json!({"dest": dest, "diff": d}));
                }
            }
        }
        release(lock).await;
        host.close().await;
        let v = json!({
            "apiVersion": "kubectl-bootstrap/v1",
            "kind": "Plan",
            "destination": destination,
            "dryRun": true,
            "changes": !plan.is_noop(),
            "uploadBytes": plan.upload_bytes(),
            "actions": plan.actions,
            "diffs": diffs,
        });
        text.push_str(&summary(&v));
        return Ok((v, text));
    }

    let config = controlplane::kube::config::from_resolved(resolved.expect("a kubeconfig problem stops at preflight"), timeout).await?;
    let outcome = exec::execute(&host, &desired, &plan, config, timeout, ui, lock.as_ref()).await;
    release(lock).await;
    host.close().await;
    let outcome = outcome?;
    phases.extend(outcome.phases.iter().cloned());
    let v = json!({
        "apiVersion": "kubectl-bootstrap/v1",
        "kind": "Result",
        "destination": destination,
        "dryRun": false,
        "changed": !plan.is_noop() || outcome.rbac.iter().any(|r| r.result != "unchanged"),
        "bytesSent": outcome.bytes_sent,
        "uploaded": outcome.uploaded,
        "started": outcome.started,
        "restarted": outcome.restarted,
        "rbac": outcome.rbac,
        "apiserverRestartToReadySeconds": outcome.api_restart_to_ready.map(|s| (s * 1000.0).round() / 1000.0),
        "phases": phases.iter().map(|(n, s)| json!({"name": n, "seconds": (s * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
        "elapsedSeconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    let text = summary(&v);
    Ok((v, text))
}

fn summary(v: &serde_json::Value) -> String {
    if v["dryRun"] == true {
        return if v["changes"] == true {
            format!("dry run: {} to upload; run without --dry-run to apply", human_bytes(v["uploadBytes"].as_u64().unwrap_or(0)))
        } else {
            "dry run: nothing would change".into()
        };
    }
    let list = |k: &str| v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let mut s = String::new();
    if v["changed"] == false {
        s.push_str("nothing changed: the control plane was already as desired\n");
    } else {
        s.push_str(&format!(
            "changed: {} file(s), {} sent; started: {}; restarted: {}\n",
            v["uploaded"].as_array().map(|a| a.len()).unwrap_or(0),
            human_bytes(v["bytesSent"].as_u64().unwrap_or(0)),
            if list("started").is_empty() { "none".into() } else { list("started") },
            if list("restarted").is_empty() { "none".into() } else { list("restarted") },
        ));
    }
    if let Some(r) = v["rbac"].as_array() {
        let parts: Vec<String> = r.iter().map(|x| format!("{} {} {}", x["kind"].as_str().unwrap_or(""), x["name"].as_str().unwrap_or(""), x["result"].as_str().unwrap_or(""))).collect();
        s.push_str(&format!("rbac: {}\n", parts.join("; ")));
    }
    if let Some(p) = v["phases"].as_array() {
        let parts: Vec<String> = p.iter().map(|x| format!("{} {:.1}s", x["name"].as_str().unwrap_or(""), x["seconds"].as_f64().unwrap_or(0.0))).collect();
        s.push_str(&format!("phases: {}; total {:.1}s\n", parts.join(", "), v["elapsedSeconds"].as_f64().unwrap_or(0.0)));
    }
    s.trim_end().to_string()
}

async fn release(lock: Option<controlplane::remote::lock::Lock<'_>>) {
    if let Some(l) = lock {
        l.release().await;
    }
}

async fn reset(destination: &str, ssh: &SshArgs, yes: bool, timeout: std::time::Duration) -> Result<(), Error> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Input("reset removes the control plane: pass --yes (standard input is not a terminal to ask)".into()));
        }
        controlplane::err!("This stops the control plane on {destination} and removes what bootstrap placed (etcd stays). Continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|e| Error::Input(e.to_string()))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Error::Input("reset cancelled".into()));
        }
    }
    let host = Host::connect(destination, ssh, timeout).await?;
    host.require_root().await?;
    let ui = Ui::new(false);
    let done = match controlplane::remote::lock::Lock::acquire(&host, timeout, &ui).await {
        Ok(lock) => {
            let done = exec::reset(&host).await;
            lock.release().await;
            done
        }
        Err(e) => Err(e),
    };
    host.close().await;
    let done = done?;
    if done.is_empty() {
        controlplane::outln!("nothing to reset on {destination}");
    }
    for l in done {
        controlplane::outln!("{l}");
    }
    Ok(())
}

/// A signal stopped the run: the SSH master, its tunnels and the control
/// directory are gone already ([`controlplane::local::interrupt::guard`]); say so
/// and exit now, without waiting for work that was abandoned.
fn interrupted(sig: controlplane::local::interrupt::Signal) -> ! {
    controlplane::errln!("error: stopped by {}: the SSH connection is closed; the server keeps no half-written file, and the next run finishes what this one started", sig.name());
    std::process::exit(sig.exit_code().into())
}

fn main() -> ExitCode {
    if let Some(code) = controlplane::plugin::early(<Cli as clap::CommandFactory>::command()) {
        return code;
    }
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match cli.command {
        // Handled by plugin::early before parsing; here only for --help and errors.
        Command::Completion { shell } => {
            controlplane::errln!("error: completion {shell}: unknown shell; use bash, zsh, fish, elvish or powershell");
            ExitCode::from(controlplane::exit::INPUT)
        }
        Command::Manifests { name, overrides, kubernetes_version } => {
            let version = match kubernetes_version.as_deref().map(|v| Version::parse(v).ok_or(v)) {
                None => Ok(None),
                Some(Ok(v)) => Ok(Some(v)),
                Some(Err(v)) => Err(Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", controlplane::output::redact::line(v)))),
            };
            match version.and_then(|v| Overrides::from_args(&overrides).and_then(|o| manifests(name.as_deref(), &o, v))) {
                Ok(s) => {
                    controlplane::out!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    controlplane::errln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Reset { destination, ssh, yes, timeout } => match rt.block_on(controlplane::local::interrupt::guard(reset(&destination, &ssh, yes, timeout))) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                controlplane::errln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
            Err(sig) => interrupted(sig),
        },
        Command::Server { destination, ssh, assets, overrides, dry_run, output, timeout, kube, kubernetes_version, verbose } => {
            let ui = Ui::new(verbose);
            let r = match rt.block_on(controlplane::local::interrupt::guard(server(&destination, &ssh, &assets, &overrides, dry_run, timeout, &kube, kubernetes_version.as_deref(), &ui))) {
                Ok(r) => r,
                Err(sig) => interrupted(sig),
            };
            match r {
                Ok((v, text)) => {
                    match output {
                        Format::Json => controlplane::outln!("{}", serde_json::to_string_pretty(&v).expect("json")),
                        Format::Text => controlplane::outln!("{text}"),
                    }
                    ExitCode::SUCCESS
                }
                Err(Failure { error, problems }) => {
                    for p in &problems {
                        controlplane::errln!("error: {p}");
                    }
                    controlplane::errln!("error: {error}");
                    if output == Format::Json {
                        let v = json!({"apiVersion": "kubectl-bootstrap/v1", "kind": "Error", "error": error.to_string(), "exitCode": error.exit_code(), "problems": problems});
                        controlplane::outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
                    }
                    ExitCode::from(error.exit_code())
                }
            }
        }
    }
}
