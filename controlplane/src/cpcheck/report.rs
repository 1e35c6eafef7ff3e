//! cpcheck's output: a table grouped by section (colour on a terminal only),
//! a JSON document with a stable, documented schema (docs/cpcheck.schema.json),
//! and JUnit XML for CI systems.

use super::{CheckResult, Status, Summary, GROUPS};

/// The JSON document's schema version; bump on an incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

fn paint(s: &str, status: Status, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match status {
        Status::Pass => "32",
        Status::Warn => "33",
        Status::Fail => "31",
        Status::Skip => "90",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

pub fn summary_line(s: &Summary) -> String {
    format!("{} passed, {} warned, {} failed, {} skipped", s.passed, s.warned, s.failed, s.skipped)
}

pub fn table(results: &[CheckResult], summary: &Summary, color: bool) -> String {
    let width = results.iter().map(|r| r.id.len()).max().unwrap_or(10);
    let mut out = String::new();
    for g in GROUPS {
        let rows: Vec<&CheckResult> = results.iter().filter(|r| r.group == *g).collect();
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("{}\n", g.to_uppercase()));
        for r in rows {
            let st = paint(&format!("{:<4}", r.finding.status.as_str()), r.finding.status, color);
            out.push_str(&format!("  {st}  {:<width$}  {}\n", r.id, r.finding.detail));
            if let Some(fix) = &r.finding.remediation {
                out.push_str(&format!("        {:<width$}  fix: {fix}\n", ""));
            }
        }
    }
    out.push_str(&summary_line(summary));
    out.push('\n');
    out
}

pub fn json(results: &[CheckResult], summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "version": SCHEMA_VERSION,
        "kind": "CpcheckReport",
        "checks": results,
        "summary": summary,
    })
}

/// Text for an XML attribute or element: markup escaped, and every control
/// character (which XML 1.0 cannot carry at all, not even as a reference)
/// written out as `\u{…}`.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one testsuite per group, one testcase per check; FAIL is a
/// <failure>, SKIP a <skipped>, WARN passes with its detail in <system-out>.
pub fn junit(results: &[CheckResult], summary: &Summary) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"kubectl-cpcheck\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        results.len(),
        summary.failed,
        summary.skipped
    ));
    for g in GROUPS {
        let rows: Vec<&CheckResult> = results.iter().filter(|r| r.group == *g).collect();
        if rows.is_empty() {
            continue;
        }
        let f = rows.iter().filter(|r| r.finding.status == Status::Fail).count();
        let s = rows.iter().filter(|r| r.finding.status == Status::Skip).count();
        out.push_str(&format!("  <testsuite name=\"{g}\" tests=\"{}\" failures=\"{f}\" skipped=\"{s}\">\n", rows.len()));
        for r in rows {
            out.push_str(&format!("    <testcase classname=\"cpcheck.{g}\" name=\"{}\">\n", xml(&r.id)));
            let detail = xml(&r.finding.detail);
            match r.finding.status {
                Status::Fail => out.push_str(&format!(
                    "      <failure message=\"{detail}\">{}</failure>\n",
                    xml(r.finding.remediation.as_deref().unwrap_or(""))
                )),
                Status::Skip => out.push_str(&format!("      <skipped message=\"{detail}\"/>\n")),
                Status::Warn => out.push_str(&format!("      <system-out>WARN: {detail} (fix: {})</system-out>\n", xml(r.finding.remediation.as_deref().unwrap_or("")))),
                Status::Pass => out.push_str(&format!("      <system-out>{detail}</system-out>\n")),
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
