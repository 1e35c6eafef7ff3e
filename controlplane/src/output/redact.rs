//! What may be printed. Two rules, one place:
//!
//! - Text that comes from the server (journal lines, unit lines, process
//!   names, stderr) or from a user's file is printed with its control
//!   characters escaped: an ESC, `\r` or `\0` from the server never reaches
//!   the terminal, a log or XML as itself.
//! - A file that may hold a secret (an asset, `--kubeconfig`, `--config`) is
//!   described in errors by its name and the position of the problem, never
//!   by its content. Parsers quote what they could not parse (serde:
//!   `invalid type: string "-----BEGIN PRIVATE KEY-----…"`), so their
//!   messages go through [`parse_error`], which keeps the parser's words and
//!   drops everything it quoted.

/// `s` on one line: every control character, newlines included, escaped
/// (`\n`, `\r`, `\t`, `\0`, `\u{1b}`…).
pub fn line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, false);
    }
    out
}

/// `s` as a block of lines: `\n` kept, every other control character escaped.
pub fn block(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, true);
    }
    out
}

fn push_escaped(out: &mut String, c: char, keep_newline: bool) {
    match c {
        '\n' if keep_newline => out.push('\n'),
        c if c.is_control() => out.extend(c.escape_default()),
        // Bidirectional overrides reorder what a terminal shows.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => out.extend(c.escape_unicode()),
        c => out.push(c),
    }
}

/// A parser's message with everything it quoted from the input removed:
/// `"…"` and `` `…` `` spans become `…`. The parser's own words (what it
/// expected, the kind of value it found) stay.
pub fn unquote(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    let mut prev = '\0';
    for c in msg.chars() {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                quote = Some(c);
                out.push('…');
            }
            None => out.push(c),
        }
        prev = c;
    }
    line(out.trim())
}

/// A YAML error about a file that may hold a secret: `line L, column C:
/// <what the parser says, without what it quoted>`.
pub fn yaml_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    // serde_yaml appends " at line L column C"; we say where ourselves.
    let words = msg.split(" at line ").next().unwrap_or(&msg);
    let words = unquote(words);
    let words: String = words.chars().take(160).collect();
    match e.location() {
        Some(l) => format!("line {}, column {}: {words}", l.line(), l.column()),
        None => words,
    }
}

/// Any other parser's error about a file that may hold a secret: its words
/// without what it quoted, bounded in length.
pub fn parse_error(e: &dyn std::fmt::Display) -> String {
    unquote(&e.to_string()).chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(line("a\u{1b}[2Jb\r\n\0"), "a\\u{1b}[2Jb\\r\\n\\u{0}");
        assert_eq!(block("one\ntwo\r\x07"), "one\ntwo\\r\\u{7}");
        assert_eq!(line("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(line("plain text, ünïcode"), "plain text, ünïcode");
    }

    #[test]
    fn a_key_parsed_as_yaml_leaves_only_its_position() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxZDzCbLQQmQ3vd\n-----END PRIVATE KEY-----\n";
        let e = serde_yaml::from_str::<std::collections::BTreeMap<String, String>>(key).unwrap_err();
        assert!(e.to_string().contains("MIGHAgEA"), "serde quotes the input: {e}");
        let safe = yaml_error(&e);
        assert!(!safe.contains("MIGH") && !safe.contains("BEGIN"), "{safe}");
        assert!(safe.starts_with("line 1, column 1: invalid type: string …, expected a map"), "{safe}");
    }

    #[test]
    fn unknown_fields_and_values_are_not_echoed() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: u32,
        }
        let e = serde_yaml::from_str::<S>("secretvalue123: 1\n").unwrap_err();
        assert!(!yaml_error(&e).contains("secretvalue123"), "{}", yaml_error(&e));
        let e = serde_yaml::from_str::<S>("a: topsecret\n").unwrap_err();
        assert!(!yaml_error(&e).contains("topsecret"), "{}", yaml_error(&e));
        assert_eq!(unquote(r#"bad "x\"y" and `z` end"#), "bad … and … end");
    }
}
