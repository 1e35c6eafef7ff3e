//! `cargo xtask …`: developer automation (rust-analyzer style).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use testbed::{Bed, BedOptions, Cluster};

mod bench;
mod faults;
mod release;

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
    /// Every test: installs prerequisites, builds the bed's parts, checks rustfmt and clippy, runs the whole suite, prints phase timings.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Benchmarks on a fresh bed, each against a baseline measured in the same run.
    Bench,
    /// The full fault campaign (cut connections, SIGINTs) plus the hostile inputs; writes RELIABILITY.md.
    Faults {
        /// Replay a campaign (its seed is printed and written in RELIABILITY.md).
        #[arg(long)]
        seed: Option<u64>,
        /// Connection cuts, spread over upload, commit, daemon-reload/restart and the health wait.
        #[arg(long, default_value_t = 24)]
        cuts: usize,
        /// SIGINTs at random points.
        #[arg(long, default_value_t = 12)]
        sigints: usize,
    },
    /// Build the plugins and put them (and their completion helpers) in PREFIX/bin.
    Install {
        /// Default: ~/.local
        #[arg(long)]
        prefix: Option<std::path::PathBuf>,
    },
    /// Release archives (binary, completion helper, man page, LICENSE) and krew manifests.
    Dist {
        /// Archives here and manifests in OUT/plugins (default: dist/ and plugins/).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Record the probe's replies from a real server prepared so that every
    /// fact fires (controlplane/src/remote/probe/recorded/): the unit tests' replies.
    ProbeReply,
    /// Every failure signature reproduced on a bed, as the guide's readers break a plane, `rounds` times:
    /// how long until cpcheck names the cause, and until it clears after the fix; writes RELIABILITY.md's section.
    Diagnose {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The local demo: bed up, build the plugins, bootstrap the bed, check it.
    Demo {
        /// Leave the bed running afterwards.
        #[arg(long)]
        keep: bool,
        /// Servers: 1, or 3 for the HA path (stacked etcd, rolling changes).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        servers: u8,
        /// The servers' architecture: arm64 (the guide's own) boots under qemu-user emulation.
        #[arg(long, default_value = "amd64")]
        arch: testbed::Arch,
    },
}

#[derive(Subcommand)]
enum BedCmd {
    /// Bring a bed up and print its BED_* variables (eval "$(cargo xtask bed up)").
    Up {
        #[arg(long, default_value = "default")]
        name: String,
        /// Servers on one segment, with a stacked etcd cluster (1: the single-server bed).
        #[arg(long, default_value_t = 1)]
        servers: u8,
        /// Shape the jumpbox→server link to this rate (tc tbf): 100mbit, 20mbit…
        #[arg(long, value_name = "RATE")]
        link: Option<String>,
        /// Keep zstd on the server(s) (a minimal Debian server has only gzip).
        #[arg(long)]
        zstd: bool,
        /// The servers' Debian release: bookworm (systemd 252) or bullseye (systemd 247).
        #[arg(long, default_value = "bookworm")]
        os: testbed::Os,
        /// The servers' system locale (/etc/default/locale), e.g. de_DE.UTF-8.
        #[arg(long)]
        locale: Option<String>,
        /// The servers' architecture: arm64 boots under qemu-user emulation.
        #[arg(long, default_value = "amd64")]
        arch: testbed::Arch,
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
        /// Which server of a multi-server bed (1-based).
        #[arg(long, default_value_t = 1)]
        server: usize,
        /// Command to run instead of a shell.
        #[arg(trailing_var_arg = true)]
        command: Vec<String>,
    },
}

/// Where cargo builds: `CARGO_TARGET_DIR`, else the workspace's target/.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("target"))
}

fn loaded(name: &str) -> Result<Bed> {
    Bed::load(name)?.with_context(|| format!("no bed `{name}` is up (cargo xtask bed up --name {name})"))
}

/// Runs `cmd`, timing it as one CI phase.
fn timed(label: &str, timings: &mut Vec<(String, f64)>, cmd: &mut Command) -> Result<()> {
    eprintln!("[xtask] {label}: {cmd:?}");
    let t = std::time::Instant::now();
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    timings.push((label.to_string(), t.elapsed().as_secs_f64()));
    if !status.success() {
        print_timings(timings);
        bail!("{label} failed ({status})");
    }
    Ok(())
}

fn print_timings(timings: &[(String, f64)]) {
    eprintln!("\n[xtask] phase timings:");
    for (l, s) in timings {
        eprintln!("[xtask]   {l:<28} {s:>8.1}s");
    }
    eprintln!("[xtask]   {:<28} {:>8.1}s", "total", timings.iter().map(|t| t.1).sum::<f64>());
}

fn test(args: &[String]) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let scripts = root.join("scripts");
    let mut t = Vec::new();
    timed("prerequisites (apt)", &mut t, Command::new("bash").arg(scripts.join("install-prereqs.sh")))?;
    timed("binfmt arm64 (qemu-user)", &mut t, Command::new("bash").arg(scripts.join("binfmt.sh")).arg("arm64"))?;
    // The root file systems (debootstrap; arm64's second stage emulated) are
    // made while Kubernetes builds: on a fresh machine they overlap.
    let rootfs = std::thread::spawn({
        let scripts = scripts.clone();
        move || {
            let mut t = Vec::new();
            for (suite, arch) in [("bookworm", "amd64"), ("bullseye", "amd64"), ("bookworm", "arm64")] {
                timed(
                    &format!("rootfs {suite}/{arch} (debootstrap)"),
                    &mut t,
                    Command::new("bash").arg(scripts.join("build-rootfs.sh")).args([suite, arch]).stdout(std::process::Stdio::null()),
                )?;
            }
            Ok::<_, anyhow::Error>(t)
        }
    });
    for arch in ["amd64", "arm64"] {
        timed(&format!("kubernetes build {arch}"), &mut t, Command::new("bash").arg(scripts.join("build-kubernetes.sh")).arg(arch).stdout(std::process::Stdio::null()))?;
    }
    t.extend(rootfs.join().map_err(|_| anyhow::anyhow!("the root file system builds stopped"))??);
    timed("cross toolchain (zig, musl targets)", &mut t, Command::new("bash").arg(scripts.join("install-cross.sh")).stdout(std::process::Stdio::null()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // rustfmt and clippy come with the toolchain's default profile; add them if this one lacks them.
    let has =
        |tool: &str| Command::new(&cargo).args([tool, "--version"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success());
    if !has("fmt") || !has("clippy") {
        timed("rustup component add", &mut t, Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    timed("cargo fmt --check", &mut t, Command::new(&cargo).current_dir(&root).args(["fmt", "--all", "--check"]))?;
    timed("cargo clippy", &mut t, Command::new(&cargo).current_dir(&root).args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    timed("cargo build", &mut t, Command::new(&cargo).current_dir(&root).args(["build", "--workspace", "--all-targets", "--locked"]))?;
    // Every test binary's tests in one pool (cargo-nextest, on every machine
    // of this kind): two at a time, whichever binary they belong to, each in
    // a process of its own, each bounded (.config/nextest.toml).
    if has("nextest") {
        timed("tests (nextest)", &mut t, Command::new(&cargo).current_dir(&root).args(["nextest", "run", "--workspace", "--locked", "--no-fail-fast"]).args(args))?;
        timed("doc tests", &mut t, Command::new(&cargo).current_dir(&root).args(["test", "--workspace", "--locked", "--doc"]))?;
    } else {
        timed("tests", &mut t, Command::new(&cargo).current_dir(&root).args(["test", "--workspace", "--locked", "--no-fail-fast"]).args(args))?;
    }
    print_timings(&t);
    Ok(())
}

/// RELIABILITY.md's diagnose section lies between these.
pub const DIAGNOSE_BEGIN: &str = "<!-- diagnose:begin -->";
pub const DIAGNOSE_END: &str = "<!-- diagnose:end -->";

/// `cargo xtask diagnose`: every signature reproduced `rounds` times on
/// one bed; medians written between the markers of RELIABILITY.md.
fn diagnose(rounds: usize) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let started = std::time::Instant::now();
    let bed = e2e::bootstrapped("xdiagnose");
    let cases = e2e::diagnose_bed::cases();
    let mut rows = Vec::new();
    for case in &cases {
        let (mut named, mut cleared, mut detail) = (Vec::new(), Vec::new(), String::new());
        for round in 0..rounds {
            let m = e2e::diagnose_bed::reproduce(&bed, case);
            eprintln!("[diagnose] {} round {}: named after {:.1}s, cleared {:.1}s after the fix", m.id, round + 1, m.detected.as_secs_f64(), m.cleared.as_secs_f64());
            named.push(m.detected.as_secs_f64());
            cleared.push(m.cleared.as_secs_f64());
            detail = m.detail;
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        rows.push(format!("| `{}` | {} of {rounds} | {:.1} s | {:.1} s | {} |", case.id, named.len(), median(named), median(cleared), detail.replace('|', "\\|")));
    }
    let mut md = format!(
        "{DIAGNOSE_BEGIN}\n## Failures that explain themselves\n\nFrom `cargo xtask diagnose` ({:.0} s, {rounds} rounds of each signature on one bed; README's test command runs one round, tests/tests/diagnose.rs). Each round: break the plane by hand as the guide's readers do (tests/src/diagnose_bed.rs), poll `kubectl cpcheck` every 2 s until `diagnose.ID` names the cause (a failing unit's row names it too), then the reader's own step and `kubectl bootstrap server`, and poll until the row passes again.\n\n| signature | named | named after (median) | cleared after the fix (median) | what cpcheck said (last round) |\n| --- | --- | --- | --- | --- |\n",
        started.elapsed().as_secs_f64()
    );
    for r in rows {
        md.push_str(&r);
        md.push('\n');
    }
    md.push_str(DIAGNOSE_END);
    let path = root.join("RELIABILITY.md");
    let text = std::fs::read_to_string(&path)?;
    let kept = match (text.find(DIAGNOSE_BEGIN), text.find(DIAGNOSE_END)) {
        (Some(a), Some(b)) => format!("{}{md}{}", &text[..a], &text[b + DIAGNOSE_END.len()..]),
        _ => format!("{}\n{md}\n", text.trim_end()),
    };
    std::fs::write(&path, kept)?;
    eprintln!("[diagnose] wrote RELIABILITY.md");
    Ok(())
}

/// `cargo xtask probe-reply`: a bed, bootstrapped and prepared so that
/// every fact fires, read three ways; the replies written where the probe's
/// unit tests read them.
fn probe_reply() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let bed = e2e::bootstrapped("probe-reply");
    let replies = e2e::probe_bed::replies(&bed);
    let dir = root.join("controlplane/src/remote/probe/recorded");
    std::fs::create_dir_all(&dir)?;
    for (name, reply) in e2e::probe_bed::RECORDED.iter().zip(replies.all()) {
        let reply = e2e::probe_bed::masked(reply);
        std::fs::write(dir.join(name), &reply)?;
        eprintln!("[xtask] {}: {} bytes, tags {:?}", dir.join(name).display(), reply.len(), e2e::probe_bed::tags(&reply));
    }
    Ok(())
}

fn demo(keep: bool, servers: u8, arch: testbed::Arch) -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let options = BedOptions { arch, ..Default::default() };
    // One server, or an HA plane of N on one bridge with stacked etcd.
    let (single, cluster) = if servers <= 1 {
        let mut bed = Bed::up_with("demo", &options)?;
        bed.teardown_on_drop = !keep;
        (Some(bed), None)
    } else {
        let mut c = Cluster::up_with("demo", servers, &options)?;
        c.teardown_on_drop = !keep;
        (None, Some(c))
    };
    let (env, boot_args, check_args) = match (&single, &cluster) {
        (Some(b), _) => (b.env_lines(), b.bootstrap_args("root"), b.cpcheck_args()),
        (_, Some(c)) => (c.env_lines(), c.bootstrap_args("root"), c.cpcheck_args()),
        _ => unreachable!(),
    };
    eprintln!("\n== the bed is up ({servers} throwaway Debian server(s) with systemd, sshd and etcd):\n{env}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(&cargo).current_dir(&root).args(["build", "--quiet", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck"]).status()?;
    if !st.success() {
        bail!("building the plugins failed");
    }
    // Run them as kubectl plugins: kubectl finds kubectl-* executables on PATH.
    let path = format!("{}:{}", target_dir().join("debug").display(), std::env::var("PATH").unwrap_or_default());
    let mut boot = Command::new("kubectl");
    boot.env("PATH", &path).arg("bootstrap").args(&boot_args);
    if !arch.native() {
        // Emulation is slow: a first deploy takes minutes.
        boot.args(["--timeout", "8m"]);
    }
    eprintln!("\n== {boot:?}");
    let st = boot.status()?;
    if !st.success() {
        bail!("kubectl bootstrap server failed ({st})");
    }
    let mut check = Command::new("kubectl");
    check.env("PATH", &path).arg("cpcheck").args(&check_args);
    eprintln!("\n== {check:?}");
    let st = check.status()?;
    if keep {
        eprintln!("\nleft running: eval \"$(cargo xtask bed env --name demo)\"; cargo xtask bed down --name demo");
    }
    if !st.success() {
        bail!("kubectl cpcheck found failures ({st})");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Bed { command } => match command {
            BedCmd::Up { name, servers: 1, link, zstd, os, locale, arch } => Bed::up_with(&name, &BedOptions { link, zstd, os, locale, arch }).map(|mut b| {
                b.teardown_on_drop = false;
                print!("{}", b.env_lines());
            }),
            BedCmd::Up { name, servers, link, zstd, os, locale, arch } => Cluster::up_with(&name, servers, &BedOptions { link, zstd, os, locale, arch }).map(|mut c| {
                c.teardown_on_drop = false;
                print!("{}", c.env_lines());
            }),
            BedCmd::Env { name } => match Cluster::load(&name) {
                Ok(Some(c)) => {
                    print!("{}", c.env_lines());
                    Ok(())
                }
                _ => loaded(&name).map(|mut b| {
                    b.teardown_on_drop = false;
                    print!("{}", b.env_lines())
                }),
            },
            BedCmd::Down { name, all } => {
                let names = if all { testbed::list() } else { vec![name] };
                names.iter().try_for_each(|n| {
                    let left = match Cluster::load(n)? {
                        Some(mut c) => {
                            c.teardown();
                            c.teardown_on_drop = false;
                            c.leftovers()
                        }
                        None => {
                            let mut b = loaded(n)?;
                            b.teardown();
                            b.teardown_on_drop = false;
                            b.leftovers()
                        }
                    };
                    if !left.is_empty() {
                        bail!("bed `{n}`: left behind: {}", left.join("; "));
                    }
                    eprintln!("bed `{n}` is down");
                    Ok(())
                })
            }
            BedCmd::Ssh { name, server, command } => (|| {
                let b = match Cluster::load(&name)? {
                    Some(mut c) => {
                        c.teardown_on_drop = false;
                        if server == 0 || server > c.servers.len() {
                            bail!("--server {server}: bed `{name}` has servers 1 to {}", c.servers.len());
                        }
                        let mut b = c.servers.remove(server - 1);
                        b.teardown_on_drop = false;
                        b
                    }
                    None => {
                        let mut b = loaded(&name)?;
                        b.teardown_on_drop = false;
                        b
                    }
                };
                let err = Command::new("ssh").args(b.ssh_options()).arg("-t").arg(b.dest()).args(&command).exec();
                Err(err).context("cannot run ssh")
            })(),
        },
        Cmd::Test { args } => test(&args),
        Cmd::Bench => bench::run_all(),
        Cmd::Faults { seed, cuts, sigints } => faults::run(seed, cuts, sigints),
        Cmd::Install { prefix } => release::install(prefix),
        Cmd::Dist { out } => release::dist(out),
        Cmd::Demo { keep, servers, arch } => demo(keep, servers, arch),
        Cmd::ProbeReply => probe_reply(),
        Cmd::Diagnose { rounds } => diagnose(rounds),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
