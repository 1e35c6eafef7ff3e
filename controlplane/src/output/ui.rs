//! Human output: progress lines to stderr (so `-o json` keeps stdout a single
//! document), progress bars only on a terminal.

use std::io::IsTerminal;

/// `println!` that never panics: a reader that went away (`| head`, a
/// closed pipe) must not turn a run into a crash. The same for the others.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
        let _ = std::io::stdout().flush();
    }};
}

#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

#[macro_export]
macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

#[derive(Debug, Clone)]
pub struct Ui {
    pub tty: bool,
    pub verbose: bool,
    /// Put before every line: the server's name when a run has several.
    pub prefix: String,
}

impl Ui {
    pub fn new(verbose: bool) -> Ui {
        Ui { tty: std::io::stderr().is_terminal(), verbose, prefix: String::new() }
    }

    /// The same, for the lines about one of several servers.
    pub fn for_server(&self, name: &str) -> Ui {
        Ui { prefix: format!("[{name}] "), ..self.clone() }
    }

    /// One line of progress.
    pub fn step(&self, line: &str) {
        crate::errln!("{}{line}", self.prefix);
    }

    pub fn detail(&self, line: &str) {
        if self.verbose {
            crate::errln!("{}  {line}", self.prefix);
        }
    }

    /// A byte progress bar on a terminal; nothing otherwise.
    pub fn bar(&self, len: u64, label: &str) -> Option<indicatif::ProgressBar> {
        if !self.tty {
            return None;
        }
        let b = indicatif::ProgressBar::new(len);
        b.set_style(indicatif::ProgressStyle::with_template("{msg:40} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}").expect("valid template"));
        b.set_message(label.to_string());
        Some(b)
    }
}
