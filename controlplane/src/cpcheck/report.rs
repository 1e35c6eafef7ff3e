//! cpcheck's report: a struct that serializes to the JSON document
//! (docs/cpcheck.schema.json, version [`SCHEMA_VERSION`], written here only)
//! and displays as the table grouped by section; and its JUnit XML.

use std::fmt;

use serde::Serialize;

use super::{summarize, CheckResult, Group, Status, Summary};

/// The JSON document's schema version; bump on an incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// Which CIS benchmark the `cis` group ran, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CisInfo {
    /// kube-bench's name for it (`cis-1.20`), if any fits the version.
    pub benchmark: Option<String>,
    pub kubernetes_version: String,
    /// Where the version came from.
    pub version_from: String,
    /// This build holds that benchmark's table.
    pub in_table: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub kind: &'static str,
    pub cis: CisInfo,
    pub checks: Vec<CheckResult>,
    pub summary: Summary,
    /// Colour the table (a terminal).
    #[serde(skip)]
    pub color: bool,
}

impl Report {
    pub fn new(checks: Vec<CheckResult>, cis: CisInfo) -> Report {
        let summary = summarize(&checks);
        Report { version: SCHEMA_VERSION, kind: "CpcheckReport", cis, checks, summary, color: false }
    }

    /// 1 when a check failed, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.summary.failed > 0 {
            crate::exit::FAILED
        } else {
            crate::exit::OK
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// JUnit XML: one testsuite per group, one testcase per check; FAIL is a
    /// `<failure>`, SKIP a `<skipped>`, WARN passes with its detail in
    /// `<system-out>`.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        out.push_str(&format!("<testsuites name=\"kubectl-cpcheck\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n", self.checks.len(), self.summary.failed, self.summary.skipped));
        for g in Group::ALL {
            let rows: Vec<&CheckResult> = self.checks.iter().filter(|r| r.group == *g).collect();
            if rows.is_empty() {
                continue;
            }
            let f = rows.iter().filter(|r| r.finding.status == Status::Fail).count();
            let s = rows.iter().filter(|r| r.finding.status == Status::Skip).count();
            out.push_str(&format!("  <testsuite name=\"{g}\" tests=\"{}\" failures=\"{f}\" skipped=\"{s}\">\n", rows.len()));
            for r in rows {
                let name = match &r.server {
                    Some(s) => format!("{} [{s}]", r.id),
                    None => r.id.clone(),
                };
                out.push_str(&format!("    <testcase classname=\"cpcheck.{g}\" name=\"{}\">\n", xml(&name)));
                let detail = xml(&r.finding.detail);
                let fix = xml(r.finding.remediation.as_deref().unwrap_or(""));
                match r.finding.status {
                    Status::Fail => out.push_str(&format!("      <failure message=\"{detail}\">{fix}{}</failure>\n", journal(&r.finding.journal))),
                    Status::Skip => out.push_str(&format!("      <skipped message=\"{detail}\"/>\n")),
                    Status::Warn => out.push_str(&format!("      <system-out>WARN: {detail} (fix: {fix}){}</system-out>\n", journal(&r.finding.journal))),
                    Status::Pass => out.push_str(&format!("      <system-out>{detail}</system-out>\n")),
                }
                out.push_str("    </testcase>\n");
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

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

/// The table: a heading per group (the CIS one names its benchmark), a line
/// per check, its fix under it, the summary last. With several servers,
/// each server's checks under its name, then the cluster's.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut servers: Vec<&str> = Vec::new();
        for r in &self.checks {
            if let Some(s) = r.server.as_deref().filter(|s| !servers.contains(s)) {
                servers.push(s);
            }
        }
        if servers.is_empty() {
            self.table(f, &self.checks.iter().collect::<Vec<_>>(), "")?;
        } else {
            for s in &servers {
                writeln!(f, "== {s}")?;
                self.table(f, &self.checks.iter().filter(|r| r.server.as_deref() == Some(*s)).collect::<Vec<_>>(), "  ")?;
            }
            writeln!(f, "== the cluster ({} servers)", servers.len())?;
            self.table(f, &self.checks.iter().filter(|r| r.server.is_none()).collect::<Vec<_>>(), "  ")?;
        }
        writeln!(f, "{}", summary_line(&self.summary))
    }
}

impl Report {
    fn table(&self, f: &mut fmt::Formatter<'_>, checks: &[&CheckResult], indent: &str) -> fmt::Result {
        let width = checks.iter().map(|r| r.id.len()).max().unwrap_or(10);
        for g in Group::ALL {
            let rows: Vec<&CheckResult> = checks.iter().copied().filter(|r| r.group == *g).collect();
            let cis_without_rows = *g == Group::Cis && rows.is_empty() && self.cis.benchmark.is_some() && !self.cis.in_table;
            if rows.is_empty() && !cis_without_rows {
                continue;
            }
            if *g == Group::Cis {
                let b = self.cis.benchmark.as_deref().unwrap_or("none");
                let here = if self.cis.in_table {
                    String::new()
                } else {
                    format!("; no table for it in this build (it has {})", super::cis::BENCHMARKS.iter().map(|b| b.name).collect::<Vec<_>>().join(", "))
                };
                writeln!(f, "{indent}CIS ({b}, for Kubernetes {} from {}{here})", self.cis.kubernetes_version, self.cis.version_from)?;
            } else {
                writeln!(f, "{indent}{}", g.as_str().to_uppercase())?;
            }
            for r in rows {
                let st = paint(&format!("{:<4}", r.finding.status.as_str()), r.finding.status, self.color);
                // Escaped again: a detail is server text, however it was made.
                writeln!(f, "{indent}  {st}  {:<width$}  {}", r.id, crate::output::redact::line(&r.finding.detail))?;
                if let Some(fix) = &r.finding.remediation {
                    writeln!(f, "{indent}        {:<width$}  fix: {}", "", crate::output::redact::line(fix))?;
                }
                for l in &r.finding.journal {
                    writeln!(f, "{indent}        {:<width$}  | {}", "", crate::output::redact::line(l))?;
                }
            }
        }
        Ok(())
    }
}

/// Journal lines under a JUnit message, one per line, escaped for XML.
fn journal(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n| {}", xml(l))).collect()
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

#[cfg(test)]
mod tests {
    use super::super::Finding;
    use super::*;

    fn report() -> Report {
        let r = |id: &str, group: &str, f: Finding| CheckResult { id: id.into(), server: None, group: Group::parse(group).unwrap(), title: format!("title of {id}"), finding: f };
        let mut bad = Finding::fail("x", "fix it");
        // Text from a server, whatever it holds, even if a constructor were bypassed.
        bad.detail = "installed `a\u{1b}[2J<b>&\"c\"\u{0}`".into();
        Report::new(
            vec![
                r("host.unit.kube-apiserver", "host", Finding::pass("active, enabled")),
                r("host.drift.kube-scheduler", "host", bad),
                r("ports.insecure", "ports", Finding::warn("10251 open", "add --port=0")),
                r("api.nodes", "api", Finding::skip("no credentials")),
                r("cis-1.20/1.2.20", "cis", Finding::warn("kube-apiserver: --profiling not set", "set --profiling=false")),
            ],
            CisInfo { benchmark: Some("cis-1.20".into()), kubernetes_version: "v1.20".into(), version_from: "the installed kube-apiserver".into(), in_table: true },
        )
    }

    #[test]
    fn the_json_validates_against_the_documented_schema() {
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../../docs/cpcheck.schema.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&report().json()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(v["summary"]["failed"], 1);
        assert_eq!(v["cis"]["benchmark"], "cis-1.20");
    }

    #[test]
    fn junit_is_xml_with_the_right_counts_whatever_the_details_hold() {
        let x = report().junit();
        let doc = roxmltree::Document::parse(&x).expect("valid XML");
        let root = doc.root_element();
        assert_eq!((root.attribute("tests"), root.attribute("failures"), root.attribute("skipped")), (Some("5"), Some("1"), Some("1")));
        let suites: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testsuite")).map(|n| n.attribute("name").unwrap()).collect();
        assert_eq!(suites, ["host", "ports", "api", "cis"]);
        let failure = doc.descendants().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(failure.attribute("message"), Some("installed `a\\u{1b}[2J<b>&\"c\"\\u{0}`"));
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("skipped")).count(), 1);
    }

    #[test]
    fn several_servers_are_grouped_by_server_then_the_cluster() {
        let mut rep = report();
        for (i, c) in rep.checks.iter_mut().enumerate() {
            if c.group == Group::Host {
                c.server = Some(format!("root@s{i}"));
            }
        }
        let t = rep.to_string();
        let heads: Vec<&str> = t.lines().filter(|l| l.starts_with("==")).collect();
        assert_eq!(heads, ["== root@s0", "== root@s1", "== the cluster (2 servers)"]);
        assert!(t.contains("== root@s1\n  HOST\n    FAIL  host.drift.kube-scheduler"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&rep.json()).unwrap();
        assert_eq!(v["checks"][1]["server"], "root@s1");
        assert!(v["checks"][2].get("server").is_none());
        let schema: serde_json::Value = serde_json::from_str(include_str!("../../../docs/cpcheck.schema.json")).unwrap();
        assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&v));
        assert!(rep.junit().contains("name=\"host.drift.kube-scheduler [root@s1]\""));
    }

    #[test]
    fn the_table_groups_by_section_and_names_the_benchmark() {
        let t = report().to_string();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "HOST");
        assert!(lines[1].starts_with("  PASS  host.unit.kube-apiserver"));
        assert!(lines.iter().any(|l| l.starts_with("CIS (cis-1.20, for Kubernetes v1.20 from the installed kube-apiserver)")));
        assert!(lines.iter().any(|l| l.trim_start().starts_with("fix: fix it")));
        assert_eq!(*lines.last().unwrap(), "1 passed, 2 warned, 1 failed, 1 skipped");
        assert!(!t.contains('\u{1b}'), "no colour unless asked");
        let mut r = report();
        r.color = true;
        assert!(r.to_string().contains("\u{1b}[31mFAIL"));
    }
}
