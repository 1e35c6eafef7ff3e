//! A systemd unit file parser with the semantics systemd itself applies to the
//! subset the control-plane units use: sections, `KEY=VALUE`, comments (`#`,
//! `;`, also inside continuations), backslash continuations (joined with a
//! space), and `ExecStart=` split into words the way systemd unquotes them
//! (`--runtime-config='api/all=true'` is the word `--runtime-config=api/all=true`).
//!
//! Two steps: [`parse_unit`] reads any unit systemd reads (prefixes,
//! positional arguments, `--flag value`, repeated flags, no Description=);
//! [`validate`] is this project's rules for the units it ships (what codegen
//! requires of `manifests/`). A hand-edited unit on a server parses, so
//! cpcheck can say how it differs instead of calling it unreadable.
//!
//! It is pure text in, data out, with no dependencies: codegen uses it at
//! build time on `manifests/`, and the plugins at run time on the units they
//! find installed on a server (and to render units with overrides).

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a unit file: the file, the 1-based line, and what is wrong.
/// Displayed as `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self { path: path.into(), line, message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// One `--name[=value]` (or `--name value`) of `ExecStart=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFlag {
    /// Without the leading `--`.
    pub name: String,
    /// `None` for a bare `--name`.
    pub value: Option<String>,
    /// 1-based line in the unit file.
    pub line: usize,
    /// The word(s) exactly as written (quotes and all), so an unchanged
    /// flag is rendered back byte for byte.
    pub raw: String,
    /// Written as two words, `--name value` (the way pflag also reads a
    /// flag; this project's units write `--name=value`).
    pub separate: bool,
}

/// A word of `ExecStart=` that is not a `--flag` (nor a flag's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positional {
    pub word: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUnit {
    /// As given to [`parse_unit`], for errors.
    pub path: PathBuf,
    /// The file name without `.service`: `kube-apiserver`.
    pub component: String,
    pub file_name: String,
    pub text: String,
    pub description: Option<String>,
    pub documentation: Option<String>,
    /// ExecStart='s prefix characters (`-`, `@`, `:`, `+`, `!`), if any.
    pub prefix: String,
    pub exec: String,
    /// In order, repeats included (the program reads the last).
    pub flags: Vec<UnitFlag>,
    pub positional: Vec<Positional>,
    /// Every word after the program, unquoted, in order: the argv systemd
    /// gives the program after its name.
    pub args: Vec<String>,
    /// `%` specifiers and `$` expansions left as written (systemd expands
    /// them at run time): the line and the word.
    pub expansions: Vec<(usize, String)>,
    pub restart: Option<String>,
    pub restart_sec: Option<String>,
    pub wanted_by: Vec<String>,
    pub entries: Vec<Entry>,
    /// Each section header and its line.
    pub sections: Vec<(String, usize)>,
    /// 1-based first and last line of the `ExecStart=` logical line.
    pub exec_lines: (usize, usize),
}

impl ParsedUnit {
    /// The flag as the program reads it: the last one of that name.
    pub fn flag(&self, name: &str) -> Option<&UnitFlag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    fn section_line(&self, s: &str) -> Option<usize> {
        self.sections.iter().find(|x| x.0 == s).map(|x| x.1)
    }
}

/// A word of a logical line, and the byte offset in that line where it starts.
struct Word {
    text: String,
    raw: String,
    start: usize,
    /// Holds a `%` specifier or `$` expansion systemd would expand.
    expands: bool,
}

/// Splits a value into words as systemd's ExecStart parsing does: whitespace
/// separates words, single and double quotes group (anywhere in a word),
/// backslash escapes the next character outside single quotes, `%%` is `%`
/// and `$$` is `$`. Other `%` specifiers and `$` expansions are kept as
/// written and marked (systemd expands them when it runs the command).
fn split_words(s: &str) -> Result<Vec<Word>, (usize, String)> {
    let mut words = Vec::new();
    let b: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].1.is_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = b[i].0;
        let mut text = String::new();
        let mut expands = false;
        let mut quote: Option<char> = None;
        while i < b.len() {
            let c = b[i].1;
            match quote {
                Some(q) if c == q => quote = None,
                Some('"') if c == '\\' => {
                    i += 1;
                    let Some(&(_, n)) = b.get(i) else {
                        return Err((start, "backslash at end of value".into()));
                    };
                    text.push(unescape(n));
                }
                Some(_) => text.push(c),
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '\\' => {
                    i += 1;
                    let Some(&(_, n)) = b.get(i) else {
                        return Err((start, "backslash at end of value".into()));
                    };
                    text.push(unescape(n));
                }
                None => text.push(c),
            }
            if quote != Some('\'') && (c == '%' || c == '$') && quote.is_none_or(|q| q == '"') {
                // `%%` and `$$` are the literal characters; anything else expands.
                if b.get(i + 1).map(|x| x.1) == Some(c) {
                    i += 1;
                } else {
                    expands = true;
                }
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err((start, format!("unterminated {q} quote")));
        }
        let end = b.get(i).map(|x| x.0).unwrap_or(s.len());
        words.push(Word { text, raw: s[start..end].to_string(), start, expands });
    }
    Ok(words)
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        other => other,
    }
}

/// Splits `text` into lines the way systemd reads a unit file: a line ends at
/// `\n`, `\r` or `\0` (`\r\n` is one ending). `str::lines` only knows `\n`:
/// a value holding `\r` or `\0` would read as one line here and as several
/// directives to systemd.
pub fn systemd_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let b = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\n' | b'\0' => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                if b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < b.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Parses a unit file. `path` is only used in error messages and to name the
/// component (the file stem). Lines end where systemd ends them
/// ([`systemd_lines`]).
pub fn parse_unit(path: &Path, text: &str) -> Result<ParsedUnit, ParseError> {
    let err = |line: usize, msg: String| ParseError::new(path, line, msg);
    let file_name = path.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let component = file_name.strip_suffix(".service").unwrap_or(&file_name).to_string();

    let lines: Vec<&str> = systemd_lines(text);
    let mut entries: Vec<Entry> = Vec::new();
    let mut section: Option<(String, usize)> = None;
    let mut sections_seen: Vec<(String, usize)> = Vec::new();
    let mut exec: Option<Exec> = None;
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i];
        i += 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if t.starts_with('[') {
            let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
                return Err(err(lineno, format!("section header `{t}` is not closed with `]`")));
            };
            section = Some((name.to_string(), lineno));
            sections_seen.push((name.to_string(), lineno));
            continue;
        }
        // Gather the logical line: segments of physical lines joined by a space.
        let mut segments: Vec<(String, usize)> = Vec::new();
        let mut cur = raw;
        let mut cur_line = lineno;
        loop {
            let te = cur.trim_end();
            if let Some(body) = te.strip_suffix('\\') {
                segments.push((body.to_string(), cur_line));
                loop {
                    if i >= lines.len() {
                        return Err(err(cur_line, "line continuation (trailing `\\`) at end of file".into()));
                    }
                    let next = lines[i];
                    i += 1;
                    let nt = next.trim_start();
                    if nt.starts_with('#') || nt.starts_with(';') {
                        continue;
                    }
                    cur = next;
                    cur_line = i;
                    break;
                }
            } else {
                segments.push((te.to_string(), cur_line));
                break;
            }
        }
        let Some((sect, _)) = section.clone() else {
            return Err(err(lineno, format!("`{}` is outside any [Section]", segments[0].0.trim())));
        };
        let first = &segments[0].0;
        let Some(eq) = first.find('=') else {
            return Err(err(lineno, format!("expected KEY=VALUE, found `{}`", first.trim())));
        };
        let key = first[..eq].trim().to_string();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(lineno, format!("`{}` is not a valid key", first[..eq].trim())));
        }
        // Join segments, remembering where each one starts in the joined value.
        let mut value = String::new();
        let mut starts: Vec<(usize, usize)> = Vec::new(); // (offset, line)
        for (n, (seg, l)) in segments.iter().enumerate() {
            let piece = if n == 0 { seg[eq + 1..].trim_start() } else { seg.as_str() };
            if n > 0 {
                value.push(' ');
            }
            starts.push((value.len(), *l));
            value.push_str(piece);
        }
        let last_line = segments.last().map(|s| s.1).unwrap_or(lineno);
        if sect == "Service" && key == "ExecStart" {
            let line_of = |off: usize| starts.iter().rev().find(|(o, _)| *o <= off).map(|x| x.1).unwrap_or(lineno);
            let words = split_words(&value).map_err(|(off, m)| err(line_of(off), m))?;
            // An empty ExecStart= resets the list (as drop-ins do).
            exec = match exec {
                _ if words.is_empty() => None,
                // systemd refuses a second command for any Type= but oneshot.
                Some(first) => {
                    return Err(err(lineno, format!("ExecStart= given twice (first at line {}); systemd runs one command for a service that is not Type=oneshot", first.lines.0)))
                }
                None => Some(exec_start(&words, &line_of, (lineno, last_line))),
            };
        }
        entries.push(Entry { section: sect, key, value, line: lineno });
    }

    let get = |s: &str, k: &str| entries.iter().rev().find(|e| e.section == s && e.key == k).map(|e| e.value.clone());
    let Some(exec) = exec else {
        let at = sections_seen.iter().find(|x| x.0 == "Service").map(|x| x.1).unwrap_or(lines.len().max(1));
        return Err(err(at, "no ExecStart= in [Service]: the unit would not run anything".into()));
    };
    let wanted_by: Vec<String> =
        entries.iter().filter(|e| e.section == "Install" && e.key == "WantedBy").flat_map(|e| e.value.split_whitespace().map(str::to_string).collect::<Vec<_>>()).collect();
    Ok(ParsedUnit {
        path: path.to_path_buf(),
        component,
        file_name,
        text: text.to_string(),
        description: get("Unit", "Description"),
        documentation: get("Unit", "Documentation"),
        prefix: exec.prefix,
        exec: exec.program,
        flags: exec.flags,
        positional: exec.positional,
        args: exec.args,
        expansions: exec.expansions,
        restart: get("Service", "Restart"),
        restart_sec: get("Service", "RestartSec"),
        wanted_by,
        entries,
        sections: sections_seen,
        exec_lines: exec.lines,
    })
}

/// One `ExecStart=` as read.
struct Exec {
    prefix: String,
    program: String,
    flags: Vec<UnitFlag>,
    positional: Vec<Positional>,
    args: Vec<String>,
    expansions: Vec<(usize, String)>,
    lines: (usize, usize),
}

/// Reads `ExecStart=`'s words: the prefix characters, the program, then
/// `--name=value`, `--name value` (a next word not starting with `-`),
/// bare `--name`, and anything else as positional.
fn exec_start(words: &[Word], line_of: &dyn Fn(usize) -> usize, lines: (usize, usize)) -> Exec {
    let (prog, rest) = words.split_first().expect("a non-empty ExecStart=");
    let prefix: String = prog.text.chars().take_while(|c| "-@:+!".contains(*c)).collect();
    let program = prog.text[prefix.len()..].to_string();
    let expansions = words.iter().filter(|w| w.expands).map(|w| (line_of(w.start), w.raw.clone())).collect();
    let mut flags: Vec<UnitFlag> = Vec::new();
    let mut positional = Vec::new();
    let mut k = 0;
    while k < rest.len() {
        let w = &rest[k];
        let line = line_of(w.start);
        k += 1;
        let Some(body) = w.text.strip_prefix("--").filter(|b| !b.is_empty() && !b.starts_with('=')) else {
            positional.push(Positional { word: w.text.clone(), line });
            continue;
        };
        let (name, value, raw, separate) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string()), w.raw.clone(), false),
            None => match rest.get(k).filter(|n| !n.text.starts_with('-')) {
                Some(next) => {
                    k += 1;
                    (body.to_string(), Some(next.text.clone()), format!("{} {}", w.raw, next.raw), true)
                }
                None => (body.to_string(), None, w.raw.clone(), false),
            },
        };
        flags.push(UnitFlag { name, value, line, raw, separate });
    }
    let args = rest.iter().map(|w| w.text.clone()).collect();
    Exec { prefix, program, flags, positional, args, expansions, lines }
}

/// This project's rules for a unit it ships, on top of systemd's: a
/// Description= and a WantedBy=, an absolute program without prefix
/// characters, every argument one `--name=value` (or bare `--name`) word,
/// no flag twice, no `%` specifier or `$` expansion (the value written is
/// the value used).
pub fn validate(u: &ParsedUnit) -> Result<(), ParseError> {
    let err = |line: usize, msg: String| ParseError::new(&u.path, line, msg);
    let last = systemd_lines(&u.text).len().max(1);
    if u.description.is_none() {
        return Err(err(u.section_line("Unit").unwrap_or(1), "no Description= in [Unit]".into()));
    }
    let at = u.exec_lines.0;
    if let Some(p) = u.prefix.chars().next() {
        return Err(err(at, format!("ExecStart prefix `{p}` is not supported; give the absolute path of the binary")));
    }
    if !u.exec.starts_with('/') {
        return Err(err(at, format!("ExecStart program `{}` is not an absolute path", u.exec)));
    }
    if let Some((line, w)) = u.expansions.first() {
        return Err(err(*line, format!("`{w}`: systemd specifiers and variable expansions in ExecStart are not supported (write `%%` or `$$` for a literal)")));
    }
    if let Some(p) = u.positional.first() {
        return Err(err(p.line, format!("argument `{}` is not a --flag (write one --name=value per line)", p.word)));
    }
    for (i, f) in u.flags.iter().enumerate() {
        if f.separate {
            return Err(err(f.line, format!("`{}`: write --{}=VALUE (one word), as the other flags are", f.raw, f.name)));
        }
        if let Some(prev) = u.flags[..i].iter().find(|p| p.name == f.name) {
            return Err(err(f.line, format!("flag --{} given twice (first at line {})", f.name, prev.line)));
        }
    }
    if u.wanted_by.is_empty() {
        return Err(err(u.section_line("Install").unwrap_or(last), "no WantedBy= in [Install]: `systemctl enable` would have nothing to hook the unit into".into()));
    }
    Ok(())
}

/// Quotes a flag value for ExecStart when systemd would otherwise split or
/// expand it. Control characters cannot be written into a unit at all (a
/// `\n`, `\r` or `\0` ends the line for systemd): [`render_with_flags`]
/// refuses them before this is called.
fn quote_value(v: &str) -> String {
    let escaped = v.replace('%', "%%").replace('$', "$$");
    if escaped.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\' || c == ';') {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// The first control character in `s`, if any: no name or value containing
/// one can be written into a unit file.
pub fn control_char(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|(_, c)| c.is_control())
}

/// Renders `text` with its ExecStart flags replaced by `flags` (name, value).
/// Flags whose name and value are unchanged keep their original spelling, and
/// an unchanged flag list gives back `text` byte for byte. A name or value
/// holding a control character is refused (it would end the line for systemd
/// and start a directive of its own); so is a name that is not a plain flag
/// name. The result is parsed again by systemd's rules and must hold exactly
/// the original directives with only the flags' values changed.
pub fn render_with_flags(unit: &ParsedUnit, flags: &[(String, Option<String>)]) -> Result<String, String> {
    let same = flags.len() == unit.flags.len() && flags.iter().zip(&unit.flags).all(|((n, v), f)| *n == f.name && *v == f.value);
    if same {
        return Ok(unit.text.clone());
    }
    for (name, value) in flags {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(format!("--{}: not a flag name (letters, digits, '-', '_', '.')", name.escape_debug()));
        }
        if let Some((at, c)) = value.as_deref().and_then(control_char) {
            return Err(format!("--{name}: the value holds the control character {} at byte {at}; systemd would end the line there", c.escape_unicode()));
        }
    }
    let text = render_unchecked(unit, flags);
    same_directives(unit, &text, flags)?;
    Ok(text)
}

/// Parses `text` by systemd's rules and checks it has exactly `unit`'s
/// directives, in order, with only the ExecStart flags' values being `flags`.
pub fn same_directives(unit: &ParsedUnit, text: &str, flags: &[(String, Option<String>)]) -> Result<(), String> {
    let again = parse_unit(Path::new(&unit.file_name), text).map_err(|e| format!("the rendered unit does not parse: line {}: {}", e.line, e.message))?;
    let key = |e: &Entry| (e.section.clone(), e.key.clone());
    let (a, b): (Vec<_>, Vec<_>) = (unit.entries.iter().map(key).collect(), again.entries.iter().map(key).collect());
    if a != b {
        let extra: Vec<String> = b.iter().filter(|k| !a.contains(k)).map(|(s, k)| format!("[{s}] {k}=")).collect();
        return Err(format!("the rendered unit has other directives than the manifest{}", if extra.is_empty() { String::new() } else { format!(" (adds {})", extra.join(", ")) }));
    }
    for (x, y) in unit.entries.iter().zip(&again.entries) {
        if x.key != "ExecStart" && x.value != y.value {
            return Err(format!("the rendered unit changes [{}] {}=", x.section, x.key));
        }
    }
    let got: Vec<(String, Option<String>)> = again.flags.iter().map(|f| (f.name.clone(), f.value.clone())).collect();
    if again.exec != unit.exec || got != flags {
        return Err("the rendered ExecStart= does not read back as the intended flags".into());
    }
    Ok(())
}

fn render_unchecked(unit: &ParsedUnit, flags: &[(String, Option<String>)]) -> String {
    let lines: Vec<&str> = systemd_lines(&unit.text);
    let (first, last) = unit.exec_lines;
    let indent = lines
        .get(first) // the line after `ExecStart=` (0-based index `first` is line first+1)
        .filter(|_| last > first)
        .map(|l| l[..l.len() - l.trim_start().len()].to_string())
        .unwrap_or_else(|| "  ".into());
    let mut block = vec![format!("ExecStart={}", quote_value(&unit.exec))];
    for (name, value) in flags {
        let word = match unit.flags.iter().find(|f| &f.name == name && &f.value == value) {
            Some(orig) => orig.raw.clone(),
            None => match value {
                Some(v) => format!("--{name}={}", quote_value(v)),
                None => format!("--{name}"),
            },
        };
        block.push(format!("{indent}{word}"));
    }
    let n = block.len();
    let mut out = String::with_capacity(unit.text.len() + 64);
    for l in &lines[..first - 1] {
        out.push_str(l);
        out.push('\n');
    }
    for (k, b) in block.iter().enumerate() {
        out.push_str(b);
        out.push_str(if k + 1 < n { " \\\n" } else { "\n" });
    }
    for l in &lines[last..] {
        out.push_str(l);
        out.push('\n');
    }
    if !unit.text.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ParsedUnit, ParseError> {
        parse_unit(Path::new("units/x.service"), text)
    }

    const OK: &str = "[Unit]\nDescription=X\n\n[Service]\nExecStart=/usr/bin/x \\\n  --a=1 \\\n  # a comment\n  --b='c d' \\\n  --flag\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn parses_continuations_quotes_comments_and_lines() {
        let u = p(OK).unwrap();
        assert_eq!(u.component, "x");
        assert_eq!(u.exec, "/usr/bin/x");
        let got: Vec<_> = u.flags.iter().map(|f| (f.name.as_str(), f.value.as_deref(), f.line)).collect();
        assert_eq!(got, vec![("a", Some("1"), 6), ("b", Some("c d"), 8), ("flag", None, 9)]);
        assert_eq!(u.restart.as_deref(), Some("on-failure"));
        assert_eq!(u.wanted_by, vec!["multi-user.target"]);
        assert_eq!(u.exec_lines, (5, 9));
    }

    #[test]
    fn quotes_in_the_middle_of_a_word_are_removed_like_systemd() {
        let u = p("[Unit]\nDescription=X\n[Service]\nExecStart=/x --runtime-config='api/all=true' --y=\"a\\\"b\"\n[Install]\nWantedBy=a\n").unwrap();
        assert_eq!(u.flags[0].value.as_deref(), Some("api/all=true"));
        assert_eq!(u.flags[0].raw, "--runtime-config='api/all=true'");
        assert_eq!(u.flags[1].value.as_deref(), Some("a\"b"));
    }

    #[test]
    fn render_unchanged_is_byte_exact_and_changed_is_reparsed_equal() {
        let u = p(OK).unwrap();
        let same: Vec<_> = u.flags.iter().map(|f| (f.name.clone(), f.value.clone())).collect();
        assert_eq!(render_with_flags(&u, &same).unwrap(), OK);
        let mut changed = same.clone();
        changed[0].1 = Some("2 3%".into());
        changed.push(("new".into(), Some("$HOME".into())));
        let text = render_with_flags(&u, &changed).unwrap();
        let again = p(&text).unwrap();
        let got: Vec<_> = again.flags.iter().map(|f| (f.name.clone(), f.value.clone())).collect();
        assert_eq!(got, changed);
        assert!(text.contains("  --b='c d' \\\n"), "unchanged flag keeps its spelling:\n{text}");
        assert!(text.ends_with("WantedBy=multi-user.target\n"));
    }

    #[test]
    fn lines_end_at_newline_carriage_return_and_nul_like_systemd() {
        assert_eq!(systemd_lines("a\nb\r\nc\rd\0e"), ["a", "b", "c", "d", "e"]);
        assert_eq!(systemd_lines("a\n\nb\n"), ["a", "", "b"]);
        // A NUL inside a value is a line break to systemd: it starts directives.
        let u = p("[Unit]\nDescription=X\n[Service]\nExecStart=/x \\\n  --v=2\0StandardInput=data\0ExecStartPre=/bin/sh\n[Install]\nWantedBy=a\n").unwrap();
        let keys: Vec<&str> = u.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["Description", "ExecStart", "StandardInput", "ExecStartPre", "WantedBy"]);
        assert_eq!(u.flags.last().unwrap().value.as_deref(), Some("2"));
    }

    #[test]
    fn render_refuses_control_characters_and_anything_but_flag_values() {
        let u = p(OK).unwrap();
        let base: Vec<_> = u.flags.iter().map(|f| (f.name.clone(), f.value.clone())).collect();
        for evil in ["2\0StandardInput=data", "2\nX=1", "2\rX=1", "2\u{1b}[2J", "a\tb"] {
            let mut f = base.clone();
            f[0].1 = Some(evil.into());
            let e = render_with_flags(&u, &f).unwrap_err();
            assert!(e.contains("--a: the value holds the control character"), "{e}");
        }
        let mut f = base.clone();
        f.push(("x=1 \\\nStandardInput".into(), None));
        assert!(render_with_flags(&u, &f).unwrap_err().contains("not a flag name"));
        // The read-back check catches a unit that gained a directive.
        let evil = OK.replace("  --flag\n", "  --flag\nUser=nobody\n");
        assert!(same_directives(&u, &evil, &base).unwrap_err().contains("adds [Service] User="), "{evil}");
        let changed = OK.replace("Restart=on-failure", "Restart=always");
        assert!(same_directives(&u, &changed, &base).unwrap_err().contains("changes [Service] Restart="));
    }

    /// Refused by systemd's grammar or by this project's rules.
    fn bad(text: &str) -> ParseError {
        p(text).and_then(|u| validate(&u).map(|_| u)).expect_err("must fail")
    }

    /// What systemd reads is read, whatever this project's rules say; only
    /// `validate` refuses it.
    #[test]
    fn parse_reads_what_systemd_reads_and_validate_holds_the_rules() {
        let hand = "[Service]\nExecStart=-/usr/local/bin/kube-scheduler --v 2 --kubeconfig=/k --v=3 extra\n";
        let u = p(hand).unwrap();
        assert_eq!((u.prefix.as_str(), u.exec.as_str()), ("-", "/usr/local/bin/kube-scheduler"));
        let got: Vec<_> = u.flags.iter().map(|f| (f.name.as_str(), f.value.as_deref(), f.separate)).collect();
        assert_eq!(got, vec![("v", Some("2"), true), ("kubeconfig", Some("/k"), false), ("v", Some("3"), false)]);
        assert_eq!(u.flag("v").and_then(|f| f.value.as_deref()), Some("3"), "the last one is the one the program reads");
        assert_eq!(u.positional, vec![Positional { word: "extra".into(), line: 2 }]);
        assert_eq!((u.description.as_deref(), u.wanted_by.len()), (None, 0));
        assert!(validate(&u).is_err());
        // An empty ExecStart= resets the command, as in a drop-in.
        let reset = p("[Service]\nExecStart=/a --x=1\nExecStart=\nExecStart=/b --y=2\n").unwrap();
        assert_eq!((reset.exec.as_str(), reset.flags[0].name.as_str(), reset.exec_lines.0), ("/b", "y", 4));
        // Specifiers are kept as written (systemd expands them when it runs).
        let spec = p("[Service]\nExecStart=/x --home=%h\n").unwrap();
        assert_eq!((spec.flags[0].value.as_deref(), spec.expansions.len()), (Some("%h"), 1));
        assert!(validate(&p(OK).unwrap()).is_ok());
    }

    #[test]
    fn error_exec_start_missing() {
        let e = bad("[Unit]\nDescription=X\n[Service]\nRestart=always\n[Install]\nWantedBy=a\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("no ExecStart="), "{e}");
        assert_eq!(e.to_string(), format!("units/x.service:3: {}", e.message));
    }

    #[test]
    fn error_continuation_at_end_of_file() {
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x \\\n  --a=1 \\");
        assert_eq!(e.line, 5);
        assert!(e.message.contains("continuation"), "{e}");
    }

    #[test]
    fn error_flag_given_twice() {
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x \\\n --v=1 \\\n --w \\\n --v=2\n[Install]\nWantedBy=a\n");
        assert_eq!(e.line, 7);
        assert!(e.message.contains("--v given twice (first at line 5)"), "{e}");
    }

    #[test]
    fn error_positional_argument_and_relative_program_and_prefix() {
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x \\\n  v=2\n[Install]\nWantedBy=a\n");
        assert_eq!((e.line, e.message.contains("not a --flag")), (5, true), "{e}");
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=x --a\n[Install]\nWantedBy=a\n");
        assert!(e.message.contains("not an absolute path"), "{e}");
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=-/x --a\n[Install]\nWantedBy=a\n");
        assert!(e.message.contains("prefix `-`"), "{e}");
    }

    #[test]
    fn error_unterminated_quote_and_expansion() {
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x \\\n --a='b\n[Install]\nWantedBy=a\n");
        assert_eq!(e.line, 5);
        assert!(e.message.contains("unterminated"), "{e}");
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x --a=%h\n[Install]\nWantedBy=a\n");
        assert!(e.message.contains("specifier"), "{e}");
    }

    #[test]
    fn error_structure() {
        assert!(bad("Description=X\n").message.contains("outside any [Section]"));
        assert!(bad("[Unit\n").message.contains("not closed"));
        assert!(bad("[Unit]\nDescription\n").message.contains("expected KEY=VALUE"));
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x\n");
        assert!(e.message.contains("WantedBy"), "{e}");
        let e = bad("[Service]\nExecStart=/x\n[Install]\nWantedBy=a\n");
        assert!(e.message.contains("Description"), "{e}");
        let e = bad("[Unit]\nDescription=X\n[Service]\nExecStart=/x\nExecStart=/y\n[Install]\nWantedBy=a\n");
        assert_eq!(e.line, 5);
    }

    /// No text makes the parser or the renderer panic (fixed seed): random
    /// bytes as text, and unit-shaped text with random keys, values,
    /// continuations, quotes and line ends (`\n`, `\r`, `\0`).
    #[test]
    fn no_text_makes_the_parser_or_renderer_panic() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let config = Config { cases: 3000, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[11u8; 32]));
        let piece = prop_oneof![
            Just("[Unit]".to_string()),
            Just("[Service]".to_string()),
            Just("[Install]".to_string()),
            Just("Description=x".to_string()),
            Just("WantedBy=multi-user.target".to_string()),
            "ExecStart=[ -~]{0,60}",
            "  --[a-z-]{0,12}(=[ -~]{0,20})? \\\\",
            "[ -~]{0,40}",
            Just("\\".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
        ];
        let end = prop_oneof![Just("\n"), Just("\r"), Just("\r\n"), Just("\0"), Just("")];
        let text = prop_oneof![proptest::collection::vec((piece, end), 0..30).prop_map(|v| v.into_iter().map(|(p, e)| format!("{p}{e}")).collect::<String>()), any::<String>(),];
        let flags = proptest::collection::vec(("[ -~]{0,8}", proptest::option::of(any::<String>())), 0..4);
        runner
            .run(&(text, flags), |(text, flags)| {
                if let Ok(u) = parse_unit(Path::new("x.service"), &text) {
                    let _ = render_with_flags(&u, &flags);
                }
                let _ = systemd_lines(&text);
                Ok(())
            })
            .unwrap();
    }
}
