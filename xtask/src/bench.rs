//! `cargo xtask bench`: speed and memory goals as ratios against baselines
//! measured in the same run, on the same bed and link (the machine is
//! shared and noisy): medians of 5 alternating rounds. Writes the figures
//! between the markers of BENCHMARKS.md.
//!
//! The bed shapes bandwidth only (tc tbf; netem, for latency, is not in
//! this kernel), so round trips are counted (`-v`: SSH sessions), not timed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use controlplane::model::{Source, FILES};
use testbed::{Bed, BedOptions, Cluster};

const ROUNDS: usize = 5;

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

/// What one command cost: wall seconds, its own CPU (user + system, from
/// wait4: the process and the children it waited for), its output.
struct Ran {
    wall: f64,
    cpu: f64,
    out: std::process::Output,
}

fn run(cmd: &mut Command) -> Result<Ran> {
    use std::io::Read;
    let t = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("{cmd:?}"))?;
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let eh = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let mut stdout = Vec::new();
    so.read_to_end(&mut stdout)?;
    let stderr = eh.join().unwrap();
    let mut status = 0i32;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) } < 0 {
        bail!("wait4 failed");
    }
    let wall = t.elapsed().as_secs_f64();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
    let st = std::os::unix::process::ExitStatusExt::from_raw(status);
    let out = std::process::Output { status: st, stdout, stderr };
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Ran { wall, cpu, out })
}

fn timed(cmd: &mut Command) -> Result<(f64, std::process::Output)> {
    let r = run(cmd)?;
    Ok((r.wall, r.out))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The `-v` stats line: (SSH sessions, own CPU seconds, peak RSS KiB).
fn stats(stderr: &[u8]) -> (usize, f64, u64) {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| l.starts_with("stats: ")).unwrap_or("");
    let num = |after: &str| line.split(after).nth(1).and_then(|r| r.split_whitespace().next()).map(|s| s.trim_end_matches('s').to_string());
    let sessions = line.strip_prefix("stats: ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    (sessions, num("cpu ").and_then(|c| c.parse().ok()).unwrap_or(f64::NAN), num("peak rss ").and_then(|c| c.parse().ok()).unwrap_or(0))
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

/// One figure for BENCHMARKS.md.
struct Row {
    what: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

fn row(rows: &mut Vec<Row>, what: &str, value: String, goal: &str, met: Option<bool>) {
    println!(
        "  {what:<58} {value:<16} {goal}{}",
        match met {
            Some(true) => "  met",
            Some(false) => "  MISSED",
            None => "",
        }
    );
    rows.push(Row { what: what.into(), value, goal: goal.into(), met });
}

pub fn run_all() -> Result<()> {
    let bin = release_plugins()?;
    let started = Instant::now();
    let mut rows = Vec::new();
    single(&bin, &mut rows)?;
    shaped(&bin, true, &mut rows)?;
    shaped(&bin, false, &mut rows)?;
    ha(&bin, &mut rows)?;
    write_md(&rows, started.elapsed().as_secs_f64())
}

/// Replaces what lies between the markers in BENCHMARKS.md.
fn write_md(rows: &[Row], secs: f64) -> Result<()> {
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)?;
    let (begin, end) = ("<!-- bench:begin -->", "<!-- bench:end -->");
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else { bail!("BENCHMARKS.md has no {begin} … {end} markers") };
    let day = String::from_utf8(Command::new("date").arg("-u").arg("+%Y-%m-%d").output()?.stdout)?;
    let mut t = format!(
        "{begin}\n_Written by `cargo xtask bench` on {} ({:.0} min, release build, 2-core VM; medians of {ROUNDS} alternating rounds)._\n\n| figure | value | goal | |\n| --- | --- | --- | --- |\n",
        day.trim(),
        secs / 60.0
    );
    for r in rows {
        let m = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        let cell = |s: &str| s.replace('|', "\\|");
        t.push_str(&format!("| {} | {} | {} | {m} |\n", cell(&r.what), cell(&r.value), cell(&r.goal)));
    }
    let out = format!("{}{t}{}", &text[..a], &text[b..]);
    std::fs::write(&path, out)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `tar c | ssh tar x` of `assets` to `dest` (into an empty directory).
fn tar_cmd(assets: &Path, files: &[String], ssh: &str, dest: &str) -> String {
    format!("tar ch -C {} {} | ssh {ssh} {dest} 'mkdir -p /root/tarbase && tar x -C /root/tarbase'", assets.display(), files.join(" "))
}

fn bootstrap(bin: &Path, bed: &Bed, extra: &[&str]) -> Command {
    let mut c = Command::new(bin.join("kubectl-bootstrap"));
    c.args(bed.bootstrap_args("root")).args(extra);
    c
}

fn reset(bin: &Path, dests: &[String], ssh_args: &[String]) -> Result<()> {
    run(Command::new(bin.join("kubectl-bootstrap")).arg("reset").args(dests).arg("--yes").args(ssh_args))?;
    Ok(())
}

/// The upload (stage + commit steps) of a `-o json` result, and its codec.
fn upload_of(v: &serde_json::Value) -> (f64, String, u64) {
    let steps = v["steps"].as_array().cloned().unwrap_or_default();
    let secs = steps.iter().filter(|x| x["step"] == "stage" || x["step"] == "commit").map(|x| x["seconds"].as_f64().unwrap_or(0.0)).sum();
    (secs, v["compression"].as_str().unwrap_or("?").to_string(), v["bytesSent"].as_u64().unwrap_or(0))
}

/// The unshaped link: first deploy against tar, the no-op and cpcheck
/// against `ssh true`, peak memory, the apiserver restart.
fn single(bin: &Path, rows: &mut Vec<Row>) -> Result<()> {
    let bed = Bed::up_with("bench", &BedOptions { zstd: true, ..Default::default() })?;
    let assets = asset_files(&bed.assets);
    for a in &assets {
        std::fs::read(bed.assets.join(a))?;
    }
    let ssh = bed.ssh_options().join(" ");
    let tar = tar_cmd(&bed.assets, &assets, &ssh, &bed.dest());
    let ssh_args = bed.plugin_ssh_args();
    let (mut ratios, mut rss, mut codecs) = (Vec::new(), Vec::new(), Vec::new());
    println!("unshaped link (the bed's veth), server with zstd");
    for round in 0..ROUNDS {
        if round > 0 {
            reset(bin, &[bed.dest()], &ssh_args)?;
        }
        bed.ssh("sync")?;
        let t = run(Command::new("bash").arg("-c").arg(&tar))?;
        bed.ssh("rm -rf /root/tarbase && sync")?;
        let b = run(&mut bootstrap(bin, &bed, &["-o", "json", "-v"]))?;
        let v: serde_json::Value = serde_json::from_slice(&b.out.stdout)?;
        let (up, codec, _) = upload_of(&v);
        let (_, _, peak) = stats(&b.out.stderr);
        println!("  round {}: tar {:.2}s, bootstrap upload {up:.2}s ({codec}), ratio {:.2}, peak rss {} MiB", round + 1, t.wall, up / t.wall, peak >> 10);
        ratios.push(up / t.wall);
        rss.push(peak as f64);
        codecs.push(codec);
    }
    let r = median(ratios);
    row(rows, "first deploy upload / `tar c | ssh tar x`, unshaped link", format!("{r:.2} ({})", codecs[0]), "≤ 1.0", Some(r <= 1.0));
    let peak = median(rss) / 1024.0;
    row(rows, "bootstrap peak resident memory, first deploy", format!("{peak:.1} MiB"), "≤ 64 MiB", Some(peak <= 64.0));

    // No-op and cpcheck against `ssh true`, alternating.
    let (mut nw, mut nc, mut cw, mut tw, mut tc, mut ns, mut cs, mut crss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0, 0, Vec::new());
    let check_args = bed.cpcheck_args();
    for _ in 0..ROUNDS {
        let t = run(Command::new("ssh").args(bed.ssh_options()).arg(bed.dest()).arg("true"))?;
        let n = run(&mut bootstrap(bin, &bed, &["-v"]))?;
        let c = run(Command::new(bin.join("kubectl-cpcheck")).args(&check_args).args(["-o", "json", "-v"]))?;
        let (s, cpu, _) = stats(&n.out.stderr);
        let (s2, _, r2) = stats(&c.out.stderr);
        (ns, cs) = (s, s2);
        tw.push(t.wall);
        tc.push(t.cpu);
        nw.push(n.wall / t.wall);
        nc.push(cpu / t.cpu.max(1e-3));
        cw.push(c.wall / t.wall);
        crss.push(r2 as f64);
        println!("  ssh true {:.3}s ({:.3}s cpu); no-op {:.3}s ({cpu:.3}s own cpu, {s} sessions); cpcheck {:.3}s ({s2} sessions)", t.wall, t.cpu, n.wall, c.wall);
    }
    let (a, b, c) = (median(nw), median(nc), median(cw));
    row(rows, "`ssh DEST true`", format!("{:.3} s, {:.3} s cpu", median(tw), median(tc)), "(baseline)", None);
    row(rows, "no-op re-run / `ssh true`, wall", format!("{a:.2}"), "≤ 1.5", Some(a <= 1.5));
    row(rows, "no-op re-run own cpu / `ssh true` cpu", format!("{b:.2}"), "≤ 2", Some(b <= 2.0));
    row(rows, "no-op re-run, SSH sessions after the connection (round trips)", format!("{}", ns.saturating_sub(1)), "", None);
    row(rows, "cpcheck / `ssh true`, wall", format!("{c:.2}"), "≤ 1.5", Some(c <= 1.5));
    row(rows, "cpcheck, SSH sessions after the connection (round trips)", format!("{}", cs.saturating_sub(1)), "", None);
    row(rows, "cpcheck peak resident memory", format!("{:.1} MiB", median(crss) / 1024.0), "", None);
    let (o, p) = restart(bin, &bed)?;
    row(rows, "apiserver restart → /readyz (bootstrap stops its clients first)", format!("{o:.1} s"), "≤ 15 s", Some(o <= 15.0));
    row(rows, "the same with a plain `systemctl restart`", format!("{p:.1} s"), "(baseline)", None);
    Ok(())
}

/// A 100 Mbit/s link: first deploy's upload against tar over the same link.
fn shaped(bin: &Path, zstd: bool, rows: &mut Vec<Row>) -> Result<()> {
    let name = if zstd { "bench-zstd" } else { "bench-gzip" };
    let bed = Bed::up_with(name, &BedOptions { link: Some("100mbit".into()), zstd, ..Default::default() })?;
    let assets = asset_files(&bed.assets);
    for a in &assets {
        std::fs::read(bed.assets.join(a))?;
    }
    let tar = tar_cmd(&bed.assets, &assets, &bed.ssh_options().join(" "), &bed.dest());
    let ssh_args = bed.plugin_ssh_args();
    println!("100 Mbit/s link, server {}", if zstd { "with zstd" } else { "with gzip only" });
    let (mut ratios, mut codecs, mut wire) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round > 0 {
            reset(bin, &[bed.dest()], &ssh_args)?;
        }
        bed.ssh("sync")?;
        let t = run(Command::new("bash").arg("-c").arg(&tar))?;
        bed.ssh("rm -rf /root/tarbase && sync")?;
        let b = run(&mut bootstrap(bin, &bed, &["-o", "json"]))?;
        let v: serde_json::Value = serde_json::from_slice(&b.out.stdout)?;
        let (up, codec, sent) = upload_of(&v);
        println!("  round {}: tar {:.1}s, bootstrap upload {up:.1}s ({codec}, {} MiB on the wire), ratio {:.2}", round + 1, t.wall, sent >> 20, up / t.wall);
        ratios.push(up / t.wall);
        codecs.push(codec);
        wire.push(sent as f64);
    }
    let r = median(ratios);
    let goal = if zstd { 0.4 } else { 0.5 };
    row(
        rows,
        &format!("first deploy upload / tar, 100 Mbit/s, server {}", if zstd { "with zstd" } else { "with gzip only" }),
        format!("{r:.2} ({}, {:.0} MiB sent)", codecs[0], median(wire) / (1u64 << 20) as f64),
        &format!("≤ {goal}"),
        Some(r <= goal),
    );
    Ok(())
}

/// An apiserver-only change: from bootstrap's first systemctl step of the
/// restart to /readyz ok, against a plain `systemctl restart kube-apiserver`
/// (its clients left running) timed to the same /readyz from here.
fn restart(bin: &Path, bed: &Bed) -> Result<(f64, f64)> {
    let readyz = || {
        Command::new("kubectl")
            .args(["--kubeconfig", &bed.kubeconfig.display().to_string(), "--server", &format!("https://{}:6443", bed.address), "--request-timeout=1s", "get", "--raw", "/readyz"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let settle = || -> Result<()> {
        // A run with the default flags puts the unit back and waits for health and fresh leaders.
        run(&mut bootstrap(bin, bed, &["--set", "kube-apiserver.v=2"]))?;
        Ok(())
    };
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (_, out) = timed(&mut bootstrap(bin, bed, &["-o", "json", "--set", &format!("kube-apiserver.v={}", 3 + round % 2)]))?;
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
    Ok((median(ours), median(plain)))
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
fn ha(bin: &Path, rows: &mut Vec<Row>) -> Result<()> {
    let c = Cluster::up_with("bench-ha", 3, &BedOptions { zstd: true, ..Default::default() })?;
    let assets = asset_files(&c.assets);
    for a in &assets {
        std::fs::read(c.assets.join(a))?;
    }
    let ssh = c.servers[0].ssh_options().join(" ");
    let tar3: String = c.servers.iter().map(|s| format!("({}) &", tar_cmd(&c.assets, &assets, &ssh, &s.dest()))).collect::<Vec<_>>().join("\n") + "\nwait";
    let boot = |extra: &[&str]| {
        let mut cmd = Command::new(bin.join("kubectl-bootstrap"));
        cmd.args(c.bootstrap_args("root")).args(extra);
        cmd
    };
    let ssh_args = c.servers[0].plugin_ssh_args();
    println!("three servers (one bridge, stacked etcd)");
    let (mut ratios, mut wholes) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round > 0 {
            reset(bin, &c.dests(), &ssh_args)?;
        }
        for s in &c.servers {
            s.ssh("sync")?;
        }
        let t = run(Command::new("bash").arg("-c").arg(&tar3))?;
        for s in &c.servers {
            s.ssh("rm -rf /root/tarbase && sync")?;
        }
        let b = run(&mut boot(&["-o", "json"]))?;
        let v: serde_json::Value = serde_json::from_slice(&b.out.stdout)?;
        let up = cluster_upload(&v);
        println!("  round {}: tar to 3 in parallel {:.2}s, bootstrap upload to 3 {up:.2}s (ratio {:.2}), first deploy of 3 {:.1}s", round + 1, t.wall, up / t.wall, b.wall);
        ratios.push(up / t.wall);
        wholes.push(b.wall);
    }
    let r = median(ratios);
    row(rows, "3 servers: first deploy upload / tar to the 3 in parallel", format!("{r:.2}"), "≤ 1.2", Some(r <= 1.2));
    row(rows, "3 servers: first deploy, whole (start, health, RBAC)", format!("{:.1} s", median(wholes)), "", None);
    let mut one = Command::new(bin.join("kubectl-bootstrap"));
    one.arg("server").arg(c.servers[0].dest()).args(&ssh_args).args(["--assets", &c.assets.display().to_string()]);
    let mut noop = Vec::new();
    for _ in 0..ROUNDS {
        let a = run(&mut one)?;
        let b = run(&mut boot(&[]))?;
        noop.push(b.wall / a.wall);
    }
    let n = median(noop);
    row(rows, "3 servers: no-op re-run / the same on one of them", format!("{n:.2}"), "≤ 1.5", Some(n <= 1.5));
    let (mut rolls, mut per) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let v = format!("kube-apiserver.v={}", 3 + round % 2);
        let b = run(&mut boot(&["--set", &v, "-o", "json"]))?;
        let j: serde_json::Value = serde_json::from_slice(&b.out.stdout)?;
        let each: Vec<f64> = j["servers"].as_array().into_iter().flatten().filter_map(|s| s["apiserverRestartToReadySeconds"].as_f64()).collect();
        println!("  rolling restart round {}: {:.1}s; each apiserver restart → /readyz {each:?}", round + 1, b.wall);
        rolls.push(b.wall);
        per.extend(each);
    }
    let roll = median(rolls);
    row(rows, "3 servers: rolling restart (apiserver flag), whole", format!("{roll:.1} s"), "≤ 3 × 15 s + health waits", Some(roll <= 45.0 + 30.0));
    row(rows, "3 servers: each apiserver restart → /readyz", format!("{:.1} s", median(per)), "", None);
    renew_and_roll(bin, &c, rows)
}

/// Three servers: every leaf renewed on the jumpbox and rolled out, against
/// a plain rolling flag change, alternating on the same plane (both from
/// the renewed assets, so a flag change rolls no certificate).
fn renew_and_roll(bin: &Path, c: &Cluster, rows: &mut Vec<Row>) -> Result<()> {
    let renewed = c.dir.join("bench-renewed");
    let _ = std::fs::remove_dir_all(&renewed);
    testbed::pki::copy_assets(&c.assets, &renewed)?;
    let boot = |v: u32| {
        let mut cmd = Command::new(bin.join("kubectl-bootstrap"));
        let mut args = c.bootstrap_args("root");
        let i = args.iter().position(|a| a == "--assets").unwrap();
        args[i + 1] = renewed.display().to_string();
        cmd.args(args).args(["--set", &format!("kube-apiserver.v={v}")]);
        cmd
    };
    let mut v = 3;
    let settle = run(&mut boot(v))?;
    if !settle.out.status.success() {
        bail!("bootstrap from the copied assets failed: {}", String::from_utf8_lossy(&settle.out.stderr));
    }
    let (mut ratios, mut renews) = (Vec::new(), Vec::new());
    for round in 0..3 {
        v = if v == 3 { 4 } else { 3 };
        let flag = run(&mut boot(v))?;
        let renew = run(Command::new(bin.join("kubectl-bootstrap")).args(["certs", "renew", "--assets"]).arg(&renewed))?;
        if !renew.out.status.success() || !flag.out.status.success() {
            bail!("round {}: {}{}", round + 1, String::from_utf8_lossy(&flag.out.stderr), String::from_utf8_lossy(&renew.out.stderr));
        }
        let rolled = run(&mut boot(v))?;
        if !rolled.out.status.success() {
            bail!("round {}: the renewed certificates' roll failed: {}", round + 1, String::from_utf8_lossy(&rolled.out.stderr));
        }
        println!(
            "  round {}: rolling flag change {:.1}s; certs renew {:.2}s; its roll {:.1}s (ratio {:.2})",
            round + 1,
            flag.wall,
            renew.wall,
            rolled.wall,
            (renew.wall + rolled.wall) / flag.wall
        );
        ratios.push((renew.wall + rolled.wall) / flag.wall);
        renews.push(renew.wall);
    }
    let r = median(ratios);
    row(rows, "3 servers: certs renew + its roll / a rolling flag change", format!("{r:.2}"), "≤ 1.5", Some(r <= 1.5));
    row(rows, "certs renew of the 5 leaves (bed keys: ECDSA)", format!("{:.2} s", median(renews)), "", None);
    Ok(())
}
