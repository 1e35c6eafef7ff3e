//! Small helpers to turn serde_yaml errors and values into `path:line` errors.

use std::path::Path;

use crate::ManifestError;

pub(crate) fn yaml_err(path: &Path, line_offset: usize, e: &serde_yaml::Error) -> ManifestError {
    let line = e.location().map(|l| l.line()).unwrap_or(1) + line_offset;
    // serde_yaml appends " at line N column M"; the line is already in the prefix.
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    ManifestError::new(path, line, msg)
}

/// The documents of a multi-document YAML text with the 1-based line each
/// starts on (the line after its `---` marker), for pointing errors at lines.
pub(crate) fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (i, l) in text.lines().enumerate() {
        if l.trim_end() == "---" || l.starts_with("--- ") {
            if i == 0 {
                starts[0] = 2;
            } else {
                starts.push(i + 2);
            }
        }
    }
    starts
}

/// The 1-based line of the first `key:` at or after `from` (a document's first
/// line), or `from` when the key is not written out.
pub(crate) fn line_of_key(text: &str, from: usize, key: &str) -> usize {
    let needle = format!("{key}:");
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&needle)
        })
        .map(|(i, _)| i + 1)
        .unwrap_or(from)
}

/// The 1-based line of the `n`-th (0-based) list item under the first `key:`
/// at or after `from`.
pub(crate) fn line_of_item(text: &str, from: usize, key: &str, n: usize) -> usize {
    let kl = line_of_key(text, from, key);
    let lines: Vec<&str> = text.lines().collect();
    let Some(keyline) = lines.get(kl - 1) else { return kl };
    let key_indent = keyline.len() - keyline.trim_start().len();
    let mut item_indent = None;
    let mut count = 0;
    for (i, l) in lines.iter().enumerate().skip(kl) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = l.len() - t.len();
        if ind < key_indent || (ind == key_indent && !t.starts_with("- ")) {
            break;
        }
        if t.starts_with("- ") || t == "-" {
            let ii = *item_indent.get_or_insert(ind);
            if ind == ii {
                if count == n {
                    return i + 1;
                }
                count += 1;
            }
        }
    }
    kl
}
