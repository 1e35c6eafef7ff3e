//! `cargo xtask bench`: speed goals as ratios against baselines measured in the
//! same run on the same link (the machine is shared and noisy).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use controlplane::model::{Source, FILES};
use testbed::{Bed, Cluster};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn release_plugins() -> Result<PathBuf> {
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(["build", "--release", "--quiet", "--bin", "kubectl-bootstrap", "--bin", "kubectl-cpcheck"])
        .status()?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    Ok(crate::target_dir().join("release"))
}

fn timed(cmd: &mut Command) -> Result<(f64, std::process::Output)> {
    let t = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("{cmd:?}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((secs, out))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bootstrap_args(bed: &Bed) -> Vec<String> {
    bed.bootstrap_args("root")
}

pub fn run() -> Result<()> {
    let bin = release_plugins()?;
    single(&bin)?;
    ha(&bin)
}

/// The asset files bootstrap uploads (paths under ASSETS).
fn asset_files(assets: &Path) -> Vec<String> {
    FILES
        .iter()
        .filter_map(|f| match f.source {
            Source::Asset(c) => c.iter().find(|p| assets.join(p).exists()).map(|p| p.to_string()),
            _ => None,
        })
        .collect()
}

/// The upload of a run over several servers: every server stages at once
/// and commits at once on a first deploy, so the slowest of each.
fn cluster_upload(v: &serde_json::Value) -> f64 {
    let slowest = |step: &str| {
        v["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["steps"].as_array().into_iter().flatten().filter(|x| x["step"] == step).map(|x| x["seconds"].as_f64().unwrap_or(0.0)).sum::<f64>())
            .fold(0.0, f64::max)
    };
    slowest("stage") + slowest("commit")
}

/// Three servers: a first deploy against tar to the three in parallel, a
/// no-op on three against one, a rolling restart's duration.
fn ha(bin: &Path) -> Result<()> {
    let c = Cluster::up("bench-ha", 3)?;
    let assets = asset_files(&c.assets);
    for a in &assets {
        std::fs::read(c.assets.join(a))?;
    }
    let ssh = c.servers[0].ssh_options().join(" ");
    let tar3: String = c
        .servers
        .iter()
        .map(|s| format!("(tar ch -C {} {} | ssh {ssh} {} 'mkdir -p /root/tarbase && tar x -C /root/tarbase') &", c.assets.display(), assets.join(" "), s.dest()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\nwait";
    let clean = "rm -rf /root/tarbase && sync";
    let boot = |extra: &[&str]| {
        let mut cmd = Command::new(bin.join("kubectl-bootstrap"));
        cmd.args(c.bootstrap_args("root")).args(extra);
        cmd
    };
    let mut reset = Command::new(bin.join("kubectl-bootstrap"));
    reset.arg("reset").args(c.dests()).arg("--yes").args(c.servers[0].plugin_ssh_args());
    let (mut tars, mut uploads, mut ratios, mut wholes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        if round > 0 {
            timed(&mut reset)?;
        }
        for s in &c.servers {
            s.ssh("sync")?;
        }
        let (tar_secs, _) = timed(Command::new("bash").arg("-c").arg(&tar3))?;
        for s in &c.servers {
            s.ssh(clean)?;
        }
        let (whole, out) = timed(&mut boot(&["-o", "json"]))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let up = cluster_upload(&v);
        println!("  HA round {}: tar to 3 in parallel {tar_secs:.2}s, bootstrap upload to 3 {up:.2}s (ratio {:.2}), first deploy of 3 {whole:.1}s", round + 1, up / tar_secs);
        tars.push(tar_secs);
        uploads.push(up);
        ratios.push(up / tar_secs);
        wholes.push(whole);
    }
    // No-op: three servers against one of them alone, alternating.
    let mut one = Command::new(bin.join("kubectl-bootstrap"));
    one.arg("server").arg(c.servers[0].dest()).args(c.servers[0].plugin_ssh_args()).args(["--assets", &c.assets.display().to_string()]);
    let (mut noop3, mut noop1, mut noop_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let (a, _) = timed(&mut one)?;
        let (b, _) = timed(&mut boot(&[]))?;
        noop1.push(a);
        noop3.push(b);
        noop_ratios.push(b / a);
    }
    // A rolling restart (an apiserver flag) over the three.
    let (mut rolls, mut per) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let v = format!("kube-apiserver.v={}", 3 + round % 2);
        let (secs, out) = timed(&mut boot(&["--set", &v, "-o", "json"]))?;
        let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let each: Vec<f64> = j["servers"].as_array().into_iter().flatten().filter_map(|s| s["apiserverRestartToReadySeconds"].as_f64()).collect();
        println!("  rolling restart round {}: {secs:.1}s; each apiserver restart → /readyz {each:?}", round + 1);
        rolls.push(secs);
        per.extend(each);
    }
    println!("HA benchmark (3 servers on one bridge, stacked etcd; medians)");
    println!("  tar c | ssh tar x to 3 in parallel  {:.2}s", median(tars));
    println!("  bootstrap upload to 3 (stage + commit, slowest server) {:.2}s", median(uploads));
    println!("  ratio upload / tar               {:.2}  (median of per-round ratios; goal <= 1.20)", median(ratios));
    println!("  first deploy of 3, whole         {:.1}s", median(wholes));
    println!("  no-op on 1 server                {:.2}s", median(noop1));
    println!("  no-op on 3 servers               {:.2}s", median(noop3));
    println!("  ratio no-op 3 / 1                {:.2}  (median of per-round ratios; goal <= 1.50)", median(noop_ratios));
    println!("  rolling restart over 3           {:.1}s  (goal <= 3 x 15s plus the health waits)", median(rolls));
    println!("  each apiserver restart → /readyz {:.1}s (median of {})", median(per.clone()), per.len());
    Ok(())
}

fn single(bin: &Path) -> Result<()> {
    let bed = Bed::up("bench")?;
    // The same bytes bootstrap uploads from the assets directory.
    let assets = asset_files(&bed.assets);
    // Warm the local page cache for both contenders.
    for a in &assets {
        std::fs::read(bed.assets.join(a))?;
    }
    let ssh = bed.ssh_options().join(" ");
    let tar = format!("tar ch -C {} {} | ssh {ssh} {} 'mkdir -p /root/tarbase && tar x -C /root/tarbase'", bed.assets.display(), assets.join(" "), bed.dest());
    // The same, made durable (bootstrap fsyncs before it renames into place).
    let tar_sync = tar.replace("tar x -C /root/tarbase'", "tar x -C /root/tarbase && sync'");
    // The same over an already open connection (a ControlMaster), as
    // bootstrap's upload phase is: the figure without tar's ssh handshake.
    let ctl = std::env::temp_dir().join(format!("kcp-bench-{}", std::process::id()));
    let master = Command::new("ssh")
        .args(bed.ssh_options())
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=600", "-o"])
        .arg(format!("ControlPath={}", ctl.display()))
        .args(["-fN", &bed.dest()])
        .status()?;
    if !master.success() {
        bail!("cannot open a ControlMaster connection to the bed");
    }
    let tar_open = tar.replacen(&format!("ssh {ssh}"), &format!("ssh {ssh} -o ControlPath={}", ctl.display()), 1);
    let mut reset = Command::new(bin.join("kubectl-bootstrap"));
    reset.args(["reset", &bed.dest(), "--yes"]).args(bed.plugin_ssh_args());

    // Rounds alternate the contenders on the same link; each bootstrap is a
    // first deploy (reset in between), each tar lands in an empty directory.
    const ROUNDS: usize = 5;
    let (mut tars, mut tar_syncs, mut uploads, mut wholes, mut ratios, mut connects) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut tar_opens, mut open_ratios) = (Vec::new(), Vec::new());
    let (mut bytes, mut files) = (0, 0);
    for round in 0..ROUNDS {
        if round > 0 {
            timed(&mut reset)?;
        }
        bed.ssh("sync")?;
        connects.push(timed(Command::new("ssh").args(bed.ssh_options()).arg(bed.dest()).arg("true"))?.0);
        let (tar_secs, _) = timed(Command::new("bash").arg("-c").arg(&tar))?;
        bed.ssh("rm -rf /root/tarbase && sync")?;
        let (tar_sync_secs, _) = timed(Command::new("bash").arg("-c").arg(&tar_sync))?;
        bed.ssh("rm -rf /root/tarbase && sync")?;
        let (tar_open_secs, _) = timed(Command::new("bash").arg("-c").arg(&tar_open))?;
        bed.ssh("rm -rf /root/tarbase && sync")?;
        let mut args = bootstrap_args(&bed);
        args.extend(["-o".into(), "json".into()]);
        let (first_secs, out) = timed(Command::new(bin.join("kubectl-bootstrap")).args(&args))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        // The upload: the stage step and the commit step, each timed by itself.
        let steps = v["steps"].as_array().context("bootstrap -o json has steps")?;
        let upload_secs: f64 = steps.iter().filter(|x| x["step"] == "stage" || x["step"] == "commit").map(|x| x["seconds"].as_f64().unwrap_or(0.0)).sum();
        bytes = v["bytesSent"].as_u64().unwrap_or(0);
        files = v["uploaded"].as_array().map(|a| a.len()).unwrap_or(0);
        println!(
            "  round {}: tar {tar_secs:.2}s, tar && sync {tar_sync_secs:.2}s, tar on an open connection {tar_open_secs:.2}s, bootstrap upload {upload_secs:.2}s (ratio {:.2})",
            round + 1,
            upload_secs / tar_secs
        );
        tar_opens.push(tar_open_secs);
        open_ratios.push(upload_secs / tar_open_secs);
        tars.push(tar_secs);
        tar_syncs.push(tar_sync_secs);
        uploads.push(upload_secs);
        wholes.push(first_secs);
        ratios.push(upload_secs / tar_secs);
    }
    let (tar_secs, tar_sync_secs, upload_secs, first_secs) = (median(tars), median(tar_syncs), median(uploads.clone()), median(wholes));
    let ratio = median(ratios);
    let _ = Command::new("ssh").args(["-o", &format!("ControlPath={}", ctl.display()), "-O", "exit", &bed.dest()]).stderr(Stdio::null()).status();

    let mut noop = Vec::new();
    for _ in 0..5 {
        noop.push(timed(Command::new(bin.join("kubectl-bootstrap")).args(bootstrap_args(&bed)))?.0);
    }
    let noop = median(noop);
    let restart = restart(bin, &bed)?;

    let mib = bytes as f64 / (1u64 << 20) as f64;
    println!("bootstrap benchmark (medians of {ROUNDS} alternating rounds, same bed, same link)");
    println!("  bytes                         {mib:.1} MiB in {files} files");
    println!("  baseline tar c | ssh tar x    {tar_secs:.2}s ({:.0} MiB/s; includes its ssh connect)", mib / tar_secs);
    println!("  bootstrap upload phase        {upload_secs:.2}s ({:.0} MiB/s)", mib / upload_secs);
    println!("  baseline tar … && sync        {tar_sync_secs:.2}s");
    println!("  ssh connect alone (`ssh true`) {:.2}s", median(connects));
    println!("  tar on an open connection     {:.2}s", median(tar_opens));
    println!("  ratio upload / tar            {ratio:.2}  (median of per-round ratios; goal <= 1.10)");
    println!("  ratio upload / (tar && sync)  {:.2}", upload_secs / tar_sync_secs);
    println!("  ratio upload / tar on an open connection {:.2}  (median of per-round ratios)", median(open_ratios));
    println!("  bootstrap first deploy, whole {first_secs:.2}s (includes start, health wait, RBAC)");
    println!("  no-op re-run (median of 5)    {noop:.2}s  (goal <= 2.00)");
    println!("{restart}");
    cpcheck(bin, &bed)
}

/// An apiserver-only change: from bootstrap's first systemctl step of the
/// restart to /readyz ok, against a plain `systemctl restart kube-apiserver`
/// (its clients left running) timed to the same /readyz from here.
fn restart(bin: &Path, bed: &Bed) -> Result<String> {
    let readyz = || {
        Command::new("kubectl")
            .args(["--kubeconfig", &bed.kubeconfig.display().to_string(), "--server", &format!("https://{}:6443", bed.address), "--request-timeout=1s", "get", "--raw", "/readyz"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let settle = || -> Result<()> {
        // A no-op run waits for health and fresh leaders.
        timed(Command::new(bin.join("kubectl-bootstrap")).args(bootstrap_args(bed)).args(["--set", &format!("kube-apiserver.v={}", 2)]))?;
        Ok(())
    };
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let mut args = bootstrap_args(bed);
        args.extend(["-o".into(), "json".into(), "--set".into(), format!("kube-apiserver.v={}", 3 + round % 2)]);
        let (_, out) = timed(Command::new(bin.join("kubectl-bootstrap")).args(&args))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ours.push(v["apiserverRestartToReadySeconds"].as_f64().unwrap_or(f64::NAN));
        settle()?;
        let t = Instant::now();
        bed.ssh("systemctl restart kube-apiserver")?;
        while !readyz() {
            if t.elapsed().as_secs() > 180 {
                bail!("the apiserver did not get ready within 180s of a plain restart");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        plain.push(t.elapsed().as_secs_f64());
        settle()?;
        println!("  restart round {}: bootstrap {:.1}s, plain systemctl restart {:.1}s", round + 1, ours[round], plain[round]);
    }
    let (o, p) = (median(ours), median(plain));
    Ok(format!(
        "  apiserver restart → /readyz  {o:.1}s  (goal <= 15s; bootstrap stops its clients first)\n  plain systemctl restart → /readyz {p:.1}s (its clients' watches hold the shutdown)\n  ratio bootstrap / plain       {:.2}",
        o / p
    ))
}

/// Full cpcheck against the guide's manual verification, one command after another.
fn cpcheck(bin: &Path, bed: &Bed) -> Result<()> {
    // The guide runs kubectl on the server with admin.kubeconfig in root's home.
    let scp = Command::new("scp").arg("-q").args(bed.ssh_options()).arg(&bed.kubeconfig).arg(format!("{}:/root/admin.kubeconfig", bed.dest())).status()?;
    if !scp.success() {
        bail!("scp admin.kubeconfig failed");
    }
    let manual = [
        "ss -tlp | grep kube",
        "systemctl is-active kube-apiserver kube-controller-manager kube-scheduler",
        "systemctl status kube-apiserver --no-pager",
        "systemctl status kube-scheduler kube-controller-manager --no-pager",
        "kubectl cluster-info --kubeconfig admin.kubeconfig",
        "kubectl get node --kubeconfig admin.kubeconfig",
        "kubectl get pod -A --kubeconfig admin.kubeconfig",
        "kubectl get service,endpoints --kubeconfig admin.kubeconfig",
        "kubectl get clusterroles system:kube-apiserver-to-kubelet --kubeconfig admin.kubeconfig",
        "kubectl get clusterrolebindings system:kube-apiserver --kubeconfig admin.kubeconfig",
        "kubectl get --raw /version --server https://server.kubernetes.local:6443 --kubeconfig admin.kubeconfig",
    ];
    let run_manual = || -> Result<f64> {
        let t = Instant::now();
        for c in manual {
            // One ssh per step, as a person at the jumpbox does it; a step's
            // own exit status (grep finding nothing) does not stop the sequence.
            Command::new("ssh").args(bed.ssh_options()).arg(bed.dest()).arg(c).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let args = bed.cpcheck_args();
    let run_cpcheck = || -> Result<(f64, usize)> {
        let t = Instant::now();
        let out = Command::new(bin.join("kubectl-cpcheck")).args(&args).args(["-o", "json"]).stdin(Stdio::null()).output()?;
        let secs = t.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("cpcheck -o json")?;
        Ok((secs, v["checks"].as_array().map(|a| a.len()).unwrap_or(0)))
    };
    let (mut m, mut c) = (Vec::new(), Vec::new());
    let mut checks = 0;
    for _ in 0..5 {
        m.push(run_manual()?);
        let (s, n) = run_cpcheck()?;
        c.push(s);
        checks = n;
    }
    let (m, c) = (median(m), median(c));
    println!("\ncpcheck benchmark (median of 5, alternating, same bed)");
    println!("  guide's manual verification   {m:.2}s ({} commands)", manual.len());
    println!("  kubectl cpcheck               {c:.2}s ({checks} checks)");
    println!("  speed-up manual / cpcheck     {:.1}x  (goal >= 5x)", m / c);
    println!("  cpcheck wall                  {c:.2}s  (goal <= 1.00s)");
    Ok(())
}
