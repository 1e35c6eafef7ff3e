//! What makes a binary a kubectl plugin beyond its own command line:
//! kubectl's plugin completion protocol (kubectl 1.26+ runs
//! `kubectl_complete-NAME ARGS…` and reads candidates, one per line, then a
//! `:DIRECTIVE` line), static completion scripts, and man pages.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// cobra's ShellCompDirective values.
const DIRECTIVE_DEFAULT: u8 = 0; // let the shell complete files
const DIRECTIVE_NO_FILE: u8 = 4;

/// Candidates for completing the last of `words` (the words after the plugin
/// name, the last one possibly empty), in kubectl's plugin format.
pub fn complete(mut cmd: clap::Command, words: &[OsString]) -> String {
    let mut args: Vec<OsString> = vec![cmd.get_name().into()];
    args.extend(words.iter().cloned());
    if args.len() == 1 {
        args.push(OsString::new());
    }
    let index = args.len() - 1;
    let candidates = clap_complete::engine::complete(&mut cmd, args, index, std::env::current_dir().ok().as_deref()).unwrap_or_default();
    let mut out = String::new();
    for c in &candidates {
        let value = c.get_value().to_string_lossy();
        match c.get_help() {
            Some(h) => out.push_str(&format!("{value}\t{}\n", h.to_string().lines().next().unwrap_or(""))),
            None => out.push_str(&format!("{value}\n")),
        }
    }
    // Nothing to offer (a path, a host): let the shell complete files.
    let directive = if candidates.is_empty() { DIRECTIVE_DEFAULT } else { DIRECTIVE_NO_FILE };
    out.push_str(&format!(":{directive}\n"));
    out
}

/// Handles what a plugin does before parsing its own arguments: being run as
/// `kubectl_complete-NAME` (or with `__complete`), `completion SHELL`, and
/// `__man`. Returns the exit code when it handled the call.
pub fn early(cmd: clap::Command) -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().map(|a| std::path::Path::new(a).file_name().unwrap_or_default().to_string_lossy().into_owned()).unwrap_or_default();
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    let out = if argv0.starts_with("kubectl_complete-") {
        complete(cmd, &args[1..])
    } else if first.as_deref() == Some("__complete") {
        complete(cmd, &args[2..])
    } else if first.as_deref() == Some("__man") {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).ok()?;
        String::from_utf8_lossy(&buf).into_owned()
    } else if first.as_deref() == Some("completion") && args.len() == 3 {
        let shell = args[2].to_string_lossy();
        let Ok(shell) = shell.parse::<clap_complete::Shell>() else {
            controlplane::errln!("error: completion {shell}: unknown shell; use bash, zsh, fish, elvish or powershell");
            return Some(ExitCode::from(controlplane::exit::INPUT));
        };
        let mut cmd = cmd;
        let name = cmd.get_name().replace(' ', "-");
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, name, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        return None;
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    Some(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(name = "kubectl-demo")]
    struct Demo {
        #[arg(short = 'o', long, value_parser = ["json", "text"])]
        output: Option<String>,
        #[arg(long)]
        only: Option<String>,
    }

    #[test]
    fn candidates_then_a_directive() {
        use clap::CommandFactory;
        let out = complete(Demo::command(), &["--o".into()]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.iter().any(|l| l.starts_with("--output")) && lines.iter().any(|l| l.starts_with("--only")), "{out}");
        assert_eq!(lines.last(), Some(&":4"));
        let out = complete(Demo::command(), &["--output".into(), "".into()]);
        assert!(out.starts_with("json\ntext\n"), "{out}");
    }
}
