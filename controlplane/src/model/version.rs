//! Kubernetes versions: parsed from what binaries and the API say, and what
//! depends on them (the scheduler config's apiVersion).

/// The bytes before a Kubernetes release's version in its binaries (the
/// build's `-ldflags -X …gitVersion=v1.20.2`, kept in Go's build info): the
/// version is read there, on the jumpbox and on the server, without running
/// a binary that may be built for another architecture.
pub const GIT_VERSION_MARK: &str = "gitVersion=v";

use super::SCHEDULER_CONFIG;

/// A Kubernetes version as `major.minor`, from `Kubernetes v1.20.2` or `v1.32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let v = s.split_whitespace().find(|w| w.starts_with('v') || w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
        let mut it = v.trim_start_matches('v').split(['.', '-', '+']);
        Some(Version { major: it.next()?.parse().ok()?, minor: it.next()?.parse().ok()? })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// The KubeSchedulerConfiguration apiVersion a kube-scheduler of `v` reads.
pub fn scheduler_api_version(v: Version) -> Option<&'static str> {
    match (v.major, v.minor) {
        (1, m) if m >= 25 => Some("kubescheduler.config.k8s.io/v1"),
        (1, 23 | 24) => Some("kubescheduler.config.k8s.io/v1beta3"),
        (1, 22) => Some("kubescheduler.config.k8s.io/v1beta2"),
        (1, 19..=21) => Some("kubescheduler.config.k8s.io/v1beta1"),
        _ => None,
    }
}

/// The compiled-in scheduler config with its apiVersion line set for `v`.
pub fn render_scheduler_config(v: Version) -> Option<String> {
    let want = scheduler_api_version(v)?;
    if SCHEDULER_CONFIG.api_version == want {
        return Some(SCHEDULER_CONFIG.text.to_string());
    }
    let line = SCHEDULER_CONFIG.api_version_line as usize;
    let mut out = String::with_capacity(SCHEDULER_CONFIG.text.len());
    for (i, l) in SCHEDULER_CONFIG.text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            out.push_str(&format!("apiVersion: {want}\n"));
        } else {
            out.push_str(l);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_kubernetes_output() {
        assert_eq!(Version::parse("Kubernetes v1.20.2"), Some(Version { major: 1, minor: 20 }));
        assert_eq!(Version::parse("v1.32.3-gke.1"), Some(Version { major: 1, minor: 32 }));
        assert_eq!(Version::parse("nothing"), None);
    }

    #[test]
    fn scheduler_config_renders_per_version() {
        let v = |m| Version { major: 1, minor: m };
        let api = |m| render_scheduler_config(v(m)).map(|t| t.lines().next().unwrap().to_string());
        assert_eq!(api(32).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1"));
        assert_eq!(api(25).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1"));
        assert_eq!(api(24).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1beta3"));
        assert_eq!(api(23).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1beta3"));
        assert_eq!(api(22).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1beta2"));
        assert_eq!(api(20).as_deref(), Some("apiVersion: kubescheduler.config.k8s.io/v1beta1"));
        assert_eq!(api(18), None);
        // Only the apiVersion line changes.
        let t = render_scheduler_config(v(20)).unwrap();
        assert_eq!(t.lines().skip(1).collect::<Vec<_>>(), SCHEDULER_CONFIG.text.lines().skip(1).collect::<Vec<_>>());
        assert_eq!(render_scheduler_config(v(32)).unwrap(), SCHEDULER_CONFIG.text);
    }
}
