//! `cargo xtask faults`: the full fault campaign (cut connections in every
//! phase, SIGINTs) on a bed of its own, then the hostile-input and
//! runtime-fault tests; writes the figures to RELIABILITY.md.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use e2e::faults::{self, Cut, Phase};
use testbed::Bed;

pub fn run(seed: Option<u64>, cuts: usize, sigints: usize) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let seed = seed.unwrap_or_else(faults::seed);
    let started = Instant::now();
    eprintln!("[faults] seed {seed} (replay: cargo xtask faults --seed {seed})");
    let bed = Bed::up("faults")?;
    let out = e2e::run_bootstrap(&bed.bootstrap_args("root"));
    if !out.status.success() {
        bail!("the first deploy failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut runner = faults::Runner::new(&bed);
    let mut outcomes = Vec::new();
    for t in faults::trials(seed, cuts, sigints) {
        let o = runner.run(&t);
        eprintln!("{}", faults::describe(&o));
        outcomes.push(o);
    }
    drop(bed);
    let campaign = started.elapsed().as_secs_f64();

    // The hostile inputs and runtime faults, as the test suite runs them.
    let t = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&root)
        .args(["test", "-p", "e2e", "--test", "hostile", "--test", "faults", "--", "--nocapture", "--test-threads", "3"])
        .args(["--skip", "runs_cut_at_random_points"])
        .output()
        .context("cargo test")?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let table: usize = log.lines().find_map(|l| l.strip_suffix(" hostile inputs tried").and_then(|n| n.trim().parse().ok())).unwrap_or(0);
    let passed = log.lines().filter(|l| l.starts_with("test ") && l.ends_with(" ok")).count();
    let failed: Vec<&str> = log.lines().filter(|l| l.starts_with("test ") && l.ends_with("FAILED")).collect();
    let tests_secs = t.elapsed().as_secs_f64();

    // Servers we do not fully control and their local users: each attack
    // test says what it tried and what happened.
    let t = Instant::now();
    let attacks_out = Command::new(&cargo)
        .current_dir(&root)
        .args(["test", "-p", "e2e", "--test", "servers", "--test", "ha", "--", "--nocapture", "--test-threads", "2"])
        .output()
        .context("cargo test")?;
    let attacks_log = format!("{}{}", String::from_utf8_lossy(&attacks_out.stdout), String::from_utf8_lossy(&attacks_out.stderr));
    let attacks: Vec<&str> = attacks_log.lines().filter_map(|l| l.strip_prefix("attack: ")).collect();
    let attacks_failed: Vec<&str> = attacks_log.lines().filter(|l| l.starts_with("test ") && l.ends_with("FAILED")).collect();
    let attacks_secs = t.elapsed().as_secs_f64();

    let applied: Vec<&faults::Outcome> = outcomes.iter().filter(|o| o.cut_applied).collect();
    let converged = applied.iter().filter(|o| o.converged).count();
    let corrupt: usize = outcomes.iter().map(|o| o.corrupt.len()).sum();
    let temps: usize = outcomes.iter().map(|o| o.temps.min(1_000_000)).sum();
    let leftovers: usize = outcomes.iter().map(|o| o.local_leftovers.len()).sum();
    let problems: Vec<String> = outcomes.iter().filter(|o| !o.ok()).map(faults::describe).collect();
    let by = |cut: Option<Cut>, phase: Option<Phase>| {
        let v: Vec<&&faults::Outcome> = applied.iter().filter(|o| cut.is_none_or(|c| o.trial.cut == c) && phase.is_none_or(|p| o.trial.phase == p)).collect();
        format!("{}/{}", v.iter().filter(|o| o.converged).count(), v.len())
    };
    let mut md = String::new();
    md.push_str("# Reliability\n\nFigures from `cargo xtask faults` (the full campaign); README's test command runs every\nhostile input and a seeded subset of the trials (`tests/tests/faults.rs`).\n\n");
    md.push_str(&format!("Last run: seed {seed}, {} trials ({cuts} connection cuts, {sigints} SIGINTs) in {campaign:.0} s; hostile inputs and runtime faults in {tests_secs:.0} s. Replay with `cargo xtask faults --seed {seed}`.\n\n", outcomes.len()));
    md.push_str("| figure | value |\n| --- | --- |\n");
    md.push_str(&format!("| trials whose cut landed before the run ended | {} of {} |\n", applied.len(), outcomes.len()));
    md.push_str(&format!("| converged on the next run (exit 0, cpcheck clean, running flags = unit flags) | {converged} of {} |\n", applied.len()));
    md.push_str(&format!("| placed files not as desired afterwards (sha256) | {corrupt} |\n"));
    md.push_str(&format!("| temp files left on the server afterwards | {temps} |\n"));
    md.push_str(&format!("| leftovers of a cut run on the jumpbox (processes, control directories) | {leftovers} |\n"));
    md.push_str(&format!("| hostile or mistaken inputs in the table (one line, documented exit code, server unchanged, no key byte in any output) | {table} |\n"));
    md.push_str(&format!("| runtime-fault and hostile-input tests passed | {passed} of {} |\n\n", passed + failed.len()));
    md.push_str("Converged by how and where the run was cut:\n\n| phase | kill the SSH master | link down | SIGINT | all |\n| --- | --- | --- | --- | --- |\n");
    for (name, p) in [("upload", Phase::Upload), ("commit", Phase::Commit), ("daemon-reload / restart", Phase::Restart), ("health wait", Phase::Wait)] {
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            by(Some(Cut::KillMaster), Some(p)),
            by(Some(Cut::LinkDown), Some(p)),
            by(Some(Cut::Sigint), Some(p)),
            by(None, Some(p))
        ));
    }
    md.push_str("\nEach trial: prepare a change (a reset for an upload-phase trial, else a flag of the apiserver or\nthe scheduler), start `kubectl bootstrap server`, wait for the phase's first progress line, wait a\nrandom delay from the seed, cut; then run again without a fault and check: exit 0, `kubectl cpcheck`\n(host, health, leader) without a FAIL, every `host.running.*` PASS, every placed file's sha256 the\ndesired one, no `.kcp-tmp-` file in the layout's directories, and no process or control directory of\nthe cut run on the jumpbox. A SIGINT trial also requires exit 130. The commit is one round trip of a\nfew tens of milliseconds: a cut aimed at it lands in it or just after it (the `after` column shows\nthe last progress line before the cut).\n\n");
    md.push_str(&format!(
        "## Servers we do not fully control\n\nFrom `tests/tests/servers.rs` and `tests/tests/ha.rs` ({attacks_secs:.0} s; {} test(s) failed): each attack, on a real bed, and what happened. Nothing was lost in any: every run that went on converged, every refusal left the server unchanged.\n\n",
        attacks_failed.len()
    ));
    for a in &attacks {
        md.push_str(&format!("- {a}\n"));
    }
    md.push('\n');
    md.push_str("The trials, one line each:\n\n```\n");
    for o in &outcomes {
        md.push_str(&faults::describe(o));
        md.push('\n');
    }
    md.push_str("```\n");
    if !failed.is_empty() {
        md.push_str(&format!("\nFailed tests: {}\n", failed.join(", ")));
    }
    // `cargo xtask diagnose`'s section stays.
    if let Ok(old) = std::fs::read_to_string(root.join("RELIABILITY.md")) {
        if let (Some(a), Some(b)) = (old.find(crate::DIAGNOSE_BEGIN), old.find(crate::DIAGNOSE_END)) {
            md.push('\n');
            md.push_str(&old[a..b + crate::DIAGNOSE_END.len()]);
            md.push('\n');
        }
    }
    std::fs::write(root.join("RELIABILITY.md"), &md)?;
    eprintln!("[faults] wrote RELIABILITY.md: {converged}/{} converged, {corrupt} corrupt, {temps} temps, {leftovers} leftovers, {table} hostile inputs", applied.len());
    if !problems.is_empty() || !failed.is_empty() || !out.status.success() || !attacks_out.status.success() {
        bail!("{} trial(s) with problems, failed tests: {:?} {:?}\n{}", problems.len(), failed, attacks_failed, problems.join("\n"));
    }
    Ok(())
}
